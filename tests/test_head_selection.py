"""Per-head selection of best_model/: each head at its best validation evaluation, the PCA start included."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import run_distillation
from modeling_cascade import CascadeModel
from modeling_cascade.head_selection import SELECTED_HEADS_FILE
from modeling_cascade.trainer import split_embeddings


def run_main(tmp_path, embeddings_file, *extra: str, output: str = "out") -> dict:
    argv = [
        "--input_file", str(embeddings_file), "--output_dir", str(tmp_path / output), "--target_dims", "64,16",
        "--epochs", "3", "--train_batch_size", "128",
    ]  # fmt: skip
    return run_distillation.main([*argv, *extra])


def start_metrics(output_dir) -> dict[str, float]:
    state = json.loads(max(output_dir.glob("checkpoint-*/trainer_state.json"), key=str).read_text())
    return next(entry for entry in state["log_history"] if entry["step"] == 0 and "eval_loss" in entry)


def test_training_that_hurts_ends_at_the_pca_start(tmp_path, embeddings_file, small_real_embeddings, caplog):
    """A huge learning rate wrecks every head: best_model/ holds the PCA start, final_model/ the wreck."""
    caplog.set_level("INFO", logger="modeling_cascade")
    results = run_main(tmp_path, embeddings_file, "--learning_rate", "30")
    assert results["dim_64_selected_step"] == 0 and results["dim_16_selected_step"] == 0
    assert "Head 64: PCA start, validation overlap@10" in caplog.text

    train, _ = split_embeddings(small_real_embeddings, 0.1, seed=42)
    start = CascadeModel.from_pretrained(tmp_path / "out" / "final_model")
    start.init_from_pca(train)
    best = CascadeModel.from_pretrained(tmp_path / "out" / "best_model")
    final = CascadeModel.from_pretrained(tmp_path / "out" / "final_model")
    for name, tensor in start.state_dict().items():
        torch.testing.assert_close(best.state_dict()[name], tensor, msg=name)
    assert not torch.allclose(final.heads[0].projection.weight, start.heads[0].projection.weight)
    # the start's metrics are in log_history (step 0), as every evaluation's are
    start_log = start_metrics(tmp_path / "out")
    assert {"eval_dim_64_overlap@10", "eval_dim_16_overlap@10", "eval_overlap@10"} <= set(start_log)


def test_each_head_ends_at_its_best_evaluation(tmp_path, embeddings_file):
    results = run_main(tmp_path, embeddings_file)
    state = json.loads(max((tmp_path / "out").glob("checkpoint-*/trainer_state.json"), key=str).read_text())
    evaluations = {entry["step"]: entry for entry in state["log_history"] if "eval_dim_64_overlap@10" in entry}
    assert 0 in evaluations and len(evaluations) == 4  # the start and three epochs
    for dim in (64, 16):
        values = {step: entry[f"eval_dim_{dim}_overlap@10"] for step, entry in evaluations.items()}
        best_step = results[f"dim_{dim}_selected_step"]
        assert values[best_step] == max(values.values()) >= values[0]
        assert best_step == min(step for step, value in values.items() if value == values[best_step])
    # the selection travels with each checkpoint, so a resumed run selects as the whole run would
    checkpoint = max((tmp_path / "out").glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    saved = load_file(checkpoint / SELECTED_HEADS_FILE)
    best = CascadeModel.from_pretrained(tmp_path / "out" / "best_model")
    for index in range(2):
        torch.testing.assert_close(saved[f"{index}.projection.weight"], best.heads[index].projection.weight)


def test_chained_heads_move_together_and_selection_can_be_turned_off(tmp_path, embeddings_file):
    chained = run_main(tmp_path, embeddings_file, "--cascade_strategy", "chained", output="chained")
    assert chained["dim_64_selected_step"] == chained["dim_16_selected_step"]
    plain = run_main(tmp_path, embeddings_file, "--per_head_selection", "false", output="plain")
    assert not any(name.endswith("_selected_step") for name in plain)
    assert not list((tmp_path / "plain").glob(f"checkpoint-*/{SELECTED_HEADS_FILE}"))


@pytest.mark.parametrize("metric", ["loss", "dim_64_overlap@10"])
def test_a_whole_model_metric_selects_one_checkpoint(tmp_path, embeddings_file, metric):
    results = run_main(tmp_path, embeddings_file, "--metric_for_best_model", metric)
    assert not any(name.endswith("_selected_step") for name in results)
