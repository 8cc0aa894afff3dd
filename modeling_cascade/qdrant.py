"""Qdrant as the store of a `CascadeIndex` past one machine: every stage is a named vector of one collection, and a
query is one nested-prefetch request (the coarse stage and its shortlist innermost, the full vectors outermost), so
Qdrant runs the whole cascade where the vectors live. `qdrant-client` is the optional `qdrant` extra, imported only
here and only when used; its embedded local mode (`QdrantClient(":memory:")` or `path=...`) needs no server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers.utils import logging

from .embeddings import texts_sha256
from .index import CascadeIndex, CascadeQueries, SearchResult
from .index_storage import check_stages
from .modeling_cascade import CascadeModel


if TYPE_CHECKING:
    from qdrant_client import QdrantClient


logger = logging.get_logger(__name__)

# The collection metadata key holding what a search needs to know about the cascade (see `collection_metadata`).
METADATA_KEY = "modeling_cascade"
FORMAT_VERSION = 1
FULL_VECTOR = "full"
# The metadata entry fingerprinting the payload texts (checked only while a write is unfinished).
TEXTS_KEY = "texts_sha256"
WRITE_BATCH_SIZE = 256
QUERY_BATCH_SIZE = 64


def import_qdrant_client():
    """The `qdrant_client` module, or an `ImportError` that says how to install it."""
    try:
        import qdrant_client
    except ImportError:
        raise ImportError('Qdrant support needs qdrant-client: pip install "modeling-cascade[qdrant]"') from None
    return qdrant_client


def vector_name(dim: int, input_dim: int) -> str:
    """The named vector of stage `dim`: `full` for the teacher dim, `dim_<dim>` for a cascade dim."""
    return FULL_VECTOR if dim == input_dim else f"dim_{dim}"


def stage_vectors(index: CascadeIndex, dim: int, start: int, stop: int) -> np.ndarray:
    """Rows `start:stop` of stage `dim` as float32 unit vectors, exactly as `CascadeIndex` scores them (a prefix of
    the nested matrix rescaled by its inverse norm)."""
    vectors = index._stage_matrix(dim)[start:stop, :dim].astype(np.float32)
    if dim in index._inverse_norms:
        vectors *= index._inverse_norms[dim][start:stop, None]
    return vectors


def cascade_fingerprint(cascade: CascadeModel) -> str:
    """SHA-256 of the cascade's weights: a search must project queries with the cascade that wrote the vectors."""
    digest = hashlib.sha256()
    for name, tensor in sorted(cascade.state_dict().items()):
        digest.update(name.encode())
        digest.update(memoryview(np.ascontiguousarray(tensor.detach().float().cpu().numpy())).cast("B"))
    return digest.hexdigest()


def texts_fingerprint(texts: Sequence[str] | None) -> str | None:
    """SHA-256 of the texts stored as payload (`None` without texts): a resumed write must store the same ones."""
    return None if texts is None else texts_sha256(texts)


def collection_metadata(index: CascadeIndex, texts: Sequence[str] | None = None) -> dict[str, Any]:
    """What the collection records about the index it holds: stages, document count, and fingerprints of the cascade,
    of the stored vectors and of the payload texts (a rerun resumes only into a collection written from the same
    index and texts, so no point is left without its text or with another one)."""
    digest = hashlib.sha256()
    for name, array in sorted(index._vectors.items()):
        digest.update(name.encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return {
        "format_version": FORMAT_VERSION,
        "stages": list(index.stages),
        "num_vectors": index.num_vectors,
        "input_dim": index.cascade.config.input_dim,
        "cascade_sha256": cascade_fingerprint(index.cascade),
        "vectors_sha256": digest.hexdigest(),
        TEXTS_KEY: texts_fingerprint(texts),
    }


def existing_sizes(client: QdrantClient, collection_name: str) -> dict[str, int]:
    """Named vector -> size of an existing collection (a single unnamed vector is listed as `""`)."""
    vectors = client.get_collection(collection_name).config.params.vectors
    if vectors is None:
        return {}
    if not isinstance(vectors, dict):
        return {"": vectors.size}
    return {name: params.size for name, params in vectors.items()}


def write_collection(
    index: CascadeIndex,
    client: QdrantClient,
    collection_name: str,
    texts: Sequence[str] | None = None,
    batch_size: int = WRITE_BATCH_SIZE,
    recreate: bool = False,
    shard_number: int | None = None,
    replication_factor: int | None = None,
) -> QdrantCascadeIndex:
    """Write every stage of `index` as a named vector of one Qdrant collection, resumably, and return a
    [`QdrantCascadeIndex`] that searches it. See [`CascadeIndex.to_qdrant`] for the arguments."""
    models = import_qdrant_client().models
    if texts is not None and len(texts) != index.num_vectors:
        raise ValueError(f"texts has {len(texts)} entries, but the index holds {index.num_vectors} documents.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    input_dim = index.cascade.config.input_dim
    sizes = {vector_name(dim, input_dim): dim for dim in index.stages}
    metadata = collection_metadata(index, texts)
    if client.collection_exists(collection_name) and recreate:
        logger.warning(f"recreate=True: deleting the Qdrant collection {collection_name!r}")
        client.delete_collection(collection_name)
    written = 0
    if client.collection_exists(collection_name):
        written = client.count(collection_name, exact=True).count
        check_resumable(client, collection_name, sizes, metadata, unfinished=written < index.num_vectors)
    else:
        # only the first stage is searched over the whole collection; later stages re-score prefetched points, so
        # they need no HNSW graph (m=0 skips building one)
        vectors_config = {
            name: models.VectorParams(
                size=dim,
                distance=models.Distance.DOT,
                hnsw_config=None if dim == index.stages[0] else models.HnswConfigDiff(m=0),
            )
            for name, dim in sizes.items()
        }
        client.create_collection(
            collection_name,
            vectors_config=vectors_config,
            shard_number=shard_number,
            replication_factor=replication_factor,
            metadata={METADATA_KEY: metadata},
        )
    if written < index.num_vectors:
        if written:
            logger.info(f"Resuming the write of {collection_name!r}: {written} of {index.num_vectors} points exist")
        batches = range(0, index.num_vectors, batch_size)
        for start in logging.tqdm(batches, desc=f"Writing {collection_name}", unit="batch"):
            rows = range(start, min(start + batch_size, index.num_vectors))
            write_batch(index, client, collection_name, rows, texts, check_existing=written > 0)
    logger.info(f"Qdrant collection {collection_name!r} holds the {index.num_vectors} documents of {index!r}")
    return QdrantCascadeIndex(client, collection_name, index.cascade, teacher=index.teacher)


def check_resumable(
    client: QdrantClient, collection_name: str, sizes: dict[str, int], metadata: dict, unfinished: bool
) -> None:
    """Refuse (a `ValueError` naming what differs) to write into an existing collection not started from this index,
    or to finish one with other payload texts than it was started with (a finished collection is only opened, so its
    texts need not be given again)."""
    found = existing_sizes(client, collection_name)
    advice = (
        "it was left untouched; pass recreate=True (--qdrant_recreate) to overwrite it, or choose another collection "
        "name."
    )
    if found != sizes:
        raise ValueError(
            f"The Qdrant collection {collection_name!r} exists with vectors {found}, but this index writes {sizes}: "
            + advice
        )
    stored = (client.get_collection(collection_name).config.metadata or {}).get(METADATA_KEY)
    stored = stored if isinstance(stored, dict) else {}
    differing = sorted(key for key in metadata if key != TEXTS_KEY and stored.get(key) != metadata[key])
    if differing:
        raise ValueError(
            f"The Qdrant collection {collection_name!r} was not written from this index (its {differing} differ): "
            + advice
        )
    # collections written before texts were fingerprinted have no TEXTS_KEY: their texts cannot be checked
    if unfinished and TEXTS_KEY in stored and stored[TEXTS_KEY] != metadata[TEXTS_KEY]:

        def described(fingerprint: str | None) -> str:
            return "no texts" if fingerprint is None else f"texts of SHA-256 {fingerprint[:12]}..."

        raise ValueError(
            f"The Qdrant collection {collection_name!r} was started with {described(stored[TEXTS_KEY])}, but this "
            f"write gives {described(metadata[TEXTS_KEY])}: pass the texts of the interrupted write to finish it "
            "(every point holds its own document's text), or recreate=True (--qdrant_recreate) to write it anew."
        )


def write_batch(
    index: CascadeIndex,
    client: QdrantClient,
    collection_name: str,
    rows: range,
    texts: Sequence[str] | None,
    check_existing: bool,
) -> None:
    """Upsert points `rows` (ids = row numbers) with every stage's vector; when resuming, points already in the
    collection are skipped, so no finished batch is written twice."""
    models = import_qdrant_client().models
    ids = list(rows)
    if check_existing:
        present = {point.id for point in client.retrieve(collection_name, ids, with_payload=False, with_vectors=False)}
        ids = [row for row in ids if row not in present]
        if not ids:
            return
    input_dim = index.cascade.config.input_dim
    positions = np.asarray(ids) - rows.start
    vectors = {
        vector_name(dim, input_dim): stage_vectors(index, dim, rows.start, rows.stop)[positions].tolist()
        for dim in index.stages
    }
    payloads = [{"row": row} if texts is None else {"row": row, "text": texts[row]} for row in ids]
    client.upsert(collection_name, models.Batch(ids=ids, vectors=vectors, payloads=payloads), wait=True)


class QdrantCascadeIndex(CascadeQueries):
    """A cascade index stored in a Qdrant collection (written by [`CascadeIndex.to_qdrant`]) and searched there.

    Each query is one Qdrant query with nested prefetches: the first stage's vectors find its shortlist, each later
    stage re-scores the shortlist before it, and the last stage keeps the top `k`. Scores are inner products of unit
    vectors, as in `CascadeIndex`, so on the same data and shortlists its hits equal `CascadeIndex.search`'s where
    the first stage is exact (Qdrant's local mode; `exact=True` on a server, whose default first stage is HNSW).
    Queries are checked, embedded and projected by the cascade exactly as `CascadeIndex` does.

    Args:
        client (`qdrant_client.QdrantClient`): A client of the Qdrant server, cluster or local store.
        collection_name (`str`): The collection written by [`CascadeIndex.to_qdrant`].
        cascade (`CascadeModel`): The cascade that wrote it (checked against the collection's fingerprint).
        teacher (`Teacher`, *optional*): Embeds text queries; by default the teacher named in the cascade's config.

    Example:

    >>> import numpy as np
    >>> from qdrant_client import QdrantClient
    >>> from modeling_cascade import CascadeConfig, CascadeIndex, CascadeModel
    >>> cascade = CascadeModel(CascadeConfig(input_dim=16, target_dims=[8, 4]))
    >>> corpus = np.random.default_rng(0).normal(size=(200, 16)).astype("float32")
    >>> index = CascadeIndex(cascade, corpus, stages=(4, 8, 16))
    >>> qdrant_index = index.to_qdrant(QdrantClient(":memory:"), "corpus")
    >>> ids, scores = qdrant_index.search(corpus[:3], k=5, shortlist=(50, 20))
    >>> ids[:, 0].tolist()
    [0, 1, 2]
    """

    def __init__(self, client: QdrantClient, collection_name: str, cascade: CascadeModel, teacher=None) -> None:
        import_qdrant_client()
        if not client.collection_exists(collection_name):
            raise ValueError(
                f"There is no Qdrant collection {collection_name!r}: write one with CascadeIndex.to_qdrant."
            )
        stored = (client.get_collection(collection_name).config.metadata or {}).get(METADATA_KEY)
        if not isinstance(stored, dict) or stored.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"The Qdrant collection {collection_name!r} has no {METADATA_KEY!r} metadata of format "
                f"{FORMAT_VERSION}: it was not written by CascadeIndex.to_qdrant."
            )
        if stored["cascade_sha256"] != cascade_fingerprint(cascade):
            raise ValueError(
                f"The Qdrant collection {collection_name!r} was written with another cascade (its weights differ): "
                "search it with the cascade that built the index."
            )
        self.client = client
        self.collection_name = collection_name
        self.cascade = cascade.eval()
        self.teacher = teacher
        self.stages = check_stages(cascade, stored["stages"])
        self.num_vectors = stored["num_vectors"]
        # the flat floor of the default shortlist: the first stage scores full-precision vectors
        self.first_stage = "flat"
        written = client.count(collection_name, exact=True).count
        if written != self.num_vectors:
            raise ValueError(
                f"The Qdrant collection {collection_name!r} holds {written} of its {self.num_vectors} documents: the "
                "write was interrupted; rerun CascadeIndex.to_qdrant to finish it."
            )

    def __repr__(self) -> str:
        return (
            f"QdrantCascadeIndex(collection_name={self.collection_name!r}, num_vectors={self.num_vectors}, "
            f"stages={self.stages})"
        )

    def search(
        self,
        queries: np.ndarray | Sequence[str] | str,
        k: int = 10,
        shortlist: int | Sequence[int] | None = None,
        exact: bool = False,
        batch_size: int = QUERY_BATCH_SIZE,
    ) -> SearchResult:
        """Find the `k` best documents for each query, coarse to fine, with one nested-prefetch query per query.

        Args:
            queries, k, shortlist: As in `CascadeIndex.search`.
            exact (`bool`, defaults to `False`): Make the first stage exact on a server (Qdrant's `exact` search
                parameter) instead of searching its HNSW graph; local mode is always exact.
            batch_size (`int`, defaults to 64): Queries sent in one `query_batch_points` request.

        Returns:
            `SearchResult` with `ids` (int64) and `scores` (float32) of shape `(n, k)`, best first.
        """
        keeps = (*self._check_search_sizes(k, shortlist), k)
        vectors = self._project_queries(self.embed_queries(queries))
        requests = [self._request(vectors, row, keeps, exact) for row in range(len(vectors[self.stages[0]]))]
        ids = np.empty((len(requests), k), dtype=np.int64)
        scores = np.empty((len(requests), k), dtype=np.float32)
        for start in range(0, len(requests), batch_size):
            responses = self.client.query_batch_points(self.collection_name, requests[start : start + batch_size])
            for row, response in enumerate(responses, start=start):
                if len(response.points) != k:
                    raise ValueError(
                        f"Qdrant returned {len(response.points)} hits for query {row}, not k={k}: the collection "
                        f"{self.collection_name!r} changed after it was written."
                    )
                ids[row] = [point.id for point in response.points]
                scores[row] = [point.score for point in response.points]
        return SearchResult(ids, scores)

    def _request(self, vectors: dict[int, np.ndarray], row: int, keeps: tuple[int, ...], exact: bool):
        """The nested query of query `row`: the first stage innermost, keeping `keeps[0]`, each later stage around the
        one before; the outermost keeps `k`."""
        models = import_qdrant_client().models
        input_dim = self.cascade.config.input_dim
        first = self.stages[0]
        prefetch = None
        params = models.SearchParams(exact=True) if exact else None
        for dim, keep in zip(self.stages[:-1], keeps[:-1], strict=True):
            prefetch = models.Prefetch(
                prefetch=prefetch,
                query=vectors[dim][row].tolist(),
                using=vector_name(dim, input_dim),
                limit=keep,
                params=params if dim == first else None,
            )
        last = self.stages[-1]
        return models.QueryRequest(
            prefetch=prefetch,
            query=vectors[last][row].tolist(),
            using=vector_name(last, input_dim),
            limit=keeps[-1],
            params=params if prefetch is None else None,
            with_payload=False,
        )
