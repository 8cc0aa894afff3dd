"""nDCG@k of a ranking against graded relevance: BEIR qrels, or the full-dim teacher's own ranking."""

from __future__ import annotations

import datasets
import evaluate

from .ndcg import ndcg_at_k


_DESCRIPTION = """\
Normalised discounted cumulative gain at k, as trec_eval's `ndcg_cut` and BEIR compute it: the gain of the document
at rank r (1-based) is its relevance grade divided by log2(r + 1); the sum over the first k ranks is divided by the
same sum for the ideal ordering of all judged documents. Unjudged documents have relevance 0; a query with no
relevant judged document scores 0. Averaged over queries.

Two uses: against relevance judgments (qrels), and against the full-dim teacher's ranking, where the teacher's
top-k documents are graded k, k-1, ..., 1 (`reference_relevance(k)`), so the score is 1.0 exactly when the reduced
embedding returns the teacher's top-k in the teacher's order.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list` of `list` of `int` or `str`): For each query, retrieved document ids, best first.
    references (`list` of `list` of `int` or `str`): For each query, the judged document ids.
    relevance (`list` of `list` of `float`): For each query, the grade of each judged id (same length as its
        references; 0 for judged non-relevant).
    k (`int`, defaults to 10): Cut-off.
Returns:
    ndcg@k (`float`): Mean nDCG over queries, the key named with the actual k (e.g. `ndcg@10`).
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_cascade/metrics/ndcg_at_k")  # doctest: +SKIP
    >>> metric.compute(predictions=[["b", "a"]], references=[["a"]], relevance=[[1]], k=2)  # doctest: +SKIP
    {'ndcg@2': 0.6309297535714575}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NdcgAtK(evaluate.Metric):
    """`evaluate` wrapper of [`ndcg_at_k`]; ids may be integers (row numbers) or strings (document ids)."""

    def _info(self) -> evaluate.MetricInfo:
        grades = datasets.Sequence(datasets.Value("float32"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            reference_urls=["https://github.com/usnistgov/trec_eval", "https://github.com/beir-cellar/beir"],
            # string ids first: `evaluate` picks the first format whose string check passes
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value(id_type)),
                        "references": datasets.Sequence(datasets.Value(id_type)),
                        "relevance": grades,
                    }
                )
                for id_type in ("string", "int64")
            ],
        )

    def _compute(self, predictions, references, relevance, k: int = 10) -> dict[str, float]:
        return {f"ndcg@{k}": ndcg_at_k(predictions, references, relevance, k=k)}
