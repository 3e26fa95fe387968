"""Object detectors: images in, boxes (original pixels), classes and scores out.

``load_detector()`` gives the shipped YOLOX-Nano; ``load_detector("model.onnx")`` any YOLOX or
YOLOv8-style ONNX export.
"""

from cbir.detectors.detections import DetectionSettings, Detections
from cbir.detectors.detector import DETECTORS, Detector
from cbir.detectors.onnx import DEFAULT_DETECTOR, OnnxDetector, coco_class_names, load_detector

__all__ = [
    "DEFAULT_DETECTOR", "DETECTORS", "DetectionSettings", "Detections", "Detector", "OnnxDetector",
    "coco_class_names", "load_detector",
]
