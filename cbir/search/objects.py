"""Searching a collection by object: hits grouped by photo, a query's detected objects, and photos
ranked by how many of those objects they hold.

* ``search_photos``: one descriptor (a crop, a region, a whole image) against every item of the
  image space (whole images and regions); a photo scores its best item, and keeps every item
  that matched, so the matching boxes can be drawn.
* ``rank_by_objects``: the candidates are each query object's ``depth`` best photos, overall and
  among the photos with a region of its class; each candidate is then scored exactly over all its
  items. A photo *holds* a query object when it has a region of that object's class. ``any``
  ranks photos by how many query objects they hold, then by their best match; ``all`` ranks them
  by the weakest of each object's best match over all their items
  (``cbir.search.regions.match_all``, the score the multi-class evaluation measures). On voc_dev,
  leaving out the photos that do not hold every class, or matching an object only with regions of
  its class, lowered multi-class mAP (bench/results/objects.md), so ``all`` ranks, not filters.
* ``labelled_photos``: every region of a class, photos ranked by their best detector score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from cbir.collection.collection import Collection, SearchResult
from cbir.detectors import Detector, load_detector
from cbir.encoders.regions import describe_crops

MATCHES = ("any", "all")
REGION_KIND = "region"
ITEMS_PER_PHOTO = 8  # items fetched per photo asked for: a photo holds its whole image and several regions
MIN_DEPTH = 50


@dataclass
class PhotoMatch:
    """A photo found by a query: its score (its best item's) and the items of it that matched, best first.

    ``outlined``: how many of the first hits are *the* matching objects, to be outlined (the best one
    for a single query, the best one of each query object, every region of a class).
    """

    uri: str
    score: float
    hits: list[SearchResult]
    rank: int = 0
    objects: list[int] = field(default_factory=list)  # the query objects it holds (multi-object queries)
    outlined: int = 1

    @property
    def outlines(self) -> list[SearchResult]:
        """The matching regions to draw (a whole-image match has no box)."""
        return [hit for hit in self.hits[: self.outlined] if hit.box is not None]

    @property
    def best(self) -> SearchResult:
        return self.hits[0]

    def result(self) -> SearchResult:
        """The photo as one ranked hit: its best item, with the photo's rank and score."""
        best = self.best
        return SearchResult(self.rank, self.score, best.item_id, self.uri, best.kind, best.box, labels=best.labels, metadata=best.metadata)

    def to_dict(self) -> dict:
        data = {**_match(self.best), "rank": self.rank, "score": round(self.score, 6), "uri": self.uri}
        data["matches"] = [_match(hit) for hit in self.hits]
        if self.objects:
            data["objects"] = self.objects
        return data


def _match(hit: SearchResult) -> dict:
    data = {"item_id": hit.item_id, "kind": hit.kind, "score": round(hit.score, 6)}
    if hit.box is not None:
        data["box"] = [round(v, 1) for v in hit.box]
    if hit.kind == REGION_KIND and hit.labels:
        data["label"], data["labels"] = hit.labels[0], hit.labels
        if "score" in hit.metadata:
            data["detector_score"] = hit.metadata["score"]
    return data


@dataclass
class QueryObject:
    """A part of the query image: its box (the image's pixels), class and detector score when detected, descriptor."""

    box: tuple[float, float, float, float]
    vector: np.ndarray
    label: str | None = None
    score: float | None = None

    def to_dict(self) -> dict:
        data: dict = {"box": [round(v, 1) for v in self.box]}
        if self.label is not None:
            data["label"] = self.label
            data["detector_score"] = round(float(self.score), 4)
        return data


def group_by_photo(hits: Sequence[SearchResult], k: int, outline_all: bool = False) -> list[PhotoMatch]:
    """Hits (best first) grouped by photo, photos in the order of their best hit, at most ``k``; the best
    hit of each is outlined (every one with ``outline_all``)."""
    photos: dict[str, PhotoMatch] = {}
    for hit in hits:
        if hit.uri in photos:
            photos[hit.uri].hits.append(hit)
            photos[hit.uri].outlined += outline_all
        elif len(photos) < k:
            photos[hit.uri] = PhotoMatch(hit.uri, hit.score, [hit])
    return _ranked(list(photos.values()))


def _ranked(photos: list[PhotoMatch]) -> list[PhotoMatch]:
    for rank, photo in enumerate(photos, start=1):
        photo.rank = rank
    return photos


def search_photos(store: Collection, vectors: np.ndarray, k: int, label: str | None = None, depth: int | None = None) -> list[list[PhotoMatch]]:
    """For each descriptor (a row), the ``k`` best photos of the image space (only regions of class ``label``
    when given), from its ``depth`` best photos' worth of items."""
    count = max(k, depth or 0) * ITEMS_PER_PHOTO
    kinds = [REGION_KIND] if label is not None else None
    hits = store.search_vectors(np.atleast_2d(vectors), count, kinds=kinds, label=label)
    return [group_by_photo(row, max(k, depth or 0)) for row in hits]


def rank_by_objects(
    store: Collection, objects: Sequence[QueryObject], match: str, k: int, depth: int, label: str | None = None
) -> tuple[list[list[PhotoMatch]], list[PhotoMatch]]:
    """Each query object's ``depth`` best photos, and the ``k`` photos ranked by all the query's objects
    as ``match`` says (``label``: only regions of that class count as matches)."""
    if match not in MATCHES:
        raise ValueError(f"--match must be one of {', '.join(MATCHES)}, not {match!r}")
    vectors = np.stack([found.vector for found in objects])
    per_object = search_photos(store, vectors, depth, label)
    holders = [search_photos(store, found.vector, depth, found.label)[0] for found in objects]
    uris = dict.fromkeys(photo.uri for photos in (*per_object, *holders) for photo in photos)
    whitening = store.whitening()
    queries = whitening.apply(vectors) if whitening is not None else vectors
    combined = [photo for photo in (_score_photo(store, uri, objects, queries, match, label) for uri in uris) if photo is not None]
    combined.sort(key=lambda photo: (-photo.score,) if match == "all" else (-len(photo.objects), -photo.score))
    return per_object, _ranked(combined[:k])


def _score_photo(
    store: Collection, uri: str, objects: Sequence[QueryObject], queries: np.ndarray, match: str, label: str | None
) -> PhotoMatch | None:
    """One photo scored against every query object over all its items (``queries``: the objects' vectors
    as the index compares them)."""
    items = store.catalog.get_items(store.catalog.item_ids_with_uri(uri), with_vectors=True)
    mine = [
        (item_id, item) for item_id, item in items.items()
        if item.kind == REGION_KIND and (label is None or label in item.labels) or item.kind == "image" and label is None
    ]
    if not mine:
        return None
    whitening = store.whitening()
    vectors = np.stack([item.vector for _, item in mine])
    scores = queries @ (whitening.apply(vectors) if whitening is not None else vectors).T
    best = scores.argmax(axis=1)
    held = [number for number, found in enumerate(objects) if any(item.kind == REGION_KIND and found.label in item.labels for _, item in mine)]
    hits = {}
    for number, column in enumerate(best):
        item_id, item = mine[column]
        score = float(scores[number, column])
        if item_id not in hits or hits[item_id].score < score:
            hits[item_id] = SearchResult(0, score, item_id, uri, item.kind, item.box, labels=item.labels, metadata=item.metadata)
    ranked = sorted(hits.values(), key=lambda hit: -hit.score)
    per_object = scores.max(axis=1)
    score = float(per_object.min() if match == "all" else per_object.max())
    return PhotoMatch(uri, score, ranked, objects=held, outlined=len(ranked))


def labelled_photos(store: Collection, label: str, k: int) -> list[PhotoMatch]:
    """Photos holding regions of class ``label``, ranked by their best detector score (every such region kept)."""
    ids = store.catalog.items_matching([REGION_KIND], label)
    if not ids:
        raise ValueError(f"no object of class {label!r} in {store.path} (classes found: {', '.join(region_labels(store)) or 'none'})")
    items = store.catalog.get_items(ids)
    hits = [
        SearchResult(0, float(item.metadata.get("score", 0.0)), item_id, item.uri, item.kind, item.box, labels=item.labels, metadata=item.metadata)
        for item_id, item in items.items()
    ]
    hits.sort(key=lambda hit: (-hit.score, hit.uri, hit.item_id))
    return group_by_photo(hits, k, outline_all=True)


def region_labels(store: Collection) -> list[str]:
    """The classes of the collection's regions, most frequent first."""
    rows = store.catalog.connection.execute(
        "SELECT json_each.value, COUNT(*) FROM items, json_each(items.labels) WHERE items.kind = ? "
        "GROUP BY json_each.value ORDER BY COUNT(*) DESC, json_each.value",
        (REGION_KIND,),
    ).fetchall()
    return [label for label, _ in rows]


class ObjectQueries:
    """Turns a query image into object queries as the collection indexed its regions: its detector (the
    collection's own, else the shipped one) and crops re-encoded by its encoder."""

    def __init__(self, store: Collection):
        self.pipeline = store.pipeline()
        self.encoder = store.encoder

    @property
    def detector(self) -> Detector:
        return getattr(self.pipeline, "detector", None) or load_detector()

    def detect(self, image: Image.Image) -> list[QueryObject]:
        """The query's detected objects, best first."""
        found = self.detector.detect([image])[0]
        vectors = describe_crops(self.encoder, image, found.boxes)
        return [
            QueryObject(tuple(float(v) for v in box), vector, label, float(score))
            for box, label, score, vector in zip(found.boxes, found.labels, found.scores, vectors)
        ]

    def box(self, image: Image.Image, box: Sequence[float]) -> QueryObject:
        """The query restricted to ``box`` (``x0, y0, x1, y1`` in the image's pixels)."""
        box = check_box(box, image.size)
        return QueryObject(box, describe_crops(self.encoder, image, np.array([box], np.float32))[0])


def check_box(box: Sequence[float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` clipped to an image of ``size`` (width, height); raises when it is not a box inside the image."""
    if len(box) != 4 or not all(np.isfinite(v) for v in box):
        raise ValueError(f"a box is four numbers x0,y0,x1,y1, not {list(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is empty: x1 must exceed x0 and y1 exceed y0")
    width, height = size
    clipped = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
        raise ValueError(f"box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {width}x{height} image")
    return clipped

