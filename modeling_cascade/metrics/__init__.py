"""Metrics of how much of the teacher's ranking a reduced embedding keeps, one `evaluate` module per folder.

Each folder holds a script that `evaluate.load(path)` reads offline (no Hub access) and, beside it, the plain function
the script wraps. The package calls the functions directly on NumPy arrays: the `evaluate` path converts every row
through Arrow, which is slow for similarity matrices of thousands of documents, and importing `evaluate` costs
seconds that the training script and the CLI need not pay.

Example:

>>> from modeling_cascade.metrics import load_metric
>>> load_metric("overlap_at_k").compute(predictions=[[1, 2, 3]], references=[[1, 3, 9]], k=3)  # doctest: +SKIP
{'overlap@3': 0.6666666666666666}
"""

from __future__ import annotations

from pathlib import Path

from .ndcg_at_k.ndcg import ndcg_at_k, reference_relevance
from .overlap_at_k.overlap import overlap_at_k
from .rank_correlation.correlation import kendall_correlation, spearman_correlation
from .similarity_mse.mse import similarity_mse


METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("similarity_mse", "overlap_at_k", "rank_correlation", "ndcg_at_k")


def metric_path(name: str) -> str:
    """Folder of the metric `name`, to pass to `evaluate.load`.

    Args:
        name (`str`): One of `METRIC_NAMES`.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; the cascade metrics are {', '.join(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs):
    """`evaluate.load` of one of our metrics from its folder (works offline); `kwargs` go to `evaluate.load`."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = [
    "METRICS_DIR",
    "METRIC_NAMES",
    "kendall_correlation",
    "load_metric",
    "metric_path",
    "ndcg_at_k",
    "overlap_at_k",
    "reference_relevance",
    "similarity_mse",
    "spearman_correlation",
]
