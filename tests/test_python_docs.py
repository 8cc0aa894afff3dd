from __future__ import annotations

import sys

import pytest

from modeling_cascade.data import python_docs_corpus
from modeling_cascade.python_docs import python_docs_rows


COMMON_CORPUS_COLUMNS = [
    "identifier", "collection", "open_type", "license", "date", "title", "creator", "language", "language_type",
    "word_count", "token_count", "text",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus():
    return python_docs_corpus()


def test_rows_in_common_corpus_schema(corpus):
    assert corpus.column_names == COMMON_CORPUS_COLUMNS
    assert corpus.num_rows > 5000
    assert set(corpus.unique("collection")) == {"OpenSource"}
    assert set(corpus.unique("license")) == {"PSF-2.0"}
    assert set(corpus.unique("language")) == {"en"}
    assert len(set(corpus["identifier"])) == corpus.num_rows
    row = corpus[0]
    assert row["word_count"] == len(row["text"].split())
    assert row["token_count"] == round(row["word_count"] * 1.3)
    assert all(text.strip() for text in corpus["text"])


def test_documents_cover_topics_python_and_c_modules(corpus):
    by_title = dict(zip(corpus["title"], corpus["text"], strict=True))
    assert by_title["json.loads"].startswith("json.loads(s, *, cls=None")  # Python source, `self`-free signature
    assert "Deserialize" in by_title["json.loads"]
    assert by_title["str.split"].startswith("str.split(")  # builtins, read by introspection
    assert "os.listdir" in by_title  # posix functions documented under os
    assert by_title["pathlib.Path.iterdir"].startswith("pathlib.Path.iterdir()")
    assert 'The "for" statement' in by_title["for"]  # pydoc_data topic
    version = ".".join(map(str, sys.version_info[:3]))
    assert corpus[0]["identifier"].startswith(f"python-docs/{version}/")


def test_deterministic_and_sampled_with_seed(corpus):
    identifiers = list(corpus["identifier"])
    fresh = list(python_docs_rows())
    assert [row["identifier"] for row in fresh] == identifiers
    assert fresh[100] == corpus[100]

    sample = python_docs_corpus(num_samples=50, seed=1)
    assert sample.num_rows == 50
    assert sample["identifier"] == python_docs_corpus(num_samples=50, seed=1)["identifier"]
    assert sample["identifier"] != python_docs_corpus(num_samples=50, seed=2)["identifier"]
    positions = [identifiers.index(identifier) for identifier in sample["identifier"]]
    assert positions == sorted(positions)  # kept in corpus order
    assert python_docs_corpus(num_samples=10**9).num_rows == corpus.num_rows


def test_rows_ignore_hooks_replaced_at_run_time(monkeypatch):
    """Tools replace `sys.excepthook` and friends (pytest swaps `sys.unraisablehook` around each test); the corpus
    documents the interpreter's own hooks whoever runs it."""
    expected = {row["identifier"]: row for row in python_docs_rows() if row["title"].startswith("sys.")}

    def replacement(*args: object) -> None:
        """A hook that a tool installed, with a docstring long enough to be documented."""

    for hook in ("displayhook", "excepthook", "unraisablehook", "breakpointhook"):
        monkeypatch.setattr(sys, hook, replacement)
    rows = {row["identifier"]: row for row in python_docs_rows() if row["title"].startswith("sys.")}
    assert rows == expected
    assert "sys.unraisablehook" in {row["title"] for row in rows.values()}
