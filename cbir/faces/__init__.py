"""Face recognition: detect, align and encode faces, index them as collection items, and identify,
verify and search people.

    from cbir.faces import FaceAnalyzer, People, FacePipeline
    collection.add(["photos/"], pipeline=FacePipeline())
    People(collection).enroll("Ada", ["ada1.jpg", "ada2.jpg"])
    found, scan, threshold = People(collection).identify("group.jpg")
"""

from cbir.faces.analyzer import Face, FaceAnalyzer, FaceScan, FaceSpec
from cbir.faces.calibration import Calibration, threshold_for_far
from cbir.faces.descriptors import LabeledFaces, face_embedder, labeled_face_descriptors
from cbir.faces.detection import Detection, FaceDetector, make_detector
from cbir.faces.encoders import DlibResNetEncoder, FaceEncoder, make_face_encoder, register_face_encoder
from cbir.faces.fusion import FusedFaceEncoder
from cbir.faces.mobilefacenet import MobileFaceNetEncoder
from cbir.faces.models import FaceError
from cbir.faces.people import Identification, People, Verification
from cbir.faces.pipeline import FACE_SPACE, FacePipeline

__all__ = [
    "FACE_SPACE", "Calibration", "Detection", "DlibResNetEncoder", "Face", "FaceAnalyzer", "FaceDetector", "FaceEncoder",
    "FaceError", "FacePipeline", "FaceScan", "FaceSpec", "FusedFaceEncoder", "Identification", "LabeledFaces",
    "MobileFaceNetEncoder", "People", "Verification", "face_embedder", "labeled_face_descriptors", "make_detector",
    "make_face_encoder", "register_face_encoder", "threshold_for_far",
]
