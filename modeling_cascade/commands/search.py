"""`cascade-search` (`python -m modeling_cascade.search`): build or load a `CascadeIndex`, search it, print the hits.

    python -m modeling_cascade.search --model_dir models/distillation/best_model \
        --corpus_embeddings corpus.npy --query_embeddings queries.npy --k 5
    python -m modeling_cascade.search --model_dir models/common_corpus/best_model --corpus_file docs.jsonl \
        --queries "How do I parse JSON?" "What is a context manager?" --save_index indexes/docs
    python -m modeling_cascade.search --index_dir indexes/docs --corpus_file docs.jsonl \
        --qdrant_url http://localhost:6333 --qdrant_collection docs --queries "How do I parse JSON?"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..file_utils import load_embeddings
from ..index import FIRST_STAGES, CascadeIndex, SearchResult
from ..index_storage import DTYPES
from ..modeling_cascade import CascadeModel
from ..qdrant import QdrantCascadeIndex
from .cli_utils import CommandParser, parse_command_line, run_reporting_command, split_list


@dataclass
class SearchArguments:
    """Command-line arguments of `python -m modeling_cascade.search`."""

    model_dir: str | None = field(default=None, metadata={"help": "A trained cascade (e.g. output_dir/best_model)."})
    index_dir: str | None = field(
        default=None, metadata={"help": "A saved CascadeIndex to search (instead of building one)."}
    )
    corpus_embeddings: str | None = field(default=None, metadata={"help": "Teacher embeddings of the corpus (.npy)."})
    corpus_file: str | None = field(
        default=None,
        metadata={"help": "Corpus texts (.jsonl/.json/.csv/.parquet/.txt): embedded by the teacher unless "
                  "--corpus_embeddings is given (then its rows, in the same order, only label the hits)."},
    )  # fmt: skip
    text_column: str = field(default="text", metadata={"help": "Column of --corpus_file holding the texts."})
    queries: list[str] | None = field(
        default=None,
        metadata={"help": 'Query texts, embedded by the teacher: "q one,q two", or "q one" "q two" (commas kept).'},
    )
    query_embeddings: str | None = field(default=None, metadata={"help": "Teacher embeddings of the queries (.npy)."})
    teacher: str | None = field(
        default=None, metadata={"help": "Teacher for texts (Hub id, folder or packaged name); default: the cascade's."}
    )
    k: int = field(default=10, metadata={"help": "Hits per query."})
    stages: str | None = field(
        default=None, metadata={"help": "Comma-separated stage dims, e.g. 128,768 (default: automatic)."}
    )
    shortlist: str | None = field(
        default=None, metadata={"help": "Comma-separated shortlist sizes, one per stage but the last."}
    )
    dtype: str = field(default="float32", metadata={"help": "Storage of the vectors.", "choices": list(DTYPES)})
    first_stage: str = field(default="auto", metadata={"help": "First-stage search.", "choices": list(FIRST_STAGES)})
    save_index: str | None = field(default=None, metadata={"help": "Save the built index to this folder."})
    qdrant_url: str | None = field(
        default=None,
        metadata={"help": "Search through a Qdrant server or cluster (e.g. http://localhost:6333): the index is written "
                  "to --qdrant_collection unless it is there, and only the cascade is needed when it is."},
    )  # fmt: skip
    qdrant_path: str | None = field(
        default=None, metadata={"help": "Like --qdrant_url, with Qdrant's embedded local mode storing this folder."}
    )
    qdrant_api_key: str | None = field(default=None, metadata={"help": "API key of the --qdrant_url server."})
    qdrant_collection: str = field(default="cascade", metadata={"help": "The Qdrant collection of the index."})
    qdrant_recreate: bool = field(
        default=False,
        metadata={"help": "Delete an existing --qdrant_collection and write the index anew (by default an existing "
                  "collection is only resumed, and refused when it holds another index)."},
    )  # fmt: skip
    qdrant_shard_number: int | None = field(
        default=None, metadata={"help": "Shards of a new collection on a Qdrant cluster (the server's default: 1)."}
    )
    qdrant_replication_factor: int | None = field(
        default=None, metadata={"help": "Copies of each shard of a new collection on a Qdrant cluster."}
    )
    mmap: bool = field(
        default=False,
        metadata={
            "help": "With --index_dir: keep the stored vectors memory-mapped on disk (RAM for the first stage)."
        },
    )


def parse_int_list(text: str | None, flag: str) -> list[int] | None:
    """Parse "128,768" into ints, or raise a `ValueError` naming `flag` and the bad entry."""
    if text is None:
        return None
    try:
        return [int(entry) for entry in split_list(text)]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}.") from None


def read_texts(path: str, text_column: str) -> list[str]:
    """The `text_column` of a local corpus file, read with `datasets`."""
    from datasets import load_dataset

    from ..data import FILE_BUILDERS

    builder = FILE_BUILDERS.get(Path(path).suffix)
    if builder is None:
        raise ValueError(f"--corpus_file {path!r}: expected one of {sorted(FILE_BUILDERS)}.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--corpus_file {path!r} not found.")
    dataset = load_dataset(builder, data_files=str(path), split="train")
    if text_column not in dataset.column_names:
        raise ValueError(
            f"--corpus_file {path!r} has no column {text_column!r} (columns: {dataset.column_names}); set --text_column."
        )
    texts = dataset[text_column]
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"--corpus_file {path!r}, row {row}: the {text_column!r} value is {text!r}, not a text; every row "
                "must hold a non-empty text (rows are the index's documents, in order)."
            )
    return list(texts)


def given_qdrant_write_flags(args: SearchArguments) -> list[str]:
    """The flags given that shape how an index is written to Qdrant (meaningless where none is written)."""
    flags = {
        "--qdrant_recreate": args.qdrant_recreate,
        "--qdrant_shard_number": args.qdrant_shard_number,
        "--qdrant_replication_factor": args.qdrant_replication_factor,
    }
    return [flag for flag, value in flags.items() if value not in (None, False)]


def qdrant_client(args: SearchArguments):
    """The Qdrant client the flags name (a server with --qdrant_url, local mode with --qdrant_path), or `None`."""
    if args.qdrant_url is not None and args.qdrant_path is not None:
        raise ValueError("Give at most one of --qdrant_url (a server) and --qdrant_path (local mode).")
    if args.qdrant_api_key is not None and args.qdrant_url is None:
        raise ValueError("--qdrant_api_key needs --qdrant_url (local mode has no API key).")
    for flag, value in (("--qdrant_shard_number", args.qdrant_shard_number),
                        ("--qdrant_replication_factor", args.qdrant_replication_factor)):  # fmt: skip
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}.")
    if args.qdrant_url is None and args.qdrant_path is None:
        given = given_qdrant_write_flags(args)
        if given:
            raise ValueError(f"{', '.join(given)} needs --qdrant_url or --qdrant_path (the index is written there).")
        return None
    from ..qdrant import import_qdrant_client

    QdrantClient = import_qdrant_client().QdrantClient
    if args.qdrant_path is not None:
        return QdrantClient(path=args.qdrant_path)
    return QdrantClient(url=args.qdrant_url, api_key=args.qdrant_api_key)


def main(argv: list[str] | None = None) -> SearchResult:
    """Build (or load) an index, search the queries and print the hits; returns them."""
    (args,) = parse_command_line(CommandParser(SearchArguments), argv)
    client = qdrant_client(args)
    try:
        return search_and_print(args, client)
    finally:
        if client is not None:
            client.close()


def search_and_print(args: SearchArguments, client) -> SearchResult:
    """Build, load or open (in Qdrant, with `client`) the index the arguments name, search it and print the hits."""
    args.queries = split_list(args.queries) if args.queries is not None else None
    if args.queries == []:
        raise ValueError("--queries holds no query text.")
    if (args.model_dir is None) == (args.index_dir is None):
        raise ValueError("Give exactly one of --model_dir (build an index from a cascade) and --index_dir (load one).")
    if (args.queries is None) == (args.query_embeddings is None):
        raise ValueError("Give exactly one of --queries (texts) and --query_embeddings (.npy).")
    teacher = None
    if args.teacher is not None:
        from ..teacher import Teacher

        teacher = Teacher(args.teacher)
    texts = read_texts(args.corpus_file, args.text_column) if args.corpus_file else None
    if args.index_dir is not None:
        index = CascadeIndex.load(args.index_dir, teacher=teacher, mmap=args.mmap)
    else:
        cascade = CascadeModel.from_pretrained(args.model_dir)
        options = {
            "stages": parse_int_list(args.stages, "--stages"),
            "dtype": args.dtype,
            "first_stage": args.first_stage,
        }
        if args.corpus_embeddings is not None:
            corpus = load_embeddings(
                args.corpus_embeddings, expected_dim=cascade.config.input_dim, expected_by="the cascade's input_dim"
            )
            index = CascadeIndex(cascade, corpus, teacher=teacher, **options)
        elif texts is not None:
            index = CascadeIndex.from_texts(cascade, texts, teacher=teacher, **options)
        elif client is not None and args.save_index is None:
            unused = given_qdrant_write_flags(args)
            if unused:
                raise ValueError(
                    f"{', '.join(unused)} lay out the Qdrant collection an index is written to, but no corpus is "
                    "given (--corpus_embeddings or --corpus_file): the existing collection is only searched."
                )
            index = QdrantCascadeIndex(client, args.qdrant_collection, cascade, teacher=teacher)
        else:
            raise ValueError(
                "--model_dir needs a corpus: --corpus_embeddings (.npy) or --corpus_file (texts), unless a Qdrant "
                "collection already holds it (--qdrant_url or --qdrant_path, without --save_index)."
            )
    if texts is not None and len(texts) != len(index):
        raise ValueError(f"--corpus_file has {len(texts)} texts, but the index holds {len(index)} documents.")
    if args.save_index:
        index.save(args.save_index)
    if client is not None and isinstance(index, CascadeIndex):
        index = index.to_qdrant(
            client,
            args.qdrant_collection,
            texts=texts,
            recreate=args.qdrant_recreate,
            shard_number=args.qdrant_shard_number,
            replication_factor=args.qdrant_replication_factor,
        )
    queries = args.queries
    if args.query_embeddings is not None:
        queries = load_embeddings(
            args.query_embeddings, expected_dim=index.cascade.config.input_dim, expected_by="the cascade's input_dim"
        )
    result = index.search(queries, k=args.k, shortlist=parse_int_list(args.shortlist, "--shortlist"))
    print(f"{index!r}")
    for row, (ids, scores) in enumerate(zip(result.ids, result.scores, strict=True)):
        print(f"\nQuery {row + 1}: {args.queries[row] if args.queries else f'row {row} of {args.query_embeddings}'}")
        for rank, (doc, score) in enumerate(zip(ids, scores, strict=True), start=1):
            label = " ".join(texts[doc].split())[:100] if texts is not None else ""
            print(f"  {rank:>2}. doc {doc:<8} {score:.4f}  {label}")
    return result


def cli() -> None:
    """Console entry point: progress logs on stderr, hits on stdout; bad input exits with status 2 and an `error:` line."""
    run_reporting_command(main)
