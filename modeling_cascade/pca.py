"""PCA of embedding matrices: the initialisation of linear heads and the baselines a cascade must beat.

Uncentred PCA (the top right-singular vectors of the raw matrix) keeps inner products best and is the strong baseline
for query -> document search; centred PCA is the textbook variant, reported next to it.
"""

from __future__ import annotations

import numpy as np
import torch

from .matrix_rows import MatrixRows, as_matrix_rows, second_moment


def pca_components(
    embeddings: np.ndarray | torch.Tensor | MatrixRows, n_components: int, centered: bool = False
) -> torch.Tensor:
    """Principal axes of `embeddings`, largest variance first.

    Args:
        embeddings (`np.ndarray`, `torch.Tensor` or [`MatrixRows`] of shape `(n, d)`): The rows to analyse; read in
            blocks, so a memory-mapped matrix larger than RAM works.
        n_components (`int`): How many axes to return, at most `d`.
        centered (`bool`, defaults to `False`): Subtract the column mean first (textbook PCA); the default uncentred
            variant is the eigen-decomposition of the second-moment matrix `X^T X / n`.

    Returns:
        `torch.Tensor` of shape `(n_components, d)` (float32) whose rows are orthonormal; each axis is signed so that
        its largest-magnitude coefficient is positive, which makes the result deterministic.
    """
    if getattr(embeddings, "ndim", 2) != 2:
        raise ValueError(f"PCA needs a 2-D matrix, got shape {tuple(embeddings.shape)}.")
    rows = as_matrix_rows(embeddings)
    moment, _, _ = second_moment(rows.blocks(), centered=centered)
    return components_of(moment, n_components)


def components_of(moment: np.ndarray, n_components: int) -> torch.Tensor:
    """The top `n_components` eigenvectors of a second-moment (or covariance) matrix, signed as in
    [`pca_components`]."""
    dim = moment.shape[0]
    if not 1 <= n_components <= dim:
        raise ValueError(f"n_components must be between 1 and {dim}, got {n_components}.")
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.from_numpy(moment))
    order = torch.argsort(eigenvalues, descending=True)[:n_components]
    components = eigenvectors[:, order].T
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    return (components * signs).to(torch.float32)


class PCAProjection:
    """A fitted PCA that projects rows onto its top axes: the baseline next to which a cascade is reported.

    Args:
        embeddings (`np.ndarray` or [`MatrixRows`] of shape `(n, d)`): Rows to fit on (the training corpus), read
            in one pass of blocks.
        n_components (`int`): Largest dim needed; smaller dims use the leading axes.
        centered (`bool`, defaults to `False`): Fit and project around the column mean.

    Example:

    >>> import numpy as np
    >>> pca = PCAProjection(np.random.default_rng(0).normal(size=(100, 16)), n_components=8)
    >>> pca.transform(np.ones((2, 16)), dim=4).shape
    (2, 4)
    """

    def __init__(self, embeddings: np.ndarray | MatrixRows, n_components: int, centered: bool = False) -> None:
        self.centered = centered
        moment, self.mean, _ = second_moment(as_matrix_rows(embeddings).blocks(), centered=centered)
        self.components = components_of(moment, n_components).numpy()

    def transform(self, embeddings: np.ndarray, dim: int) -> np.ndarray:
        """Project `embeddings` onto the first `dim` axes (float32, not normalised)."""
        matrix = np.asarray(embeddings, dtype=np.float32)
        if self.mean is not None:
            matrix = matrix - self.mean.astype(np.float32)
        return matrix @ self.components[:dim].T
