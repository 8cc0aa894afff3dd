"""Array helpers shared by search and evaluation: unit rows, top-k selection, exact search in bounded memory, and the
FAISS calls the index makes (FAISS is the optional `faiss` extra, imported only when used)."""

from __future__ import annotations

import numpy as np


# Largest score block (in float32 elements) built at once, to keep memory flat for big corpora.
BLOCK_ELEMENTS = 1 << 24
PQ_TRAINING_ROWS = 65536


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Float32 rows of unit length; returns `matrix` itself when it is already float32, contiguous and normalised."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    if np.allclose(norms, 1.0, atol=1e-4):
        return matrix
    return matrix / np.maximum(norms, 1e-12)[:, None]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the `k` largest scores of each row, best first (ties by lower index)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part.sort(axis=1)
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def check_matrix(matrix: np.ndarray, dim: int, name: str) -> np.ndarray:
    """A 2-D float matrix of `dim` columns with finite values, or a `ValueError` naming `name` and the problem."""
    matrix = np.asarray(matrix)
    if matrix.ndim == 1 and matrix.shape[0] == dim:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise ValueError(f"{name} must be a 2-D float matrix (rows x {dim}), got shape {matrix.shape} {matrix.dtype}.")
    if matrix.shape[1] != dim:
        raise ValueError(f"{name} have dim {matrix.shape[1]}, but the cascade reads {dim}-dim teacher embeddings.")
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} have {bad.size} row(s) with NaN or inf values (first: row {bad[0]}).")
    return matrix


def blockwise_search(queries: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-`k` of `queries` against the rows of `matrix` (any float dtype), in bounded memory."""
    num_rows = len(matrix)
    block = max(1, min(num_rows, BLOCK_ELEMENTS // max(len(queries), 1)))
    all_ids, all_scores = [], []
    for start in range(0, num_rows, block):
        rows = np.asarray(matrix[start : start + block], dtype=np.float32)
        scores = queries @ rows.T
        best = top_k(scores, min(k, len(rows)))
        all_ids.append(best + start)
        all_scores.append(np.take_along_axis(scores, best, axis=1))
    ids, scores = np.concatenate(all_ids, axis=1), np.concatenate(all_scores, axis=1)
    best = top_k(scores, k)
    return np.take_along_axis(ids, best, axis=1).astype(np.int64), np.take_along_axis(scores, best, axis=1)


def prefix_norms(matrix: np.ndarray, dim: int) -> np.ndarray:
    """L2 norms of the first `dim` columns of each row (float32), computed in blocks."""
    block = max(1, BLOCK_ELEMENTS // dim)
    return np.concatenate(
        [
            np.linalg.norm(matrix[start : start + block, :dim].astype(np.float32), axis=1)
            for start in range(0, len(matrix), block)
        ]
    )


def faiss_available() -> bool:
    """Whether `faiss` (the optional `faiss` extra: `pip install modeling-cascade[faiss]`) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_rescore(
    queries: np.ndarray, matrix: np.ndarray, candidates: np.ndarray, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best `keep` of each query's `candidates` (row numbers of the float32 `matrix`) by inner product, best
    first, scored and selected by FAISS in one multi-threaded call (what `IndexRefineFlat` does for its candidates)."""
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    ids = np.empty((len(queries), keep), dtype=np.int64)
    scores = np.empty((len(queries), keep), dtype=np.float32)
    faiss.knn_inner_products_by_idx(
        faiss.swig_ptr(queries),
        faiss.swig_ptr(np.ascontiguousarray(matrix)),
        faiss.swig_ptr(candidates),
        matrix.shape[1],
        len(queries),
        len(matrix),
        candidates.shape[1],
        keep,
        faiss.swig_ptr(scores),
        faiss.swig_ptr(ids),
        candidates.shape[1],  # the row stride of `candidates`: FAISS's default (-1) strides by len(matrix) instead
    )
    return ids, scores


def train_pq(vectors: np.ndarray):
    """A FAISS `IndexPQFastScan` over `vectors` (inner product, one 4-bit code per 2 dims), trained on up to 65,536
    of them and holding all of them."""
    import faiss

    index = faiss.IndexPQFastScan(vectors.shape[1], vectors.shape[1] // 2, 4, faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if len(vectors) > PQ_TRAINING_ROWS:
        sample = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), PQ_TRAINING_ROWS, replace=False))]
    index.train(np.ascontiguousarray(sample))
    index.add(vectors)
    return index


def train_hnsw(vectors: np.ndarray, neighbors: int, ef_construction: int):
    """A FAISS `IndexHNSWFlat` graph (inner product, `neighbors` links per node, FAISS's `M`) holding `vectors`."""
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], neighbors, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def faiss_index_bytes(index) -> int:
    """Bytes a FAISS flat, PQ fast-scan, HNSW or IVF index (or one behind a transform such as PCA) holds in RAM: its
    codes (or vectors), for HNSW the graph's links, levels and offsets, for IVF the ids and the coarse quantizer."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return faiss_index_bytes(index.index)
    if isinstance(index, faiss.IndexIVF):
        return index.ntotal * (index.code_size + 8) + faiss_index_bytes(index.quantizer)
    if isinstance(index, faiss.IndexHNSW):
        graph = index.hnsw
        links = 4 * graph.neighbors.size() + 4 * graph.levels.size() + 8 * graph.offsets.size()
        return faiss_index_bytes(index.storage) + links
    return int(index.codes.size())
