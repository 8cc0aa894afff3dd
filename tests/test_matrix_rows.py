"""Memory-mapped input: rows read from a `.npy` file equal the in-memory rows, a run over a memory map trains the same
cascade as one over the loaded matrix, and its resident memory stays far below the matrix's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import train_tiny_run
from safetensors.numpy import load_file

from modeling_cascade.file_utils import load_embeddings
from modeling_cascade.matrix_rows import MatrixRows, second_moment
from modeling_cascade.trainer import split_embeddings


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_memory_mapped_rows_equal_in_memory_rows(tmp_path, dtype):
    matrix = np.random.default_rng(0).normal(size=(300, 12)).astype(dtype)
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    expected = matrix.astype(np.float32)
    positions = [7, 8, 9, 3, 140, 141, 0, 9]  # runs of consecutive rows, out of order, one row twice
    for rows in (MatrixRows(mapped), MatrixRows(mapped[:, :]), MatrixRows(mapped[::2])):  # a view reads via the map
        base = expected if rows.matrix.shape[0] == 300 else expected[::2]
        np.testing.assert_array_equal(rows[positions], base[positions])
        np.testing.assert_array_equal(rows[10:20], base[10:20])
        assert rows[positions].dtype == np.float32
    selection = MatrixRows(mapped).select(np.array([2, 5, 6, 100])).normalized()
    read = selection[[3, 0]]
    np.testing.assert_allclose(read, expected[[100, 2]] / np.linalg.norm(expected[[100, 2]], axis=1, keepdims=True))
    np.testing.assert_array_equal(np.concatenate(list(MatrixRows(mapped).blocks(block_rows=64))), expected)
    moment, mean, count = second_moment(MatrixRows(mapped).blocks(block_rows=64), centered=True)
    assert count == 300
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(moment, np.cov(expected.T.astype(np.float64), bias=True), rtol=1e-6, atol=1e-9)


def test_a_file_cut_short_under_a_memory_map_is_a_clear_error(tmp_path):
    np.save(tmp_path / "m.npy", np.ones((100, 8), dtype=np.float32))
    rows = MatrixRows(np.load(tmp_path / "m.npy", mmap_mode="r"))
    os.truncate(tmp_path / "m.npy", 128 + 50 * 8 * 4)  # another process rewrites the file: half the rows are gone
    np.testing.assert_array_equal(rows[[0, 49]], np.ones((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"m\.npy. ends before row 60: it holds 50 rows now, so it was cut short"):
        rows[[60]]


def test_split_copies_nothing_and_keeps_every_row_once(tmp_path):
    np.save(tmp_path / "m.npy", np.arange(50 * 2, dtype=np.float32).reshape(50, 2))
    mapped = load_embeddings(tmp_path / "m.npy", memory_map=True)
    assert isinstance(mapped, np.memmap)
    train, validation = split_embeddings(mapped, val_split=0.2, seed=0)
    assert train.matrix is mapped and validation.matrix is mapped
    assert (len(train), len(validation)) == (40, 10)
    assert sorted(np.r_[train[:][:, 0], validation[:][:, 0]] // 2) == list(range(50))


def test_memory_mapped_input_trains_the_same_cascade(tmp_path, embeddings_file):
    for memory_map in ("true", "false"):
        train_tiny_run(tmp_path / memory_map, embeddings_file, "64,16", "--memory_map_input", memory_map)
    mapped, loaded = (load_file(tmp_path / name / "best_model" / "model.safetensors") for name in ("true", "false"))
    assert mapped.keys() == loaded.keys()
    for name in mapped:
        np.testing.assert_array_equal(mapped[name], loaded[name], err_msg=name)


CHILD = textwrap.dedent(
    """
    import json, sys
    import run_distillation  # everything a run imports, before the baseline

    def status(field):
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

    with open("/proc/self/clear_refs", "w") as clear:  # reset the peak (VmHWM) to the current resident size
        clear.write("5")
    baseline = status("VmRSS:")
    run_distillation.main(sys.argv[1:])
    print("RSS " + json.dumps({"baseline": baseline, "peak": status("VmHWM:")}))
    """
)


@pytest.mark.slow
def test_a_memory_mapped_run_keeps_resident_memory_far_below_the_matrix(tmp_path):
    """400,000 x 768 float32 (1.1 GiB) trains for a few steps while the process grows by less than a third of that:
    batches, and the bounded working set of each evaluation (500 held-out queries against at most 10,000 corpus
    rows, whatever the corpus size), never the matrix."""
    path = tmp_path / "rows.npy"
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(400_000, 768))
    rng = np.random.default_rng(0)
    for start in range(0, len(matrix), 50_000):
        block = rng.normal(size=(50_000, 768)).astype(np.float32)
        matrix[start : start + 50_000] = block / np.linalg.norm(block, axis=1, keepdims=True)
    matrix.flush()
    del matrix
    argv = [
        "--input_file", str(path), "--memory_map_input", "true", "--output_dir", str(tmp_path / "out"),
        "--target_dims", "128,32", "--max_steps", "4", "--train_batch_size", "1024", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(memory-mapped: rows are read as needed)" in result.stdout + result.stderr
    memory = json.loads(result.stdout.split("RSS ")[-1])
    matrix_bytes = 400_000 * 768 * 4
    assert memory["peak"] - memory["baseline"] < matrix_bytes / 3, memory
    assert (tmp_path / "out" / "best_model" / "model.safetensors").is_file()
