from __future__ import annotations

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from modeling_cascade import embeddings as embeddings_module
from modeling_cascade.embeddings import check_embedding_dim, compute_teacher_embeddings
from modeling_cascade.teacher import Teacher


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return Teacher(str(tiny_teacher_dir), device="cpu")


@pytest.fixture(scope="module")
def corpus(common_corpus_sample):
    """120 real documents of very different lengths (code, books, speeches, articles)."""
    rows = pq.read_table(common_corpus_sample).to_pylist()
    return datasets.Dataset.from_list(rows[::24][:120])


class CountingTeacher:
    """Wraps a teacher and counts the texts it embeds."""

    def __init__(self, teacher):
        self.teacher, self.texts = teacher, 0

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def encode(self, texts, **kwargs):
        self.texts += len(texts)
        return self.teacher.encode(texts, **kwargs)


def test_same_as_bare_encode_in_corpus_order(corpus, teacher, tmp_path, capsys):
    embeddings = compute_teacher_embeddings(corpus, teacher, batch_size=16, cache_dir=tmp_path)
    assert embeddings.shape == (corpus.num_rows, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, teacher.encode(corpus["text"], batch_size=16), atol=1e-5)
    assert "Generating embeddings: 100%" in capsys.readouterr().err


def test_cache_hit_does_not_recompute(corpus, teacher, tmp_path, caplog):
    caplog.set_level("INFO", logger="modeling_cascade")
    counting = CountingTeacher(teacher)
    first = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path)
    assert counting.texts == corpus.num_rows
    second = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path)
    assert counting.texts == corpus.num_rows
    np.testing.assert_array_equal(first, second)
    assert "Loading cached teacher embeddings from" in caplog.text
    assert len(list((tmp_path / embeddings_module.EMBEDDINGS_CACHE_SUBDIR).glob("embeddings-*/shard-*.arrow"))) == 1


def test_cache_key_covers_texts_prefix_and_teacher(corpus, teacher, tiny_teacher_dir, tmp_path):
    counting = CountingTeacher(teacher)
    compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path)
    with_prefix = compute_teacher_embeddings(corpus, counting, prefix="passage: ", cache_dir=tmp_path)
    assert counting.texts == 2 * corpus.num_rows
    np.testing.assert_allclose(with_prefix[:3], teacher.encode(corpus["text"][:3], prefix="passage: "), atol=1e-5)
    edited = corpus.map(
        lambda row, index: {"text": row["text"] + "!" if index == 5 else row["text"]}, with_indices=True
    )
    compute_teacher_embeddings(edited, counting, cache_dir=tmp_path)
    assert counting.texts == 3 * corpus.num_rows
    shorter = CountingTeacher(Teacher(str(tiny_teacher_dir), max_length=16, device="cpu"))
    compute_teacher_embeddings(corpus, shorter, cache_dir=tmp_path)
    assert shorter.texts == corpus.num_rows


def test_shards_are_gathered_in_order_and_resumed(corpus, teacher, tmp_path, caplog):
    caplog.set_level("INFO", logger="modeling_cascade")
    unsharded = compute_teacher_embeddings(corpus, teacher, cache_dir=tmp_path / "one")
    counting = CountingTeacher(teacher)
    sharded = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "three", shard_size=50)
    np.testing.assert_allclose(sharded, unsharded, atol=1e-5)
    shards = sorted((tmp_path / "three").rglob("shard-*.arrow"))
    assert [shard.name for shard in shards] == [f"shard-0000{index}-of-00003.arrow" for index in range(3)]
    # shards are dealt like cards from the longest text down, so each holds long and short texts alike
    lengths = np.array([len(text) for text in corpus["text"]])
    shard_lengths = [np.sort(lengths)[::-1][index::3] for index in range(3)]
    assert max(part.sum() for part in shard_lengths) < 1.2 * min(part.sum() for part in shard_lengths)

    shards[1].unlink()  # as if the run had been killed while embedding the second shard
    counting.texts = 0
    resumed = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "three", shard_size=50)
    assert counting.texts == 40  # rows 1, 4, 7, ... of the 120
    np.testing.assert_array_equal(resumed, sharded)
    assert "Resuming teacher embeddings: 2 of 3 shards are cached" in caplog.text

    # a complete cache serves any shard size (and number of processes); a damaged shard is recomputed, with a warning
    counting.texts = 0
    np.testing.assert_array_equal(compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "three"), sharded)
    assert counting.texts == 0
    shards[2].write_bytes(b"not arrow")
    np.testing.assert_array_equal(compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "three"), sharded)
    assert counting.texts == 40
    assert f"Ignoring cached embedding shard {shards[2]}: unreadable" in caplog.text


def test_memory_mapped_cache_resumes_then_serves_both_modes(corpus, teacher, tmp_path, caplog):
    """A corpus too large for RAM: the shards are assembled into one .npy in the cache, read through a memory map."""
    caplog.set_level("INFO", logger="modeling_cascade")
    in_memory = compute_teacher_embeddings(corpus, teacher, cache_dir=tmp_path / "ram", shard_size=50)
    counting = CountingTeacher(teacher)
    compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "map", shard_size=50)
    shards = sorted((tmp_path / "map").rglob("shard-*.arrow"))
    shards[1].unlink()  # killed while embedding the second shard: the memory-mapped run resumes from the others
    counting.texts = 0
    mapped = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "map", shard_size=50, memory_map=True)
    assert counting.texts == 40
    assert isinstance(mapped, np.memmap) and mapped.mode == "r"
    np.testing.assert_array_equal(mapped, in_memory)
    matrix = next((tmp_path / "map").rglob(embeddings_module.MATRIX_FILE))
    assert not list((tmp_path / "map").rglob("shard-*.arrow")), "the matrix replaces the shards it holds"
    assert not list(matrix.parent.glob(".*.tmp"))
    assert f"Assembled the teacher embeddings in {matrix}" in caplog.text

    counting.texts = 0  # a later run in either mode reads the matrix
    again = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "map", memory_map=True)
    loaded = compute_teacher_embeddings(corpus, counting, cache_dir=tmp_path / "map")
    assert counting.texts == 0 and not isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(again, in_memory)
    np.testing.assert_array_equal(loaded, in_memory)


def test_memory_map_default_follows_size(monkeypatch):
    from accelerate import PartialState

    state = PartialState()
    assert not embeddings_module._resolve_memory_map(None, 1000, 768, state)
    assert embeddings_module._resolve_memory_map(None, 400_000, 768, state)  # 1.14 GiB of float32
    assert not embeddings_module._resolve_memory_map(False, 400_000, 768, state)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "0")  # processes on other machines may not see this cache
    assert not embeddings_module._resolve_memory_map(None, 400_000, 768, state)


def test_shard_count():
    assert [embeddings_module.shard_count(rows, 100) for rows in (1, 100, 101, 1000)] == [1, 1, 2, 10]
    assert [embeddings_module.shard_count(rows, 100, num_processes=4) for rows in (2, 100, 401)] == [2, 4, 8]
    with pytest.raises(ValueError, match="shard size must be a positive integer, got 0"):
        embeddings_module.shard_count(10, 0)


def test_bad_texts_and_dims(teacher, tmp_path):
    with pytest.raises(ValueError, match=r"Row 1 of column 'text' is empty"):
        compute_teacher_embeddings(datasets.Dataset.from_dict({"text": ["ok", "  "]}), teacher, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"no text column 'text' \(columns: \['body'\]\)"):
        compute_teacher_embeddings(datasets.Dataset.from_dict({"body": ["ok"]}), teacher, cache_dir=tmp_path)
    check_embedding_dim(teacher, 32)
    with pytest.raises(ValueError, match=r"--embedding_dim 768 does not match teacher .* outputs 32-dim embeddings"):
        check_embedding_dim(teacher, 768)
