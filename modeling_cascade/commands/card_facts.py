"""What a training run's command line tells a model card that the model cannot know: the user's title, license,
language and tags, the dataset as the run resolved it, and the model arguments that differ from the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from ..data import PYTHON_DOCS, resolve_corpus_source
from ..modelcard import CascadeModelCardData
from ..modelcard_callback import card_step, non_default_arguments
from .arguments import DataArguments, ModelArguments, ModelCardArguments
from .cli_utils import split_list


PCA_INITIALIZATION = "the PCA of the training embeddings"


def record_run_facts(
    card_data: CascadeModelCardData,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    card_args: ModelCardArguments,
    hub_repo_id: str | None = None,
) -> None:
    """Record on a cascade's card data what the command line knows and the model cannot: title, language, license,
    tags, the dataset and its filters, and the model arguments that differ from the defaults.

    It makes no Hub request (the corpus was resolved by the run already) and never raises: a fact it cannot establish
    is left out with a warning.

    Args:
        card_data (`CascadeModelCardData`): The cascade's `model_card_data`.
        model_args, data_args, training_args, card_args: The run's arguments.
        hub_repo_id (`str`, *optional*): The repo the best model is pushed to, for the usage snippet.
    """
    card_data.model_name = (
        card_args.card_model_name
        or (training_args.hub_model_id or "").split("/")[-1]
        or Path(training_args.output_dir).absolute().name
    )
    card_data.language = split_list(card_args.card_language) or list(data_args.language_list)
    card_data.license = card_args.card_license
    card_data.tags = split_list(card_args.card_tags)
    card_data.initialization = PCA_INITIALIZATION  # `build_model` starts every head there
    card_data.model_id = hub_repo_id
    with card_step("record the model arguments"):
        card_data.hyperparameters = non_default_arguments(model_args)
    with card_step("describe the dataset"):
        card_data.dataset_name, card_data.dataset_id, details = _describe_dataset(data_args, training_args.seed)
        card_data.dataset_details = {name: value for name, value in details.items() if value not in (None, "")}
        if not card_data.language and card_data.dataset_name.startswith(PYTHON_DOCS):
            card_data.language = ["en"]


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
