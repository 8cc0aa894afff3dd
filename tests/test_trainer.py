"""CascadeTrainer: ranking metrics in the Trainer's evaluation (log_history, report_to, metric_for_best_model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import train_tiny_run
from transformers import TrainerCallback, TrainingArguments

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.trainer import CascadeTrainer, embeddings_dataset, split_embeddings


REPO_ROOT = Path(__file__).resolve().parents[1]


class LogRecorder(TrainerCallback):
    """What a `report_to` integration receives: every `on_log` payload."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_ranking_metrics_are_in_the_evaluation_and_reach_the_loggers(tmp_path, small_real_embeddings):
    train, validation = split_embeddings(small_real_embeddings, val_split=0.2, seed=0)
    cascade = CascadeModel(CascadeConfig(input_dim=384, target_dims=[64, 16]))
    cascade.init_from_pca(train)
    recorder = LogRecorder()
    args = TrainingArguments(
        tmp_path, num_train_epochs=1, per_device_train_batch_size=128, eval_strategy="epoch", save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = CascadeTrainer(
        model=cascade,
        args=args,
        train_dataset=embeddings_dataset(train),
        eval_dataset=embeddings_dataset(validation),
        callbacks=[recorder],
    )
    trainer.train()
    names = {
        f"eval_dim_{dim}_{metric}" for dim in (64, 16) for metric in ("overlap@10", "full_ranking_ndcg@10", "mse")
    }
    evaluated = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert evaluated and names <= set(evaluated[-1])
    assert all(0.0 <= evaluated[-1][f"eval_dim_{dim}_overlap@10"] <= 1.0 for dim in (64, 16))
    assert any(names <= set(logs) for logs in recorder.logs)
    # the metrics are those of the trained model on the same rows, recomputed here
    metrics = trainer.evaluate()
    assert metrics["eval_dim_64_overlap@10"] == evaluated[-1]["eval_dim_64_overlap@10"]


def test_a_ranking_metric_selects_the_best_checkpoint(tmp_path, embeddings_file):
    out = tmp_path / "out"
    train_tiny_run(out, embeddings_file, "64,16", "--epochs", "3", "--metric_for_best_model", "dim_16_overlap@10")
    state = json.loads(sorted(out.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))[-1].joinpath(
        "trainer_state.json").read_text())  # fmt: skip
    overlaps = {
        entry["step"]: entry["eval_dim_16_overlap@10"] for entry in state["log_history"] if "eval_loss" in entry
    }
    assert state["best_metric"] == max(overlaps.values())
    assert state["best_global_step"] == max(overlaps, key=overlaps.get)


def test_the_numpy_example_runs_and_is_the_one_in_the_docs(tmp_path, small_real_embeddings):
    example = REPO_ROOT / "examples" / "train_from_numpy.py"
    code = example.read_text()
    body = code[code.index("import sys") :].strip()
    assert body in (REPO_ROOT / "docs" / "training.md").read_text()
    np.save(tmp_path / "embeddings.npy", small_real_embeddings)
    result = subprocess.run(
        [sys.executable, str(example), str(tmp_path / "embeddings.npy"), str(tmp_path / "cascade")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval_dim_64_overlap@10" in result.stdout
    assert (tmp_path / "cascade" / "best_model" / "model.safetensors").is_file()
    assert (tmp_path / "cascade" / "best_model" / "README.md").is_file()


def test_batches_are_read_whole_and_equal_row_by_row_reading():
    """EmbeddingRows hands the DataLoader one gathered tensor per batch: the same rows, in the sampler's order."""
    import torch

    from modeling_cascade.trainer import EmbeddingRows, collate_embeddings

    matrix = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    loader = torch.utils.data.DataLoader(
        EmbeddingRows(matrix), batch_size=16, sampler=list(range(49, -1, -1)), collate_fn=collate_embeddings
    )
    batches = [batch["embeddings"] for batch in loader]
    assert [len(batch) for batch in batches] == [16, 16, 16, 2]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), matrix[::-1])
    rows = [{"embeddings": torch.from_numpy(row)} for row in matrix[:3]]  # a datasets-style batch, row by row
    np.testing.assert_array_equal(collate_embeddings(rows)["embeddings"].numpy(), matrix[:3])


def test_two_processes_each_read_their_share_of_every_epoch():
    """Under Accelerate (as the Trainer prepares it) two processes together read every training row each epoch."""
    import torch
    from accelerate.data_loader import prepare_data_loader

    from modeling_cascade.trainer import EmbeddingRows, collate_embeddings

    matrix = np.arange(64 * 2, dtype=np.float32).reshape(64, 2)  # row i holds 2i, 2i + 1
    seen = []
    for process_index in (0, 1):
        generator = torch.Generator().manual_seed(0)  # the same shuffle on every process, as the Trainer seeds it
        loader = torch.utils.data.DataLoader(
            EmbeddingRows(matrix), batch_size=8, shuffle=True, generator=generator, collate_fn=collate_embeddings
        )
        shard = prepare_data_loader(loader, num_processes=2, process_index=process_index, put_on_device=False)
        rows = [int(row[0]) // 2 for batch in shard for row in batch["embeddings"]]
        assert len(rows) == 32
        seen += rows
    assert sorted(seen) == list(range(64))
