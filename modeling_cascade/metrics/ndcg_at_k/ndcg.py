"""nDCG@k with linear gains and a log2 discount, as trec_eval and BEIR compute it (plain NumPy).

Kept apart from the `evaluate` script so the package uses it without importing `evaluate`; the script imports it
relatively, and `evaluate.load` copies it along.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reference_relevance(k: int) -> list[float]:
    """Grades of the teacher's top-k as the reference ranking: k for the first, down to 1 for the k-th."""
    return [float(k - rank) for rank in range(k)]


def ndcg_at_k(
    predictions: Sequence[Sequence], references: Sequence[Sequence], relevance: Sequence[Sequence[float]], k: int = 10
) -> float:
    """Mean nDCG@k (linear gains, log2 discount) of ranked ids against graded judgments.

    Args:
        predictions (`Sequence[Sequence]`): Retrieved ids per query, best first.
        references (`Sequence[Sequence]`): Judged ids per query.
        relevance (`Sequence[Sequence[float]]`): Grade of each judged id.
        k (`int`, defaults to 10): Cut-off.
    """
    if k < 1:
        raise ValueError(f"ndcg_at_k needs k >= 1, got k={k}.")
    if not len(predictions) == len(references) == len(relevance):
        raise ValueError(
            f"ndcg_at_k got {len(predictions)} prediction rows, {len(references)} reference rows and "
            f"{len(relevance)} relevance rows; they must match."
        )
    if len(predictions) == 0:
        raise ValueError("ndcg_at_k got no rows.")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for row, (prediction, reference, grades) in enumerate(zip(predictions, references, relevance, strict=True)):
        reference, grades = list(reference), [float(grade) for grade in grades]
        if len(reference) != len(grades):
            raise ValueError(f"ndcg_at_k row {row}: {len(reference)} judged ids but {len(grades)} relevance grades.")
        judged = dict(zip(reference, grades, strict=True))
        retrieved = list(prediction)[:k]
        if len(set(retrieved)) != len(retrieved):
            raise ValueError(f"ndcg_at_k row {row}: the ranking lists a document twice in its first {k} ids.")
        gains = np.array([judged.get(document, 0.0) for document in retrieved])
        ideal = np.sort(np.array([grade for grade in grades if grade > 0]))[::-1][:k]
        ideal_dcg = float(np.sum(ideal * discounts[: len(ideal)]))
        scores.append(float(np.sum(gains * discounts[: len(gains)])) / ideal_dcg if ideal_dcg > 0 else 0.0)
    return float(np.mean(scores))
