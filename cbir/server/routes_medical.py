"""The similar-cases view of a medical collection: the most and least similar cases of an uploaded scan
(DICOM file, picture) or of a stored slice or series, and the pictures of the cases.

Responses carry what ``cbir medical report --json`` prints: item ids, case names, labels, scores and the
vote; nothing that names a patient (uploads are called "uploaded scan", whatever their file name).
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response
from fastapi.responses import FileResponse

from cbir.collection.collection import CollectionError
from cbir.server.errors import ApiError
from cbir.server.routes import ERRORS, MAX_ITEM_ID, ItemId, Service
from cbir.server.uploads import SUFFIX_OF_FORMAT, probe

STATIC = Path(__file__).with_name("static")
UPLOAD_NAME = "uploaded scan"

router = APIRouter()


@router.get("/medical", include_in_schema=False)
def medical_page() -> FileResponse:
    return FileResponse(STATIC / "medical.html", headers={"Cache-Control": "no-cache"})


@router.post("/medical/similar", responses=ERRORS, summary="The most and least similar cases of the query's modality")
def similar(
    service: Service,
    image: Annotated[bytes | None, File(description="A DICOM file or a picture (PNG, JPEG ...).")] = None,
    item_id: Annotated[int | None, Form(ge=1, le=MAX_ITEM_ID, description="A stored slice or series instead.")] = None,
    k: Annotated[int, Form(ge=1, le=50, description="Number of most and of least similar cases.")] = 5,
    exclude_same_patient: Annotated[bool, Form(description="Leave out the cases of the query's patient.")] = False,
    modality: Annotated[str | None, Form(max_length=16, description="Modality of a picture query.")] = None,
) -> dict:
    from cbir.medical.cases import query_from_item, query_from_path, similar_cases, thumbnail

    if (image is None) == (item_id is None):
        raise ApiError(422, "send either a scan in the 'image' field or an 'item_id', not both or neither")
    with service.reading() as store:
        try:
            if item_id is not None:
                query = query_from_item(store, item_id)
            else:
                query = _upload_query(store, image, service.settings, query_from_path, modality or None)
            report = similar_cases(store, query, k, exclude_same_patient)
        except CollectionError as error:
            raise ApiError(404 if item_id is not None and "no medical item" in str(error) else 422, str(error)) from None
    document = report.to_dict()
    for hit in document["most_similar"] + document["least_similar"]:
        hit["picture"] = f"/medical/items/{hit['item_id']}/picture"
    document["query"]["picture"] = _data_url(thumbnail(query.picture))
    return document


def _upload_query(store, data: bytes, settings, query_from_path, modality):
    """A query from uploaded bytes: a DICOM file (by its preamble) or a picture within the server's limits."""
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, f"the upload is {len(data) / 1048576:.1f} MiB; this server accepts at most {settings.max_upload_bytes / 1048576:g} MiB")
    is_dicom = data[128:132] == b"DICM"
    if is_dicom:
        _check_dicom_size(data, settings.max_pixels)
    else:
        image_format, _, _ = probe(data, settings.max_pixels)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("upload.dcm" if is_dicom else f"upload{SUFFIX_OF_FORMAT.get(image_format, '.png')}")
        path.write_bytes(data)
        query = query_from_path(store, path, modality)
    query.name = UPLOAD_NAME
    return query


def _check_dicom_size(data: bytes, max_pixels: int) -> None:
    """Refuse a DICOM upload whose frames hold more pixels than the server decodes (read from the header only)."""
    import pydicom

    from cbir.io.deidentify import quiet_pydicom

    try:
        with quiet_pydicom():
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            pixels = int(header.get("Rows") or 0) * int(header.get("Columns") or 0) * int(header.get("NumberOfFrames") or 1)
    except Exception:  # noqa: BLE001 - an unreadable header gets the reader's own error later
        return
    if pixels > max_pixels:
        raise ApiError(413, f"the scan holds {pixels:,} pixels; this server decodes at most {max_pixels:,}")


def _data_url(picture) -> str:
    stream = io.BytesIO()
    picture.save(stream, format="PNG")
    return "data:image/png;base64," + base64.b64encode(stream.getvalue()).decode("ascii")


@router.get(
    "/medical/items/{item_id}/picture",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **ERRORS},
    summary="The slice a medical item shows (a series: its middle representative slice), as PNG",
)
def picture(
    service: Service, item_id: ItemId, size: Annotated[int, Query(ge=16, le=512, description="Longest side in pixels.")] = 160
) -> Response:
    from cbir.medical.cases import case_picture, thumbnail
    from cbir.pipelines.medical import MEDICAL_SPACE

    with service.reading() as store:
        if store.catalog.item_space(item_id) != MEDICAL_SPACE:
            raise ApiError(404, f"there is no medical item {item_id} in this collection")
        item = store.catalog.get_items([item_id])[item_id]
        shown = case_picture(store, item)
    if shown is None:
        raise ApiError(404, f"the scan of item {item_id} is no longer where it was indexed")
    stream = io.BytesIO()
    thumbnail(shown, size).save(stream, format="PNG")
    return Response(stream.getvalue(), media_type="image/png", headers={"Cache-Control": "no-cache"})
