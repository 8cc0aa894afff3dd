"""Filling a cascade's model card (`model.model_card_data`) while the `Trainer` runs, without ever stopping it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Arguments the card never lists: where things go, how the run logs or publishes, secrets, the teacher (shown apart).
IGNORED_ARGUMENTS = frozenset(
    {
        "output_dir",
        "logging_dir",
        "run_name",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "push_to_hub",
        "report_to",
        "log_level",
        "log_level_replica",
        "disable_tqdm",
        "local_rank",
        "embedding_model",
        "embedding_model_revision",
        "embedding_dim",
        "query_prefix",
        "document_prefix",
        "device",
        # derived by TrainingArguments.__post_init__ from the machine or from other arguments
        "use_cpu",
        "dataloader_pin_memory",
        "do_eval",
        "accelerator_config",
    }
)


def non_default_arguments(arguments: Any) -> dict[str, Any]:
    """The fields of an argument dataclass whose values differ from the field defaults.

    The defaults come from the dataclass fields, not from a fresh instance: building `TrainingArguments` resets the
    process's Accelerate state, which a running Trainer uses. So an unset default (`None`, `""`) equals an empty or
    false value that `__post_init__` filled in, the evaluation batch size counts only when it differs from the
    training one, and paths, logging and Hub settings, secrets, teacher fields and values derived from the machine
    (`IGNORED_ARGUMENTS`) are left out.
    """
    current = (
        arguments.to_dict()
        if isinstance(arguments, TrainingArguments)
        else {item.name: getattr(arguments, item.name) for item in dataclasses.fields(arguments) if item.init}
    )
    defaults = {
        item.name: item.default if item.default_factory is dataclasses.MISSING else item.default_factory()
        for item in dataclasses.fields(arguments)
        if item.init
    }
    differing = {}
    for name, value in current.items():
        default = defaults.get(name)
        unset = default in (None, "") and value in (None, "", False, [], {})
        if value == default or unset or name in IGNORED_ARGUMENTS or name.startswith("hub_") or "token" in name:
            continue
        differing[name] = value
    if "per_device_eval_batch_size" in differing and current["per_device_eval_batch_size"] == current.get(
        "per_device_train_batch_size"
    ):
        del differing["per_device_eval_batch_size"]
    return differing


@contextlib.contextmanager
def card_step(what: str) -> Iterator[None]:
    """Run one step of filling a card; a failure becomes a warning and the card goes without that fact, so neither
    training nor saving ever stops for a card."""
    try:
        yield
    except Exception as error:
        logger.warning(f"Model card: could not {what} ({type(error).__name__}: {error}); the card goes without it.")


class ModelCardCallback(TrainerCallback):
    """Fills the model's card data (`model.model_card_data`) while the `Trainer` runs: the hyperparameters that differ
    from the defaults and the row counts when training starts, the per-epoch log and the step the weights come from
    at each evaluation and at the end, so the card of every checkpoint and saved model is current.

    Nothing it does can stop training: a failure is logged as a warning and the card lacks that fact.

    Example:

    >>> from modeling_cascade.trainer import CascadeTrainer  # doctest: +SKIP
    >>> cascade.model_card_data.license = "apache-2.0"  # doctest: +SKIP
    >>> trainer = CascadeTrainer(cascade, args, train_dataset=train, callbacks=[ModelCardCallback()])  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    >>> cascade.save_pretrained("best_model")  # the card is written with the weights  # doctest: +SKIP
    """

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        card_data = getattr(model, "model_card_data", None)
        if card_data is None:
            return
        with card_step("record the model's configuration"):
            card_data.set_model(model.config)
        with card_step("record the hyperparameters"):
            card_data.hyperparameters.update(non_default_arguments(args))
        with card_step("count the training rows"):
            train_dataloader = kwargs.get("train_dataloader")
            if train_dataloader is not None:
                card_data.num_train_rows = len(train_dataloader.dataset)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        card_data = getattr(model, "model_card_data", None)
        if card_data is not None:
            card_data.model_step = state.global_step  # a checkpoint saved after this step holds its weights

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        card_data = getattr(model, "model_card_data", None)
        if card_data is None:
            return
        with card_step("count the validation rows"):
            eval_dataloader = kwargs.get("eval_dataloader")
            if eval_dataloader is not None:
                card_data.num_validation_rows = len(eval_dataloader.dataset)
        with card_step("record the training log"):
            card_data.set_training_log(state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        card_data = getattr(model, "model_card_data", None)
        if card_data is not None:
            with card_step("record the training log"):
                card_data.set_training_log(state)
