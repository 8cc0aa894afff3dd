"""A real two-process run on the CPU: `accelerate launch` starts two processes that join one gloo group.

Embedding is split between them (each embeds only its shards, the main process gathers them, logs and writes the
cache), and DDP trains the cascade. The outputs must look like a one-process run's and be as good.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import run_distillation
from modeling_cascade.data import load_corpus
from modeling_cascade.file_utils import load_embeddings
from modeling_cascade.teacher import Teacher


REPO_ROOT = Path(__file__).resolve().parents[1]
MULTI_CPU_CONFIG = REPO_ROOT / "examples" / "accelerate" / "multi_cpu.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_split_embedding_and_train_like_one(common_corpus_sample, tiny_teacher_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    flags = [
        "--dataset_name", str(common_corpus_sample), "--num_samples", "400",
        "--embedding_model", str(tiny_teacher_dir), "--max_length", "128", "--embedding_shard_size", "100",
        "--target_dims", "16,8", "--epochs", "3", "--train_batch_size", "64", "--val_split", "0.25",
        "--cache_dir", str(cache),
    ]  # fmt: skip
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(MULTI_CPU_CONFIG),
        "--num_processes", "2", "--main_process_port", str(free_port()),
        "run_distillation.py", "--use_cpu", *flags, "--output_dir", str(tmp_path / "two"),
        "--save_embeddings", str(tmp_path / "two.npy"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(launch, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    # Embedding: four shards, two per process; the main process shows (and embeds) only its own, logs once.
    assert "Embedding 400 documents in 4 shard(s) on 2 process(es)" in output
    assert set(re.findall(r"Generating embeddings \(shard (\d)/4\): 100%", output)) == {"1", "3"}
    assert output.count("Generated embeddings: (400, 32)") == 1
    assert output.count("Selected subset: 400 samples") == 1
    shards = sorted(path.name for path in cache.glob("modeling_cascade_embeddings/*/shard-*.arrow"))
    assert shards == [f"shard-0000{index}-of-00004.arrow" for index in range(4)]
    # DDP: one RNG file per process, and 300 training rows take ceil(300 / (2 x 64)) = 3 steps per epoch, not 5
    assert (tmp_path / "two" / "checkpoint-9" / "rng_state_1.pth").is_file()

    # The gathered matrix is what one process encoding the corpus in order gives.
    corpus = load_corpus(str(common_corpus_sample), num_samples=400, seed=42, cache_dir=str(cache))
    teacher = Teacher(str(tiny_teacher_dir), max_length=128, device="cpu")
    np.testing.assert_allclose(load_embeddings(tmp_path / "two.npy"), teacher.encode(corpus["text"]), atol=1e-5)

    # One process on the same cache: no shard is embedded again, and it trains the same cascade as well.
    caplog.set_level("INFO", logger="modeling_cascade")
    run_distillation.main([*flags, "--output_dir", str(tmp_path / "one"), "--device", "cpu"])
    assert "Loading cached teacher embeddings" in caplog.text
    assert (tmp_path / "one" / "checkpoint-15").is_dir()
    two = json.loads((tmp_path / "two" / "all_results.json").read_text())
    one = json.loads((tmp_path / "one" / "all_results.json").read_text())
    assert two.keys() == one.keys()
    for model in ("best_model", "final_model"):
        assert json.loads((tmp_path / "two" / model / "config.json").read_text()) == json.loads(
            (tmp_path / "one" / model / "config.json").read_text()
        )
        weights_two = load_file(tmp_path / "two" / model / "model.safetensors")
        weights_one = load_file(tmp_path / "one" / model / "model.safetensors")
        assert {name: array.shape for name, array in weights_two.items()} == {
            name: array.shape for name, array in weights_one.items()
        }
    for dim in (16, 8):
        assert two[f"dim_{dim}_overlap@10"] == pytest.approx(one[f"dim_{dim}_overlap@10"], abs=0.05)
        assert two[f"dim_{dim}_spearman"] == pytest.approx(one[f"dim_{dim}_spearman"], abs=0.02)
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=0.1)


@pytest.mark.slow
def test_two_processes_read_every_training_row_once_per_epoch(embeddings_file, tmp_path):
    """A real two-process run over a memory-mapped --input_file: per epoch, the batches the two processes read
    (recorded by tests/record_training_rows.py around the data loader's batch read) hold every training row once."""
    # 600 rows, 20 % validation: 480 = 8 whole batches (a short last step is filled up; see docs/training.md)
    epochs, train_rows, batch_size = 3, 480, 60
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(MULTI_CPU_CONFIG),
        "--num_processes", "2", "--main_process_port", str(free_port()),
        str(REPO_ROOT / "tests" / "record_training_rows.py"), str(tmp_path),
        "--use_cpu", "--input_file", str(embeddings_file), "--memory_map_input", "true", "--val_split", "0.2",
        "--target_dims", "32,8", "--epochs", str(epochs), "--train_batch_size", str(batch_size),
        "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launch, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "(memory-mapped: rows are read as needed)" in result.stdout + result.stderr

    batches_per_epoch = train_rows // (2 * batch_size)  # 4 steps, one batch per process each
    per_process = []
    for rank in (0, 1):
        batches = json.loads((tmp_path / f"rows-{rank}.json").read_text())
        training = [batch["indices"] for batch in batches if batch["rows_in_dataset"] == train_rows]
        assert len(training) == epochs * batches_per_epoch, f"process {rank}"
        per_process.append(training)
    for epoch in range(epochs):
        part = slice(epoch * batches_per_epoch, (epoch + 1) * batches_per_epoch)
        rows = [row for training in per_process for batch in training[part] for row in batch]
        assert sorted(rows) == list(range(train_rows)), f"epoch {epoch}"
    epoch_one, epoch_two = (
        per_process[0][epoch * batches_per_epoch : (epoch + 1) * batches_per_epoch] for epoch in (0, 1)
    )
    assert epoch_one != epoch_two  # each epoch is reshuffled
