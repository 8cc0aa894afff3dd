"""Training a cascade with the `Trainer`: the data (a train / validation split of teacher embeddings, read a batch at a
time), a thin `CascadeTrainer` that adds ranking metrics to every evaluation, the guide's per-epoch log lines, early
stopping on a ranking metric, the learning curve and the loss summary."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import EvalLoopOutput
from transformers.utils import logging

from .file_utils import save_figure
from .matrix_rows import MatrixRows, as_matrix_rows
from .ranking import held_out_ranking_metrics, split_queries_corpus


logger = logging.get_logger(__name__)

LEARNING_CURVE_FILE = "learning_curve.png"
OVERLAP_METRIC = re.compile(r"eval_dim_(?P<dim>\d+)_overlap@(?P<k>\d+)")
PER_DIM_METRIC = re.compile(r"dim_(?P<dim>\d+)_(?P<metric>.+)")
# Validation rows at most: past 500,000 rows (at --val_split 0.1) the rest trains. The validation loss of 50,000 rows
# is as steady as of more, and each evaluation reads them all.
MAX_VAL_ROWS = 50_000


def split_embeddings(
    embeddings: np.ndarray | MatrixRows, val_split: float, seed: int
) -> tuple[MatrixRows, MatrixRows]:
    """Shuffle once with `seed` and hold out `val_split` of the rows (at most `MAX_VAL_ROWS`) for validation.

    Nothing is copied: both parts are [`MatrixRows`] selections (row numbers in order) of the same matrix, which may be
    memory-mapped and larger than RAM.

    Raises:
        `ValueError` when either part is too small: validation needs two rows, training one.
    """
    rows = as_matrix_rows(embeddings)
    order = np.random.default_rng(seed).permutation(len(rows))
    val_size = min(int(round(len(rows) * val_split)), MAX_VAL_ROWS)
    train_size = len(rows) - val_size
    if val_size < 2 or train_size < 1:
        raise ValueError(
            f"{len(rows)} rows are too few for --val_split {val_split}: that leaves {train_size} training rows "
            f"and {val_size} validation rows (need at least 1 and 2). Use more rows or another --val_split."
        )
    return rows.select(np.sort(order[val_size:])), rows.select(np.sort(order[:val_size]))


class EmbeddingRows(torch.utils.data.Dataset):
    """Rows of a float matrix (in memory or memory-mapped) as a map-style dataset that reads whole batches.

    The `DataLoader` asks `__getitems__` for all the row numbers of a batch at once: one NumPy gather from the matrix
    (a memory map reads just those rows, and keeps none of them mapped; see [`MatrixRows`]) and one tensor, instead of
    formatting and stacking a row at a time. It works with any sampler the Trainer or Accelerate picks (random,
    distributed, sharded): they only choose the row numbers.

    Args:
        rows (`np.ndarray` of shape `(rows, dim)`, or [`MatrixRows`]): Teacher embeddings, e.g. a part from
            [`split_embeddings`].

    Example:

    >>> import numpy as np
    >>> rows = EmbeddingRows(np.eye(4, dtype=np.float32))
    >>> rows.__getitems__([2, 0])[0]["embeddings"].shape
    torch.Size([2, 4])
    """

    def __init__(self, rows: np.ndarray | MatrixRows) -> None:
        self.rows = as_matrix_rows(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"embeddings": torch.from_numpy(self.rows[[index]][0])}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """One batch as a single feature holding a `(len(indices), dim)` tensor (see [`collate_embeddings`])."""
        return [{"embeddings": torch.from_numpy(self.rows[indices])}]


def embeddings_dataset(embeddings: np.ndarray | MatrixRows) -> EmbeddingRows:
    """The training or validation rows for the Trainer (see [`EmbeddingRows`])."""
    return EmbeddingRows(embeddings)


def collate_embeddings(features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | bool]:
    """A batch for `CascadeModel.forward` that asks for its loss.

    `features` is either the one whole-batch feature of [`EmbeddingRows`] or one feature per row (a `datasets`
    dataset with an `embeddings` column), which are stacked. `CascadeModel.forward` computes its loss only in
    training mode unless `return_loss=True` is passed; with this collator the Trainer's evaluation reports
    `eval_loss` too.
    """
    tensors = [feature["embeddings"] for feature in features]
    batch = tensors[0] if len(tensors) == 1 and tensors[0].ndim == 2 else torch.stack(tensors)
    return {"embeddings": batch, "return_loss": True}


def _dataset_rows(dataset) -> MatrixRows | np.ndarray:
    """The embeddings of an [`EmbeddingRows`], or of a `datasets` dataset with an `embeddings` column."""
    if isinstance(dataset, EmbeddingRows):
        return dataset.rows
    return np.asarray(dataset.with_format("numpy")["embeddings"], dtype=np.float32)


class CascadeTrainer(Trainer):
    """The `Trainer` for a `CascadeModel`: its batches ask the model for its loss (see [`collate_embeddings`]), and each
    evaluation adds the cascade's ranking metrics on the evaluation rows to `eval_loss`.

    The evaluation rows are the queries, searched against the training rows and the other evaluation rows, as a search
    index would hold them (drawn once with `args.seed`, as in `evaluate_cascade`); per target dim the metrics are `eval_dim_<dim>_overlap@<k>` (the share of the teacher's
    top k found at that dim), `eval_dim_<dim>_full_ranking_ndcg@<k>` and `eval_dim_<dim>_mse`, and each one's mean over
    the dims (`eval_overlap@<k>`, ...). They land in
    `log_history`, reach every `report_to` integration and can be the `metric_for_best_model` (e.g.
    `dim_64_overlap@10`).

    Args:
        ranking_k (`int`, defaults to 10): Cut-off of the ranking metrics.
        args, kwargs: As for `Trainer`; `data_collator` defaults to [`collate_embeddings`].

    Example:

    >>> trainer = CascadeTrainer(model=cascade, args=args, train_dataset=train, eval_dataset=val)  # doctest: +SKIP
    >>> trainer.evaluate()["eval_dim_64_overlap@10"]  # doctest: +SKIP
    0.71
    """

    def __init__(self, *args, ranking_k: int = 10, **kwargs) -> None:
        kwargs.setdefault("data_collator", collate_embeddings)
        super().__init__(*args, **kwargs)
        self.ranking_k = ranking_k
        self._ranking_rows: tuple[object, tuple[np.ndarray, np.ndarray]] | None = None

    def _ranking_split(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Queries (evaluation rows) and the corpus they search (training rows and the other evaluation rows), as
        [`split_queries_corpus`] draws them, once per evaluation dataset."""
        if self._ranking_rows is None or self._ranking_rows[0] is not dataset:
            queries, corpus = split_queries_corpus(
                _dataset_rows(self.train_dataset), _dataset_rows(dataset), seed=self.args.seed
            )
            self._ranking_rows = (dataset, (queries, corpus))
        return self._ranking_rows[1]

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ) -> EvalLoopOutput:
        """The Trainer's evaluation loop (the loss), then the ranking metrics of the model on the same rows."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        metrics = None
        if self.is_world_process_zero():  # one process computes them, and all take the same values
            queries, corpus = self._ranking_split(dataloader.dataset)
            metrics = held_out_ranking_metrics(self.model, queries, corpus, k=self.ranking_k)
        if self.args.world_size > 1:
            metrics = broadcast_object_list([metrics])[0]
        output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in metrics.items()})
        for name in {match["metric"] for key in metrics if (match := PER_DIM_METRIC.fullmatch(key))}:
            per_dim = [value for key, value in metrics.items() if key.endswith(f"_{name}") and key.startswith("dim_")]
            output.metrics[f"{metric_key_prefix}_{name}"] = float(np.mean(per_dim))  # e.g. eval_overlap@10
        return output


class EpochLogCallback(TrainerCallback):
    """Logs each evaluation in the guide's form, `Epoch 3/20: train_loss=0.01234, val_loss=0.01301`, then what a search
    sees at each dim (from [`CascadeTrainer`]'s metrics): `Epoch 3/20: overlap@10 256=0.951, 128=0.842, 64=0.701`.
    On a step schedule the prefix is `Step 438/13102 (epoch 0.45):`."""

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
        if args.eval_strategy == "steps":
            prefix = f"Step {state.global_step}/{state.max_steps} (epoch {state.epoch or 0:.2f}):"
        else:
            prefix = f"Epoch {int(round(state.epoch or 0))}/{int(np.ceil(args.num_train_epochs))}:"
        logger.info(f"{prefix} train_loss={train_loss}, val_loss={metrics['eval_loss']:.5f}")
        overlaps = [(match, value) for name, value in metrics.items() if (match := OVERLAP_METRIC.fullmatch(name))]
        if overlaps:
            values = ", ".join(f"{match['dim']}={value:.3f}" for match, value in overlaps)
            logger.info(f"{prefix} overlap@{overlaps[0][0]['k']} {values}")


class RankingEarlyStoppingCallback(TrainerCallback, ExportableState):
    """Stop training when a validation metric has not improved for `patience` evaluations in a row.

    Unlike `transformers.EarlyStoppingCallback` it needs neither `load_best_model_at_end` nor the metric that selects
    `best_model/`, and it watches ranking metrics: `overlap@10` is the mean of every dim's `eval_dim_<dim>_overlap@10`
    (what a search sees), `dim_64_overlap@10` one dim's, `loss` the validation loss (lower is better; so is any
    `mse`). Its count is saved in each checkpoint, so a resumed run stops where the whole run would have.

    Args:
        patience (`int`): Evaluations without improvement before the run stops.
        metric (`str`, defaults to `"overlap@10"`): The metric watched, without the `eval_` prefix.
    """

    def __init__(self, patience: int, metric: str = "overlap@10") -> None:
        self.patience = patience
        self.metric = metric
        self.greater_is_better = not (metric == "loss" or metric.endswith("mse"))
        self.best: float | None = None
        self.evaluations_without_improvement = 0

    def value(self, metrics: dict[str, float]) -> float:
        """The watched metric in one evaluation's `metrics`."""
        if f"eval_{self.metric}" in metrics:
            return float(metrics[f"eval_{self.metric}"])
        per_dim = [
            value for name, value in metrics.items() if re.fullmatch(rf"eval_dim_\d+_{re.escape(self.metric)}", name)
        ]
        if not per_dim:
            available = sorted(name.removeprefix("eval_") for name in metrics if name.startswith("eval_"))
            raise ValueError(
                f"--early_stopping_metric {self.metric!r} is not among the evaluation's metrics: use one of "
                f"{available}, or a per-dim metric without its dim (e.g. overlap@10)."
            )
        return float(np.mean(per_dim))

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kwargs
    ):
        if not metrics or "eval_loss" not in metrics:
            return
        value = self.value(metrics)
        improved = self.best is None or (value > self.best if self.greater_is_better else value < self.best)
        if improved:
            self.best, self.evaluations_without_improvement = value, 0
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            control.should_training_stop = True
            if state.is_world_process_zero:
                logger.info(
                    f"Early stopping at step {state.global_step}: validation {self.metric} has not improved on "
                    f"{self.best:.4f} for {self.patience} evaluations (--early_stopping_patience)."
                )

    def state(self) -> dict:
        return {
            "args": {"patience": self.patience, "metric": self.metric},
            "attributes": {"best": self.best, "evaluations_without_improvement": self.evaluations_without_improvement},
        }

    def restore(self, checkpoint: str) -> None:
        """Take up the count saved in `checkpoint`'s `trainer_state.json` (when it watched the same metric)."""
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as file:
            saved = json.load(file).get("stateful_callbacks", {}).get(type(self).__name__)
        if saved and saved["args"].get("metric") == self.metric:
            self.best = saved["attributes"]["best"]
            self.evaluations_without_improvement = saved["attributes"]["evaluations_without_improvement"]


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
