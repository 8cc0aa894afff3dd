"""PCA of embedding matrices: the initialisation of linear heads and the baselines a cascade must beat.

Uncentred PCA (the top right-singular vectors of the raw matrix) keeps inner products best and is the strong baseline
for query -> document search; centred PCA is the textbook variant, reported next to it.
"""

from __future__ import annotations

import numpy as np
import torch


def pca_components(embeddings: np.ndarray | torch.Tensor, n_components: int, centered: bool = False) -> torch.Tensor:
    """Principal axes of `embeddings`, largest variance first.

    Args:
        embeddings (`np.ndarray` or `torch.Tensor` of shape `(n, d)`): The rows to analyse.
        n_components (`int`): How many axes to return, at most `d`.
        centered (`bool`, defaults to `False`): Subtract the column mean first (textbook PCA); the default uncentred
            variant is the eigen-decomposition of the second-moment matrix `X^T X / n`.

    Returns:
        `torch.Tensor` of shape `(n_components, d)` (float32) whose rows are orthonormal; each axis is signed so that
        its largest-magnitude coefficient is positive, which makes the result deterministic.
    """
    matrix = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings)
    matrix = matrix.detach().to(torch.float64)
    if matrix.ndim != 2:
        raise ValueError(f"PCA needs a 2-D matrix, got shape {tuple(matrix.shape)}.")
    dim = matrix.shape[1]
    if not 1 <= n_components <= dim:
        raise ValueError(f"n_components must be between 1 and {dim}, got {n_components}.")
    if centered:
        matrix = matrix - matrix.mean(dim=0, keepdim=True)
    second_moment = matrix.T @ matrix / max(matrix.shape[0], 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(second_moment)
    order = torch.argsort(eigenvalues, descending=True)[:n_components]
    components = eigenvectors[:, order].T
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    return (components * signs).to(torch.float32)


class PCAProjection:
    """A fitted PCA that projects rows onto its top axes: the baseline next to which a cascade is reported.

    Args:
        embeddings (`np.ndarray` of shape `(n, d)`): Rows to fit on (the training corpus).
        n_components (`int`): Largest dim needed; smaller dims use the leading axes.
        centered (`bool`, defaults to `False`): Fit and project around the column mean.

    Example:

    >>> import numpy as np
    >>> pca = PCAProjection(np.random.default_rng(0).normal(size=(100, 16)), n_components=8)
    >>> pca.transform(np.ones((2, 16)), dim=4).shape
    (2, 4)
    """

    def __init__(self, embeddings: np.ndarray, n_components: int, centered: bool = False) -> None:
        self.centered = centered
        self.mean = np.asarray(embeddings, dtype=np.float64).mean(axis=0) if centered else None
        self.components = pca_components(embeddings, n_components, centered=centered).numpy()

    def transform(self, embeddings: np.ndarray, dim: int) -> np.ndarray:
        """Project `embeddings` onto the first `dim` axes (float32, not normalised)."""
        matrix = np.asarray(embeddings, dtype=np.float32)
        if self.mean is not None:
            matrix = matrix - self.mean.astype(np.float32)
        return matrix @ self.components[:dim].T
