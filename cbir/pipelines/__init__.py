"""Pipelines: sources in, items out, one module per item kind.

``PIPELINES`` names every kind; a collection rebuilds the pipeline of each of
its vector spaces from the space's record with ``PIPELINES.create(kind,
record=...)``. The factories import their module when called, so naming a
kind costs no model import. A new item kind (regions, frames, slices) is one
module here, with a ``Pipeline`` and its ``from_record``, plus three lines
below.
"""

from __future__ import annotations

from cbir.core.registry import Registry
from cbir.pipelines.pipeline import Pipeline
from cbir.pipelines.sources import Source, SourceResult

PIPELINES: Registry[Pipeline] = Registry("pipeline")


@PIPELINES.register("image")
def image_pipeline(record: dict, encoder=None) -> Pipeline:
    """Whole images (``cbir.pipelines.image``); ``encoder``: the record's ``Encoder``, already loaded."""
    from cbir.pipelines.image import ImagePipeline

    return ImagePipeline.from_record(record, encoder)


@PIPELINES.register("faces")
def face_pipeline(record: dict, encoder=None) -> Pipeline:
    """Every face of a photo (``cbir.pipelines.faces``); ``encoder``: the record's face encoder, already built."""
    from cbir.pipelines.faces import FacePipeline

    return FacePipeline.from_record(record, encoder)


@PIPELINES.register("objects")
def object_pipeline(record: dict, encoder=None) -> Pipeline:
    """Whole images and their detected objects (``cbir.pipelines.objects``); ``encoder``: the record's ``Encoder``."""
    from cbir.pipelines.objects import ObjectPipeline

    return ObjectPipeline.from_record(record, encoder)


@PIPELINES.register("video")
def video_pipeline(record: dict, encoder=None) -> Pipeline:
    """Frames and shots of video files, in the image space (``cbir.pipelines.video``)."""
    from cbir.pipelines.video import VideoPipeline

    return VideoPipeline.from_record(record, encoder)


@PIPELINES.register("medical")
def medical_pipeline(record: dict, encoder=None) -> Pipeline:
    """DICOM series, NIfTI volumes and MedMNIST splits (``cbir.pipelines.medical``); ``encoder``: already loaded."""
    from cbir.pipelines.medical import MedicalPipeline

    return MedicalPipeline.from_record(record, encoder)


__all__ = ["PIPELINES", "Pipeline", "Source", "SourceResult"]
