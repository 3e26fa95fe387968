"""Learned PCA-whitening of descriptors (Jegou & Chum 2012), with optional dimension reduction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cbir.io.atomic import atomic_write


@dataclass(frozen=True)
class PCAWhitening:
    """x -> L2(P (x - mean)), with P = diag(1/sqrt(eigenvalue + eps)) V^T."""

    mean: np.ndarray
    projection: np.ndarray

    @property
    def dim(self) -> int:
        return self.projection.shape[0]

    @classmethod
    def learn(cls, vectors: np.ndarray, dim: int | None = None, eps: float | None = None) -> "PCAWhitening":
        """Learn from descriptors (N x D). ``dim`` keeps the leading components.

        ``eps`` regularises small eigenvalues; by default it is 1e-3 times the
        largest one, so that directions without data are not blown up.
        """
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) < 2:
            raise ValueError("learning a whitening needs at least 2 descriptors")
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        covariance = centred.T @ centred / (len(vectors) - 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, eigenvectors = eigenvalues[order].clip(min=0), eigenvectors[:, order]
        keep = min(dim or vectors.shape[1], vectors.shape[1])
        eps = 1e-3 * eigenvalues[0] if eps is None else eps
        projection = (eigenvectors[:, :keep] / np.sqrt(eigenvalues[:keep] + eps)).T
        return cls(mean.astype(np.float32), projection.astype(np.float32))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Whiten and L2-normalise descriptors (N x D) -> (N x dim)."""
        projected = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.projection.T
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return projected / np.maximum(norms, 1e-12)

    def save(self, path: str | Path) -> None:
        """Write atomically as .npz."""
        with atomic_write(path) as stream:
            np.savez(stream, mean=self.mean, projection=self.projection)

    @classmethod
    def load(cls, path: str | Path) -> "PCAWhitening":
        with np.load(path) as data:
            return cls(data["mean"], data["projection"])
