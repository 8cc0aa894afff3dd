"""Spearman and Kendall correlation of each query's similarity ordering: reduced embedding against the teacher."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate

from .correlation import CORRELATIONS


_DESCRIPTION = """\
For each query, the rank correlation between the similarities a reduced embedding gives the documents and the
similarities the full-dim teacher gives them, averaged over queries: Spearman's rho (ties get average ranks) and
Kendall's tau-b (the share of concordant minus discordant document pairs, corrected for ties). 1.0 means every query
orders the documents exactly as the teacher does. Queries whose similarities are all equal (no ordering) are left out
of the mean.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list` of `list` of `float`): For each query, its similarity to every document at the reduced dim.
    references (`list` of `list` of `float`): The same similarities at full dim (each row as long as its prediction).
    methods (`list` of `str`, defaults to `["spearman", "kendall"]`): Which correlations to compute (Kendall is the
        slower one on long rows).
Returns:
    spearman (`float`): Mean per-query Spearman correlation (NaN when no query has an ordering).
    kendall (`float`): Mean per-query Kendall tau-b.
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_cascade/metrics/rank_correlation")  # doctest: +SKIP
    >>> metric.compute(predictions=[[0.1, 0.2, 0.3]], references=[[0.1, 0.3, 0.2]])  # doctest: +SKIP
    {'spearman': 0.5, 'kendall': 0.3333333333333333}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RankCorrelation(evaluate.Metric):
    """`evaluate` wrapper of [`spearman_correlation`] and [`kendall_correlation`]."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            reference_urls=[
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html",
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.kendalltau.html",
            ],
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, methods: Sequence[str] = ("spearman", "kendall")) -> dict[str, float]:
        unknown = [method for method in methods if method not in CORRELATIONS]
        if unknown:
            raise ValueError(f"rank_correlation: unknown method(s) {unknown}; choose from {sorted(CORRELATIONS)}.")
        return {method: CORRELATIONS[method](predictions, references) for method in methods}
