"""Overlap@k: the share of the full-dim top-k that a reduced embedding's top-k still finds."""

from __future__ import annotations

import datasets
import evaluate

from .overlap import overlap_at_k


_DESCRIPTION = """\
Overlap@k (also called recall@k against exact search): for each query, the fraction of the k documents the full-dim
teacher ranks first that the reduced embedding also ranks among its first k, averaged over queries. 1.0 means the
reduced embedding returns exactly the teacher's top-k set (in any order).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list` of `list` of `int` or `str`): For each query, document ids ranked by the reduced embedding,
        best first (at least `k` of them, or all documents).
    references (`list` of `list` of `int` or `str`): For each query, document ids ranked by the full-dim teacher.
    k (`int`, defaults to 10): Cut-off; a query with fewer than `k` reference ids uses all of them.
Returns:
    overlap@k (`float`): Mean over queries of |top-k(prediction) & top-k(reference)| / k, the key named with the
        actual k (e.g. `overlap@10`).
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_cascade/metrics/overlap_at_k")  # doctest: +SKIP
    >>> metric.compute(predictions=[[1, 2, 3]], references=[[1, 3, 9]], k=3)  # doctest: +SKIP
    {'overlap@3': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OverlapAtK(evaluate.Metric):
    """`evaluate` wrapper of [`overlap_at_k`]; ids may be integers (row numbers) or strings (document ids)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            # string ids first: `evaluate` picks the first format whose string check passes
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("string")),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("int64")),
                        "references": datasets.Sequence(datasets.Value("int64")),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, k: int = 10) -> dict[str, float]:
        return {f"overlap@{k}": overlap_at_k(predictions, references, k=k)}
