"""Retrieval test collections in the BEIR layout: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from transformers.utils import logging


logger = logging.get_logger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Rows of a JSON-lines file, each checked for the `required` keys; errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"BEIR file not found: {str(path)!r}.")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{str(path)!r} line {line_number} is not valid JSON ({error.msg}).") from None
            missing = [key for key in required if key not in row]
            if not isinstance(row, dict) or missing:
                raise ValueError(f"{str(path)!r} line {line_number} lacks the key(s) {missing or list(required)}.")
            rows.append(row)
    if not rows:
        raise ValueError(f"{str(path)!r} holds no rows.")
    return rows


def _unique_ids(rows: list[dict], path: Path) -> list[str]:
    ids = [str(row["_id"]) for row in rows]
    if len(set(ids)) != len(ids):
        seen, duplicate = set(), None
        for identifier in ids:
            if identifier in seen:
                duplicate = identifier
                break
            seen.add(identifier)
        raise ValueError(f"{str(path)!r} lists the _id {duplicate!r} more than once.")
    return ids


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels `.tsv` (header, then query-id, corpus-id, score) into `{query_id: {corpus_id: score}}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BEIR qrels file not found: {str(path)!r}.")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader, None)
        for line_number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != 3:
                raise ValueError(
                    f"{str(path)!r} line {line_number} has {len(fields)} column(s); qrels lines are "
                    "query-id<TAB>corpus-id<TAB>score."
                )
            query_id, corpus_id, score = fields
            try:
                qrels.setdefault(query_id, {})[corpus_id] = int(score)
            except ValueError:
                raise ValueError(f"{str(path)!r} line {line_number}: score {score!r} is not an integer.") from None
    if not qrels:
        raise ValueError(f"{str(path)!r} holds no relevance judgments.")
    return qrels


@dataclass
class BeirDataset:
    """A BEIR test collection held in memory, rows in file order (the order precomputed embeddings follow).

    Args:
        corpus_ids (`list[str]`): Document ids in `corpus.jsonl` order.
        corpus_titles (`list[str]`): Document titles (empty where absent).
        corpus_texts (`list[str]`): Document bodies.
        query_ids (`list[str]`): Query ids in `queries.jsonl` order.
        query_texts (`list[str]`): Query texts.
        qrels (`dict[str, dict[str, int]]`): Judgments of the split: `{query_id: {corpus_id: grade}}`.

    Example:

    >>> data = BeirDataset.load("path/to/scifact")  # doctest: +SKIP
    >>> len(data.corpus_ids), len(data.judged_query_rows())  # doctest: +SKIP
    (5183, 300)
    """

    corpus_ids: list[str]
    corpus_titles: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]

    @classmethod
    def load(cls, folder: str | os.PathLike, split: str = "test") -> BeirDataset:
        """Read `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv` from `folder`.

        Raises:
            `FileNotFoundError` naming a missing file; `ValueError` naming the file and line of a malformed row, or
            qrels whose query ids are absent from `queries.jsonl`.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--beir folder not found: {str(folder)!r}.")
        corpus_rows = _read_jsonl(folder / CORPUS_FILE, ("_id", "text"))
        query_rows = _read_jsonl(folder / QUERIES_FILE, ("_id", "text"))
        qrels = read_qrels(folder / QRELS_DIR / f"{split}.tsv")
        query_ids = _unique_ids(query_rows, folder / QUERIES_FILE)
        unknown_queries = sorted(set(qrels) - set(query_ids))
        if unknown_queries:
            raise ValueError(
                f"{str(folder / QRELS_DIR / f'{split}.tsv')!r} judges {len(unknown_queries)} query id(s) absent from "
                f"{QUERIES_FILE}, e.g. {unknown_queries[0]!r}."
            )
        corpus_ids = _unique_ids(corpus_rows, folder / CORPUS_FILE)
        unknown_documents = {doc for judged in qrels.values() for doc in judged} - set(corpus_ids)
        if unknown_documents:
            logger.warning(f"{len(unknown_documents)} judged document id(s) are absent from {CORPUS_FILE}.")
        logger.info(
            f"Loaded BEIR {folder.name}: {len(corpus_ids)} documents, {len(query_ids)} queries, {len(qrels)} judged"
        )
        return cls(
            corpus_ids=corpus_ids,
            corpus_titles=[str(row.get("title") or "") for row in corpus_rows],
            corpus_texts=[str(row["text"]) for row in corpus_rows],
            query_ids=query_ids,
            query_texts=[str(row["text"]) for row in query_rows],
            qrels=qrels,
        )

    def documents(self) -> list[str]:
        """Texts to embed, as BEIR does: `title + " " + text`, stripped (just the text when there is no title)."""
        return [f"{title} {text}".strip() for title, text in zip(self.corpus_titles, self.corpus_texts, strict=True)]

    def judged_query_rows(self) -> list[int]:
        """Rows (in `queries.jsonl` order) of the queries the qrels judge: the ones retrieval metrics count."""
        return [row for row, query_id in enumerate(self.query_ids) if query_id in self.qrels]
