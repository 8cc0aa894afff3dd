"""What a model card says about a cascade's config and its environment: the strategy and each loss term in words, the
teacher's Hub id, and the framework versions. Read from the config's fields, so a card describes whatever a config
holds."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

from .configuration_cascade import CascadeConfig
from .teacher import PACKAGED_COPIES
from .teacher_encoder import PACKAGED_TEACHERS


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
LOSS_AVERAGING = "averaged over the heads; the teacher embeddings are both input and target (no labels)"
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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
