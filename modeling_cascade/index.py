"""Coarse-to-fine search with a trained cascade: score every document at a small dim, re-rank a shrinking shortlist at
larger dims, and finish with the full teacher vectors. The command line is `cascade-search`
(`modeling_cascade/commands/search.py`); saving and loading is in `index_storage.py`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from transformers.utils import logging

from .array_utils import (
    blockwise_search,
    check_matrix,
    faiss_available,
    faiss_index_bytes,
    faiss_rescore,
    normalize_rows,
    prefix_norms,
    top_k,
    train_hnsw,
    train_pq,
)
from .index_storage import DTYPES, check_stages, expected_arrays, load_index_parts, save_index
from .modeling_cascade import CascadeModel
from .teacher import Teacher


logger = logging.get_logger(__name__)

FIRST_STAGES = ("auto", "exact", "flat", "hnsw", "pq")
# Candidates kept after the first stage: SHORTLIST_PER_MILLION per million documents (a graph search finds the best
# candidates of its dim, so an HNSW first stage needs fewer), at least the floor of the first stage's kind (PQ scores
# are approximate, so a PQ first stage keeps more); see default_shortlist. An "exact" first stage has no shortlist.
SHORTLIST_PER_MILLION = {"exact": 0, "flat": 500, "hnsw": 100, "pq": 500}
SHORTLIST_FLOOR = {"exact": 100, "flat": 100, "hnsw": 100, "pq": 500}
# first_stage="auto" searches the full teacher vectors exactly below this many documents, where exact FAISS search is
# already fast and a cascade's fixed per-batch costs (projecting the queries, two FAISS calls) make it slower; from
# there it uses an HNSW graph over the first stage (measured: benchmarks/README.md, "Cascade search against FAISS").
AUTO_EXACT_BELOW = 20_000
# From this many documents auto uses the 4-bit PQ fast-scan first stage instead: at 1,000,000 x 768 the default HNSW
# graph (efConstruction 40, efSearch 128, shortlist 100) held recall@10 0.982, below 0.99, where PQ with its shortlist of
# 500 held 0.993 (at 200,000 HNSW held 0.998; sizes in between are not measured).
AUTO_PQ_FROM = 500_000
# HNSW graph of the first stage: neighbours per node (FAISS's M), candidates explored while building
# (efConstruction) and while searching (efSearch, raised to the shortlist size when that is larger).
HNSW_NEIGHBORS = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128
# The block of gathered candidate vectors re-scored at once (in float32 elements; it stays in cache).
RESCORE_ELEMENTS = 1 << 20


def default_stages(cascade: CascadeModel) -> tuple[int, ...]:
    """The stages used when none are given: the smallest target dim of at least 128 (the largest target dim when all
    are smaller), then the full teacher vectors.

    128 dims keep enough of the teacher's neighbourhoods for a short shortlist to hold the true top 10 (see the
    benchmarks/README.md, "Cascade search against FAISS"); 32 or 64 dims need shortlists so long that re-scoring them costs more than
    the smaller first stage saves.
    """
    config = cascade.config
    dims = sorted(config.target_dims)
    return (next((dim for dim in dims if dim >= 128), dims[-1]), config.input_dim)


def auto_first_stage(stages: Sequence[int], num_vectors: int, teacher_dim: int, use_faiss: bool) -> str:
    """The first stage `first_stage="auto"` picks: `"exact"` (the full teacher vectors, no cascade) below
    `AUTO_EXACT_BELOW` documents when the teacher dim is a stage, else, where FAISS is used and a later stage
    re-scores the shortlist, `"hnsw"` up to `AUTO_PQ_FROM` documents and `"pq"` from there (with an even first dim),
    else `"flat"`."""
    if num_vectors < AUTO_EXACT_BELOW and stages[-1] == teacher_dim:
        return "exact"
    if not use_faiss or len(stages) < 2:
        return "flat"
    return "pq" if num_vectors >= AUTO_PQ_FROM and stages[0] % 2 == 0 else "hnsw"


def default_shortlist(num_stages: int, num_vectors: int, k: int = 10, first_stage: str = "flat") -> tuple[int, ...]:
    """Shortlist sizes used when none are given.

    The first grows with the corpus, 500 per million documents after a flat or PQ first stage and 100 per million
    after an HNSW one, and is at least 100 (500 after a PQ first stage); each later size is a tenth of the one before.
    None is below `k` or above the corpus size. On the benchmark data this keeps recall@10 >= 0.99 with the default
    stages (benchmarks/README.md). An `"exact"` first stage ignores the shortlist.

    Args:
        num_stages (`int`): Stages of the index (the shortlist has one size fewer).
        num_vectors (`int`): Documents in the index.
        k (`int`, defaults to 10): Hits wanted.
        first_stage (`str`, defaults to `"flat"`): `"exact"`, `"flat"`, `"hnsw"` or `"pq"`.
    """
    sizes = []
    size = max(SHORTLIST_FLOOR[first_stage], round(SHORTLIST_PER_MILLION[first_stage] * num_vectors / 1_000_000))
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


class CascadeQueries:
    """The query side of a cascade index, shared by [`CascadeIndex`] and `QdrantCascadeIndex` so that both check `k`
    and shortlists, embed text queries and project them to each stage with the same code.

    Subclasses set `cascade`, `teacher` (or `None`), `stages`, `num_vectors` and `first_stage`.
    """

    cascade: CascadeModel
    stages: tuple[int, ...]
    num_vectors: int
    first_stage: str

    def __len__(self) -> int:
        return self.num_vectors

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
            self.teacher = Teacher.from_config(self.cascade.config)
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

    def _project_queries(self, queries: np.ndarray) -> dict[int, np.ndarray]:
        """The queries at every stage's dim, unit length (prefixes of the widest stage for a nested cascade, as
        its stored vectors are)."""
        config = self.cascade.config
        vectors = {config.input_dim: queries}
        cascade_dims = [dim for dim in self.stages if dim != config.input_dim]
        if config.strategy == "nested" and cascade_dims:
            widest = self.cascade.project(queries, max(cascade_dims))
            vectors.update({dim: normalize_rows(widest[:, :dim]) for dim in cascade_dims})
        else:
            vectors.update({dim: self.cascade.project(queries, dim) for dim in cascade_dims})
        return vectors


class CascadeIndex(CascadeQueries):
    """A corpus stored at each stage of a cascade and searched coarse to fine.

    The first stage scores every document at the smallest dim and keeps a shortlist; each later stage re-scores the
    shortlist with more dims and keeps a shorter one (the top `k` at the last stage). A last stage at the teacher's
    dim re-ranks with the full teacher vectors, so the hits equal those of exact search whenever the true neighbours
    survive the shortlists. A `nested` cascade stores one matrix whose prefixes serve every stage.

    The first stage is `"flat"` (exact at its dim: FAISS `IndexFlatIP` where installed, numpy otherwise; both give
    the same hits), `"hnsw"`: a FAISS `IndexHNSWFlat` graph over the first stage's vectors (approximate, and from tens
    of thousands of documents far faster than a scan), `"pq"`: FAISS 4-bit product-quantisation fast-scan codes of
    the same vectors (one code per 2 dims, so 32 bytes per document at 128 dims), or `"exact"`: no cascade at all,
    exact search of the full teacher vectors, which is the fastest on small corpora. Later stages stored as float32
    matrices of their own are re-scored by FAISS where it is used (one multi-threaded call), by NumPy otherwise.

    Only the first stage must sit in RAM: an index loaded with `CascadeIndex.load(folder, mmap=True)` keeps the stored
    vectors (the later stages and the teacher vectors) memory-mapped on disk; [`memory_footprint`] reports the bytes
    per document held in RAM and read from disk.

    Args:
        cascade (`CascadeModel`): The trained cascade; its config names the teacher and the prefixes for texts.
        embeddings (`np.ndarray` of shape `(n, input_dim)`): Teacher embeddings of the corpus (normalised here).
        stages (`Sequence[int]`, *optional*): Increasing dims to score at, each one of the cascade's target dims or its
            `input_dim`; the full teacher vectors are kept only when `input_dim` is listed. Defaults to
            [`default_stages`].
        dtype (`str`, defaults to `"float32"`): Storage of the stage and teacher vectors, `"float32"` or `"float16"`.
        first_stage (`str`, defaults to `"auto"`): `"exact"` (needs the teacher dim as a stage), `"flat"`, `"hnsw"`
            (needs FAISS), `"pq"` (needs FAISS, an even first dim and a later stage) or `"auto"` ([`auto_first_stage`]:
            `"exact"` below 20,000 documents, `"hnsw"` from there where FAISS is used, `"flat"` otherwise).
        use_faiss (`bool`, *optional*): Use FAISS for the first stage; defaults to whether it is installed.
        teacher (`Teacher`, *optional*): Embeds text queries; by default the teacher named in the cascade's config is
            loaded on first use.
        hnsw_neighbors (`int`, defaults to 32): Neighbours per node of the HNSW graph (FAISS's `M`).
        hnsw_ef_construction (`int`, defaults to 40): Candidates explored per insertion while building the graph.
        hnsw_ef_search (`int`, defaults to 128): Candidates explored per query; raised to the shortlist size when that
            is larger. More finds more of the true neighbours at the first stage's dim, more slowly.

    Example:

    >>> import numpy as np
    >>> from modeling_cascade import CascadeConfig, CascadeModel
    >>> from modeling_cascade import CascadeIndex
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
        hnsw_neighbors: int = HNSW_NEIGHBORS,
        hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
        hnsw_ef_search: int = HNSW_EF_SEARCH,
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
        hnsw = {"neighbors": hnsw_neighbors, "ef_construction": hnsw_ef_construction, "ef_search": hnsw_ef_search}
        self._setup(cascade, stages, vectors, dtype, first_stage, use_faiss, teacher, hnsw=hnsw)
        logger.info(f"Built {self!r}")

    def _setup(
        self, cascade, stages, vectors, dtype, first_stage, use_faiss, teacher, hnsw=None, first_stage_index=None
    ) -> None:
        """Derive the in-memory search structures from the stored vectors (shared by building and loading)."""
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}.")
        hnsw = {"neighbors": HNSW_NEIGHBORS, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH} | (
            hnsw or {}
        )
        for name, value in hnsw.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"hnsw_{name} must be a positive integer, got {value!r}.")
        self.hnsw_neighbors, self.hnsw_ef_construction = int(hnsw["neighbors"]), int(hnsw["ef_construction"])
        self.hnsw_ef_search = int(hnsw["ef_search"])
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
            first_stage = auto_first_stage(stages, self.num_vectors, cascade.config.input_dim, self.use_faiss)
        if first_stage in ("pq", "hnsw") and not self.use_faiss:
            raise ValueError(
                f"first_stage={first_stage!r} is a FAISS index: install faiss (and leave use_faiss unset or True)."
            )
        if first_stage == "exact" and stages[-1] != cascade.config.input_dim:
            raise ValueError(
                f"first_stage='exact' searches the full teacher vectors: the stages {list(stages)} must end in the "
                f"teacher dim {cascade.config.input_dim}."
            )
        if first_stage == "pq":
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
        if first_stage == "exact":
            pass  # searches self._vectors["teacher"] directly
        elif first_stage_index is not None:
            self._faiss_index = first_stage_index
        elif first_stage == "pq":
            self._faiss_index = train_pq(self._first_stage_vectors())
        elif first_stage == "hnsw":
            self._faiss_index = train_hnsw(self._first_stage_vectors(), self.hnsw_neighbors, self.hnsw_ef_construction)
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

    def __repr__(self) -> str:
        return (
            f"CascadeIndex(num_vectors={self.num_vectors}, stages={self.stages}, dtype={self.dtype!r}, "
            f"first_stage={self.first_stage!r}, use_faiss={self.use_faiss})"
        )

    def memory_footprint(self) -> dict[str, float]:
        """Bytes the index holds in RAM (the first-stage structure, vectors loaded into memory, prefix norms) and reads
        from memory-mapped files on disk (vectors of an index loaded with `mmap=True`, except the teacher vectors
        that an `"exact"` first stage scans for every query), in all and per document.

        Returns:
            `dict` with `ram_bytes`, `disk_bytes`, `ram_bytes_per_document` and `disk_bytes_per_document`.
        """
        ram = disk = 0
        for name, array in self._vectors.items():
            # an "exact" first stage scans the teacher vectors for every query: they belong in RAM even when mapped
            if isinstance(array, np.memmap) and not (name == "teacher" and self.first_stage == "exact"):
                disk += array.nbytes
            else:
                ram += array.nbytes
        ram += sum(norms.nbytes for norms in self._inverse_norms.values())
        ram += 0 if self._flat is None or self._flat is self._vectors.get("teacher") else self._flat.nbytes
        ram += 0 if self._faiss_index is None else faiss_index_bytes(self._faiss_index)
        return {
            "ram_bytes": ram,
            "disk_bytes": disk,
            "ram_bytes_per_document": ram / self.num_vectors,
            "disk_bytes_per_document": disk / self.num_vectors,
        }

    @property
    def bytes_per_document(self) -> float:
        """RAM bytes per document (see [`memory_footprint`])."""
        return self.memory_footprint()["ram_bytes_per_document"]

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
        if self.first_stage == "exact":
            return self._exact_top_k(queries, k)
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

    def _first_stage_search(self, queries: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray | None]:
        if keep >= self.num_vectors and len(self.stages) > 1:
            return np.broadcast_to(np.arange(self.num_vectors), (len(queries), self.num_vectors)), None
        queries = np.ascontiguousarray(queries)
        if self.first_stage == "hnsw":
            import faiss

            params = faiss.SearchParametersHNSW(efSearch=max(self.hnsw_ef_search, keep))
            scores, ids = self._faiss_index.search(queries, keep, params=params)
            missing = np.flatnonzero((ids < 0).any(axis=1))
            if missing.size:  # the graph search met fewer than `keep` documents: explore the whole graph for those
                params = faiss.SearchParametersHNSW(efSearch=self.num_vectors)
                scores[missing], ids[missing] = self._faiss_index.search(queries[missing], keep, params=params)
                if (ids < 0).any():
                    raise RuntimeError(
                        f"The HNSW graph reaches fewer than {keep} of the {self.num_vectors} documents."
                    )
            return ids.astype(np.int64, copy=False), scores
        if self._faiss_index is not None:
            scores, ids = self._faiss_index.search(queries, keep)
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
        return self._exact_top_k(self.embed_queries(queries), k)

    def _exact_top_k(self, queries: np.ndarray, k: int) -> SearchResult:
        """Exact top-`k` of unit `queries` against the stored teacher vectors (FAISS's BLAS scan for float32)."""
        teacher = self._vectors["teacher"]
        if self.use_faiss and teacher.dtype == np.float32:
            import faiss

            scores, ids = faiss.knn(queries, np.ascontiguousarray(teacher), k, metric=faiss.METRIC_INNER_PRODUCT)
            return SearchResult(ids.astype(np.int64), scores)
        return SearchResult(*blockwise_search(queries, teacher, k))

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
        """Write the index to a folder (see [`save_index`]); a failed save leaves any previous index there intact."""
        save_index(self, save_directory)

    @classmethod
    def load(
        cls, load_directory: str | os.PathLike, use_faiss: bool | None = None, teacher=None, mmap: bool = False
    ) -> CascadeIndex:
        """Read an index written by [`save`]; nothing is unpickled.

        Args:
            load_directory (`str` or `os.PathLike`): The folder.
            use_faiss (`bool`, *optional*): As in the constructor. An index saved with a `"pq"` or `"hnsw"` first
                stage falls back to a flat one (with a warning) where FAISS is not used.
            teacher (`Teacher`, *optional*): As in the constructor.
            mmap (`bool`, defaults to `False`): Keep the stored vectors memory-mapped on disk instead of reading them
                into RAM; only the first stage's search structure is loaded (the same hits, RAM for the first stage).
        """
        parts = load_index_parts(load_directory, use_faiss, mmap=mmap)
        index = cls.__new__(cls)
        index._setup(**parts, use_faiss=use_faiss, teacher=teacher)
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
        teacher = Teacher.from_config(cascade.config) if teacher is None else teacher
        embeddings = teacher.encode(list(texts), prefix=cascade.config.document_prefix, batch_size=batch_size)
        return cls(cascade, embeddings, teacher=teacher, **kwargs)

    def to_qdrant(self, client, collection_name: str, **kwargs):
        """Write every stage as a named vector of one Qdrant collection (ids are row numbers, payload `{"row": i}` and
        `"text"` when `texts` are given), in batches with a progress bar, resuming an interrupted write; returns a
        `QdrantCascadeIndex` searching it with one nested-prefetch query per query. Needs the `qdrant` extra.

        Args:
            client (`qdrant_client.QdrantClient`): Local (`QdrantClient(":memory:")`, `path=...`) or a server.
            collection_name (`str`): The collection; an existing one must hold this index (else a `ValueError`).
            kwargs: `texts` (the documents, stored as payload), `batch_size` (256 points per upsert), `recreate`
                (`False`; `True` deletes an existing collection first), `shard_number` and `replication_factor`
                (passed to `create_collection`). See `modeling_cascade.qdrant.write_collection`.
        """
        from .qdrant import write_collection

        return write_collection(self, client, collection_name, **kwargs)
