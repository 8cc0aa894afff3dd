"""Training glue around the stock `Trainer`: per-epoch log lines, the learning curve, and the loss summary."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset, Features, List, Value
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

from .file_utils import save_figure


logger = logging.get_logger(__name__)

LEARNING_CURVE_FILE = "learning_curve.png"


def embeddings_dataset(embeddings: np.ndarray) -> Dataset:
    """Wrap a float matrix as a `datasets.Dataset` with one fixed-length `embeddings` column, in torch format."""
    features = Features({"embeddings": List(Value("float32"), length=embeddings.shape[1])})
    dataset = Dataset.from_dict({"embeddings": np.asarray(embeddings, dtype=np.float32)}, features=features)
    return dataset.with_format("torch")


def collate_embeddings(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | bool]:
    """Stack rows of `embeddings_dataset` into a batch that asks the model for its loss.

    `CascadeModel.forward` computes its loss only in training mode unless `return_loss=True` is passed; with this
    collator the Trainer's evaluation reports `eval_loss` too.
    """
    return {"embeddings": torch.stack([row["embeddings"] for row in rows]), "return_loss": True}


class EpochLogCallback(TrainerCallback):
    """Logs one line per evaluation in the guide's form: `Epoch 3/20: train_loss=0.01234, val_loss=0.01301`."""

    def __init__(self) -> None:
        self.train_loss: float | None = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_loss = float(logs["loss"])

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kwargs
    ):
        if not state.is_world_process_zero or not metrics or "eval_loss" not in metrics:
            return
        train_loss = f"{self.train_loss:.5f}" if self.train_loss is not None else "n/a"
        epoch = int(round(state.epoch or 0))
        logger.info(
            f"Epoch {epoch}/{int(np.ceil(args.num_train_epochs))}: train_loss={train_loss}, val_loss={metrics['eval_loss']:.5f}"
        )


@dataclass
class LossHistory:
    """Per-epoch train and validation losses read from a `TrainerState.log_history`."""

    train_epochs: list[float]
    train_losses: list[float]
    val_epochs: list[float]
    val_losses: list[float]

    @classmethod
    def from_log_history(cls, log_history: list[dict]) -> LossHistory:
        train = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry and "epoch" in entry]
        val = [(entry["epoch"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
        return cls(
            train_epochs=[epoch for epoch, _ in train],
            train_losses=[loss for _, loss in train],
            val_epochs=[epoch for epoch, _ in val],
            val_losses=[loss for _, loss in val],
        )

    def summary(self) -> dict[str, float]:
        """Final train/val loss and the best val loss with its epoch (keys absent when not logged)."""
        result = {}
        if self.train_losses:
            result["final_train_loss"] = self.train_losses[-1]
        if self.val_losses:
            best = int(np.argmin(self.val_losses))
            result.update(
                final_val_loss=self.val_losses[-1],
                best_val_loss=self.val_losses[best],
                best_val_epoch=self.val_epochs[best],
            )
        return result

    def log_summary(self) -> None:
        """Log the guide's closing lines: final training/validation loss and the best validation loss."""
        summary = self.summary()
        if "final_train_loss" in summary:
            logger.info(f"Final training loss: {summary['final_train_loss']:.5f}")
        if "final_val_loss" in summary:
            logger.info(f"Final validation loss: {summary['final_val_loss']:.5f}")
            logger.info(
                f"Best validation loss: {summary['best_val_loss']:.5f} (epoch {int(round(summary['best_val_epoch']))})"
            )

    def plot(self, output_dir: str) -> str:
        """Write `learning_curve.png` (train and validation loss per epoch) into `output_dir`; return its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 4.5))
        axis.plot(self.train_epochs, self.train_losses, marker="o", label="train loss")
        axis.plot(self.val_epochs, self.val_losses, marker="o", label="validation loss")
        axis.set_xlabel("epoch")
        axis.set_ylabel("similarity-preservation loss")
        axis.set_yscale("log")
        axis.set_title("Cascade distillation: learning curve")
        axis.grid(True, alpha=0.3)
        axis.legend()
        figure.tight_layout()
        path = os.path.join(output_dir, LEARNING_CURVE_FILE)
        return save_figure(figure, path)
