"""Face recognition: detect, align and encode faces, index them as collection items, and identify,
verify and search people.

    from cbir.faces import FaceAnalyzer, People, FacePipeline
    collection.add(["photos/"], pipeline=FacePipeline())
    People(collection).enroll("Ada", ["ada1.jpg", "ada2.jpg"])
    found, scan, threshold = People(collection).identify("group.jpg")

The names load their modules on first use (no torch import to list people).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "analyzer": ["Face", "FaceAnalyzer", "FaceScan", "FaceSpec"],
        "calibration": ["Calibration", "threshold_for_far"],
        "descriptors": ["LabeledFaces", "face_embedder", "labeled_face_descriptors"],
        "detection": ["Detection", "FaceDetector", "make_detector"],
        "encoders": ["DlibResNetEncoder", "FaceEncoder", "make_face_encoder", "register_face_encoder"],
        "fusion": ["FusedFaceEncoder"],
        "mobilefacenet": ["MobileFaceNetEncoder"],
        "models": ["FaceError"],
        "people": ["Identification", "People", "Verification"],
        "pipeline": ["FACE_SPACE", "FacePipeline"],
    },
)
