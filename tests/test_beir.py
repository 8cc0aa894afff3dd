"""The BEIR-layout loader: rows in file order, judged queries, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA, require_shared

from modeling_cascade.beir import BeirDataset, read_qrels


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    """A BEIR folder from rows and the text of qrels/test.tsv."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


CORPUS = [{"_id": "d1", "title": "JSON", "text": "json parses documents"}, {"_id": "d2", "text": "csv reads rows"}]
QUERIES = [{"_id": "q1", "text": "parse json"}, {"_id": "q2", "text": "unjudged"}, {"_id": "q3", "text": "csv"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq3\td2\t1\nq3\td1\t0\n"


def test_load_keeps_file_order_and_judged_queries(tmp_path):
    data = BeirDataset.load(write_beir(tmp_path / "beir", CORPUS, QUERIES, QRELS))
    assert data.corpus_ids == ["d1", "d2"] and data.query_ids == ["q1", "q2", "q3"]
    assert data.documents() == ["JSON json parses documents", "csv reads rows"]
    assert data.qrels == {"q1": {"d1": 2}, "q3": {"d2": 1, "d1": 0}}
    assert data.judged_query_rows() == [0, 2]


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "message"),
    [
        (CORPUS + [{"_id": "d3"}], QUERIES, QRELS, r"corpus.jsonl' line 3 lacks the key\(s\) \['text'\]"),
        (CORPUS + [CORPUS[0]], QUERIES, QRELS, "corpus.jsonl' lists the _id 'd1' more than once"),
        (CORPUS, QUERIES, QRELS + "q1\td2\n", r"test.tsv' line 5 has 2 column\(s\)"),
        (CORPUS, QUERIES, QRELS + "q1\td2\thigh\n", "test.tsv' line 5: score 'high' is not an integer"),
        (CORPUS, QUERIES, QRELS + "q9\td2\t1\n", "judges 1 query id\\(s\\) absent from queries.jsonl, e.g. 'q9'"),
        (CORPUS, QUERIES, "query-id\tcorpus-id\tscore\n", "holds no relevance judgments"),
    ],
)
def test_bad_folders_name_the_culprit(tmp_path, corpus, queries, qrels, message):
    folder = write_beir(tmp_path / "beir", corpus, queries, qrels)
    with pytest.raises(ValueError, match=message):
        BeirDataset.load(folder)


def test_missing_files_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="--beir folder not found"):
        BeirDataset.load(tmp_path / "absent")
    folder = write_beir(tmp_path / "beir", CORPUS, QUERIES, QRELS)
    with pytest.raises(FileNotFoundError, match="qrels/dev.tsv"):
        BeirDataset.load(folder, split="dev")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": \n')
    with pytest.raises(ValueError, match="queries.jsonl' line 2 is not valid JSON"):
        BeirDataset.load(folder)


def test_real_scifact_counts():
    folder = require_shared(SHARED_DATA / "scifact")
    data = BeirDataset.load(folder)
    assert (len(data.corpus_ids), len(data.query_ids), len(data.judged_query_rows())) == (5183, 1109, 300)
    assert sum(len(judged) for judged in read_qrels(folder / "qrels" / "test.tsv").values()) == 339
