"""Per-dim evaluation of the cascade next to PCA and truncation: splits, rankings, results files and the log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.ranking import (
    DIMS_TRADEOFF_FILE,
    EVAL_RESULTS_FILE,
    build_projections,
    evaluate_cascade,
    evaluate_projections,
    split_queries_corpus,
)


def test_held_out_queries_search_the_training_corpus():
    """The protocol of a search index: the index holds the training rows; only the queries are new."""
    train = np.arange(100, dtype=np.float32).reshape(50, 2)
    val = np.arange(1000, 1040, dtype=np.float32).reshape(20, 2)
    queries, corpus = split_queries_corpus(train, val, seed=0, max_queries=5)
    assert len(queries) == 5 and len(corpus) == 50 + 15
    assert set(queries[:, 0]) <= set(val[:, 0])
    assert not set(queries[:, 0]) & set(corpus[:, 0]), "a query row is never in the corpus it searches"
    assert set(train[:, 0]) <= set(corpus[:, 0]), "every training row is searched"
    again = split_queries_corpus(train, val, seed=0, max_queries=5)
    np.testing.assert_array_equal(again[1], corpus)
    queries, corpus = split_queries_corpus(train, val, seed=0, max_corpus_rows=30)  # bounded cost on a large corpus
    assert len(queries) == 20 and len(corpus) == 30
    with pytest.raises(ValueError, match="held-out rows .* and training rows"):
        split_queries_corpus(train, val[:0])


def test_exact_projection_keeps_everything():
    """Rows whose mass lies in the first 4 coordinates: truncation to 4 dims keeps every similarity exactly."""
    rng = np.random.default_rng(0)
    rows = np.zeros((60, 8), dtype=np.float32)
    rows[:, :4] = rng.normal(size=(60, 4))
    projections = build_projections(None, rows[:30], max_dim=4)
    results = evaluate_projections(rows[30:40], rows[40:], projections, dims=[4, 2], k=5)
    exact = results.methods["truncation"][4]
    assert exact["mse"] == pytest.approx(0.0, abs=1e-10)
    for name in ("overlap@5", "full_ranking_ndcg@5", "spearman", "kendall"):
        assert exact[name] == pytest.approx(1.0), name
    assert exact["compression_ratio"] == 2.0
    assert results.methods["truncation"][2]["overlap@5"] < 1.0
    # uncentred PCA of rows living in 4 dims also keeps every similarity at 4 dims
    assert results.methods["pca"][4]["spearman"] == pytest.approx(1.0)


def test_judgments_give_the_full_dim_ndcg():
    corpus = np.eye(4, dtype=np.float32)
    queries = np.array([[1.0, 0.5, 0.0, 0.0]], dtype=np.float32)
    # full-dim ranking: rows 0, 1, then 2 and 3; row 1 is the only relevant one -> nDCG@2 = 1/log2(3)
    judgments = [([1], [1])]
    results = evaluate_projections(queries, corpus, build_projections(None, corpus, 2), [2], k=2, judgments=judgments)
    assert results.full_dim == {"ndcg@2": pytest.approx(1 / np.log2(3))}
    assert "ndcg@2" in results.methods["pca"][2]
    assert results.ndcg_key == "ndcg@2"


def test_pca_initialised_cascade_equals_the_pca_baseline(small_real_embeddings):
    train, held_out = small_real_embeddings[:500], small_real_embeddings[500:]
    model = CascadeModel(CascadeConfig(input_dim=384, target_dims=[64, 16]))
    model.init_from_pca(train)
    results = evaluate_cascade(model, train, held_out, seed=0)
    assert (results.num_queries, results.num_documents) == (
        100,
        500,
    )  # every held-out row asks; the index holds the training rows
    assert list(results.methods) == ["cascade", "pca", "pca_centered", "truncation"]
    for dim in (64, 16):
        for name in ("overlap@10", "spearman", "mse"):
            assert results.methods["cascade"][dim][name] == pytest.approx(results.methods["pca"][dim][name], abs=1e-4)
    assert results.methods["cascade"][16]["overlap@10"] < results.methods["cascade"][64]["overlap@10"]


def test_results_are_saved_plotted_and_logged(tmp_path, small_real_embeddings, caplog):
    model = CascadeModel(CascadeConfig(input_dim=384, target_dims=[32, 8]))
    results = evaluate_cascade(model, small_real_embeddings[:400], small_real_embeddings[400:])
    assert results.save(tmp_path) == str(tmp_path / EVAL_RESULTS_FILE)
    saved = json.loads((tmp_path / EVAL_RESULTS_FILE).read_text())
    assert saved["dims"] == [32, 8] and saved["input_dim"] == 384
    assert set(saved["methods"]) == {"cascade", "pca", "pca_centered", "truncation"}
    assert set(saved["methods"]["pca"]["8"]) >= {"mse", "overlap@10", "spearman", "kendall", "full_ranking_ndcg@10"}
    assert (tmp_path / DIMS_TRADEOFF_FILE).exists() is False
    results.plot(tmp_path)
    assert (tmp_path / DIMS_TRADEOFF_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flat = results.flat_metrics()
    assert flat["dim_8_compression_ratio"] == 48.0 and "dim_32_overlap@10" in flat

    caplog.set_level("INFO")
    results.log()
    log = caplog.text
    for line in ("Similarity preservation results:", "Dimension 32: MSE=", "Compression ratio=48.00x",
                 "cascade  PCA (uncentred)  PCA (centred)  truncation", "overlap@10    32",
                 "spearman       8"):  # fmt: skip
        assert line in log, line


def test_dim_mismatch_is_refused():
    with pytest.raises(ValueError, match="Queries have dim 8 but the corpus has dim 4"):
        evaluate_projections(np.ones((2, 8)), np.ones((3, 4)), {}, [2])
