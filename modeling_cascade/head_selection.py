"""Per-head selection: each head of a cascade ends at the evaluation of its training, its PCA start included, with the
best validation ranking metric, so that no head ends below its start on validation.

One checkpoint cannot be best for every head: on small corpora the 256-dim head often peaks early while the 32-dim
head still gains. Heads of the `direct` strategy are independent maps of the teacher embedding, so each can be taken
from its own evaluation. `chained` heads read the previous head's output and `nested` heads are prefixes of one
output, so their heads are chosen together, at the evaluation with the best mean over the dims.

The callback keeps the chosen weights in memory, writes them into each checkpoint (`selected_heads.safetensors`, before
the `trainer_state.json` that completes it) and its scores into `trainer_state.json`, so a resumed run selects as an
uninterrupted one would.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.utils import logging


logger = logging.get_logger(__name__)

SELECTED_HEADS_FILE = "selected_heads.safetensors"
PCA_START = "PCA start"
# Ranking metrics every dim reports (`eval_dim_<dim>_<metric>`) that can select heads; higher is better.
SELECTION_METRICS = ("overlap@10", "full_ranking_ndcg@10")


class HeadSelectionCallback(TrainerCallback, ExportableState):
    """Keep, per head, the weights of the evaluation with the best validation `metric`.

    Evaluate once before training (`eval_on_start`, step 0) so that the PCA start competes. With `joint=True`
    (chained and nested cascades) all heads move together, chosen by the mean of the metric over the dims.

    Args:
        dims (`list[int]`): The cascade's target dims, in the order of its heads.
        metric (`str`, defaults to `"overlap@10"`): A per-dim ranking metric (one of `SELECTION_METRICS`).
        joint (`bool`, defaults to `False`): Choose all heads at one evaluation.
    """

    def __init__(self, dims: list[int], metric: str = "overlap@10", joint: bool = False) -> None:
        if metric not in SELECTION_METRICS:
            raise ValueError(f"Heads are selected by one of {SELECTION_METRICS}, got {metric!r}.")
        self.dims, self.metric, self.joint = list(dims), metric, joint
        self.best: dict[int, float] = {}  # per dim, its best validation value so far
        self.best_step: dict[int, int] = {}  # the global step it was reached at (0: the PCA start)
        self.best_epoch: dict[int, float] = {}
        self.weights: dict[int, dict[str, torch.Tensor]] = {}  # per head index, the chosen weights (on the CPU)
        self._checkpoint: str | None = None  # the folder a checkpoint saved now goes to

    def scores(self, metrics: dict[str, float]) -> dict[int, float]:
        """Per dim, the value that ranks its candidates: its own metric, or the mean over the dims when `joint`."""
        values = {dim: float(metrics[f"eval_dim_{dim}_{self.metric}"]) for dim in self.dims}
        if self.joint:
            mean = float(np.mean(list(values.values())))
            return dict.fromkeys(self.dims, mean)
        return values

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, model=None, **kwargs
    ):
        if not metrics or f"eval_dim_{self.dims[-1]}_{self.metric}" not in metrics or model is None:
            return
        for index, (dim, value) in enumerate(self.scores(metrics).items()):
            if dim in self.best and value <= self.best[dim]:  # ties keep the earlier (the start first)
                continue
            self.best[dim], self.best_step[dim], self.best_epoch[dim] = value, state.global_step, state.epoch or 0.0
            self.weights[index] = {
                name: tensor.detach().to("cpu", copy=True) for name, tensor in model.heads[index].state_dict().items()
            }

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")

    def state(self) -> dict:
        """The selection's scores, for the checkpoint's `trainer_state.json`.

        The `Trainer` asks for it while saving a checkpoint, after the weights and before `trainer_state.json`, the
        file that marks the checkpoint complete; so the chosen heads are written into the checkpoint here, and a kill
        can never leave a complete checkpoint without them.
        """
        checkpoint = self._checkpoint
        if self.weights and checkpoint is not None and os.path.isdir(checkpoint):
            tensors = {f"{index}.{name}": t for index, head in self.weights.items() for name, t in head.items()}
            save_file(tensors, os.path.join(checkpoint, SELECTED_HEADS_FILE))
        return {
            "args": self._arguments(),
            "attributes": {
                "best": {str(dim): value for dim, value in self.best.items()},
                "best_step": {str(dim): step for dim, step in self.best_step.items()},
                "best_epoch": {str(dim): epoch for dim, epoch in self.best_epoch.items()},
            },
        }

    def _arguments(self) -> dict:
        return {"dims": self.dims, "metric": self.metric, "joint": self.joint}

    def restore(self, checkpoint: str) -> None:
        """Take up the selection saved in `checkpoint` (when it selected the same heads by the same metric); without
        it (a checkpoint of an older version), selection starts again from the checkpoint's weights."""
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as file:
            saved = json.load(file).get("stateful_callbacks", {}).get(type(self).__name__)
        weights_file = os.path.join(checkpoint, SELECTED_HEADS_FILE)
        if not saved or saved["args"] != self._arguments() or not os.path.isfile(weights_file):
            logger.warning(
                f"{checkpoint} holds no head selection by {self.metric}: each head is selected from the evaluations "
                "after it, its PCA start no longer included."
            )
            return
        attributes = saved["attributes"]
        self.best = {int(dim): value for dim, value in attributes["best"].items()}
        self.best_step = {int(dim): step for dim, step in attributes["best_step"].items()}
        self.best_epoch = {int(dim): epoch for dim, epoch in attributes["best_epoch"].items()}
        self.weights = {}
        for name, tensor in load_file(weights_file).items():
            index, key = name.split(".", 1)
            self.weights.setdefault(int(index), {})[key] = tensor

    def apply(self, model: torch.nn.Module) -> None:
        """Load the chosen weights into `model`'s heads (a copy of the trained model, for `best_model/`)."""
        for index, head in enumerate(model.heads):
            if index in self.weights:
                head.load_state_dict(self.weights[index])

    def selection(self) -> dict[int, dict[str, object]]:
        """Per dim, what was chosen: `{"step": 120, "epoch": 12.0, "value": 0.81}`; step 0 is the PCA start (training
        never beat it)."""
        return {
            dim: {"step": self.best_step[dim], "epoch": self.best_epoch[dim], "value": self.best[dim]}
            for dim in self.dims
            if dim in self.best
        }
