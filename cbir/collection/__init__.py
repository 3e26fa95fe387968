"""On-disk collections of items: SQLite catalog + FAISS indexes."""

from cbir.collection.catalog import Item
from cbir.collection.collection import Collection, CollectionError, IndexReport, SearchResult

__all__ = ["Collection", "CollectionError", "IndexReport", "Item", "SearchResult"]
