"""The default schedule by corpus size, early stopping on a ranking metric, and the cap on validation rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import train_tiny_run

import run_distillation
from modeling_cascade import schedule, trainer
from modeling_cascade.schedule import StepSchedule, default_rows_seen, step_schedule
from modeling_cascade.trainer import RankingEarlyStoppingCallback, split_embeddings


def test_the_budget_is_sixty_epochs_up_to_50k_rows_then_grows_with_the_square_root():
    assert default_rows_seen(1_000) == 60_000
    assert default_rows_seen(50_000) == 3_000_000
    assert default_rows_seen(50_001) == pytest.approx(3_000_030, abs=2)  # continuous where the rules meet
    assert default_rows_seen(1_000_000) == pytest.approx(13_416_408, abs=2)
    assert default_rows_seen(4_000_000) == pytest.approx(2 * default_rows_seen(1_000_000), abs=2)
    assert step_schedule(50_000, 1024) is None
    assert step_schedule(1_000_000, 1024) == StepSchedule(max_steps=13_102, interval=219)
    assert step_schedule(10_000_000, 4096).evaluations == 60


def run_main(tmp_path, embeddings_file, *extra: str) -> dict:
    argv = ["--input_file", str(embeddings_file), "--output_dir", str(tmp_path / "out"), "--target_dims", "64,16"]
    return run_distillation.main([*argv, *extra])


def test_a_large_corpus_trains_on_the_step_schedule_and_stops_early(tmp_path, embeddings_file, monkeypatch, caplog):
    """Scaled down: with the epoch schedule ending at 300 rows, 540 training rows take the step schedule."""
    monkeypatch.setattr(schedule, "EPOCH_SCHEDULE_ROWS", 300)
    caplog.set_level("INFO", logger="modeling_cascade")
    run_main(tmp_path, embeddings_file, "--early_stopping_patience", "3")
    # 60 x 300 x sqrt(540 / 300) = 24,149 rows seen in steps of 540 rows: 45 steps, one evaluation per step.
    assert (
        "Training schedule: 45 steps of 540 rows (45.0 epochs of 540 training rows), evaluation and checkpoint "
        "every 1 step, stopping early after 3 evaluations without a better overlap@10" in caplog.text
    )
    assert "Step 1/45 (epoch 1.00): train_loss=" in caplog.text
    assert "Step 1/45 (epoch 1.00): overlap@10 64=" in caplog.text
    state = json.loads(max((tmp_path / "out").glob("checkpoint-*/trainer_state.json"), key=str).read_text())
    assert state["max_steps"] == 45 and state["eval_steps"] == 1 and state["save_steps"] == 1
    assert "Early stopping at step" in caplog.text, "training longer does not raise the held-out overlap for long"
    stopped_at = state["global_step"]
    assert stopped_at < 45
    saved = state["stateful_callbacks"]["RankingEarlyStoppingCallback"]
    assert saved["attributes"]["evaluations_without_improvement"] == 3
    restored = RankingEarlyStoppingCallback(3)
    restored.restore(str(tmp_path / "out" / f"checkpoint-{stopped_at}"))
    assert restored.evaluations_without_improvement == 3 and restored.best == saved["attributes"]["best"]


def test_epochs_or_max_steps_replace_the_default_schedule(tmp_path, embeddings_file, monkeypatch, caplog):
    monkeypatch.setattr(schedule, "EPOCH_SCHEDULE_ROWS", 300)
    caplog.set_level("INFO", logger="modeling_cascade")
    metrics = train_tiny_run(tmp_path / "out", embeddings_file, "64,16")  # --epochs 2
    assert "Training schedule" not in caplog.text and "Epoch 2/2: train_loss=" in caplog.text
    assert metrics["epoch"] == 2.0


def test_early_stopping_watches_a_ranking_metric_or_the_loss(tmp_path, embeddings_file, caplog):
    caplog.set_level("INFO", logger="modeling_cascade")
    train_tiny_run(
        tmp_path / "out", embeddings_file, "64,16", "--epochs", "12", "--learning_rate", "3",
        "--early_stopping_patience", "2", "--early_stopping_metric", "dim_16_overlap@10",
    )  # fmt: skip
    assert "validation dim_16_overlap@10 has not improved" in caplog.text  # a huge learning rate only makes it worse
    stopping = RankingEarlyStoppingCallback(2, "loss")
    assert not stopping.greater_is_better and stopping.value({"eval_loss": 0.5}) == 0.5
    assert RankingEarlyStoppingCallback(2).value({"eval_dim_64_overlap@10": 0.8, "eval_dim_16_overlap@10": 0.6}) == 0.7
    with pytest.raises(ValueError, match=r"--early_stopping_metric 'recall@5' is not among .*'dim_64_overlap@10'"):
        RankingEarlyStoppingCallback(2, "recall@5").value({"eval_loss": 0.5, "eval_dim_64_overlap@10": 0.8})


def test_bad_patience_is_refused(tmp_path, embeddings_file):
    with pytest.raises(ValueError, match="--early_stopping_patience must be 0 \\(off\\) or more, got -1"):
        run_main(tmp_path, embeddings_file, "--early_stopping_patience", "-1")


def test_validation_rows_are_capped_and_the_rest_trains(monkeypatch):
    monkeypatch.setattr(trainer, "MAX_VAL_ROWS", 10)
    train, validation = split_embeddings(np.zeros((500, 4), dtype=np.float32), val_split=0.1, seed=0)
    assert (len(train), len(validation)) == (490, 10)
