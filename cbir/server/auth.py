"""Bearer-token guard for the endpoints that change the collection."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cbir.server.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="The token given to `cbir serve --token` (or CBIR_TOKEN).")


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Let the request through only with the server's token; without a configured token, writing is off."""
    expected: str | None = request.app.state.token
    if expected is None:
        raise ApiError(403, "this server is read-only: start it with --token (or CBIR_TOKEN) to enable changes")
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, "this endpoint needs the header 'Authorization: Bearer <token>'", challenge)
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(401, "the bearer token is not the one this server was started with", challenge)
