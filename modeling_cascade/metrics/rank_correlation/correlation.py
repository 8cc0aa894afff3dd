"""Per-query Spearman and Kendall correlation of similarity orderings (NumPy and SciPy).

Kept apart from the `evaluate` script so the package uses it without importing `evaluate`; the script imports it
relatively, and `evaluate.load` copies it along.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def spearman_correlation(predictions: Sequence[Sequence[float]], references: Sequence[Sequence[float]]) -> float:
    """Mean over queries of the Spearman correlation between reduced-dim and full-dim similarity rows.

    Args:
        predictions (`Sequence[Sequence[float]]` or `np.ndarray` of shape `(queries, documents)`): Reduced-dim
            similarities.
        references (same shape): Full-dim similarities.
    """
    return _mean_row_correlation(predictions, references, "spearman")


def kendall_correlation(predictions: Sequence[Sequence[float]], references: Sequence[Sequence[float]]) -> float:
    """Mean over queries of Kendall's tau-b between reduced-dim and full-dim similarity rows.

    Args:
        predictions (`Sequence[Sequence[float]]` or `np.ndarray` of shape `(queries, documents)`): Reduced-dim
            similarities.
        references (same shape): Full-dim similarities.
    """
    return _mean_row_correlation(predictions, references, "kendall")


def _mean_row_correlation(predictions, references, method: str) -> float:
    """Mean of a per-row rank correlation (`"spearman"` or `"kendall"`), skipping rows without an ordering."""
    if len(predictions) != len(references):
        raise ValueError(f"{method} got {len(predictions)} prediction rows but {len(references)} reference rows.")
    if len(predictions) == 0:
        raise ValueError(f"{method} got no rows.")
    values = []
    for row, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        prediction = np.asarray(prediction, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if prediction.shape != reference.shape or prediction.ndim != 1:
            raise ValueError(
                f"{method} row {row}: the prediction has {prediction.size} similarities but the reference has "
                f"{reference.size}; each row must list one similarity per document."
            )
        if prediction.size < 2 or np.ptp(prediction) == 0 or np.ptp(reference) == 0:
            continue
        if method == "spearman":
            prediction_ranks, reference_ranks = stats.rankdata(prediction), stats.rankdata(reference)
            values.append(float(np.corrcoef(prediction_ranks, reference_ranks)[0, 1]))
        else:
            values.append(float(stats.kendalltau(prediction, reference).statistic))
    return float(np.mean(values)) if values else float("nan")


CORRELATIONS = {"spearman": spearman_correlation, "kendall": kendall_correlation}


CORRELATIONS = {"spearman": spearman_correlation, "kendall": kendall_correlation}
