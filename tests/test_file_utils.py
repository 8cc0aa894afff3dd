from __future__ import annotations

import os

import numpy as np
import pytest

from modeling_cascade.file_utils import atomic_directory, atomic_path, load_embeddings, save_embeddings


def test_save_load_round_trip(tmp_path):
    data = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    save_embeddings(tmp_path / "e.npy", data)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "e.npy"), data)
    assert [p.name for p in tmp_path.iterdir()] == ["e.npy"]


def test_atomic_path_keeps_old_file_when_write_fails(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(4, dtype=np.float32), r"has shape \(4,\): embeddings must be 2-D"),
        (np.zeros((3, 4), dtype=np.int64), "dtype int64: embeddings must be floating point"),
        (np.zeros((0, 4), dtype=np.float32), "holds no embeddings"),
        (
            np.array([[0.0, 1.0], [np.nan, 1.0], [np.inf, 0.0]], dtype=np.float32),
            r"2 row\(s\) with NaN or inf values \(rows 1, 2\)",
        ),
    ],
)
def test_bad_matrices_are_refused_with_the_reason(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message):
        load_embeddings(path)


def test_missing_file_wrong_suffix_and_pickles(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_embeddings(tmp_path / "nope.npy")
    (tmp_path / "e.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="is not a .npy file"):
        load_embeddings(tmp_path / "e.txt")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled Python objects, which are never loaded"):
        load_embeddings(tmp_path / "objects.npy")


def test_expected_dim_is_checked(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="has dim 4, but the expected dim is 8"):
        load_embeddings(tmp_path / "e.npy", expected_dim=8)


def test_atomic_directory_puts_the_old_folder_back_when_the_swap_is_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "best_model"
    target.mkdir()
    (target / "config.json").write_text("old")
    real_replace, calls = os.replace, []

    def replace_failing_the_second_time(source, destination):
        calls.append(source)
        if len(calls) == 2:  # the old folder is moved aside; moving the new one in fails
            raise OSError("disk full")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace_failing_the_second_time)
    with pytest.raises(OSError, match="disk full"), atomic_directory(target) as folder:
        (folder / "config.json").write_text("new")
    assert (target / "config.json").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["best_model"]


def test_cut_short_npy_is_not_called_a_pickle(tmp_path):
    save_embeddings(tmp_path / "e.npy", np.ones((100, 8), dtype=np.float32))
    content = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"cut\.npy' is not a readable \.npy file \(cut short or damaged"):
        load_embeddings(tmp_path / "cut.npy")
