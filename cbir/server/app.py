"""The FastAPI application: REST API, web page, limits and error handling around one collection."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import AsyncIterator, Sequence

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import cbir
from cbir.server.errors import install_error_handlers
from cbir.server.memory import return_freed_memory
from cbir.server.middleware import BodySizeLimit, HostCheck, SecurityHeaders
from cbir.server.quick import QuickItemSearch
from cbir.server.routes import router
from cbir.server.routes_objects import router as objects_router
from cbir.server.routes_video import router as video_router
from cbir.server.routes_medical import router as medical_router
from cbir.server.service import CollectionService
from cbir.server.settings import ServerSettings
from cbir.server.thumbnails import ThumbnailCache

STATIC = Path(__file__).with_name("static")


def create_app(
    collection_path: str | Path,
    token: str | None = None,
    settings: ServerSettings | None = None,
    routers: Sequence[APIRouter] = (),
    store: str | None = None,
) -> FastAPI:
    """An app serving the collection at ``collection_path``; its model is loaded here, once.

    ``token`` enables the endpoints that change the collection (bearer
    authentication); without it they answer 403. ``routers`` are included
    beside the built-in ones: they reach the collection through
    ``cbir.server.routes.get_service`` and can guard changes with
    ``cbir.server.auth.require_token``. With ``store`` (``milvus://HOST:PORT/NAME``) the app answers from
    that Milvus alone (``cbir.server.store_service``) and ``collection_path`` is not used.
    """
    settings = settings or ServerSettings()
    return_freed_memory()
    if store is not None:
        from cbir.server.store_service import StoreService

        service = StoreService(store, settings)
    else:
        service = CollectionService(collection_path, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="cbir",
        version=cbir.__version__,
        summary="Search a collection of images, regions, faces and video frames by example.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.token = token or None
    app.state.thumbnails = ThumbnailCache(settings.thumbnail_cache_items)
    install_error_handlers(app)

    app.include_router(router)
    app.include_router(objects_router)
    app.include_router(video_router)
    app.include_router(medical_router)
    for extra in routers:
        app.include_router(extra)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(QuickItemSearch)
    app.add_middleware(BodySizeLimit, upload_limit=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization"],
        )
    if settings.allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed_hosts=settings.allowed_hosts)
    return app
