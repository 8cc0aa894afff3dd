"""Coarse-to-fine search with a trained cascade: score every document at a small dim, re-rank a shrinking shortlist at
larger dims, and finish with the full teacher vectors.

Run as a script to search a corpus and print the hits:

    python -m modeling_cascade.search --model_dir models/distillation/best_model \
        --corpus_embeddings corpus.npy --query_embeddings queries.npy --k 5
    python -m modeling_cascade.search --model_dir models/common_corpus/best_model --corpus_file docs.jsonl \
        --queries "How do I parse JSON?" "What is a context manager?" --save_index indexes/docs
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from transformers.utils import logging

from .file_utils import atomic_directory
from .modeling_cascade import CascadeModel


logger = logging.get_logger(__name__)

INDEX_CONFIG_FILE = "index_config.json"
VECTORS_FILE = "vectors.safetensors"
CASCADE_DIR = "cascade"
FORMAT_VERSION = 1
FIRST_STAGES = ("auto", "flat", "pq")
DTYPES = ("float32", "float16")
# Candidates kept after the first stage: SHORTLIST_PER_MILLION per million documents, at least the floor of the first
# stage's kind (PQ scores are approximate, so a PQ first stage keeps more); see default_shortlist.
SHORTLIST_PER_MILLION = 500
SHORTLIST_FLOOR = {"flat": 100, "pq": 500}
# Largest score block (in float32 elements) built at once, to keep memory flat for big corpora, and the smaller block
# of gathered candidate vectors re-scored at once (it stays in cache).
BLOCK_ELEMENTS = 1 << 24
RESCORE_ELEMENTS = 1 << 20
PQ_TRAINING_ROWS = 65536
PQ_ARRAY = "first_stage_pq"


def faiss_available() -> bool:
    """Whether `faiss` (the optional `faiss` extra: `pip install modeling-cascade[faiss]`) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def default_stages(cascade: CascadeModel) -> tuple[int, ...]:
    """The stages used when none are given: the smallest target dim of at least 128 (the largest target dim when all
    are smaller), then the full teacher vectors.

    128 dims keep enough of the teacher's neighbourhoods for a short shortlist to hold the true top 10 (see the
    README's "Cascade search" section); 32 or 64 dims need shortlists so long that re-scoring them costs more than
    the smaller first stage saves.
    """
    config = cascade.config
    dims = sorted(config.target_dims)
    return (next((dim for dim in dims if dim >= 128), dims[-1]), config.input_dim)


def default_shortlist(num_stages: int, num_vectors: int, k: int = 10, first_stage: str = "flat") -> tuple[int, ...]:
    """Shortlist sizes used when none are given.

    The first grows with the corpus, 500 per million documents, and is at least 100 after a flat first stage or 500
    after a PQ one; each later size is a tenth of the one before. None is below `k` or above the corpus size. On the
    benchmark data this keeps recall@10 >= 0.99 with the default stages (README, "Cascade search").

    Args:
        num_stages (`int`): Stages of the index (the shortlist has one size fewer).
        num_vectors (`int`): Documents in the index.
        k (`int`, defaults to 10): Hits wanted.
        first_stage (`str`, defaults to `"flat"`): `"flat"` or `"pq"`.
    """
    sizes = []
    size = max(SHORTLIST_FLOOR[first_stage], round(SHORTLIST_PER_MILLION * num_vectors / 1_000_000))
    for _ in range(num_stages - 1):
        sizes.append(min(max(size, k), num_vectors))
        size //= 10
    return tuple(sizes)


class SearchResult(NamedTuple):
    """Hits of a batch of queries, best first.

    Args:
        ids (`np.ndarray` of shape `(n_queries, k)`, int64): Row numbers of the documents in the corpus.
        scores (`np.ndarray` of shape `(n_queries, k)`, float32): Cosine similarities at the last stage's dim.
    """

    ids: np.ndarray
    scores: np.ndarray


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the `k` largest scores of each row, best first (ties by lower index)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part.sort(axis=1)
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Float32 rows of unit length; returns `matrix` itself when it is already float32, contiguous and normalised."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    if np.allclose(norms, 1.0, atol=1e-4):
        return matrix
    return matrix / np.maximum(norms, 1e-12)[:, None]


def blockwise_search(queries: np.ndarray, matrix: np.ndarray, k: int) -> SearchResult:
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
    return SearchResult(
        np.take_along_axis(ids, best, axis=1).astype(np.int64), np.take_along_axis(scores, best, axis=1)
    )


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


def check_stages(cascade: CascadeModel, stages: Sequence[int]) -> tuple[int, ...]:
    """Stages as a tuple of strictly increasing dims, each a target dim of `cascade` or its `input_dim`."""
    config = cascade.config
    stages = tuple(int(dim) for dim in stages)
    if not stages:
        raise ValueError(f"stages is empty: give increasing dims, e.g. (128, {config.input_dim}).")
    for dim in stages:
        if dim not in config.target_dims and dim != config.input_dim:
            raise ValueError(
                f"stage dim {dim} is neither one of the cascade's target_dims {config.target_dims} nor its "
                f"input_dim {config.input_dim} (the full teacher vectors)."
            )
    if list(stages) != sorted(set(stages)):
        raise ValueError(f"stages must be strictly increasing dims, got {list(stages)}.")
    return stages


def prefix_norms(matrix: np.ndarray, dim: int) -> np.ndarray:
    """L2 norms of the first `dim` columns of each row (float32), computed in blocks."""
    block = max(1, BLOCK_ELEMENTS // dim)
    return np.concatenate(
        [
            np.linalg.norm(matrix[start : start + block, :dim].astype(np.float32), axis=1)
            for start in range(0, len(matrix), block)
        ]
    )


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


def expected_arrays(cascade: CascadeModel, stages: Sequence[int], num_vectors: int) -> dict[str, list[int]]:
    """Names and shapes of the stored matrices of an index: one `nested` matrix at the widest cascade stage for a
    nested cascade (its prefixes are the smaller stages), one `stage_{dim}` matrix per cascade stage otherwise, and
    `teacher` when the teacher dim is a stage."""
    config = cascade.config
    cascade_dims = [dim for dim in stages if dim != config.input_dim]
    arrays = {}
    if config.strategy == "nested" and cascade_dims:
        arrays["nested"] = [num_vectors, max(cascade_dims)]
    else:
        arrays.update({f"stage_{dim}": [num_vectors, dim] for dim in cascade_dims})
    if config.input_dim in stages:
        arrays["teacher"] = [num_vectors, config.input_dim]
    return arrays


def read_index_config(path: Path) -> dict:
    """The checked `index_config.json` of a saved index, or a `ValueError` naming the file and what is wrong."""
    try:
        index_config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}): not a saved CascadeIndex.") from None
    if not isinstance(index_config, dict) or "format_version" not in index_config:
        raise ValueError(f"{str(path)!r} has no format_version: it was not written by CascadeIndex.save.")
    if index_config["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {index_config['format_version']!r}; this version of "
            f"modeling_cascade reads {FORMAT_VERSION}."
        )
    checks = {
        "num_vectors": lambda value: isinstance(value, int) and value > 0,
        "stages": lambda value: isinstance(value, list) and all(isinstance(dim, int) for dim in value),
        "dtype": lambda value: value in DTYPES,
        "first_stage": lambda value: value in ("flat", "pq"),
        "arrays": lambda value: isinstance(value, dict),
    }
    for key, check in checks.items():
        if key not in index_config or not check(index_config[key]):
            raise ValueError(f"{str(path)!r}: {key} is missing or invalid ({index_config.get(key)!r}).")
    return index_config


def load_teacher(cascade: CascadeModel):
    """The teacher named in the cascade's config, loaded with the config's revision, pooling and token limit."""
    config = cascade.config
    if not config.teacher_model:
        raise ValueError(
            "This cascade's config names no teacher_model, so texts cannot be embedded: pass teacher=Teacher(...) "
            "(--teacher on the command line) or use teacher embeddings."
        )
    from .teacher import Teacher

    return Teacher(
        config.teacher_model,
        revision=config.teacher_revision,
        pooling=config.teacher_pooling,
        max_length=config.teacher_max_length,
    )


class CascadeIndex:
    """A corpus stored at each stage of a cascade and searched coarse to fine.

    The first stage scores every document at the smallest dim and keeps a shortlist; each later stage re-scores the
    shortlist with more dims and keeps a shorter one (the top `k` at the last stage). A last stage at the teacher's
    dim re-ranks with the full teacher vectors, so the hits equal those of exact search whenever the true neighbours
    survive the shortlists. A `nested` cascade stores one matrix whose prefixes serve every stage.

    The first stage is `"flat"` (exact at its dim: FAISS `IndexFlatIP` where installed, numpy otherwise; both give
    the same hits) or `"pq"`: FAISS 4-bit product-quantisation fast-scan codes of the same vectors (one code per 2
    dims, so 32 bytes per document at 128 dims), which scans a million documents several times faster than a flat
    scan at a small cost in recall that a slightly longer shortlist pays back. Later stages stored as float32 matrices
    of their own are re-scored by FAISS where it is used (one multi-threaded call), by NumPy otherwise.

    Args:
        cascade (`CascadeModel`): The trained cascade; its config names the teacher and the prefixes for texts.
        embeddings (`np.ndarray` of shape `(n, input_dim)`): Teacher embeddings of the corpus (normalised here).
        stages (`Sequence[int]`, *optional*): Increasing dims to score at, each one of the cascade's target dims or its
            `input_dim`; the full teacher vectors are kept only when `input_dim` is listed. Defaults to
            [`default_stages`].
        dtype (`str`, defaults to `"float32"`): Storage of the stage and teacher vectors, `"float32"` or `"float16"`.
        first_stage (`str`, defaults to `"auto"`): `"flat"`, `"pq"` (needs FAISS, an even first dim and a later stage)
            or `"auto"`: `"pq"` where FAISS is used and the index has two or more stages and at least 100,000
            documents, `"flat"` otherwise.
        use_faiss (`bool`, *optional*): Use FAISS for the first stage; defaults to whether it is installed.
        teacher (`Teacher`, *optional*): Embeds text queries; by default the teacher named in the cascade's config is
            loaded on first use.

    Example:

    >>> import numpy as np
    >>> from modeling_cascade import CascadeConfig, CascadeModel
    >>> from modeling_cascade.search import CascadeIndex
    >>> cascade = CascadeModel(CascadeConfig(input_dim=16, target_dims=[8, 4]))
    >>> corpus = np.random.default_rng(0).normal(size=(200, 16)).astype("float32")
    >>> index = CascadeIndex(cascade, corpus, stages=(4, 8, 16))
    >>> ids, scores = index.search(corpus[:3], k=5, shortlist=(50, 20))
    >>> ids[:, 0].tolist()
    [0, 1, 2]
    """

    def __init__(
        self,
        cascade: CascadeModel,
        embeddings: np.ndarray,
        stages: Sequence[int] | None = None,
        dtype: str = "float32",
        first_stage: str = "auto",
        use_faiss: bool | None = None,
        teacher=None,
    ) -> None:
        config = cascade.config
        embeddings = check_matrix(embeddings, config.input_dim, "corpus embeddings")
        if len(embeddings) == 0:
            raise ValueError("The corpus is empty: an index needs at least one document embedding.")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
        stages = check_stages(cascade, default_stages(cascade) if stages is None else stages)
        embeddings = normalize_rows(embeddings)
        vectors = {}
        for name, (_, dim) in expected_arrays(cascade, stages, len(embeddings)).items():
            stage = embeddings if name == "teacher" else cascade.project(embeddings, dim)
            vectors[name] = stage.astype(dtype, copy=False)
        self._setup(cascade, stages, vectors, dtype, first_stage, use_faiss, teacher)
        logger.info(f"Built {self!r}")

    def _setup(self, cascade, stages, vectors, dtype, first_stage, use_faiss, teacher, pq_index=None) -> None:
        """Derive the in-memory search structures from the stored vectors (shared by building and loading)."""
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}.")
        if use_faiss and not faiss_available():
            raise ImportError("use_faiss=True, but faiss is not installed: pip install modeling-cascade[faiss]")
        self.use_faiss = faiss_available() if use_faiss is None else bool(use_faiss)
        self.cascade = cascade.eval()
        self.stages = stages
        self.dtype = dtype
        self.teacher = teacher
        self._vectors = vectors
        self.num_vectors = len(next(iter(vectors.values())))
        # the nested matrix is stored unit-length at its full width; scores at a shorter prefix are rescaled
        self._inverse_norms = {}
        nested = vectors.get("nested")
        for dim in stages:
            if nested is not None and dim < nested.shape[1]:
                self._inverse_norms[dim] = 1.0 / np.maximum(prefix_norms(nested, dim), 1e-12)
        if first_stage == "auto":
            first_stage = "pq" if self.use_faiss and len(stages) > 1 and self.num_vectors >= 100_000 else "flat"
        if first_stage == "pq":
            if not self.use_faiss:
                raise ValueError(
                    "first_stage='pq' is a FAISS index: install faiss (and leave use_faiss unset or True)."
                )
            if len(stages) < 2:
                raise ValueError(
                    "first_stage='pq' needs a later stage to re-score its shortlist; give two stages or more."
                )
            if stages[0] % 2:
                raise ValueError(
                    f"first_stage='pq' codes 2 dims per 4 bits and needs an even first dim, got {stages[0]}."
                )
        self.first_stage = first_stage
        self._flat = self._faiss_index = None
        if first_stage == "pq":
            self._faiss_index = pq_index if pq_index is not None else train_pq(self._first_stage_vectors())
        elif self.use_faiss:
            import faiss

            self._faiss_index = faiss.IndexFlatIP(stages[0])
            self._faiss_index.add(self._first_stage_vectors())
        else:
            self._flat = self._first_stage_vectors()

    def _first_stage_vectors(self) -> np.ndarray:
        """Contiguous float32 unit vectors of the whole corpus at the first stage's dim."""
        dim = self.stages[0]
        vectors = self._stage_matrix(dim)[:, :dim].astype(np.float32)
        if dim in self._inverse_norms:
            vectors *= self._inverse_norms[dim][:, None]
        return np.ascontiguousarray(vectors)

    def _stage_matrix(self, dim: int) -> np.ndarray:
        """The stored matrix holding stage `dim`: its own, the teacher's, or the nested one (whose first `dim` columns
        are the stage, unit length once `_inverse_norms` rescales them)."""
        if dim == self.cascade.config.input_dim:
            return self._vectors["teacher"]
        return self._vectors["nested"] if "nested" in self._vectors else self._vectors[f"stage_{dim}"]

    def __len__(self) -> int:
        return self.num_vectors

    def __repr__(self) -> str:
        return (
            f"CascadeIndex(num_vectors={self.num_vectors}, stages={self.stages}, dtype={self.dtype!r}, "
            f"first_stage={self.first_stage!r}, use_faiss={self.use_faiss})"
        )

    def embed_queries(self, queries: np.ndarray | Sequence[str] | str) -> np.ndarray:
        """Normalised teacher embeddings of the queries; texts are embedded by the teacher with the config's
        `query_prefix`, embeddings are checked and normalised."""
        if isinstance(queries, str):
            queries = [queries]
        if not isinstance(queries, np.ndarray) and len(queries) and all(isinstance(query, str) for query in queries):
            queries = self.get_teacher().encode(list(queries), prefix=self.cascade.config.query_prefix)
        queries = check_matrix(queries, self.cascade.config.input_dim, "query embeddings")
        if len(queries) == 0:
            raise ValueError("No queries: pass at least one query embedding or text.")
        return normalize_rows(queries)

    def get_teacher(self):
        """The teacher that embeds texts: the one given, else the one named in the cascade's config (loaded once)."""
        if self.teacher is None:
            self.teacher = load_teacher(self.cascade)
        return self.teacher

    def default_shortlist(self, k: int = 10) -> tuple[int, ...]:
        """The shortlist [`search`] uses when none is given (see the module function [`default_shortlist`])."""
        return default_shortlist(len(self.stages), self.num_vectors, k, self.first_stage)

    def _check_search_sizes(self, k: int, shortlist: int | Sequence[int] | None) -> tuple[int, ...]:
        """Validate `k` and the shortlist (or pick the default one); sizes above the corpus size are capped."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if k > self.num_vectors:
            raise ValueError(f"k={k} is larger than the corpus: the index holds {self.num_vectors} documents.")
        if shortlist is None:
            return self.default_shortlist(k)
        shortlist = (shortlist,) if isinstance(shortlist, (int, np.integer)) else tuple(shortlist)
        if len(shortlist) != len(self.stages) - 1:
            raise ValueError(
                f"shortlist {list(shortlist)} must give {len(self.stages) - 1} size(s), one per stage before the last "
                f"(stages {list(self.stages)})."
            )
        for size in shortlist:
            if size < k:
                raise ValueError(f"shortlist size {size} is smaller than k={k}: every shortlist must keep at least k.")
        capped = tuple(min(int(size), self.num_vectors) for size in shortlist)
        if list(capped) != sorted(capped, reverse=True):
            raise ValueError(f"shortlist sizes must not grow from one stage to the next, got {list(shortlist)}.")
        return capped

    def search(
        self,
        queries: np.ndarray | Sequence[str] | str,
        k: int = 10,
        shortlist: int | Sequence[int] | None = None,
        batch_size: int = 1024,
    ) -> SearchResult:
        """Find the `k` best documents for each query, coarse to fine.

        Args:
            queries (`np.ndarray` of shape `(n, input_dim)`, or texts): Teacher embeddings of the queries, or texts
                that the teacher embeds with the config's `query_prefix`.
            k (`int`, defaults to 10): Hits per query, at most the corpus size.
            shortlist (`int` or `Sequence[int]`, *optional*): Candidates kept after each stage but the last: one size
                per such stage, none growing and each at least `k` (sizes above the corpus size keep everything).
                Defaults to [`default_shortlist`].
            batch_size (`int`, defaults to 1024): Queries searched at once.

        Returns:
            [`SearchResult`] with `ids` and `scores` of shape `(n, k)`, best first.
        """
        keeps = (*self._check_search_sizes(k, shortlist), k)
        queries = self.embed_queries(queries)
        ids = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), batch_size):
            stop = start + batch_size
            query_vectors = self._project_queries(queries[start:stop])
            candidates, candidate_scores = self._first_stage_search(query_vectors[self.stages[0]], keeps[0])
            for dim, keep in zip(self.stages[1:], keeps[1:], strict=True):
                candidates, candidate_scores = self._rescore(dim, query_vectors[dim], candidates, keep)
            ids[start:stop], scores[start:stop] = candidates, candidate_scores
        return SearchResult(ids, scores)

    def _project_queries(self, queries: np.ndarray) -> dict[int, np.ndarray]:
        """The queries at every stage's dim, unit length."""
        config = self.cascade.config
        vectors = {config.input_dim: queries}
        cascade_dims = [dim for dim in self.stages if dim != config.input_dim]
        if "nested" in self._vectors and cascade_dims:
            widest = self.cascade.project(queries, max(cascade_dims))
            vectors.update({dim: normalize_rows(widest[:, :dim]) for dim in cascade_dims})
        else:
            vectors.update({dim: self.cascade.project(queries, dim) for dim in cascade_dims})
        return vectors

    def _first_stage_search(self, queries: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray | None]:
        if keep >= self.num_vectors and len(self.stages) > 1:
            return np.broadcast_to(np.arange(self.num_vectors), (len(queries), self.num_vectors)), None
        if self._faiss_index is not None:
            scores, ids = self._faiss_index.search(np.ascontiguousarray(queries), keep)
            return ids.astype(np.int64, copy=False), scores
        return blockwise_search(queries, self._flat, keep)

    def _rescore(
        self, dim: int, queries: np.ndarray, candidates: np.ndarray, keep: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score each query's candidates at `dim` and keep the best `keep` of them, best first."""
        matrix = self._stage_matrix(dim)
        num_queries, num_candidates = candidates.shape
        if self.use_faiss and matrix.dtype == np.float32 and matrix.shape[1] == dim:
            return faiss_rescore(queries, matrix, candidates, min(keep, num_candidates))
        scores = np.empty((num_queries, num_candidates), dtype=np.float32)
        step = max(1, min(num_queries, RESCORE_ELEMENTS // (num_candidates * matrix.shape[1])))
        # the candidates' rows are gathered into buffers reused by every block (fresh large arrays cost page faults)
        gathered = np.empty((step, num_candidates, matrix.shape[1]), dtype=matrix.dtype)
        converted = gathered if matrix.dtype == np.float32 else np.empty(gathered.shape, dtype=np.float32)
        for start in range(0, num_queries, step):
            ids = candidates[start : start + step]
            count = len(ids)
            np.take(matrix, ids, axis=0, out=gathered[:count], mode="clip")
            if converted is not gathered:
                converted[:count] = gathered[:count]
            # one matrix-vector product per query: numpy's stacked matmul is far slower on large stacks
            for row in range(count):
                np.matmul(converted[row, :, :dim], queries[start + row], out=scores[start + row])
            if dim in self._inverse_norms:
                scores[start : start + count] *= self._inverse_norms[dim][ids]
        best = top_k(scores, min(keep, num_candidates))
        return np.take_along_axis(candidates, best, axis=1), np.take_along_axis(scores, best, axis=1)

    def exact_search(self, queries: np.ndarray | Sequence[str] | str, k: int = 10) -> SearchResult:
        """Exact top-`k` by cosine similarity of the stored full teacher vectors: the reference of [`recall`]."""
        if "teacher" not in self._vectors:
            raise ValueError(
                f"This index keeps no teacher vectors (stages {list(self.stages)}), so it cannot search exactly: build "
                f"it with stages ending in the teacher dim {self.cascade.config.input_dim}, or pass exact_ids."
            )
        self._check_search_sizes(k, (k,) * (len(self.stages) - 1))
        queries = self.embed_queries(queries)
        teacher = self._vectors["teacher"]
        if self.use_faiss and teacher.dtype == np.float32:
            import faiss

            scores, ids = faiss.knn(queries, teacher, k, metric=faiss.METRIC_INNER_PRODUCT)
            return SearchResult(ids.astype(np.int64), scores)
        return blockwise_search(queries, teacher, k)

    def recall(
        self,
        queries: np.ndarray | Sequence[str] | str,
        k: int = 10,
        shortlist: int | Sequence[int] | None = None,
        exact_ids: np.ndarray | None = None,
    ) -> float:
        """Mean share of the exact top-`k` (full teacher vectors) that the cascade search returns in its top `k`.

        Args:
            queries: As in [`search`].
            k (`int`, defaults to 10): Cut-off.
            shortlist: As in [`search`].
            exact_ids (`np.ndarray` of shape `(n, >= k)`, *optional*): The exact neighbours when already known
                (required when the index keeps no teacher vectors); by default [`exact_search`] computes them.
        """
        queries = self.embed_queries(queries)
        exact_ids = self.exact_search(queries, k).ids if exact_ids is None else np.asarray(exact_ids)
        if exact_ids.ndim != 2 or exact_ids.shape[0] != len(queries) or exact_ids.shape[1] < k:
            raise ValueError(f"exact_ids has shape {exact_ids.shape}; expected ({len(queries)}, >= {k}).")
        found = self.search(queries, k, shortlist).ids
        return float(
            np.mean([len(np.intersect1d(row, truth[:k])) for row, truth in zip(found, exact_ids, strict=True)]) / k
        )

    def save(self, save_directory: str | os.PathLike) -> None:
        """Write the index to a folder: `index_config.json`, `vectors.safetensors` (the stage vectors, and the FAISS
        PQ codes as bytes) and the cascade in `cascade/`. The folder is written beside the target and swapped in, so
        a failed save leaves any previous index there intact."""
        save_directory = Path(save_directory)
        save_directory.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(self._vectors)
        if self.first_stage == "pq":
            import faiss

            arrays[PQ_ARRAY] = faiss.serialize_index(self._faiss_index)
        index_config = {
            "format_version": FORMAT_VERSION,
            "num_vectors": self.num_vectors,
            "stages": list(self.stages),
            "dtype": self.dtype,
            "first_stage": self.first_stage,
            "arrays": {name: list(array.shape) for name, array in arrays.items()},
        }
        with atomic_directory(save_directory) as temporary:
            self.cascade.save_pretrained(temporary / CASCADE_DIR)
            save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, temporary / VECTORS_FILE)
            (temporary / INDEX_CONFIG_FILE).write_text(json.dumps(index_config, indent=2) + "\n")
        logger.info(f"Saved {self!r} to {save_directory}")

    @classmethod
    def load(cls, load_directory: str | os.PathLike, use_faiss: bool | None = None, teacher=None) -> CascadeIndex:
        """Read an index written by [`save`]; nothing is unpickled.

        Args:
            load_directory (`str` or `os.PathLike`): The folder.
            use_faiss (`bool`, *optional*): As in the constructor. An index saved with a `"pq"` first stage falls back
                to a flat one (with a warning) where FAISS is not used.
            teacher (`Teacher`, *optional*): As in the constructor.
        """
        load_directory = Path(load_directory)
        config_path = load_directory / INDEX_CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{str(config_path)!r} not found: {str(load_directory)!r} is not a saved CascadeIndex."
            )
        index_config = read_index_config(config_path)
        try:
            cascade = CascadeModel.from_pretrained(load_directory / CASCADE_DIR)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{str(load_directory / CASCADE_DIR)!r} does not hold a readable cascade ({error}); rebuild the index."
            ) from error
        vectors_path = load_directory / VECTORS_FILE
        if not vectors_path.is_file():
            raise FileNotFoundError(f"{str(vectors_path)!r} not found: the saved CascadeIndex is incomplete.")
        try:
            arrays = load_file(vectors_path)
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{str(vectors_path)!r} is not a readable safetensors file ({error}).") from error
        shapes = {name: list(array.shape) for name, array in arrays.items()}
        if shapes != index_config["arrays"]:
            raise ValueError(
                f"{str(vectors_path)!r} holds arrays {shapes}, but {INDEX_CONFIG_FILE} lists "
                f"{index_config['arrays']}: the folder is inconsistent; rebuild the index."
            )
        stages = check_stages(cascade, index_config["stages"])
        expected = expected_arrays(cascade, stages, index_config["num_vectors"])
        for name, array in arrays.items():
            if name == PQ_ARRAY:
                continue
            if name not in expected or list(array.shape) != expected[name] or array.dtype != index_config["dtype"]:
                raise ValueError(
                    f"{str(vectors_path)!r}: array {name!r} of shape {list(array.shape)} {array.dtype} does not fit "
                    f"stages {list(stages)} of {index_config['num_vectors']} {index_config['dtype']} vectors "
                    f"(expected {expected}); rebuild the index."
                )
        missing = sorted(set(expected) - set(arrays))
        if missing or (index_config["first_stage"] == "pq") != (PQ_ARRAY in arrays):
            raise ValueError(
                f"{str(vectors_path)!r} lacks arrays {missing or [PQ_ARRAY]} for stages {list(stages)} and first "
                f"stage {index_config['first_stage']!r}; rebuild the index."
            )
        pq_bytes = arrays.pop(PQ_ARRAY, None)
        first_stage, pq_index = index_config["first_stage"], None
        if first_stage == "pq" and (use_faiss is False or not faiss_available()):
            logger.warning("This index was saved with a FAISS 'pq' first stage, but FAISS is not used: using 'flat'.")
            first_stage = "flat"
        elif first_stage == "pq":
            import faiss

            try:
                pq_index = faiss.deserialize_index(pq_bytes)
            except RuntimeError as error:
                raise ValueError(
                    f"{str(vectors_path)!r}: the FAISS array {PQ_ARRAY!r} is corrupt ({error})."
                ) from None
            if pq_index.ntotal != index_config["num_vectors"] or pq_index.d != stages[0]:
                raise ValueError(
                    f"{str(vectors_path)!r}: the FAISS array {PQ_ARRAY!r} holds {pq_index.ntotal} x {pq_index.d} "
                    f"codes, not {index_config['num_vectors']} x {stages[0]}; rebuild the index."
                )
        index = cls.__new__(cls)
        index._setup(cascade, stages, arrays, index_config["dtype"], first_stage, use_faiss, teacher, pq_index)
        return index

    @classmethod
    def from_texts(
        cls, cascade: CascadeModel, texts: Sequence[str], teacher=None, batch_size: int = 32, **kwargs
    ) -> CascadeIndex:
        """Embed `texts` with the teacher (the config's `document_prefix` prepended) and index them.

        Args:
            cascade (`CascadeModel`): The trained cascade.
            texts (`Sequence[str]`): The documents.
            teacher (`Teacher`, *optional*): Defaults to the teacher named in the cascade's config.
            batch_size (`int`, defaults to 32): Teacher batch size.
            kwargs: Passed to the constructor (`stages`, `dtype`, `first_stage`, `use_faiss`).
        """
        if not len(texts):
            raise ValueError("The corpus is empty: an index needs at least one document.")
        teacher = load_teacher(cascade) if teacher is None else teacher
        embeddings = teacher.encode(list(texts), prefix=cascade.config.document_prefix, batch_size=batch_size)
        return cls(cascade, embeddings, teacher=teacher, **kwargs)


@dataclass
class SearchArguments:
    """Command-line arguments of `python -m modeling_cascade.search`."""

    model_dir: str | None = field(default=None, metadata={"help": "A trained cascade (e.g. output_dir/best_model)."})
    index_dir: str | None = field(
        default=None, metadata={"help": "A saved CascadeIndex to search (instead of building one)."}
    )
    corpus_embeddings: str | None = field(default=None, metadata={"help": "Teacher embeddings of the corpus (.npy)."})
    corpus_file: str | None = field(
        default=None,
        metadata={"help": "Corpus texts (.jsonl/.json/.csv/.parquet/.txt): embedded by the teacher unless "
                  "--corpus_embeddings is given (then its rows, in the same order, only label the hits)."},
    )  # fmt: skip
    text_column: str = field(default="text", metadata={"help": "Column of --corpus_file holding the texts."})
    queries: list[str] | None = field(
        default=None,
        metadata={"help": 'Query texts, embedded by the teacher: "q one,q two", or "q one" "q two" (commas kept).'},
    )
    query_embeddings: str | None = field(default=None, metadata={"help": "Teacher embeddings of the queries (.npy)."})
    teacher: str | None = field(
        default=None, metadata={"help": "Teacher for texts (Hub id, folder or packaged name); default: the cascade's."}
    )
    k: int = field(default=10, metadata={"help": "Hits per query."})
    stages: str | None = field(
        default=None, metadata={"help": "Comma-separated stage dims, e.g. 128,768 (default: automatic)."}
    )
    shortlist: str | None = field(
        default=None, metadata={"help": "Comma-separated shortlist sizes, one per stage but the last."}
    )
    dtype: str = field(default="float32", metadata={"help": "Storage of the vectors.", "choices": list(DTYPES)})
    first_stage: str = field(default="auto", metadata={"help": "First-stage search.", "choices": list(FIRST_STAGES)})
    save_index: str | None = field(default=None, metadata={"help": "Save the built index to this folder."})


def parse_int_list(text: str | None, flag: str) -> list[int] | None:
    """Parse "128,768" into ints, or raise a `ValueError` naming `flag` and the bad entry."""
    if text is None:
        return None
    from .commands import split_list

    try:
        return [int(entry) for entry in split_list(text)]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}.") from None


def read_texts(path: str, text_column: str) -> list[str]:
    """The `text_column` of a local corpus file, read with `datasets`."""
    from datasets import load_dataset

    from .data import FILE_BUILDERS

    builder = FILE_BUILDERS.get(Path(path).suffix)
    if builder is None:
        raise ValueError(f"--corpus_file {path!r}: expected one of {sorted(FILE_BUILDERS)}.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--corpus_file {path!r} not found.")
    dataset = load_dataset(builder, data_files=str(path), split="train")
    if text_column not in dataset.column_names:
        raise ValueError(
            f"--corpus_file {path!r} has no column {text_column!r} (columns: {dataset.column_names}); set --text_column."
        )
    texts = dataset[text_column]
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"--corpus_file {path!r}, row {row}: the {text_column!r} value is {text!r}, not a text; every row "
                "must hold a non-empty text (rows are the index's documents, in order)."
            )
    return list(texts)


def main(argv: list[str] | None = None) -> SearchResult:
    """Build (or load) an index, search the queries and print the hits; returns them."""
    from .commands import CommandParser, parse_command_line, split_list
    from .file_utils import load_embeddings

    (args,) = parse_command_line(CommandParser(SearchArguments), argv)
    args.queries = split_list(args.queries) if args.queries is not None else None
    if args.queries == []:
        raise ValueError("--queries holds no query text.")
    if (args.model_dir is None) == (args.index_dir is None):
        raise ValueError("Give exactly one of --model_dir (build an index from a cascade) and --index_dir (load one).")
    if (args.queries is None) == (args.query_embeddings is None):
        raise ValueError("Give exactly one of --queries (texts) and --query_embeddings (.npy).")
    teacher = None
    if args.teacher is not None:
        from .teacher import Teacher

        teacher = Teacher(args.teacher)
    texts = read_texts(args.corpus_file, args.text_column) if args.corpus_file else None
    if args.index_dir is not None:
        index = CascadeIndex.load(args.index_dir, teacher=teacher)
    else:
        cascade = CascadeModel.from_pretrained(args.model_dir)
        options = {
            "stages": parse_int_list(args.stages, "--stages"),
            "dtype": args.dtype,
            "first_stage": args.first_stage,
        }
        if args.corpus_embeddings is not None:
            corpus = load_embeddings(
                args.corpus_embeddings, expected_dim=cascade.config.input_dim, expected_by="the cascade's input_dim"
            )
            index = CascadeIndex(cascade, corpus, teacher=teacher, **options)
        elif texts is not None:
            index = CascadeIndex.from_texts(cascade, texts, teacher=teacher, **options)
        else:
            raise ValueError("--model_dir needs a corpus: --corpus_embeddings (.npy) or --corpus_file (texts).")
    if texts is not None and len(texts) != len(index):
        raise ValueError(f"--corpus_file has {len(texts)} texts, but the index holds {len(index)} documents.")
    if args.save_index:
        index.save(args.save_index)
    queries = args.queries
    if args.query_embeddings is not None:
        queries = load_embeddings(
            args.query_embeddings, expected_dim=index.cascade.config.input_dim, expected_by="the cascade's input_dim"
        )
    result = index.search(queries, k=args.k, shortlist=parse_int_list(args.shortlist, "--shortlist"))
    print(f"{index!r}")
    for row, (ids, scores) in enumerate(zip(result.ids, result.scores, strict=True)):
        print(f"\nQuery {row + 1}: {args.queries[row] if args.queries else f'row {row} of {args.query_embeddings}'}")
        for rank, (doc, score) in enumerate(zip(ids, scores, strict=True), start=1):
            label = " ".join(texts[doc].split())[:100] if texts is not None else ""
            print(f"  {rank:>2}. doc {doc:<8} {score:.4f}  {label}")
    return result


def cli() -> None:
    """Console entry point: progress logs on stderr, hits on stdout; bad input exits with status 2 and an `error:` line."""
    import logging as python_logging

    python_logging.basicConfig(format="%(asctime)s - %(levelname)s - %(message)s", stream=sys.stderr)
    python_logging.getLogger("modeling_cascade").setLevel(python_logging.INFO)
    from .commands import run_command

    run_command(main)


if __name__ == "__main__":
    cli()
