"""The evaluate metrics, against values worked out by hand; loaded through `evaluate.load` offline as users do."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from modeling_cascade.metrics import (
    METRIC_NAMES,
    kendall_correlation,
    load_metric,
    metric_path,
    ndcg_at_k,
    overlap_at_k,
    reference_relevance,
    similarity_mse,
    spearman_correlation,
)


# nDCG@3 of the ranking [b, a, c] when a has grade 2 and c grade 1:
# DCG = 0/log2(2) + 2/log2(3) + 1/log2(4); ideal DCG = 2/log2(2) + 1/log2(3).
NDCG_BAC = (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3))


def test_similarity_mse_by_hand():
    # squared differences 0.25, 0, 0, 0.25 -> mean 0.125
    assert similarity_mse([[0.5, 0.0], [1.0, 0.25]], [[1.0, 0.0], [1.0, 0.75]]) == pytest.approx(0.125)
    assert similarity_mse([[0.3, 0.2]], [[0.3, 0.2]]) == 0.0


def test_overlap_at_k_by_hand():
    predictions, references = [[1, 2, 3], [4, 5, 6]], [[1, 3, 9], [7, 8, 9]]
    assert overlap_at_k(predictions, references, k=3) == pytest.approx((2 / 3 + 0) / 2)
    assert overlap_at_k(predictions, references, k=1) == pytest.approx(0.5)
    assert overlap_at_k([["b", "a"]], [["a", "c"]], k=2) == pytest.approx(0.5)
    # fewer reference ids than k: share of those found
    assert overlap_at_k([[5, 6, 7]], [[6]], k=3) == 1.0


def test_rank_correlations_by_hand():
    # ranks (1,2,3) vs (1,3,2): d^2 sums to 2, rho = 1 - 6*2/(3*8) = 0.5; pairs: 2 concordant, 1 discordant -> 1/3
    assert spearman_correlation([[0.1, 0.2, 0.3]], [[0.1, 0.3, 0.2]]) == pytest.approx(0.5)
    assert kendall_correlation([[0.1, 0.2, 0.3]], [[0.1, 0.3, 0.2]]) == pytest.approx(1 / 3)
    # a reversed row scores -1; the mean is over queries
    predictions, references = [[0.1, 0.2, 0.3], [1, 2, 3, 4]], [[0.1, 0.3, 0.2], [4, 3, 2, 1]]
    assert spearman_correlation(predictions, references) == pytest.approx((0.5 - 1) / 2)
    assert kendall_correlation(predictions, references) == pytest.approx((1 / 3 - 1) / 2)
    # a query whose similarities are all equal has no ordering and is left out; none left gives NaN
    assert spearman_correlation([[1, 1, 1], [1, 2, 3]], [[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    assert math.isnan(kendall_correlation([[1, 1, 1]], [[1, 2, 3]]))


def test_ndcg_at_k_by_hand():
    assert ndcg_at_k([["b", "a", "c"]], [["a", "c"]], [[2, 1]], k=3) == pytest.approx(NDCG_BAC)
    assert ndcg_at_k([["b", "a", "c"]], [["a", "c"]], [[2, 1]], k=1) == 0.0
    # the ideal ordering of all judged documents counts, retrieved or not: 1/(1 + 1/log2(3))
    assert ndcg_at_k([["a", "x"]], [["a", "b"]], [[1, 1]], k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # no relevant judged document scores 0; judged non-relevant (grade 0) adds nothing
    assert ndcg_at_k([["a"]], [["a"]], [[0]], k=1) == 0.0
    # against the full-dim ranking: its own top-k in order is perfect, the reverse is not
    assert reference_relevance(3) == [3.0, 2.0, 1.0]
    assert ndcg_at_k([[7, 8, 9]], [[7, 8, 9]], [reference_relevance(3)], k=3) == pytest.approx(1.0)
    reverse = (1 + 2 / math.log2(3) + 3 / 2) / (3 + 2 / math.log2(3) + 1 / 2)
    assert ndcg_at_k([[9, 8, 7]], [[7, 8, 9]], [reference_relevance(3)], k=3) == pytest.approx(reverse)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: similarity_mse([[1.0, 2.0]], [[1.0]]),
            "row 0: the prediction has 2 similarities but the reference has 1",
        ),
        (lambda: similarity_mse([[1.0]], []), "1 prediction rows but 0 reference rows"),
        (lambda: overlap_at_k([[1]], [[1]], k=0), "k >= 1, got k=0"),
        (lambda: overlap_at_k([[1]], [[]], k=1), "row 0: the reference ranking is empty"),
        (lambda: spearman_correlation([[1.0, 2.0]], [[1.0, 2.0, 3.0]]), "spearman row 0"),
        (lambda: ndcg_at_k([["a", "a"]], [["a"]], [[1]], k=2), "row 0: the ranking lists a document twice"),
        (lambda: ndcg_at_k([["a"]], [["a", "b"]], [[1]], k=1), "row 0: 2 judged ids but 1 relevance grades"),
        (lambda: load_metric("recall"), "Unknown metric 'recall'"),
    ],
)
def test_bad_metric_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_evaluate_load_gives_the_hand_values():
    results = {name: load_metric(name, keep_in_memory=True) for name in METRIC_NAMES}
    assert results["similarity_mse"].compute(predictions=[[0.5, 0.0]], references=[[1.0, 0.0]]) == {
        "similarity_mse": pytest.approx(0.125)
    }
    assert results["overlap_at_k"].compute(predictions=[[1, 2, 3]], references=[[1, 3, 9]], k=3) == {
        "overlap@3": pytest.approx(2 / 3)
    }
    assert results["overlap_at_k"].compute(predictions=[["b", "a"]], references=[["a", "c"]], k=2) == {
        "overlap@2": pytest.approx(0.5)
    }
    correlation = results["rank_correlation"].compute(predictions=[[0.1, 0.2, 0.3]], references=[[0.1, 0.3, 0.2]])
    assert correlation == {"spearman": pytest.approx(0.5), "kendall": pytest.approx(1 / 3)}
    only_spearman = results["rank_correlation"].compute(
        predictions=[[0.1, 0.2, 0.3]], references=[[0.1, 0.3, 0.2]], methods=["spearman"]
    )
    assert set(only_spearman) == {"spearman"}
    ndcg = results["ndcg_at_k"].compute(
        predictions=[["b", "a", "c"]], references=[["a", "c"]], relevance=[[2, 1]], k=3
    )
    assert ndcg == {"ndcg@3": pytest.approx(NDCG_BAC)}


def test_metrics_load_offline_in_a_fresh_process(tmp_path):
    """`evaluate.load(path)` with the Hub switched off and an empty Hugging Face cache, as on an offline machine."""
    paths = {name: metric_path(name) for name in METRIC_NAMES}
    script = (
        "import json, sys, evaluate\n"
        "paths = json.loads(sys.argv[1])\n"
        "names = {name: type(evaluate.load(path)).__name__ for name, path in paths.items()}\n"
        "overlap = evaluate.load(paths['overlap_at_k']).compute(predictions=[[1, 2]], references=[[2, 3]], k=2)\n"
        "print(json.dumps({'names': names, 'overlap': overlap}))\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    command = [sys.executable, "-c", script, json.dumps(paths)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["names"] == {
        "similarity_mse": "SimilarityMSE",
        "overlap_at_k": "OverlapAtK",
        "rank_correlation": "RankCorrelation",
        "ndcg_at_k": "NdcgAtK",
    }
    assert result["overlap"] == {"overlap@2": 0.5}
    assert metric_path("ndcg_at_k").endswith(os.path.join("metrics", "ndcg_at_k"))
