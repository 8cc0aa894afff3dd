"""Similarity MSE: how far a reduced embedding's query-document cosine similarities are from the teacher's."""

from __future__ import annotations

import datasets
import evaluate

from .mse import similarity_mse


_DESCRIPTION = """\
Mean squared difference between the similarities a reduced embedding gives each (query, document) pair and the
similarities the full-dim teacher gives the same pairs. 0 means every similarity is kept exactly; it is the quantity
the cascade's similarity-preservation loss minimises, measured on held-out rows.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list` of `list` of `float`): For each query, its similarity to every document at the reduced dim.
    references (`list` of `list` of `float`): The same similarities at full dim (each row as long as its prediction).
Returns:
    similarity_mse (`float`): Mean of the squared differences over all pairs.
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_cascade/metrics/similarity_mse")  # doctest: +SKIP
    >>> metric.compute(predictions=[[0.5, 0.0]], references=[[1.0, 0.0]])  # doctest: +SKIP
    {'similarity_mse': 0.125}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SimilarityMSE(evaluate.Metric):
    """`evaluate` wrapper of [`similarity_mse`]."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return {"similarity_mse": similarity_mse(predictions, references)}
