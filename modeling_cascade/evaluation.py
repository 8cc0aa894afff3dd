"""How much of the teacher's similarity structure each cascade dim keeps on held-out rows."""

from __future__ import annotations

import numpy as np
from transformers.utils import logging

from .modeling_cascade import CascadeModel


logger = logging.get_logger(__name__)

MAX_EVAL_ROWS = 2000


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalise each row (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def similarity_mse(teacher: np.ndarray, student: np.ndarray) -> float:
    """Mean squared difference of the off-diagonal cosine similarities of two row sets of the same items."""
    teacher_similarity = normalize_rows(teacher) @ normalize_rows(teacher).T
    student_similarity = normalize_rows(student) @ normalize_rows(student).T
    off_diagonal = ~np.eye(len(teacher), dtype=bool)
    return float(np.mean((teacher_similarity - student_similarity)[off_diagonal] ** 2))


def evaluate_cascade(model: CascadeModel, embeddings: np.ndarray, seed: int = 0) -> dict[int, dict[str, float]]:
    """Per target dim: similarity MSE against the teacher and compression ratio, on up to 2,000 held-out rows.

    Args:
        model (`CascadeModel`): The trained cascade.
        embeddings (`np.ndarray` of shape `(n, input_dim)`): Held-out teacher embeddings (never training rows).
        seed (`int`, defaults to 0): Seed of the row sample when there are more than 2,000 rows.
    """
    if len(embeddings) > MAX_EVAL_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(embeddings), MAX_EVAL_ROWS, replace=False))
        embeddings = embeddings[rows]
    results = {}
    for dim in model.config.target_dims:
        results[dim] = {
            "mse": similarity_mse(embeddings, model.project(embeddings, dim)),
            "compression_ratio": model.config.input_dim / dim,
        }
    return results


def log_results(results: dict[int, dict[str, float]]) -> None:
    """Log the guide's "Similarity preservation results:" block, one line per dim."""
    logger.info("Similarity preservation results:")
    for dim, metrics in results.items():
        logger.info(f"Dimension {dim}: MSE={metrics['mse']:.5f}, Compression ratio={metrics['compression_ratio']:.2f}x")
