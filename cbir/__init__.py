"""cbir: deep content-based retrieval of images, objects, faces, video and medical scans."""

from cbir.collection import Collection, CollectionError, IndexReport, Item, SearchResult
from cbir.encoders import Encoder, EncoderSpec

__all__ = ["Collection", "CollectionError", "Encoder", "EncoderSpec", "IndexReport", "Item", "SearchResult"]
__version__ = "0.1.0"
