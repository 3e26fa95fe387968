"""The object endpoints: the objects of an uploaded query, search with a part of it, and the classes of
the collection's regions (every object of one class, best detector score first)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from cbir.detectors import Detector, load_detector
from cbir.server.errors import ApiError
from cbir.server.routes import Service, check_k
from cbir.server.uploads import Upload, read_upload

router = APIRouter(prefix="/objects", tags=["objects"])
_detector_lock = threading.Lock()


def _detector(request: Request, service: Service) -> Detector:
    """The collection's detector (the shipped one for a collection indexed without objects), loaded once."""
    with _detector_lock:
        if getattr(request.app.state, "detector", None) is None:
            from cbir.pipelines.objects import detector_from_record

            info = service.info()
            record = info["spaces"][info["default_space"]]["encoder"].get("detector")
            request.app.state.detector = detector_from_record(record) if record else load_detector()
        return request.app.state.detector


def _upload(service: Service, image: UploadFile) -> Upload:
    settings = service.settings
    with service.decoding():
        return read_upload(image.file.read(), image.filename, settings.max_upload_bytes, settings.max_pixels)


@router.post("/detect", summary="The objects the collection's detector finds in an uploaded picture")
def detect(request: Request, service: Service, image: Annotated[UploadFile, File(description="The query picture.")]) -> dict:
    upload = _upload(service, image)
    found = _detector(request, service).detect([upload.image])[0]
    objects = [
        {"box": [round(float(v), 1) for v in box], "label": label, "detector_score": round(float(score), 4)}
        for box, label, score in zip(found.boxes, found.labels, found.scores)
    ]
    return {"query": upload.filename, "image_size": list(upload.image.size), "objects": objects}


@router.post("/search", summary="Photos holding something like one part of an uploaded picture, grouped by photo")
def search_part(
    service: Service,
    image: Annotated[UploadFile, File(description="The query picture.")],
    box: Annotated[str, Form(max_length=200, description="x0,y0,x1,y1 in the picture's upright pixels.")],
    k: Annotated[int, Form(ge=1, description="Number of photos.")] = 10,
    label: Annotated[str | None, Form(max_length=200, description="Only regions of this class.")] = None,
) -> dict:
    """The same JSON as ``cbir search IMAGE --box x0,y0,x1,y1 --json``."""
    from cbir.encoders.regions import crop_box
    from cbir.search.objects import ITEMS_PER_PHOTO, REGION_KIND, check_box, group_by_photo

    check_k(service, k)
    upload = _upload(service, image)
    try:
        values = [float(part) for part in box.split(",")]
        part = check_box(values, upload.image.size)
    except ValueError as error:
        raise ApiError(422, f"box {box!r}: {error}" if "," in box else "box must be x0,y0,x1,y1") from None
    vector = service.encode(crop_box(upload.image, part))
    label = label or None
    hits = service.search_vector(vector, k * ITEMS_PER_PHOTO, [REGION_KIND] if label else None, label)
    return {"query": upload.filename, "box": [round(v, 1) for v in part], "results": [photo.to_dict() for photo in group_by_photo(hits, k)]}


@router.get("/classes", summary="The classes of the collection's regions, most frequent first")
def classes(service: Service) -> dict:
    from cbir.search.objects import region_labels

    with service.reading() as collection:
        return {"classes": region_labels(collection)}


@router.post("/label", summary="Every object of one class, photos ranked by their best detector score")
def every_object(
    service: Service,
    label: Annotated[str | None, Form(max_length=200, description="The class.")] = None,
    k: Annotated[int, Form(ge=1, description="Number of photos.")] = 10,
) -> dict:
    """The same JSON as ``cbir search --label CLASS --json``."""
    from cbir.search.objects import labelled_photos

    check_k(service, k)
    if not label:
        raise ApiError(422, "choose a class to list its objects")
    with service.reading() as collection:
        try:
            photos = labelled_photos(collection, label, k)
        except ValueError as error:
            raise ApiError(404, str(error)) from None
    return {"label": label, "results": [photo.to_dict() for photo in photos]}
