"""Resuming a killed run: find the newest checkpoint the Trainer finished writing, check that it belongs to this run
(same cascade, same training rows, same optimisation settings), and report the whole run's loss.

The Trainer writes a checkpoint in place (weights, optimizer, scheduler, RNG states) and its `trainer_state.json`
last, so a run killed while saving leaves a `checkpoint-N/` without that file (or with a cut-short one);
`get_last_checkpoint` would pick it and the resumed run would crash on it. The Trainer's `train_loss` also averages only the steps of the call that
ran them, so after a resume it would differ from an uninterrupted run's; [`whole_run_train_loss`] restores it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
from transformers import TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from .matrix_rows import MatrixRows, as_matrix_rows


logger = logging.get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
OTHER_RUN_ADVICE = "Pass --overwrite_output_dir to start over, or choose another --output_dir."


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether the Trainer finished writing checkpoint folder `path`: its `trainer_state.json`, written last, reads."""
    try:
        TrainerState.load_from_json(str(Path(path) / TRAINER_STATE_NAME))
    except (OSError, ValueError, TypeError):  # missing, or cut short by the kill (an empty or partial file)
        return False
    return True


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N/` in `output_dir` that the Trainer finished writing, or `None`.

    Newer, incomplete checkpoints (a run killed while saving) are skipped with a warning; the resumed run writes them
    again when it reaches their step.

    Example:

    >>> last_complete_checkpoint("models/common_corpus")  # doctest: +SKIP
    'models/common_corpus/checkpoint-120'
    """
    steps = {}
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            steps[int(match[1])] = os.path.join(output_dir, name)
    for step in sorted(steps, reverse=True):
        if is_complete_checkpoint(steps[step]):
            return steps[step]
        logger.warning(
            f"Skipping {steps[step]}: it has no readable {TRAINER_STATE_NAME}, so the run was stopped while writing it."
        )
    return None


def check_checkpoint(path: str) -> str:
    """Return `path` when it is a complete checkpoint; raise `ValueError` naming it (and what to do) otherwise."""
    if not os.path.isdir(path):
        raise ValueError(f"--resume_from_checkpoint {path!r} is not a folder: name a checkpoint-N/ folder of a run.")
    if not is_complete_checkpoint(path):
        parent = os.path.dirname(os.path.normpath(path)) or "."
        latest = last_complete_checkpoint(parent)
        hint = f"; the newest complete one is {latest!r}" if latest else ""
        raise ValueError(
            f"--resume_from_checkpoint {path!r} is incomplete (no readable {TRAINER_STATE_NAME}: the run was stopped "
            f"while writing it){hint}."
        )
    return path


def checkpoint_step(checkpoint: str | None) -> int:
    """The global step a checkpoint was saved at (0 for `None`); read it before training rotates the folder away."""
    if checkpoint is None:
        return 0
    return TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME)).global_step


def whole_run_train_loss(state: TrainerState, train_loss: float, resumed_step: int) -> float:
    """The mean training loss per step over the whole run, also when this call resumed it from a checkpoint.

    The steps before the resume come from the losses logged up to the checkpoint (weighted by their steps), the others
    from the Trainer's `train_loss` of this call. When the logs do not reach the checkpoint's step exactly (logging and
    saving at different steps), the Trainer's value is kept.

    Args:
        state (`TrainerState`): The state after training (its `log_history` holds the logs from before the resume).
        train_loss (`float`): The Trainer's `train_loss` of this call.
        resumed_step (`int`): The step this call resumed from ([`checkpoint_step`]), 0 when it started afresh.
    """
    logged = [(entry["step"], entry["loss"]) for entry in state.log_history if "loss" in entry and "step" in entry]
    logged = [(step, loss) for step, loss in logged if step <= resumed_step]
    if not resumed_step or not logged or logged[-1][0] != resumed_step or state.global_step <= resumed_step:
        return train_loss
    total, previous = 0.0, 0
    for step, loss in logged:
        total += loss * (step - previous)
        previous = step
    return (total + train_loss * (state.global_step - resumed_step)) / state.global_step


def check_checkpoint_matches(folder: str | os.PathLike, expected: dict[str, tuple[object, str]]) -> None:
    """Refuse a checkpoint (already passed by `check_cascade_folder`) whose cascade is not the one this run builds.

    Args:
        folder (`str` or `os.PathLike`): A `checkpoint-N/` folder.
        expected (`dict`): config field -> (value this run uses, the flag that sets it).

    Raises:
        `ValueError` naming the differing field and flag.
    """
    _refuse_differences(folder, "its config.json has", _read_checkpoint_config(Path(folder)), expected)


def _refuse_differences(
    folder: str | os.PathLike, source: str, saved: dict, expected: dict[str, tuple[object, str]]
) -> None:
    """Raise `ValueError` for the first name whose `saved` value differs from this run's, naming it and its flag."""
    for name, (value, flag) in expected.items():
        if saved.get(name) != value:
            raise ValueError(
                f"Checkpoint {str(folder)!r} belongs to another run: {source} {name} {saved.get(name)!r}, but this "
                f"run uses {value!r} ({flag}). {OTHER_RUN_ADVICE}"
            )


def _read_checkpoint_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"Checkpoint {str(folder)!r} has no readable config.json ({error}).") from None
    return config if isinstance(config, dict) else {}


def embeddings_fingerprint(embeddings: np.ndarray | MatrixRows) -> dict[str, object]:
    """Shape, dtype and SHA-256 of an embedding matrix read as float32 (in blocks, so a memory-mapped matrix larger
    than RAM works): equal only for the same rows in the same order."""
    rows = as_matrix_rows(embeddings)
    digest = hashlib.sha256()
    for block in rows.blocks():
        digest.update(memoryview(np.ascontiguousarray(block)).cast("B"))
    return {"rows": len(rows), "dim": rows.shape[1], "dtype": "float32", "sha256": digest.hexdigest()}


def run_fingerprint(embeddings: np.ndarray | MatrixRows, settings: dict[str, tuple[object, str]]) -> dict[str, object]:
    """The fingerprint [`RunFingerprintCallback`] writes: the embeddings' and each setting's value (flags dropped)."""
    return {
        "embeddings": embeddings_fingerprint(embeddings),
        "settings": {name: value for name, (value, _flag) in settings.items()},
    }


class RunFingerprintCallback(TrainerCallback, ExportableState):
    """Carry the run's fingerprint in every checkpoint's `trainer_state.json` (under `stateful_callbacks`).

    The Trainer writes the states of `ExportableState` callbacks into `trainer_state.json`, the file it writes last,
    so a checkpoint is complete exactly when it holds the fingerprint: no kill can leave one without it.

    Args:
        fingerprint (`dict`): The [`run_fingerprint`] of this run, JSON-ready.
    """

    def __init__(self, fingerprint: dict[str, object]) -> None:
        self.fingerprint = fingerprint

    def state(self) -> dict:
        return {"args": {"fingerprint": self.fingerprint}, "attributes": {}}


def saved_run_fingerprint(folder: str | os.PathLike) -> dict | None:
    """The fingerprint a checkpoint's `trainer_state.json` carries, or `None` when it has none (an older version's)."""
    state = TrainerState.load_from_json(str(Path(folder) / TRAINER_STATE_NAME))
    saved = state.stateful_callbacks.get(RunFingerprintCallback.__name__)
    return None if saved is None else saved.get("args", {}).get("fingerprint")


def check_run_fingerprint(
    folder: str | os.PathLike, embeddings: dict[str, object], settings: dict[str, tuple[object, str]], data_flag: str
) -> None:
    """Refuse to resume from a checkpoint that was trained on other embeddings or with other settings.

    A checkpoint without a fingerprint (written by an older version of the package) is resumed with a warning, as it
    would have been before.

    Args:
        folder (`str` or `os.PathLike`): A `checkpoint-N/` folder.
        embeddings (`dict`): The [`embeddings_fingerprint`] of this run's embeddings.
        settings (`dict`): setting name -> (value this run uses, the flag that sets it).
        data_flag (`str`): The flags that chose the embeddings, for the message.

    Raises:
        `ValueError` naming the checkpoint, what differs, and the flag.
    """
    file = Path(folder) / TRAINER_STATE_NAME
    try:
        saved = saved_run_fingerprint(folder)
        if saved is None:
            logger.warning(
                f"{str(file)!r} carries no run fingerprint (an older version wrote it), so this run cannot check that "
                "it was trained on the same embeddings and settings; resuming from it anyway."
            )
            return
        saved_embeddings, saved_settings = saved["embeddings"], saved["settings"]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(
            f"{str(file)!r} holds no readable run fingerprint ({error!r}): the checkpoint is corrupt."
        ) from None
    if saved_embeddings != embeddings:
        raise ValueError(
            f"Checkpoint {str(folder)!r} belongs to another run: it was trained on other embeddings "
            f"({_describe(saved_embeddings)}) than this run's ({_describe(embeddings)}; {data_flag}). {OTHER_RUN_ADVICE}"
        )
    _refuse_differences(folder, "it was trained with", saved_settings, settings)


def _describe(embeddings: dict) -> str:
    """`rows x dim dtype, sha256 <first 12 hex digits>` of an `embeddings_fingerprint`."""
    return f"{embeddings.get('rows')} x {embeddings.get('dim')} {embeddings.get('dtype')}, sha256 {str(embeddings.get('sha256'))[:12]}"
