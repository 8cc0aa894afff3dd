"""Texts in, cascade embeddings out: `CascadeModel.encode` embeds texts with the teacher named in the config, then
projects them. Part of the code a saved cascade carries (for `trust_remote_code`), so it imports only its siblings."""

from __future__ import annotations

import numpy as np
from transformers.utils import logging

from .teacher_encoder import check_texts, encode_texts, load_sentence_transformer


logger = logging.get_logger(__name__)

PROMPTS = ("query", "document")


class TextEncodingMixin:
    """`encode(texts, dim=...)` for [`CascadeModel`], which provides `config`, `heads`, `project` and `resolve_dim`."""

    def encode(
        self,
        texts: str | list[str],
        dim: int | None = None,
        prompt: str = "query",
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed texts with the teacher this cascade was distilled from, then project them to `dim`.

        The teacher named in the config (`teacher_model` at `teacher_revision`, with `teacher_pooling` and
        `teacher_max_length`) is loaded on the first call, on the cascade's device, and kept. Texts get the prefix
        their kind was given in training (`query_prefix` or `document_prefix`), so queries and documents land where
        the cascade expects them.

        Args:
            texts (`str` or `list[str]`): The texts to embed.
            dim (`int`, *optional*): One of `config.target_dims`; defaults to the largest.
            prompt (`str`, defaults to `"query"`): `"query"` or `"document"`: which prefix to prepend.
            batch_size (`int`, defaults to 32): Texts per teacher forward pass.
            show_progress_bar (`bool`, defaults to `False`): Show the teacher's progress bar.

        Returns:
            `np.ndarray` of shape `(len(texts), dim)`: L2-normalised float32 rows.

        Raises:
            `ValueError` when the config names no teacher, for an unknown `prompt` or `dim`, or when the teacher's
            output size differs from `config.input_dim`.
        """
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}.")
        dim = self.resolve_dim(dim)
        texts = check_texts([texts] if isinstance(texts, str) else texts)  # before the teacher loads
        teacher = self._load_teacher()
        prefix = self.config.query_prefix if prompt == "query" else self.config.document_prefix
        embeddings = encode_texts(teacher, texts, prefix, batch_size=batch_size, show_progress_bar=show_progress_bar)
        if embeddings.shape[1] != self.config.input_dim:
            raise ValueError(
                f"The teacher {self.config.teacher_model!r} makes {embeddings.shape[1]}-dim embeddings, but this "
                f"cascade reads {self.config.input_dim}-dim ones: config.teacher_model must name the teacher the "
                "cascade was trained on."
            )
        return self.project(embeddings, dim)

    def _load_teacher(self):
        """The teacher's `SentenceTransformer`, loaded once and kept on the cascade's device.

        With this package installed, `Teacher.from_config` loads it (packaged teachers, offline fallbacks, the
        dim check); a folder loaded with `trust_remote_code` where the package is absent loads it with the copy of
        `teacher_encoder.py` it carries.
        """
        device = self.heads[0].projection.weight.device
        teacher = self._teacher_cache.get("model")
        if teacher is None:
            if not self.config.teacher_model:
                raise ValueError(
                    "This cascade's config names no teacher (teacher_model is None): it was trained from "
                    "pre-generated embeddings without --embedding_model. Embed the texts with the teacher that made "
                    "those embeddings and call project(embeddings, dim), or set config.teacher_model (and "
                    "teacher_pooling, teacher_max_length, query_prefix, document_prefix) to that teacher."
                )
            logger.info(f"Loading the teacher {self.config.teacher_model} to embed texts for the cascade")
            try:
                from modeling_cascade.teacher import Teacher
            except ImportError:  # this file was loaded from a saved folder (trust_remote_code) without the package
                teacher = load_sentence_transformer(
                    self.config.teacher_model,
                    revision=self.config.teacher_revision,
                    pooling=self.config.teacher_pooling,
                    max_length=self.config.teacher_max_length,
                    device=str(device),
                )
            else:
                teacher = Teacher.from_config(self.config, device=str(device)).model
            self._teacher_cache["model"] = teacher
        elif teacher.device != device:
            teacher.to(device)
        return teacher
