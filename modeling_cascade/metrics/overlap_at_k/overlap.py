"""Overlap@k between reduced-dim and full-dim rankings (plain NumPy).

Kept apart from the `evaluate` script so the package uses it without importing `evaluate`; the script imports it
relatively, and `evaluate.load` copies it along.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overlap_at_k(predictions: Sequence[Sequence], references: Sequence[Sequence], k: int = 10) -> float:
    """Mean share of each query's reference top-k ids found in its predicted top-k ids.

    Args:
        predictions (`Sequence[Sequence]` or `np.ndarray` of shape `(queries, >= k)`): Ranked ids at the reduced dim.
        references (same): Ranked ids at full dim.
        k (`int`, defaults to 10): Cut-off.
    """
    if k < 1:
        raise ValueError(f"overlap_at_k needs k >= 1, got k={k}.")
    if len(predictions) != len(references):
        raise ValueError(f"overlap_at_k got {len(predictions)} prediction rows but {len(references)} reference rows.")
    if len(predictions) == 0:
        raise ValueError("overlap_at_k got no rows.")
    shares = []
    for row, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        reference_top = set(np.asarray(reference)[:k].tolist())
        if not reference_top:
            raise ValueError(f"overlap_at_k row {row}: the reference ranking is empty.")
        found = reference_top & set(np.asarray(prediction)[:k].tolist())
        shares.append(len(found) / len(reference_top))
    return float(np.mean(shares))
