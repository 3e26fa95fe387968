"""Ranking photos by their regions: a photo is its whole-image item plus one item per detected object.

* ``best_match``: a query's score for a photo is its best similarity over the photo's items
  (the whole image and each region).
* ``match_all``: several query objects; a photo's score is the weakest of each object's best
  match in it, so a photo ranks high only when it holds something like every query object.
"""

from __future__ import annotations

import numpy as np


def best_match(queries: np.ndarray, whole: np.ndarray, regions: np.ndarray, region_photo: np.ndarray) -> np.ndarray:
    """Scores (Q x P): for each query and photo, the best cosine over the photo's whole image and regions.

    ``whole``: P x D photo descriptors; ``regions``: R x D region descriptors, ``region_photo``
    (R) the photo of each region. Descriptors are L2-normalised.
    """
    scores = queries @ whole.T
    if len(regions):
        region_scores = queries @ regions.T
        order = np.argsort(region_photo, kind="stable")
        photos, starts = np.unique(region_photo[order], return_index=True)
        best = np.maximum.reduceat(region_scores[:, order], starts, axis=1)
        scores[:, photos] = np.maximum(scores[:, photos], best)
    return scores


def match_all(query_objects: np.ndarray, whole: np.ndarray, regions: np.ndarray, region_photo: np.ndarray) -> np.ndarray:
    """Scores (P) of the photos for one query made of several objects (K x D): the minimum over the
    objects of their ``best_match``."""
    return best_match(query_objects, whole, regions, region_photo).min(axis=0)
