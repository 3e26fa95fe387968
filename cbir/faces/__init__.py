"""Face recognition: detect, align and encode faces, index them as collection items, and identify,
verify and search people.

    from cbir.faces import FaceAnalyzer, People, FacePipeline
    collection.add(["photos/"], pipeline=FacePipeline())
    People(collection).enroll("Ada", ["ada1.jpg", "ada2.jpg"])
    found, scan, threshold = People(collection).identify("group.jpg")

The names below are imported when first used: the models (``analyzer``,
``detection``, ``encoders``) sit below the face pipeline
(``cbir.pipelines.faces``), and people and descriptors above it, so importing
this package must not import them all at once.
"""

from importlib import import_module

_HOMES = {
    "cbir.faces.analyzer": ("Face", "FaceAnalyzer", "FaceScan", "FaceSpec"),
    "cbir.faces.calibration": ("Calibration", "threshold_for_far"),
    "cbir.faces.descriptors": ("LabeledFaces", "face_embedder", "labeled_face_descriptors"),
    "cbir.faces.detection": ("Detection", "FaceDetector", "make_detector"),
    "cbir.faces.encoders": ("DlibResNetEncoder", "FaceEncoder", "make_face_encoder", "register_face_encoder"),
    "cbir.faces.fusion": ("FusedFaceEncoder",),
    "cbir.faces.mobilefacenet": ("MobileFaceNetEncoder",),
    "cbir.faces.models": ("FaceError",),
    "cbir.faces.people": ("Identification", "People", "Verification"),
    "cbir.pipelines.faces": ("FACE_SPACE", "FacePipeline"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'cbir.faces' has no attribute {name!r}")
    return getattr(import_module(_MODULE_OF[name]), name)
