"""The REST endpoints: search, items, thumbnails, original files, collection info, and changes."""

from __future__ import annotations

import contextlib
import mimetypes
import time
from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from cbir.collection.catalog import Item
from cbir.collection.collection import SearchResult
from cbir.io.images import ImageLoadError
from cbir.server.auth import require_token
from cbir.server.errors import ApiError
from cbir.server.models import AddResponse, ErrorResponse, ItemDetails, RemoveResponse, SearchResponse
from cbir.server.ranges import file_response
from cbir.server.service import CollectionService
from cbir.server.thumbnails import upright_size
from cbir.server.uploads import read_upload

MAX_ITEM_ID = 2**63 - 1
DEFAULT_K = 10
ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description="An item id, as search results give it.")]
ERRORS = {status: {"model": ErrorResponse} for status in (404, 413, 415, 422)}
WRITE_ERRORS = {status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 413, 415, 422, 503)}


router = APIRouter()


async def get_service(request: Request) -> CollectionService:
    """The app's collection service (for endpoints and for routers added later); async, so that fetching it
    costs no trip through the thread pool."""
    return request.app.state.service


Service = Annotated[CollectionService, Depends(get_service)]


def item_details(item: Item) -> ItemDetails:
    """The public view of a catalog item, with links to its thumbnail and file."""
    size = upright_size(FilePath(item.uri))
    return ItemDetails(
        item_id=item.id,
        kind=item.kind,
        uri=item.uri,
        name=FilePath(item.uri).name,
        content_hash=item.content_hash,
        box=list(item.box) if item.box is not None else None,
        t_start=item.t_start,
        t_end=item.t_end,
        labels=item.labels,
        metadata=item.metadata,
        image_size=list(size) if size else None,
        thumbnail=f"/items/{item.id}/thumbnail",
        file=f"/items/{item.id}/file",
    )


def check_k(service: CollectionService, k: int) -> None:
    """Refuse more results than the server's ``max_k``."""
    if k > service.settings.max_k:
        raise ApiError(422, f"k is {k}; this server returns at most {service.settings.max_k} results")


def _timing(**seconds: float) -> str:
    return ", ".join(f"{name};dur={value * 1000:.1f}" for name, value in seconds.items())


@router.post(
    "/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    summary="Find the items most similar to an uploaded image or to a stored item",
)
async def search(
    service: Service,
    image: Annotated[UploadFile | None, File(description="The query picture.")] = None,
    item_id: Annotated[int | None, Form(ge=1, le=MAX_ITEM_ID, description="Search with a stored item instead.")] = None,
    k: Annotated[int, Form(ge=1, description="Number of results.")] = DEFAULT_K,
    kind: Annotated[list[str] | None, Form(description="Only items of these kinds (repeatable).")] = None,
    label: Annotated[str | None, Form(max_length=200, description="Only items carrying this label.")] = None,
) -> Response:
    """Returns the same JSON as ``cbir search --json``.

    A search by item without filters runs on the event loop when it can start
    at once and is quick (``CollectionService.search_item_now``), otherwise in
    the thread pool, as an uploaded picture's decoding, encoding and search
    always do.
    """
    check_k(service, k)
    if (image is None) == (item_id is None):
        raise ApiError(422, "send either an image file in the 'image' field or an 'item_id', not both or neither")
    kinds = [value for value in kind or [] if value] or None
    label = label or None
    if item_id is None:
        return await run_in_threadpool(_search_image, service, image, k, kinds, label)
    started = time.perf_counter()
    results = service.search_item_now(item_id, k) if kinds is None and label is None else None  # filters can take long
    if results is None:
        results = await run_in_threadpool(service.search_item, item_id, k, kinds, label)
    return search_response(f"item:{item_id}", results, search=time.perf_counter() - started)


def _search_image(service: CollectionService, image: UploadFile, k: int, kinds: list[str] | None, label: str | None) -> Response:
    settings = service.settings
    started = time.perf_counter()
    with service.decoding():
        upload = read_upload(
            image.file.read(), image.filename, settings.max_upload_bytes, settings.max_pixels, service.encoder.spec.image_size
        )
    decoded = time.perf_counter()
    vector = service.encode(upload.image)
    encoded = time.perf_counter()
    results = service.search_vector(vector, k, kinds, label)
    return search_response(
        upload.filename, results, decode=decoded - started, encode=encoded - decoded, search=time.perf_counter() - encoded
    )


def search_response(query: str, results: list[SearchResult], **seconds: float) -> JSONResponse:
    """The answer of ``POST /search``, built here (``SearchResult.to_dict`` is ``SearchResponse``'s shape), with
    the time each step took in a ``Server-Timing`` header."""
    return JSONResponse({"query": query, "results": [hit.to_dict() for hit in results]}, headers={"Server-Timing": _timing(**seconds)})


@router.get("/items/{item_id}", response_model=ItemDetails, responses=ERRORS, summary="One item of the collection")
def get_item(service: Service, item_id: ItemId) -> ItemDetails:
    return item_details(service.item(item_id))


@router.get(
    "/items/{item_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    summary="A small JPEG of the item's source picture",
)
def get_thumbnail(
    request: Request,
    service: Service,
    item_id: ItemId,
    size: Annotated[int | None, Query(ge=16, description="Longest side in pixels.")] = None,
) -> Response:
    settings = service.settings
    size = size or settings.thumbnail_size
    if size > settings.max_thumbnail_size:
        raise ApiError(422, f"size is {size}; thumbnails are at most {settings.max_thumbnail_size} pixels")
    item = service.item(item_id)
    if item.t_start is not None:  # a frame or shot of a video: the frame shown at its start
        return RedirectResponse(f"/items/{item_id}/frame?t={item.t_start:.3f}", status_code=307)
    if item.kind in ("slice", "series"):  # a scan's slice, drawn from its DICOM, NIfTI or MedMNIST source
        from cbir.server.routes_medical import picture

        return picture(service, item_id, size)
    with service.files.open(item.id, item.uri, service.expected_hash(item)) as verified:
        tag = f'"{item.content_hash or item.id}-{size}-{verified.stamp[3]}"'
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        try:
            with service.decoding():
                data = request.app.state.thumbnails.get(verified.stamp, size, verified.stream.read)
        except ImageLoadError as error:
            raise ApiError(415, f"item {item_id} has no picture to preview ({error})") from None
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/items/{item_id}/file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "The requested byte range"}, 409: {"model": ErrorResponse}, 416: {"model": ErrorResponse}, **ERRORS},
    summary="The original file an item comes from, while it is still the file that was indexed",
)
def get_file(request: Request, service: Service, item_id: ItemId) -> StreamingResponse:
    """The whole file, or the byte range a ``Range`` header asks for (206), as video players ask."""
    item = service.item(item_id)
    opened = contextlib.ExitStack()
    verified = opened.enter_context(service.files.open(item.id, item.uri, service.expected_hash(item)))
    name = FilePath(item.uri).name
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Content-Disposition": inline_disposition(name)}
    try:
        return file_response(verified.stream, verified.size, request.headers.get("range"), media_type, headers, opened.close)
    except ApiError:
        opened.close()
        raise


def inline_disposition(name: str) -> str:
    """A Content-Disposition header showing the file in the browser under its own name."""
    quoted = quote(name)
    return f"inline; filename*=utf-8''{quoted}" if quoted != name else f'inline; filename="{name}"'


@router.get("/info", summary="The collection: counts by kind, encoder, vector spaces; the server's limits")
def get_info(request: Request, service: Service) -> dict:
    settings = service.settings
    details = service.info()
    details["server"] = {
        "writable": request.app.state.token is not None,
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "max_k": settings.max_k,
    }
    return details


@router.post(
    "/items",
    response_model=AddResponse,
    status_code=201,
    responses={200: {"model": AddResponse, "description": "Already in the collection"}, **WRITE_ERRORS},
    dependencies=[Depends(require_token)],
    summary="Upload an image and index it (needs the bearer token)",
)
def add_item(
    service: Service, response: Response, image: Annotated[UploadFile, File(description="The picture to add.")]
) -> AddResponse:
    settings = service.settings
    with service.decoding():
        upload = read_upload(
            image.file.read(), image.filename, settings.max_upload_bytes, settings.max_pixels, service.encoder.spec.image_size
        )
    outcome = service.add_upload(upload)
    if not outcome.report.added:
        response.status_code = 200
    return AddResponse(added=outcome.report.added, items=[item_details(item) for item in outcome.items])


@router.delete(
    "/items/{item_id}",
    response_model=RemoveResponse,
    responses=WRITE_ERRORS,
    dependencies=[Depends(require_token)],
    summary="Remove an item from the collection (needs the bearer token)",
)
def remove_item(service: Service, item_id: ItemId) -> RemoveResponse:
    item = service.remove(item_id)
    return RemoveResponse(removed=item_id, kind=item.kind, uri=item.uri)
