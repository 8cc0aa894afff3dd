"""Array helpers shared by search and evaluation."""

from __future__ import annotations

import numpy as np

from modeling_cascade.array_utils import blockwise_search, normalize_rows, top_k


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [0.3, 0.2, 0.1, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 2], [0, 1, 2]])
    np.testing.assert_array_equal(top_k(scores, 10), [[1, 3, 2, 0], [0, 1, 2, 3]])


def test_normalize_rows_gives_unit_float32_rows():
    rows = normalize_rows(np.array([[3.0, 4.0], [0.0, 2.0]]))
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 1.0]])


def test_blockwise_search_equals_a_full_sort(monkeypatch):
    rng = np.random.default_rng(0)
    queries, matrix = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    monkeypatch.setattr("modeling_cascade.array_utils.BLOCK_ELEMENTS", 64)  # many blocks of 12 rows
    ids, scores = blockwise_search(queries, matrix, 7)
    expected = np.argsort(-(queries @ matrix.T), axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ matrix.T, expected, axis=1), rtol=1e-6)
