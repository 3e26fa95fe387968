"""cbir: deep content-based retrieval of images, objects, faces, video and medical scans.

The public names load their modules on first use, so ``import cbir`` (and the
command line's start) costs no torch, timm or FAISS import. Importing it sets cbir's OpenMP defaults
(``cbir.core.openmp``) unless the environment sets them already.
"""

import lazy_loader

from cbir.core.openmp import apply_defaults

apply_defaults()  # before anything loads torch or FAISS

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "collection": ["Collection", "CollectionError", "IndexReport", "Item", "SearchResult"],
        "encoders": ["Encoder", "EncoderSpec"],
    },
)
__version__ = "0.1.0"
