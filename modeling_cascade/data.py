"""The corpus: documents from Common Corpus, local files, any `datasets` dataset, or the built-in python-docs corpus.

Every source goes through one path: `datasets` opens it as a stream (`load_dataset_builder(...).as_streaming_dataset`,
what `load_dataset(..., streaming=True)` does), rows with an empty text are dropped and the filters (`--collection`,
`--languages`, `--min_token_count`) applied while reading, reading stops once `num_samples + shuffle_buffer_size`
documents have passed, and those are materialised once as an Arrow-backed `datasets.Dataset`, cached under a
fingerprint of the source (Hub revision, or local files with their modification times) and of the filters. The
`num_samples` documents are then drawn from them at random with `--seed`, in corpus order. A local Parquet file in
the Common Corpus schema therefore exercises exactly the code that streams `PleIAs/common_corpus` from the Hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from datasets.exceptions import DatasetGenerationError
from datasets.fingerprint import Hasher
from transformers.utils import logging

from .offline import ensure_hub_or_offline, hub_unreachable_error, is_offline
from .python_docs import python_docs_dataset, python_docs_fingerprint


logger = logging.get_logger(__name__)

COMMON_CORPUS = "PleIAs/common_corpus"
PYTHON_DOCS = "python-docs"
COLLECTIONS = ("OpenScience", "OpenSource", "OpenCulture", "OpenGovernment", "OpenWeb", "OpenSemantic")
# File suffix -> the `datasets` packaged builder that reads it (.txt: one document per line).
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}
DEFAULT_SHUFFLE_BUFFER_SIZE = 10_000


class CorpusError(ValueError):
    """The corpus cannot be used as given: the message names the file, column or filter at fault."""


@dataclass(frozen=True)
class CorpusFilters:
    """Which documents to keep, on the Common Corpus columns `collection`, `language` and `token_count`.

    Args:
        collection (`str`, *optional*): Keep one collection (e.g. `"OpenScience"`).
        languages (`tuple[str, ...]`, defaults to `()`): Keep these language codes (case-insensitive); all if empty.
        min_token_count (`int`, defaults to 0): Keep documents with at least this many tokens.

    Example:

    >>> keep = CorpusFilters(collection="OpenWeb", languages=("en",), min_token_count=100)
    >>> keep({"collection": "OpenWeb", "language": "en", "token_count": 250})
    True
    """

    collection: str | None = None
    languages: tuple[str, ...] = ()
    min_token_count: int = 0
    _language_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_language_set", frozenset(language.lower() for language in self.languages))
        if self.min_token_count < 0:
            raise CorpusError(f"--min_token_count must be >= 0, got {self.min_token_count}.")

    def required_columns(self) -> dict[str, str]:
        """Column -> the flag that needs it."""
        columns = {}
        if self.collection:
            columns["collection"] = "--collection"
        if self._language_set:
            columns["language"] = "--languages"
        if self.min_token_count:
            columns["token_count"] = "--min_token_count"
        return columns

    def describe(self) -> str:
        """The active filters as the flags that set them, for logs and errors."""
        parts = []
        if self.collection:
            parts.append(f"--collection {self.collection}")
        if self.languages:
            parts.append(f"--languages {','.join(self.languages)}")
        if self.min_token_count:
            parts.append(f"--min_token_count {self.min_token_count}")
        return " ".join(parts) or "no filters"

    def __call__(self, row: dict) -> bool:
        if self.collection and row["collection"] != self.collection:
            return False
        if self._language_set and str(row["language"]).lower() not in self._language_set:
            return False
        return not self.min_token_count or (row["token_count"] or 0) >= self.min_token_count


def select_subset(dataset: datasets.Dataset, num_samples: int | None, seed: int) -> datasets.Dataset:
    """Draw `num_samples` rows at random with `seed`, kept in corpus order; all rows when there are not more.

    Args:
        dataset (`datasets.Dataset`): The documents to draw from.
        num_samples (`int`, *optional*): How many to keep; `None` keeps all.
        seed (`int`): Seed of the draw (the same seed gives the same rows).
    """
    if num_samples is None or num_samples >= dataset.num_rows:
        return dataset
    indices = np.sort(np.random.default_rng(seed).choice(dataset.num_rows, size=num_samples, replace=False))
    return dataset.select(indices)


def python_docs_corpus(num_samples: int | None = None, seed: int = 42) -> datasets.Dataset:
    """The standard library's documentation as a `datasets.Dataset` in the Common Corpus schema.

    Rows: one per `help()` topic, module, public class and public function or method with a docstring of at least
    four words (collection "OpenSource", license "PSF-2.0", language "en"; `token_count` is round(word_count * 1.3),
    the approximation the Common Corpus sample uses). The result is deterministic for a given Python version and cached
    by `datasets`, so later calls load it in milliseconds.

    Args:
        num_samples (`int`, *optional*): Keep this many rows, drawn at random with `seed` and kept in corpus order;
            all rows when `None` or larger than the corpus.
        seed (`int`, defaults to 42): Seed of the draw.

    Returns:
        `datasets.Dataset` with columns identifier, collection, open_type, license, date, title, creator, language,
        language_type, word_count, token_count, text.

    Example:

    >>> corpus = python_docs_corpus(num_samples=100)
    >>> corpus.num_rows, corpus[0]["collection"], corpus[0]["license"]
    (100, 'OpenSource', 'PSF-2.0')
    """
    return select_subset(python_docs_dataset(), num_samples, seed)


@dataclass(frozen=True)
class CorpusSource:
    """Where the documents come from, resolved from `--dataset_name` into what `datasets` needs to open it.

    Args:
        name (`str`): What the user asked for (Hub id, path, or `python-docs`).
        builder (`str`): The Hub id or packaged builder (`json`, `parquet`, `csv`, `text`) `datasets` loads.
        data_files (`tuple[str, ...]`, defaults to `()`): Local files, for a packaged builder.
        config_name (`str`, *optional*): Dataset configuration (Hub datasets).
        revision (`str`, *optional*): Hub revision.
        split (`str`, defaults to `"train"`): Split to read.
    """

    name: str
    builder: str
    data_files: tuple[str, ...] = ()
    config_name: str | None = None
    revision: str | None = None
    split: str = "train"

    @property
    def is_python_docs(self) -> bool:
        return self.builder == PYTHON_DOCS

    @property
    def is_local(self) -> bool:
        return bool(self.data_files)

    def open(self) -> tuple[datasets.IterableDataset, str]:
        """The documents as a stream, and a fingerprint of the source data (changes when the data does)."""
        if self.is_python_docs:
            return python_docs_dataset().to_iterable_dataset(), python_docs_fingerprint()
        builder = datasets.load_dataset_builder(
            self.builder,
            self.config_name,
            data_files=list(self.data_files) or None,
            revision=self.revision,
        )
        fingerprint = Hasher.hash([builder.name, builder.config_id, builder.hash, self.split])
        return builder.as_streaming_dataset(split=self.split), fingerprint


def _local_files(path: Path) -> tuple[str, tuple[str, ...]]:
    """The builder and sorted files for a local file or a folder of files of one supported type."""
    supported = ", ".join(FILE_BUILDERS)
    if path.is_file():
        if path.suffix not in FILE_BUILDERS:
            raise CorpusError(f"Corpus file {str(path)!r} has an unsupported type {path.suffix!r}; use {supported}.")
        files = [path]
    else:
        files = sorted(
            file
            for file in path.rglob("*")
            if file.is_file() and file.suffix in FILE_BUILDERS and not any(part.startswith(".") for part in file.parts)
        )
        if not files:
            raise CorpusError(f"Corpus folder {str(path)!r} holds no {supported} files.")
        suffixes = sorted({FILE_BUILDERS[file.suffix] for file in files})
        if len(suffixes) > 1:
            raise CorpusError(
                f"Corpus folder {str(path)!r} mixes file types ({', '.join(suffixes)}); keep one type per folder."
            )
    for file in files:
        if not os.access(file, os.R_OK):
            raise CorpusError(f"Corpus file {str(file)!r} cannot be read (permission denied).")
        if file.stat().st_size == 0:
            raise CorpusError(f"Corpus file {str(file)!r} is empty: it holds no documents.")
    return FILE_BUILDERS[files[0].suffix], tuple(str(file.resolve()) for file in files)


def resolve_corpus_source(
    dataset_name: str | None,
    dataset_config_name: str | None = None,
    dataset_revision: str | None = None,
    split: str = "train",
) -> CorpusSource:
    """Turn `--dataset_name` into a [`CorpusSource`]; without a name, Common Corpus (python-docs when offline).

    A Hub dataset needs the Hub or the local cache: when the Hub cannot be reached, the default (Common Corpus) falls
    back to the built-in python-docs corpus with a warning, while a dataset the user named fails at once with a
    [`HubUnreachableError`] naming the offline options.
    """
    name = dataset_name or COMMON_CORPUS
    if name == PYTHON_DOCS:
        return CorpusSource(name=name, builder=PYTHON_DOCS)
    path = Path(name).expanduser()
    if path.exists():
        builder, files = _local_files(path)
        return CorpusSource(name=name, builder=builder, data_files=files, split="train")
    if path.suffix in FILE_BUILDERS or name.startswith((".", "/", "~")):
        raise CorpusError(f"Corpus file or folder {name!r} does not exist.")
    source = CorpusSource(
        name=name, builder=name, config_name=dataset_config_name, revision=dataset_revision, split=split
    )
    if ensure_hub_or_offline():
        return source
    try:
        datasets.load_dataset_builder(name, dataset_config_name, revision=dataset_revision)
    except (ConnectionError, FileNotFoundError) as error:
        if dataset_name is not None:
            raise hub_unreachable_error("dataset", name) from error
        logger.warning(
            f"{name} cannot be reached (no Hub access, not cached): using the built-in corpus instead, the Python "
            f"standard library documentation (--dataset_name {PYTHON_DOCS})."
        )
        return CorpusSource(name=PYTHON_DOCS, builder=PYTHON_DOCS)
    return source


def _check_columns(stream: datasets.IterableDataset, source: CorpusSource, text_column: str, filters: CorpusFilters):
    """Raise a [`CorpusError`] naming the column when the text column or a filter's column is missing."""
    columns = stream.column_names
    if columns is None:
        first = next(iter(stream.take(1)), None)
        if first is None:
            raise CorpusError(f"Corpus {source.name!r} holds no documents.")
        columns = list(first)
    if not columns:
        raise CorpusError(f"Corpus {source.name!r} holds no documents.")
    if text_column not in columns:
        raise CorpusError(
            f"Corpus {source.name!r} has no text column {text_column!r} (columns: {columns}); "
            "pass --text_column with the column that holds the documents."
        )
    for column, flag in filters.required_columns().items():
        if column not in columns:
            raise CorpusError(
                f"{flag} filters on a {column!r} column, which corpus {source.name!r} lacks (columns: {columns}); "
                f"drop {flag} or use a corpus in the Common Corpus schema."
            )


def _filtered_documents(
    stream: datasets.IterableDataset, source_name: str, text_column: str, filters: CorpusFilters, limit: int | None
) -> Iterator[dict]:
    """Rows with a non-empty text that pass `filters`, until `limit` of them; counts what it skipped."""
    kept = empty = read = 0
    for row in stream:
        read += 1
        text = row[text_column]
        if text is None or not str(text).strip():
            empty += 1
            continue
        if not filters(row):
            continue
        yield row
        kept += 1
        if limit is not None and kept >= limit:
            break
    if empty:
        logger.warning(f"Dropped {empty} documents with an empty or whitespace-only {text_column!r} (of {read} read).")
    if not kept:
        raise CorpusError(
            f"No documents left in corpus {source_name!r} after filtering ({filters.describe()}; {read} read, "
            f"{empty} with an empty or whitespace-only {text_column!r}); relax the filters or check --text_column."
        )
    logger.debug(f"Read {read} documents, kept {kept}.")


def _read_error(source: CorpusSource, error: Exception) -> CorpusError:
    """A [`CorpusError`] naming the unreadable file (found by re-reading the files one by one) or the dataset."""
    culprit = source.name
    if len(source.data_files) > 1:
        for file in source.data_files:
            try:
                for _ in datasets.load_dataset_builder(source.builder, data_files=file).as_streaming_dataset("train"):
                    pass
            except Exception:
                culprit = file
                break
    elif source.data_files:
        culprit = source.data_files[0]
    kind = f" as {source.builder}" if source.is_local else ""
    line = _first_undecodable_line(culprit) if isinstance(error, UnicodeDecodeError) else None
    if line is not None:
        return CorpusError(
            f"Could not read corpus file {culprit!r}{kind}: line {line} is not valid UTF-8 ({error}). Re-encode the "
            "file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or drop that line."
        )
    return CorpusError(f"Could not read corpus file {culprit!r}{kind}: {type(error).__name__}: {error}")


def _first_undecodable_line(path: str) -> int | None:
    """The number (from 1) of the first line of file `path` that is not valid UTF-8, or `None`."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def load_corpus(
    dataset_name: str | None = None,
    text_column: str = "text",
    filters: CorpusFilters | None = None,
    num_samples: int | None = 10_000,
    seed: int = 42,
    shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
    dataset_config_name: str | None = None,
    dataset_revision: str | None = None,
    split: str = "train",
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load, filter and sample the documents to embed.

    Args:
        dataset_name (`str`, *optional*): A Hub dataset id (default `PleIAs/common_corpus`), a local
            `.jsonl`/`.parquet`/`.csv`/`.txt` file or folder of them, or `python-docs` (the built-in corpus).
        text_column (`str`, defaults to `"text"`): Column holding the documents.
        filters (`CorpusFilters`, *optional*): Collection / languages / minimum token count.
        num_samples (`int`, *optional*, defaults to 10,000): Documents to keep; `None` keeps all that pass.
        seed (`int`, defaults to 42): Seed of the random draw of `num_samples` documents.
        shuffle_buffer_size (`int`, defaults to 10,000): Extra documents read past `num_samples` to draw from, so the
            draw is random within the first `num_samples + shuffle_buffer_size` documents that pass the filters.
        dataset_config_name (`str`, *optional*): Hub dataset configuration.
        dataset_revision (`str`, *optional*): Hub dataset revision.
        split (`str`, defaults to `"train"`): Split of a Hub dataset.
        cache_dir (`str`, *optional*): Where the filtered documents are cached (default: the `datasets` cache).

    Returns:
        `datasets.Dataset` with the source's columns; `text_column` holds no empty text.

    Raises:
        [`CorpusError`] for a missing file, unreadable file, missing column or a corpus empty after filtering;
        [`HubUnreachableError`] for a Hub dataset that is neither reachable nor cached.
    """
    filters = filters or CorpusFilters()
    source = resolve_corpus_source(dataset_name, dataset_config_name, dataset_revision, split)
    logger.info(
        "Loading Common Corpus dataset..." if source.name == COMMON_CORPUS else f"Loading corpus {source.name}..."
    )
    limit = None if num_samples is None else num_samples + shuffle_buffer_size
    try:
        stream, source_fingerprint = source.open()
        _check_columns(stream, source, text_column, filters)
        documents = datasets.Dataset.from_generator(
            _filtered_documents,
            features=stream.features,
            gen_kwargs={
                "stream": stream,
                "source_name": source.name,
                "text_column": text_column,
                "filters": filters,
                "limit": limit,
            },
            cache_dir=cache_dir,
            fingerprint=Hasher.hash(["corpus", source_fingerprint, text_column, filters.describe(), limit]),
        )
    except CorpusError:
        raise
    except StopIteration:
        raise CorpusError(f"Corpus {source.name!r} holds no documents.") from None
    except DatasetGenerationError as error:
        if isinstance(error.__cause__, CorpusError):
            raise error.__cause__ from None
        if is_offline() and isinstance(error.__cause__, ConnectionError) and not source.is_local:
            raise hub_unreachable_error("dataset", source.name) from error
        raise _read_error(source, error.__cause__ or error) from error
    except ConnectionError as error:
        if is_offline() and not source.is_local and not source.is_python_docs:
            raise hub_unreachable_error("dataset", source.name) from error
        raise
    except (OSError, ValueError) as error:
        if not source.is_local:
            raise
        raise _read_error(source, error) from error
    logger.info(f"Filtered dataset: {documents.num_rows} samples ({filters.describe()})")
    if num_samples is not None and documents.num_rows < num_samples:
        logger.warning(f"Only {documents.num_rows} documents pass the filters; --num_samples {num_samples} uses all.")
    subset = select_subset(documents, num_samples, seed)
    logger.info(f"Selected subset: {subset.num_rows} samples")
    return subset
