"""Video endpoints: the moments of videos that show an uploaded photo, the videos that hold an uploaded
clip, and the frame of an item's video at a given time (for thumbnail strips).

The videos themselves are played from ``/items/{id}/file``, which answers
range requests, with a ``#t=start,end`` fragment.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from PIL import Image

from cbir.io.video import Sampling, VideoError, frames_at, probe
from cbir.io.video_files import VIDEO_SUFFIXES
from cbir.pipelines.image import IMAGE_SPACE
from cbir.pipelines.video import DEFAULT_RATE, FRAME_KIND, SHOT_KIND, describe_video
from cbir.search.video import find_clip, frame_hits_wanted, moments_from_hits
from cbir.search.video_strips import segment_times, spread
from cbir.server.errors import ApiError
from cbir.server.routes import ERRORS, ItemId, Service, check_k
from cbir.server.uploads import read_upload, safe_stem

MAX_CLIP_SECONDS = 300.0
STRIP_FRAMES = 5
CLIP_BATCH = 8

router = APIRouter()


def _links(hit: dict, times: list[float]) -> dict:
    """A result with the URLs the page needs: the video file and a strip of frames."""
    item = hit["item_id"]
    return {**hit, "file": f"/items/{item}/file", "strip": [f"/items/{item}/frame?t={time:.3f}" for time in times]}


@router.post("/video/moments", responses=ERRORS, summary="The moments of the collection's videos that show an uploaded photo")
def search_moments(
    service: Service,
    image: Annotated[UploadFile, File(description="The query picture.")],
    k: Annotated[int, Form(ge=1, description="Number of moments.")] = 10,
) -> dict:
    settings = service.settings
    check_k(service, k)
    with service.decoding():
        upload = read_upload(
            image.file.read(), image.filename, settings.max_upload_bytes, settings.max_pixels, service.encoder.spec.image_size
        )
    hits = service.search_vector(service.encode(upload.image), frame_hits_wanted(k), [FRAME_KIND], space=IMAGE_SPACE)
    moments = moments_from_hits(hits, k)
    return {"query": upload.filename, "moments": [_links(moment.to_dict(), spread(moment.frames, STRIP_FRAMES)) for moment in moments]}


@router.post("/video/clip", responses=ERRORS, summary="The collection's videos that hold an uploaded clip, with the aligned segments")
def search_clip(
    service: Service,
    clip: Annotated[UploadFile, File(description="The query clip (a short video file).")],
    k: Annotated[int, Form(ge=1, description="Number of videos.")] = 10,
) -> dict:
    check_k(service, k)
    data = clip.file.read()
    if not data:
        raise ApiError(422, "the uploaded clip is empty")
    name = clip.filename or "clip"
    suffix = FilePath(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="cbir-clip-") as folder:
        path = FilePath(folder) / f"{safe_stem(name)}{suffix if suffix in VIDEO_SUFFIXES else '.mp4'}"
        path.write_bytes(data)
        try:
            duration = probe(path).duration or 0.0
            if duration > MAX_CLIP_SECONDS:
                raise ApiError(413, f"the clip lasts {duration:.0f} s; this server searches with clips of at most {MAX_CLIP_SECONDS:.0f} s")
            with service.decoding():
                sampling = Sampling(rate=DEFAULT_RATE, short_side=service.encoder.spec.image_size)
                described = describe_video(path, service, sampling, batch_size=CLIP_BATCH)
        except VideoError as error:
            raise ApiError(415, f"the clip is not a video this server can read: {error.reason}") from None
    with service.reading() as store:
        hits = find_clip(store, described, k)
    return {
        "query": name,
        "query_duration": round(described.duration, 3),
        "results": [_links(hit.to_dict(), segment_times(hit.t_start, hit.t_end, STRIP_FRAMES)) for hit in hits],
    }


@router.get(
    "/items/{item_id}/frame",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    summary="A JPEG of the frame a video item's file shows at time t",
)
def get_frame(
    request: Request,
    service: Service,
    item_id: ItemId,
    t: Annotated[float, Query(ge=0, le=1e7, description="Seconds from the video's first frame.")] = 0.0,
    size: Annotated[int | None, Query(ge=16, description="Short side in pixels.")] = None,
) -> Response:
    settings = service.settings
    size = size or settings.thumbnail_size // 2
    if size > settings.max_thumbnail_size:
        raise ApiError(422, f"size is {size}; frames are at most {settings.max_thumbnail_size} pixels")
    item = service.item(item_id)
    if item.kind not in (FRAME_KIND, SHOT_KIND):
        raise ApiError(415, f"item {item_id} is a {item.kind}, not a frame or shot of a video")
    with service.files.open(item.id, item.uri, service.expected_hash(item)) as verified:
        tag = f'"{item.content_hash or item.id}-{t:.3f}-{size}-{verified.stamp[3]}"'
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        try:
            with service.decoding():
                pixels = frames_at(verified.stream, [t], size)[0]
        except VideoError as error:
            raise ApiError(415, f"item {item_id}'s video cannot be read at {t:.1f} s ({error.reason})") from None
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return Response(buffer.getvalue(), media_type="image/jpeg", headers=headers)
