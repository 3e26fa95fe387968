"""Every error leaves the server as JSON: ``{"detail": "what went wrong and what to do"}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("cbir.server")


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    """The JSON body every error uses."""
    return JSONResponse({"detail": message, **extra}, status_code=status, headers=headers)


def _location(parts: tuple) -> str:
    return ".".join(str(part) for part in parts if part not in ("body", "query", "path", "header"))


def install_error_handlers(app: FastAPI) -> None:
    """Make refusals, validation failures, unknown routes and crashes all answer in JSON."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{_location(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in error.errors()]
        errors = [{"field": _location(tuple(e.get("loc", ()))), "message": e.get("msg")} for e in error.errors()]
        return error_response(422, "invalid request: " + "; ".join(problems), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"nothing at {request.url.path}: the API is described at /openapi.json"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(error).__name__}); the server log has the details")
