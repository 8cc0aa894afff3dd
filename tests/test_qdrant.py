"""`CascadeIndex.to_qdrant` and `QdrantCascadeIndex` on qdrant-client's embedded local mode (no server)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared
from test_search import make_cascade

from modeling_cascade.commands import search as search_module
from modeling_cascade.index import CascadeIndex
from modeling_cascade.qdrant import QdrantCascadeIndex


qdrant_client = pytest.importorskip(
    "qdrant_client", reason='needs qdrant-client (pip install "modeling-cascade[qdrant]")'
)
QdrantClient = qdrant_client.QdrantClient


@pytest.fixture(scope="module")
def corpus(scifact_embeddings) -> np.ndarray:
    """400 real SciFact abstracts under MiniLM (384 dims)."""
    return np.ascontiguousarray(scifact_embeddings[:400])


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    """30 real SciFact claims under MiniLM."""
    path = require_shared(SHARED_DATA / "embeddings" / "scifact_queries_all-MiniLM-L6-v2.npy")
    return np.ascontiguousarray(np.load(path)[:30])


@pytest.fixture(scope="module")
def index(corpus) -> CascadeIndex:
    """A nested cascade searched 32 -> 128 -> 384 (the teacher dim)."""
    return CascadeIndex(
        make_cascade(corpus, target_dims=(128, 64, 32)), corpus, stages=(32, 128, 384), first_stage="flat"
    )


def assert_same_hits(expected, found) -> None:
    assert found.ids.dtype == np.int64 and found.scores.dtype == np.float32
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "strategy, stages, dtype, shortlists",
    [
        ("nested", (32, 128, 384), "float32", [(100, 30), (40, 10), (400, 400)]),
        ("direct", (32, 128, 384), "float16", [(100, 30)]),
        ("chained", (64, 128), "float32", [25, 400]),
    ],
)
def test_hits_equal_cascade_index(corpus, queries, strategy, stages, dtype, shortlists):
    index = CascadeIndex(
        make_cascade(corpus, target_dims=(128, 64, 32), strategy=strategy),
        corpus,
        stages=stages,
        dtype=dtype,
        first_stage="flat",  # the coarse-to-fine path that Qdrant's nested prefetch mirrors (auto searches exactly here)
    )
    searched = index.to_qdrant(QdrantClient(":memory:"), "scifact")
    assert isinstance(searched, QdrantCascadeIndex) and len(searched) == 400 and searched.stages == stages
    for shortlist in shortlists:
        assert_same_hits(index.search(queries, k=10, shortlist=shortlist), searched.search(queries, 10, shortlist))
    assert_same_hits(index.search(queries, k=1), searched.search(queries, k=1, exact=True))  # default shortlist
    assert_same_hits(index.search(queries[3], k=5), searched.search(queries[3], k=5, batch_size=1))  # one row


def test_what_is_stored(index, corpus):
    client = QdrantClient(":memory:")
    texts = [f"abstract {row}" for row in range(len(corpus))]
    index.to_qdrant(client, "scifact", texts=texts, batch_size=128)
    params = client.get_collection("scifact").config.params.vectors
    assert {name: vector.size for name, vector in params.items()} == {"dim_32": 32, "dim_128": 128, "full": 384}
    assert {vector.distance for vector in params.values()} == {qdrant_client.models.Distance.DOT}
    (point,) = client.retrieve("scifact", [7], with_vectors=True)
    assert point.payload == {"row": 7, "text": "abstract 7"}
    np.testing.assert_allclose(point.vector["full"], corpus[7] / np.linalg.norm(corpus[7]), atol=1e-6)
    # a nested prefix is stored at unit length, as CascadeIndex scores it
    np.testing.assert_allclose(np.linalg.norm(point.vector["dim_32"]), 1.0, atol=1e-5)
    metadata = client.get_collection("scifact").config.metadata["modeling_cascade"]
    assert metadata["stages"] == [32, 128, 384] and metadata["num_vectors"] == 400
    # opened again from the collection alone (the cascade projects the queries), e.g. on another machine
    reopened = QdrantCascadeIndex(client, "scifact", index.cascade)
    assert reopened.stages == index.stages and len(reopened) == 400


def test_resume_after_a_kill_in_local_path_mode(tmp_path, index, corpus, queries, monkeypatch):
    # local path mode commits every point to SQLite (slow), so this index is small
    small = CascadeIndex(index.cascade, corpus[:120], stages=index.stages, first_stage="flat")
    expected = small.search(queries, k=10, shortlist=(60, 20))
    path = str(tmp_path / "qdrant")
    written = []

    def record_upserts(client: QdrantClient, kill_after: int | None = None) -> None:
        upsert = client.upsert

        def recorded(collection_name, points, **kwargs):
            if len(written) == kill_after:
                raise KeyboardInterrupt("killed")
            written.append(list(points.ids))
            return upsert(collection_name, points, **kwargs)

        monkeypatch.setattr(client, "upsert", recorded)

    client = QdrantClient(path=path)
    record_upserts(client, kill_after=2)
    with pytest.raises(KeyboardInterrupt):
        small.to_qdrant(client, "scifact", batch_size=40)
    assert client.count("scifact", exact=True).count == 80
    with pytest.raises(ValueError, match="holds 80 of its 120 documents: the write was interrupted"):
        QdrantCascadeIndex(client, "scifact", small.cascade)
    client.close()

    client = QdrantClient(path=path)  # a new process: the folder is all that is left
    written.clear()
    record_upserts(client)
    searched = small.to_qdrant(client, "scifact", batch_size=40)
    assert written == [list(range(80, 120))]  # the first two batches are not written again
    assert_same_hits(expected, searched.search(queries, 10, (60, 20)))
    written.clear()
    small.to_qdrant(client, "scifact", batch_size=40)  # complete: nothing to write
    assert written == []
    client.close()

    client = QdrantClient(path=path)
    assert_same_hits(expected, QdrantCascadeIndex(client, "scifact", small.cascade).search(queries, 10, (60, 20)))
    client.close()


def test_bad_input(index, corpus, queries):
    client = QdrantClient(":memory:")
    searched = index.to_qdrant(client, "scifact")
    cases = [
        (lambda: searched.search(queries, k=401), "k=401 is larger than the corpus: the index holds 400 documents"),
        (lambda: searched.search(queries[:, :100]), "query embeddings have dim 100, but the cascade reads 384-dim"),
        (lambda: searched.search(np.where(np.eye(30, 384) > 0, np.nan, queries)), r"30 row\(s\) with NaN or inf"),
        (lambda: searched.search(queries, k=20, shortlist=(100, 10)), "shortlist size 10 is smaller than k=20"),
        (lambda: index.to_qdrant(client, "other", texts=["one"]), "texts has 1 entries, but the index holds 400"),
        (lambda: index.to_qdrant(client, "other", batch_size=0), "batch_size must be a positive integer, got 0"),
        (lambda: QdrantCascadeIndex(client, "missing", index.cascade), "There is no Qdrant collection 'missing'"),
        (
            lambda: QdrantCascadeIndex(client, "scifact", make_cascade(corpus[::-1], target_dims=(128, 64, 32))),
            "was written with another cascade",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert not client.collection_exists("other")


def test_existing_collection_is_left_untouched_unless_recreate(index, corpus, queries):
    client = QdrantClient(":memory:")
    models = qdrant_client.models
    client.create_collection("taken", vectors_config={"dim_32": models.VectorParams(size=8, distance="Dot")})
    client.upsert("taken", models.Batch(ids=[0], vectors={"dim_32": [[1.0] * 8]}, payloads=[{"mine": True}]))
    with pytest.raises(ValueError, match=r"exists with vectors \{'dim_32': 8\}, but this index writes \{'dim_32': 32"):
        index.to_qdrant(client, "taken")
    assert client.retrieve("taken", [0])[0].payload == {"mine": True}  # untouched

    # the same sizes, written from another corpus: refused too
    other = CascadeIndex(index.cascade, corpus[::-1], stages=index.stages, first_stage="flat")
    other.to_qdrant(client, "other_corpus")
    with pytest.raises(ValueError, match=r"was not written from this index \(its \['vectors_sha256'\] differ\)"):
        index.to_qdrant(client, "other_corpus")

    # a finished collection is opened again without its texts; an unfinished one is only finished with the same texts
    texts = [f"abstract {row}" for row in range(len(corpus))]
    index.to_qdrant(client, "with_texts", texts=texts)
    assert_same_hits(index.search(queries, k=10), index.to_qdrant(client, "with_texts").search(queries, k=10))
    client.delete("with_texts", qdrant_client.models.PointIdsList(points=list(range(300, 400))))
    for other, message in (([f"other {row}" for row in range(len(corpus))], "but this write gives texts of"),
                           (None, "but this write gives no texts")):  # fmt: skip
        with pytest.raises(ValueError, match=f"'with_texts' was started with texts of SHA-256 .*, {message}"):
            index.to_qdrant(client, "with_texts", texts=other)
    index.to_qdrant(client, "with_texts", texts=texts)
    payloads = {point.id: point.payload for point in client.retrieve("with_texts", [3, 350])}
    assert payloads == {3: {"row": 3, "text": "abstract 3"}, 350: {"row": 350, "text": "abstract 350"}}

    searched = index.to_qdrant(client, "taken", recreate=True)
    assert client.retrieve("taken", [0])[0].payload == {"row": 0}
    assert_same_hits(index.search(queries, k=10), searched.search(queries, k=10))


def test_cli(tmp_path, index, corpus, queries, capsys, monkeypatch):
    corpus = corpus[:150]  # local path mode commits every point to SQLite (slow)
    index = CascadeIndex(index.cascade, corpus, stages=index.stages, first_stage="flat")
    index.cascade.save_pretrained(tmp_path / "cascade")
    np.save(tmp_path / "corpus.npy", corpus)
    np.save(tmp_path / "queries.npy", queries[:2])
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(150)))
    common = ["--model_dir", str(tmp_path / "cascade"), "--query_embeddings", str(tmp_path / "queries.npy"),
              "--k", "3", "--stages", "32,128,384", "--shortlist", "60,20"]  # fmt: skip
    qdrant = ["--qdrant_path", str(tmp_path / "qdrant"), "--qdrant_collection", "docs"]
    expected = index.search(queries[:2], k=3, shortlist=(60, 20))
    result = search_module.main(
        [*common, *qdrant, "--corpus_embeddings", str(tmp_path / "corpus.npy"),
         "--corpus_file", str(tmp_path / "corpus.jsonl")]
    )  # fmt: skip
    assert_same_hits(expected, result)
    output = capsys.readouterr().out
    assert "QdrantCascadeIndex(collection_name='docs'" in output and f"text {result.ids[0, 0]}" in output
    # the collection now holds the corpus: the cascade alone searches it
    assert_same_hits(expected, search_module.main([*common, *qdrant]))
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    assert client.retrieve("docs", [5])[0].payload == {"row": 5, "text": "text 5"}
    client.close()

    # --qdrant_url and --qdrant_api_key reach the client (a local one stands in for the server)
    opened = []
    created = []

    class RecordingClient(QdrantClient):
        def create_collection(self, collection_name, **kwargs):
            created.append({key: kwargs[key] for key in ("shard_number", "replication_factor")})
            return super().create_collection(collection_name, **kwargs)

    monkeypatch.setattr(
        qdrant_client, "QdrantClient", lambda **kwargs: opened.append(kwargs) or RecordingClient(":memory:")
    )
    server = ["--qdrant_url", "https://qdrant.example.com:6333", "--qdrant_api_key", "secret"]
    cluster = ["--qdrant_shard_number", "4", "--qdrant_replication_factor", "2"]
    served = search_module.main([*common, *server, *cluster, "--corpus_embeddings", str(tmp_path / "corpus.npy")])
    assert opened == [{"url": "https://qdrant.example.com:6333", "api_key": "secret"}]
    assert created == [{"shard_number": 4, "replication_factor": 2}]
    assert_same_hits(expected, served)
    monkeypatch.undo()

    # another corpus into the same collection: refused, and the collection kept, unless --qdrant_recreate
    np.save(tmp_path / "reversed.npy", corpus[::-1])
    rewrite = [*common, *qdrant, "--corpus_embeddings", str(tmp_path / "reversed.npy")]
    with pytest.raises(ValueError, match=r"not written from this index .* pass recreate=True \(--qdrant_recreate\)"):
        search_module.main(rewrite)
    assert_same_hits(expected, search_module.main([*common, *qdrant]))
    reversed_index = CascadeIndex(index.cascade, corpus[::-1], stages=index.stages, first_stage="flat")
    assert_same_hits(
        reversed_index.search(queries[:2], k=3, shortlist=(60, 20)),
        search_module.main([*rewrite, "--qdrant_recreate"]),
    )

    with pytest.raises(ValueError, match="at most one of --qdrant_url"):
        search_module.main([*common, *qdrant, "--qdrant_url", "http://localhost:6333"])
    with pytest.raises(ValueError, match="--qdrant_api_key needs --qdrant_url"):
        search_module.main([*common, *qdrant, "--qdrant_api_key", "secret"])
    with pytest.raises(ValueError, match="There is no Qdrant collection 'elsewhere'"):
        search_module.main([*common, "--qdrant_path", str(tmp_path / "qdrant"), "--qdrant_collection", "elsewhere"])
    with pytest.raises(ValueError, match="--model_dir needs a corpus"):
        search_module.main(common)
    with pytest.raises(ValueError, match="--qdrant_shard_number lay out the Qdrant collection .* no corpus is given"):
        search_module.main([*common, *qdrant, "--qdrant_shard_number", "2"])
    with pytest.raises(ValueError, match="--qdrant_replication_factor must be at least 1, got 0"):
        search_module.main([*common, *qdrant, "--qdrant_replication_factor", "0"])
    with pytest.raises(ValueError, match="--qdrant_recreate needs --qdrant_url or --qdrant_path"):
        search_module.main([*common, "--corpus_embeddings", str(tmp_path / "corpus.npy"), "--qdrant_recreate"])
