"""The JSON shapes of the API, as they appear in its OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    """One ranked item, as ``cbir search --json`` prints it; optional fields appear only when set."""

    rank: int
    score: float = Field(description="Cosine similarity (inner product of normalised descriptors).")
    uri: str = Field(description="The file the item comes from.")
    kind: str = Field(description="image, region, face, frame ...")
    item_id: int
    box: list[float] | None = Field(None, description="x0, y0, x1, y1 in pixels of the upright picture.")
    t_start: float | None = None
    t_end: float | None = None
    labels: list[str] | None = None


class SearchResponse(BaseModel):
    query: str = Field(description="The uploaded file's name, or item:<id> for a search by item.")
    results: list[SearchHit]


class ItemDetails(BaseModel):
    """Everything the catalog knows about an item, with links to its pictures."""

    item_id: int
    kind: str
    uri: str
    name: str = Field(description="The file name of the source.")
    content_hash: str | None = None
    box: list[float] | None = None
    t_start: float | None = None
    t_end: float | None = None
    labels: list[str] = []
    metadata: dict[str, Any] = {}
    image_size: list[int] | None = Field(None, description="Width and height of the upright source picture.")
    thumbnail: str
    file: str


class AddResponse(BaseModel):
    added: int = Field(description="1 when the image is new, 0 when the same upload was already indexed.")
    items: list[ItemDetails]


class RemoveResponse(BaseModel):
    removed: int = Field(description="The id of the removed item.")
    kind: str
    uri: str


class ErrorResponse(BaseModel):
    detail: str
