"""Similarity MSE between reduced-dim and full-dim query-document similarities (plain NumPy).

Kept apart from the `evaluate` script so the package uses it without importing `evaluate`; the script imports it
relatively, and `evaluate.load` copies it along.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def similarity_mse(predictions: Sequence[Sequence[float]], references: Sequence[Sequence[float]]) -> float:
    """Mean squared difference between reduced-dim and full-dim similarities over all (query, document) pairs.

    Args:
        predictions (`Sequence[Sequence[float]]` or `np.ndarray` of shape `(queries, documents)`): Reduced-dim
            similarities, one row per query.
        references (same shape): Full-dim similarities of the same pairs.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"similarity_mse got {len(predictions)} prediction rows but {len(references)} reference rows."
        )
    if len(predictions) == 0:
        raise ValueError("similarity_mse got no rows.")
    squared_sum, count = 0.0, 0
    for row, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        prediction = np.asarray(prediction, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if prediction.shape != reference.shape:
            raise ValueError(
                f"similarity_mse row {row}: the prediction has {prediction.size} similarities but the reference "
                f"has {reference.size}."
            )
        squared_sum += float(np.sum((prediction - reference) ** 2))
        count += prediction.size
    if count == 0:
        raise ValueError("similarity_mse got only empty rows.")
    return squared_sum / count
