"""Objects in collections: ``cbir index --objects`` stores a region item per detected object beside the
whole image, in the image space, and ``cbir search --objects / --box / --label / --match`` finds them.

The photos are skimage's samples, where the shipped YOLOX-Nano finds a cup, a person and a cat."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cbir.cli import app
from cbir.collection.collection import Collection
from cbir.encoders.regions import describe_crops
from cbir.io.images import load_image
from cbir.pipelines.image import ImagePipeline
from cbir.pipelines.objects import ObjectPipeline

pytest.importorskip("onnxruntime")
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
PHOTOS = {"coffee": "cup", "astronaut": "person", "chelsea": "cat"}


def write_photos(folder: Path) -> Path:
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.jpg", quality=92)
    Image.new("RGB", (300, 200), (128, 128, 128)).save(folder / "blank.jpg")
    together(folder, (1000, 520), 500, (510, 100)).save(folder / "together.jpg", quality=92)
    return folder


def together(folder: Path, size: tuple[int, int], person: int, cat_at: tuple[int, int]) -> Image.Image:
    """The astronaut and the cat side by side."""
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(Image.open(folder / "astronaut.jpg").resize((person, person)), (0, 10))
    canvas.paste(Image.open(folder / "chelsea.jpg").resize((480, 320)), cat_at)
    return canvas


def index(folder: Path, collection: Path, *options: str):
    result = runner.invoke(app, ["index", str(folder), "-c", str(collection), "--objects", "--workers", "0", "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def items(collection: Path) -> list[tuple]:
    with sqlite3.connect(collection / "catalog.sqlite") as connection:
        rows = connection.execute("SELECT kind, uri, box, labels, metadata FROM items ORDER BY id").fetchall()
    return [(kind, Path(uri).stem, json.loads(box) if box else None, json.loads(labels), json.loads(metadata)) for kind, uri, box, labels, metadata in rows]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("objects")
    folder, collection = write_photos(root / "photos"), root / "collection"
    report = index(folder, collection)
    assert report["added"] == 5 and report["objects"]["photos"] == 5 and report["objects"]["without_object"] == 1
    return folder, collection


def test_each_photo_is_an_image_item_and_each_object_a_region_in_the_same_space(indexed):
    folder, collection = indexed
    stored = items(collection)
    assert sorted(stem for kind, stem, *_ in stored if kind == "image") == ["astronaut", "blank", "chelsea", "coffee", "together"]
    regions = [(stem, labels, box, meta) for kind, stem, box, labels, meta in stored if kind == "region"]
    assert not [r for r in regions if r[0] == "blank"], "the blank photo has no object: it stays a whole image"
    for name, label in PHOTOS.items():
        best = max((r for r in regions if r[0] == name), key=lambda r: r[3]["score"])
        assert best[1] == [label] and best[3]["label"] == label and 0.3 <= best[3]["score"] <= 1
        x0, y0, x1, y1 = best[2]
        width, height = Image.open(folder / f"{name}.jpg").size
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    with Collection.open(collection) as store:
        assert isinstance(store.pipeline(), ObjectPipeline) and store.space().pipeline == "objects"
        assert set(store.catalog.counts_by_kind()) == {"image", "region"}
        ids, vectors = store.vectors()
        found = store.catalog.get_items(ids)
        cup = next(i for i, item_id in enumerate(ids) if found[int(item_id)].labels == ["cup"])
        coffee = load_image(folder / "coffee.jpg")
        np.testing.assert_allclose(vectors[cup], describe_crops(store.encoder, coffee, np.array([found[int(ids[cup])].box]))[0], atol=1e-5)
        whole = next(i for i, item_id in enumerate(ids) if found[int(item_id)].kind == "image" and found[int(item_id)].uri.endswith("coffee.jpg"))
        np.testing.assert_allclose(vectors[whole], ImagePipeline(store.encoder).encode(folder / "coffee.jpg")[0], atol=1e-5)


def test_reindexing_changes_and_sync_keep_every_object_once(tmp_path):
    folder, collection = write_photos(tmp_path / "photos"), tmp_path / "collection"
    index(folder, collection, "--max-boxes", "2")
    before = items(collection)
    assert max(sum(1 for kind, stem, *_ in before if kind == "region" and stem == name) for name in PHOTOS) <= 2
    again = index(folder, collection)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 5) and items(collection) == before
    Image.open(folder / "chelsea.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "chelsea.jpg")
    assert index(folder, collection)["updated"] == 1
    after = items(collection)
    assert len(after) == len(before) and sum(1 for kind, stem, *_ in after if stem == "chelsea" and kind == "image") == 1
    (folder / "coffee.jpg").unlink()
    assert index(folder, collection, "--sync")["removed"] == 1
    assert not [row for row in items(collection) if row[1] == "coffee"]
    plain = runner.invoke(app, ["index", str(folder), "-c", str(collection), "--workers", "0"])
    assert plain.exit_code == 0, plain.output  # the collection's own pipeline still detects objects


def test_detection_settings_must_match_the_collection(indexed, tmp_path):
    folder, collection = indexed
    result = runner.invoke(app, ["index", str(folder), "-c", str(collection), "--objects", "--min-score", "0.5"])
    assert result.exit_code == 2 and "score_threshold" in result.output
    result = runner.invoke(app, ["index", str(folder), "-c", str(tmp_path / "c"), "--min-score", "0.5"])
    assert result.exit_code == 2 and "add --objects" in result.output and not (tmp_path / "c").exists()
    plain = tmp_path / "plain"
    assert runner.invoke(app, ["index", str(folder), "-c", str(plain), "--workers", "0"]).exit_code == 0
    result = runner.invoke(app, ["index", str(folder), "-c", str(plain), "--objects"])
    assert result.exit_code == 2 and "without their objects" in result.output


def search(collection: Path, *arguments: str) -> dict:
    result = runner.invoke(app, ["search", *arguments, "-c", str(collection), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_search_with_each_object_of_the_query(indexed):
    folder, collection = indexed
    found = search(collection, str(folder / "coffee.jpg"), "--objects", "-k", "2")
    labels = [entry["label"] for entry in found["objects"]]
    assert labels[0] == "cup"
    cup = found["objects"][0]["results"][0]
    assert cup["uri"].endswith("coffee.jpg") and cup["label"] == "cup" and len(cup["box"]) == 4 and cup["score"] > 0.99
    assert found["results"][0]["uri"].endswith("coffee.jpg") and found["results"][0]["objects"] == list(range(len(labels)))


def test_match_all_ranks_first_the_photos_holding_every_query_object(indexed, tmp_path):
    folder, collection = indexed
    together(folder, (900, 560), 460, (420, 200)).save(tmp_path / "query.jpg")
    any_ = search(collection, str(tmp_path / "query.jpg"), "--objects", "-k", "4")
    all_ = search(collection, str(tmp_path / "query.jpg"), "--objects", "--match", "all", "-k", "4")
    labels = [entry["label"] for entry in all_["objects"]]
    assert {"person", "cat"} <= set(labels) and all_["match"] == "all"
    first = all_["results"][0]
    assert Path(first["uri"]).stem == "together" and first["objects"] == list(range(len(labels)))
    assert {"person", "cat"} <= {match.get("label") for match in first["matches"]}
    scores = [photo["score"] for photo in all_["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1] + 0.1
    ranked = [Path(photo["uri"]).stem for photo in any_["results"]]
    assert ranked[0] == "together" and {"astronaut", "chelsea"} <= set(ranked)
    held = [len(photo.get("objects", [])) for photo in any_["results"]]
    assert held == sorted(held, reverse=True) and held[0] == len(any_["objects"]) and held[-1] < held[0]


def test_box_searches_with_one_part_and_label_lists_a_class(indexed, tmp_path):
    folder, collection = indexed
    part = search(collection, str(folder / "coffee.jpg"), "--box", "170,15,410,305", "-k", "1")
    assert part["box"] == [170, 15, 410, 305] and part["results"][0]["label"] == "cup"
    cats = search(collection, "--label", "cat")
    assert {Path(photo["uri"]).stem for photo in cats["results"]} == {"chelsea", "together"}
    assert all(photo["label"] == "cat" and photo["score"] == photo["detector_score"] for photo in cats["results"])
    assert cats["results"][0]["score"] >= cats["results"][1]["score"]
    only_cups = search(collection, str(folder / "astronaut.jpg"), "--box", "0,0,300,300", "--label", "cup")
    assert {photo["label"] for photo in only_cups["results"]} == {"cup"}
    grid = tmp_path / "grid.png"
    result = runner.invoke(app, ["search", str(folder / "astronaut.jpg"), "-c", str(collection), "--objects", "--grid", str(grid)])
    assert result.exit_code == 0 and Image.open(grid).width > 400


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--box", "10,10,5,40"], "is empty"),
        (["--box", "5000,5000,6000,6000"], "outside"),
        (["--box", "1,2,3"], "four numbers"),
        (["--label", "giraffe"], "classes found: "),
        (["--match", "all"], "add --objects"),
        (["--objects", "--box", "1,1,9,9"], "choose one"),
        (["--objects", "--match", "most"], "any or all"),
    ],
)
def test_bad_object_queries_are_told(indexed, arguments, message):
    folder, collection = indexed
    query = [] if arguments[0] == "--label" else [str(folder / "coffee.jpg")]
    result = runner.invoke(app, ["search", *query, "-c", str(collection), *arguments])
    assert result.exit_code == 2 and message in result.output


def test_objects_query_without_any_object_is_told(indexed):
    folder, collection = indexed
    result = runner.invoke(app, ["search", "-c", str(collection)])
    assert result.exit_code == 2 and "give a query IMAGE, or --label CLASS" in result.output
    result = runner.invoke(app, ["search", str(folder / "blank.jpg"), "-c", str(collection), "--objects"])
    assert result.exit_code == 2 and "no object found" in result.output


@pytest.mark.timeout(600)
def test_kill_during_object_indexing_then_rerun_stores_every_object_once(tmp_path):
    folder = write_photos(tmp_path / "photos")
    for copy in range(4):
        for name in PHOTOS:
            shutil.copy(folder / f"{name}.jpg", folder / f"{name}_{copy}.jpg")
    count = len(list(folder.iterdir()))
    collection = tmp_path / "collection"
    command = [sys.executable, "-m", "cbir.cli", "index", str(folder), "-c", str(collection), "--objects", "--batch-size", "2", "--workers", "0", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(_sources(collection)) < 4:
        time.sleep(0.05)
    assert process.poll() is None, f"indexing ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = subprocess.run(command, capture_output=True, timeout=400, env=env)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    stored = items(collection)
    assert sorted(stem for kind, stem, *_ in stored if kind == "image") == sorted(p.stem for p in folder.iterdir())
    regions = [(stem, tuple(box), tuple(labels)) for kind, stem, box, labels, _ in stored if kind == "region"]
    assert len(regions) == len(set(regions)) and len(_sources(collection)) == count
    for name in PHOTOS:  # every copy holds the same objects as its original
        assert len({tuple(sorted((b, l) for s, b, l in regions if s == stem)) for stem in [name] + [f"{name}_{c}" for c in range(4)]}) == 1


def _sources(collection: Path) -> list:
    database = collection / "catalog.sqlite"
    if not database.exists():
        return []
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            return connection.execute("SELECT uri FROM sources WHERE content_hash IS NOT NULL").fetchall()
    except sqlite3.OperationalError:
        return []
