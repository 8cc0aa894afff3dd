from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared

from modeling_cascade import CascadeConfig, CascadeModel, index_storage
from modeling_cascade.array_utils import faiss_available
from modeling_cascade.commands import search as search_module
from modeling_cascade.index import (
    AUTO_EXACT_BELOW,
    AUTO_PQ_FROM,
    CascadeIndex,
    SearchResult,
    auto_first_stage,
    default_shortlist,
    default_stages,
)


requires_faiss = pytest.mark.skipif(not faiss_available(), reason="needs faiss (pip install modeling-cascade[faiss])")


def make_cascade(corpus: np.ndarray, target_dims=(16, 8), strategy: str = "nested", **config_kwargs) -> CascadeModel:
    """A cascade whose heads start at the PCA of `corpus` (what training starts from), in eval mode."""
    config = CascadeConfig(
        input_dim=corpus.shape[1], target_dims=list(target_dims), strategy=strategy, **config_kwargs
    )
    cascade = CascadeModel(config)
    cascade.init_from_pca(corpus)
    return cascade.eval()


def clustered(num_rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Rows around 20 random centres (a corpus with neighbourhoods), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    return (centres[rng.integers(0, 20, num_rows)] + 0.5 * rng.normal(size=(num_rows, dim))).astype(np.float32)


def exact_top_k(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    corpus = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    scores = queries @ corpus.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, axis=1)


@pytest.fixture(scope="module")
def corpus() -> np.ndarray:
    return clustered(600)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(40, seed=1)


@pytest.mark.parametrize("strategy", ["nested", "direct", "chained"])
@pytest.mark.parametrize(
    "use_faiss, first_stage",
    [
        (False, "flat"),
        (False, "exact"),
        pytest.param(True, "flat", marks=requires_faiss),
        pytest.param(True, "exact", marks=requires_faiss),
        pytest.param(True, "hnsw", marks=requires_faiss),
        pytest.param(True, "pq", marks=requires_faiss),
    ],
)
def test_shortlist_covering_the_corpus_is_exact(corpus, queries, strategy, use_faiss, first_stage):
    """Every first stage gives the exact hits when its shortlist covers the corpus."""
    cascade = make_cascade(corpus, strategy=strategy)
    index = CascadeIndex(cascade, corpus, stages=(8, 16, 32), use_faiss=use_faiss, first_stage=first_stage)
    assert index.first_stage == first_stage
    result = index.search(queries, k=10, shortlist=(len(corpus), 5000))
    assert isinstance(result, SearchResult) and result.ids.shape == result.scores.shape == (len(queries), 10)
    ids, scores = exact_top_k(queries, corpus, 10)
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(index.exact_search(queries, 10).ids, ids)
    assert index.recall(queries, k=10, shortlist=(len(corpus), len(corpus))) == 1.0


def test_stages_and_storage(corpus, queries):
    nested = CascadeIndex(make_cascade(corpus, target_dims=(16, 8, 4)), corpus, stages=(4, 8, 32), dtype="float16")
    assert sorted(nested._vectors) == ["nested", "teacher"] and nested._vectors["nested"].shape == (600, 8)
    assert {array.dtype for array in nested._vectors.values()} == {np.dtype("float16")}
    direct = CascadeIndex(make_cascade(corpus, strategy="direct"), corpus, stages=(8, 16))
    assert sorted(direct._vectors) == ["stage_16", "stage_8"]  # no teacher vectors unless the teacher dim is a stage
    with pytest.raises(ValueError, match="keeps no teacher vectors"):
        direct.exact_search(queries)
    exact_ids, _ = exact_top_k(queries, corpus, 5)
    assert 0.0 < direct.recall(queries, k=5, shortlist=100, exact_ids=exact_ids) < 1.0  # 16 of 32 dims: approximate
    # float16 storage changes scores by float16 rounding only
    full = nested.search(queries, k=5, shortlist=(600, 600))
    np.testing.assert_allclose(full.scores, exact_top_k(queries, corpus, 5)[1], atol=2e-3)


def test_defaults():
    cascade = CascadeModel(CascadeConfig(input_dim=768, target_dims=[512, 256, 128, 64, 32]))
    assert default_stages(cascade) == (128, 768)
    assert default_stages(CascadeModel(CascadeConfig(input_dim=16, target_dims=[8, 4]))) == (8, 16)
    assert default_shortlist(2, 5_000) == (100,)
    assert default_shortlist(2, 1_000_000, first_stage="pq") == (500,)
    assert default_shortlist(3, 4_000_000, first_stage="pq") == (2000, 200)
    assert default_shortlist(2, 50, k=20) == (50,)
    assert default_shortlist(2, 5_000, k=300) == (300,)
    assert default_shortlist(2, 1_000_000, first_stage="hnsw") == (100,)
    assert default_shortlist(3, 3_000_000, first_stage="hnsw") == (300, 30)
    # auto: exact below AUTO_EXACT_BELOW documents (when the teacher dim is a stage), HNSW above where FAISS is used
    assert auto_first_stage((128, 768), AUTO_EXACT_BELOW - 1, 768, use_faiss=True) == "exact"
    assert auto_first_stage((128, 768), AUTO_EXACT_BELOW, 768, use_faiss=True) == "hnsw"
    assert auto_first_stage((128, 768), AUTO_PQ_FROM, 768, use_faiss=True) == "pq"  # HNSW fell below 0.99 at 1M
    assert auto_first_stage((127, 768), AUTO_PQ_FROM, 768, use_faiss=True) == "hnsw"  # PQ needs an even dim
    assert auto_first_stage((128, 768), AUTO_EXACT_BELOW, 768, use_faiss=False) == "flat"
    assert auto_first_stage((64, 128), 100, 768, use_faiss=True) == "hnsw"  # no teacher vectors to search exactly
    assert auto_first_stage((128,), 10**6, 768, use_faiss=True) == "flat"  # nothing re-scores an HNSW shortlist


def test_recall_on_real_scifact(scifact_embeddings):
    """Real SciFact abstracts and claims (MiniLM): the default stages and shortlist keep recall@10 >= 0.99."""
    queries = np.load(require_shared(SHARED_DATA / "embeddings" / "scifact_queries_all-MiniLM-L6-v2.npy"))[:300]
    cascade = make_cascade(scifact_embeddings, target_dims=(256, 128, 64, 32))
    index = CascadeIndex(cascade, scifact_embeddings)
    assert index.stages == (128, 384) and index.first_stage == "exact"  # 5,183 documents: auto searches exactly
    assert index.recall(queries, k=10) == 1.0
    flat = CascadeIndex(cascade, scifact_embeddings, first_stage="flat")
    assert flat.recall(queries, k=10) >= 0.99
    assert flat.recall(queries, k=10, shortlist=len(scifact_embeddings)) == 1.0


@requires_faiss
def test_hnsw_recall_on_real_scifact(scifact_embeddings):
    """Real SciFact (MiniLM): an HNSW graph over the 128-dim stage with its default shortlist keeps recall@10 >= 0.99,
    and at least the recall of the exact 128-dim scan with the same shortlist (less a little for the graph)."""
    queries = np.load(require_shared(SHARED_DATA / "embeddings" / "scifact_queries_all-MiniLM-L6-v2.npy"))[:300]
    cascade = make_cascade(scifact_embeddings, target_dims=(256, 128, 64, 32))
    index = CascadeIndex(cascade, scifact_embeddings, first_stage="hnsw")
    flat = CascadeIndex(cascade, scifact_embeddings, first_stage="flat")
    assert index.default_shortlist() == (100,)
    hnsw_recall = index.recall(queries, k=10)
    assert hnsw_recall >= 0.99 and hnsw_recall >= flat.recall(queries, k=10) - 0.005
    footprint = index.memory_footprint()
    # 128 float32 dims in the graph's storage and in the stage matrix, 384 teacher dims, and the graph's links
    assert footprint["disk_bytes"] == 0
    assert 4 * (128 + 128 + 384) + 4 * 32 < footprint["ram_bytes_per_document"] < 4 * (128 + 128 + 384) + 4 * 200
    assert index.bytes_per_document == footprint["ram_bytes_per_document"]


@requires_faiss
def test_numpy_and_faiss_give_the_same_hits(corpus, queries):
    cascade = make_cascade(corpus)
    with_faiss = CascadeIndex(cascade, corpus, stages=(8, 16, 32), use_faiss=True, first_stage="flat")
    with_numpy = CascadeIndex(cascade, corpus, stages=(8, 16, 32), use_faiss=False, first_stage="flat")
    assert with_faiss._faiss_index is not None and with_numpy._faiss_index is None
    for shortlist in [(60, 20), (200, 50), (30, 10)]:
        faiss_result = with_faiss.search(queries, k=10, shortlist=shortlist)
        numpy_result = with_numpy.search(queries, k=10, shortlist=shortlist)
        np.testing.assert_array_equal(faiss_result.ids, numpy_result.ids)
        np.testing.assert_allclose(faiss_result.scores, numpy_result.scores, rtol=0, atol=1e-6)
    single = [
        CascadeIndex(cascade, corpus, stages=(16,), use_faiss=flag).search(queries, k=7) for flag in (True, False)
    ]
    np.testing.assert_array_equal(single[0].ids, single[1].ids)


@requires_faiss
def test_pq_first_stage(corpus, queries):
    larger = clustered(3000)
    cascade = make_cascade(larger)
    index = CascadeIndex(cascade, larger, stages=(16, 32), first_stage="pq")
    flat = CascadeIndex(cascade, larger, stages=(16, 32), first_stage="flat")
    assert index.first_stage == "pq" and flat.first_stage == "flat"
    # 4-bit codes of 2 dims each cost a little recall at the same shortlist, and the shortlist wins it back
    assert index.recall(queries, k=10, shortlist=300) >= flat.recall(queries, k=10, shortlist=300) - 0.05
    assert index.recall(queries, k=10, shortlist=600) >= flat.recall(queries, k=10, shortlist=300)
    assert index.recall(queries, k=10, shortlist=3000) == 1.0
    with pytest.raises(ValueError, match="needs a later stage"):
        CascadeIndex(make_cascade(corpus), corpus, stages=(16,), first_stage="pq")
    with pytest.raises(ValueError, match="is a FAISS index"):
        CascadeIndex(make_cascade(corpus), corpus, stages=(16, 32), first_stage="pq", use_faiss=False)


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        {"stages": (8, 16, 32)},
        {"stages": (8, 32), "dtype": "float16", "use_faiss": False},
        {"stages": (8, 32), "first_stage": "exact", "use_faiss": False},
        pytest.param({"stages": (16, 32), "first_stage": "pq"}, marks=requires_faiss),
        pytest.param(
            {"stages": (8, 16, 32), "first_stage": "hnsw", "hnsw_neighbors": 8, "hnsw_ef_search": 40},
            marks=requires_faiss,
        ),
    ],
)
def test_save_load_identity(tmp_path, corpus, queries, options, mmap):
    """Saved and loaded (into RAM or memory-mapped), an index gives the same hits; nothing is pickled."""
    index = CascadeIndex(
        make_cascade(corpus, strategy="direct" if "dtype" in options else "nested"), corpus, **options
    )
    index.save(tmp_path / "index")
    assert sorted(path.name for path in (tmp_path / "index").iterdir()) == [
        "cascade",
        "index_config.json",
        "vectors.safetensors",
    ]
    # weights in safetensors, config in JSON, and the modelling code (.py) for trust_remote_code: nothing pickled
    assert {path.suffix for path in (tmp_path / "index" / "cascade").iterdir()} <= {".json", ".safetensors", ".py"}
    # use_faiss is a runtime choice, not saved
    loaded = CascadeIndex.load(tmp_path / "index", use_faiss=options.get("use_faiss"), mmap=mmap)
    assert repr(loaded) == repr(index)
    assert (loaded.hnsw_neighbors, loaded.hnsw_ef_search) == (index.hnsw_neighbors, index.hnsw_ef_search)
    # mapped vectors stay on disk, except the teacher vectors an exact first stage scans for every query
    stored = sum(
        array.nbytes
        for name, array in index._vectors.items()
        if not (name == "teacher" and index.first_stage == "exact")
    )
    assert loaded.memory_footprint()["disk_bytes"] == (stored if mmap else 0)
    assert all(isinstance(array, np.memmap) == mmap for array in loaded._vectors.values())
    for shortlist in [(100, 30), (600, 600)] if len(index.stages) == 3 else [150, 600]:
        before, after = (
            index.search(queries, k=8, shortlist=shortlist),
            loaded.search(queries, k=8, shortlist=shortlist),
        )
        np.testing.assert_array_equal(before.ids, after.ids)
        np.testing.assert_array_equal(before.scores, after.scores)
    for name, array in index._vectors.items():
        np.testing.assert_array_equal(loaded._vectors[name], array)
        assert loaded._vectors[name].dtype == array.dtype


@requires_faiss
@pytest.mark.parametrize("first_stage", ["pq", "hnsw"])
def test_faiss_first_stage_loads_flat_without_faiss(tmp_path, corpus, queries, caplog, first_stage):
    index = CascadeIndex(make_cascade(corpus), corpus, stages=(16, 32), first_stage=first_stage)
    index.save(tmp_path / "index")
    loaded = CascadeIndex.load(tmp_path / "index", use_faiss=False)
    assert loaded.first_stage == "flat" and not loaded.use_faiss
    assert "using 'flat'" in caplog.text
    np.testing.assert_array_equal(loaded.search(queries, k=5, shortlist=600).ids, exact_top_k(queries, corpus, 5)[0])


def test_save_is_atomic(tmp_path, corpus, queries, monkeypatch):
    index = CascadeIndex(make_cascade(corpus), corpus, stages=(8, 32))
    index.save(tmp_path / "index")
    before = (tmp_path / "index" / "vectors.safetensors").read_bytes()
    replacement = CascadeIndex(make_cascade(corpus[:300]), corpus[:300], stages=(16, 32))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_storage, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        replacement.save(tmp_path / "index")
    assert (tmp_path / "index" / "vectors.safetensors").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index"]  # no temporary folder left behind
    monkeypatch.undo()
    replacement.save(tmp_path / "index")
    assert len(CascadeIndex.load(tmp_path / "index")) == 300
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index"]


def test_bad_input(tmp_path, corpus, queries):
    cascade = make_cascade(corpus)
    index = CascadeIndex(cascade, corpus, stages=(8, 16, 32))
    nan_queries = queries.copy()
    nan_queries[3, 5] = np.nan
    first_stages = ["exact", "flat"] + (["hnsw", "pq"] if faiss_available() else [])
    for first_stage in first_stages:  # the same checks before every first stage
        other = CascadeIndex(cascade, corpus, stages=(8, 32), first_stage=first_stage)
        for call, message in [
            (
                lambda other=other: other.search(queries, k=601),
                "k=601 is larger than the corpus: the index holds 600 documents",
            ),
            (
                lambda other=other: other.search(queries[:, :16], k=5),
                "query embeddings have dim 16, but the cascade reads 32-dim",
            ),
            (
                lambda other=other: other.search(nan_queries, k=5),
                r"query embeddings have 1 row\(s\) with NaN or inf .*row 3",
            ),
        ]:
            with pytest.raises(ValueError, match=message):
                call()
    cases = [
        (lambda: CascadeIndex(cascade, corpus, stages=(8, 16), first_stage="exact"), "must end in the teacher dim 32"),
        (lambda: CascadeIndex(cascade, corpus, first_stage="hnsw", hnsw_neighbors=0), "hnsw_neighbors must be a"),
        (lambda: CascadeIndex(cascade, corpus, first_stage="ivf"), "first_stage must be one of"),
        (lambda: CascadeIndex(cascade, corpus, first_stage="hnsw", use_faiss=False), "'hnsw' is a FAISS index"),
        (lambda: index.search(queries, k=601), "k=601 is larger than the corpus: the index holds 600 documents"),
        (lambda: index.search(queries, k=0), "k must be a positive integer"),
        (lambda: index.search(queries[:, :16], k=5), "query embeddings have dim 16, but the cascade reads 32-dim"),
        (lambda: index.search(queries[:0], k=5), "No queries"),
        (lambda: index.search(queries, k=20, shortlist=(100, 10)), "shortlist size 10 is smaller than k=20"),
        (
            lambda: index.search(queries, k=5, shortlist=(100,)),
            r"must give 2 size\(s\), one per stage before the last",
        ),
        (lambda: index.search(queries, k=5, shortlist=(50, 100)), "must not grow"),
        (lambda: CascadeIndex(cascade, corpus[:0]), "The corpus is empty"),
        (lambda: CascadeIndex(cascade, corpus[:, :20]), "corpus embeddings have dim 20, but the cascade reads 32-dim"),
        (lambda: CascadeIndex(cascade, np.full((3, 32), np.nan, np.float32)), r"3 row\(s\) with NaN or inf"),
        (
            lambda: CascadeIndex(cascade, corpus, stages=(12, 32)),
            "stage dim 12 is neither one of the cascade's target_dims",
        ),
        (lambda: CascadeIndex(cascade, corpus, stages=(16, 8)), "strictly increasing"),
        (lambda: CascadeIndex(cascade, corpus, stages=()), "stages is empty"),
        (lambda: CascadeIndex(cascade, corpus, dtype="int8"), "dtype must be one of"),
        (lambda: index.search(["a text query"], k=5), "names no teacher_model"),
        (lambda: CascadeIndex.from_texts(cascade, []), "The corpus is empty"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(FileNotFoundError, match="is not a saved CascadeIndex"):
        CascadeIndex.load(tmp_path)
    index.save(tmp_path / "index")
    config_path = tmp_path / "index" / "index_config.json"
    config = json.loads(config_path.read_text())
    config["arrays"]["nested"] = [5, 16]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="the folder is inconsistent"):
        CascadeIndex.load(tmp_path / "index")


def test_texts_through_the_teacher(tiny_teacher_dir):
    from modeling_cascade.teacher import Teacher

    texts = [f"Document {i} is about {topic}." for i, topic in enumerate(["json", "sockets", "regex", "threads"] * 10)]
    teacher = Teacher(str(tiny_teacher_dir), device="cpu")
    embeddings = teacher.encode(texts)
    cascade = make_cascade(embeddings, target_dims=(16, 8), teacher_model=str(tiny_teacher_dir), query_prefix="")
    index = CascadeIndex.from_texts(cascade, texts, stages=(16, 32))
    np.testing.assert_allclose(index._vectors["teacher"], embeddings, atol=1e-6)
    result = index.search([texts[3], texts[17]], k=3, shortlist=40)
    assert result.ids[:, 0].tolist() == [3, 17]
    np.testing.assert_allclose(result.scores[:, 0], 1.0, atol=1e-5)


def test_cli(tmp_path, corpus, queries, capsys):
    cascade = make_cascade(corpus)
    cascade.save_pretrained(tmp_path / "cascade")
    np.save(tmp_path / "corpus.npy", corpus)
    np.save(tmp_path / "queries.npy", queries[:2])
    result = search_module.main(
        ["--model_dir", str(tmp_path / "cascade"), "--corpus_embeddings", str(tmp_path / "corpus.npy"),
         "--query_embeddings", str(tmp_path / "queries.npy"), "--k", "3", "--stages", "8,32", "--shortlist", "600",
         "--save_index", str(tmp_path / "index")]
    )  # fmt: skip
    np.testing.assert_array_equal(result.ids, exact_top_k(queries[:2], corpus, 3)[0])
    output = capsys.readouterr().out
    assert "Query 2: row 1 of" in output and f"  1. doc {result.ids[1, 0]:<8} {result.scores[1, 0]:.4f}" in output

    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(600)))
    again = search_module.main(
        ["--index_dir", str(tmp_path / "index"), "--corpus_file", str(tmp_path / "corpus.jsonl"),
         "--query_embeddings", str(tmp_path / "queries.npy"), "--k", "3", "--shortlist", "600", "--mmap"]
    )  # fmt: skip
    np.testing.assert_array_equal(again.ids, result.ids)
    assert f"text {result.ids[0, 0]}" in capsys.readouterr().out

    with pytest.raises(ValueError, match="exactly one of --model_dir"):
        search_module.main(["--query_embeddings", str(tmp_path / "queries.npy")])
    with pytest.raises(ValueError, match="--stages must be comma-separated integers"):
        search_module.main(
            ["--model_dir", str(tmp_path / "cascade"), "--corpus_embeddings", str(tmp_path / "corpus.npy"),
             "--query_embeddings", str(tmp_path / "queries.npy"), "--stages", "8,x"]
        )  # fmt: skip
    with pytest.raises(ValueError, match="has no column 'body'"):
        search_module.main(
            ["--index_dir", str(tmp_path / "index"), "--corpus_file", str(tmp_path / "corpus.jsonl"),
             "--text_column", "body", "--query_embeddings", str(tmp_path / "queries.npy")]
        )  # fmt: skip


def test_corrupt_or_foreign_folder(tmp_path, corpus):
    cascade = make_cascade(corpus)
    cascade.save_pretrained(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match=r"model/index_config.json' not found: .* is not a saved CascadeIndex"):
        CascadeIndex.load(tmp_path / "model")  # a cascade folder, not an index
    CascadeIndex(cascade, corpus, stages=(8, 32)).save(tmp_path / "good")

    def broken(name: str, edit) -> str:
        folder = tmp_path / name
        shutil.copytree(tmp_path / "good", folder)
        edit(folder)
        return str(folder)

    def edit_config(**changes):
        def edit(folder):
            config = json.loads((folder / "index_config.json").read_text())
            config.update(changes)
            (folder / "index_config.json").write_text(json.dumps(config))

        return edit

    cases = [
        (
            lambda folder: (folder / "index_config.json").write_text("{not json"),
            "index_config.json' is not valid JSON",
        ),
        (lambda folder: (folder / "index_config.json").write_text("[1, 2]"), "has no format_version"),
        (edit_config(format_version=7), "has format_version 7; this version of modeling_cascade reads 1"),
        (edit_config(dtype="int4"), r"dtype is missing or invalid \('int4'\)"),
        (edit_config(stages=[8, 12, 32]), "stage dim 12 is neither one of the cascade's target_dims"),
        (
            lambda folder: (folder / "vectors.safetensors").write_bytes(b"garbage" * 10),
            "is not a readable safetensors",
        ),
        (lambda folder: (folder / "vectors.safetensors").unlink(), "the saved CascadeIndex is incomplete"),
        (lambda folder: shutil.rmtree(folder / "cascade"), "cascade' does not hold a readable cascade"),
        (
            lambda folder: index_storage.save_file(
                {"nested": np.zeros((600, 8), np.float16), "teacher": np.zeros((600, 32), np.float32)},
                folder / "vectors.safetensors",
            ),
            "array 'nested' of shape \\[600, 8\\] float16 does not fit stages",
        ),
    ]
    for number, (edit, message) in enumerate(cases):
        folder = broken(f"case{number}", edit)
        with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
            CascadeIndex.load(folder)
        assert folder in str(error.value) or "stage dim" in str(error.value)


def test_corpus_file_with_a_blank_row_is_refused_by_row(tmp_path):
    from modeling_cascade.commands.search import read_texts

    (tmp_path / "docs.csv").write_text('text\nfirst document\n""\nthird document\n')
    with pytest.raises(ValueError, match=r"docs\.csv', row 1: the 'text' value is None, not a text"):
        read_texts(str(tmp_path / "docs.csv"), "text")
