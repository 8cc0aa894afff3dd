"""Does an IVF first stage earn a place in `CascadeIndex`? recall@10 of IVF-Flat over a 128-dim first stage, its
shortlist re-scored with the full vectors, on the synthetic 1M set of `search.py` and on real queries.

    python benchmarks/ivf_probe.py                     # both sets, ~6 min on 2 cores
    python benchmarks/ivf_probe.py --datasets scifact_sentences

- `synthetic-1m`: `search.py`'s 1,000,000 x 768 rows (a KDE of the SciFact mpnet corpus) and 300 held-out rows of
  the same distribution as queries.
- `scifact_sentences`: the 49,562 sentence passages of SciFact (all-MiniLM-L6-v2) searched with the 1,109 real
  claims, which are not drawn from the passages' distribution.

Uncentred PCA-128 (fitted on a sample of the corpus) stands in for a cascade head, as in issue 24's first probe; the
flat and HNSW (M 32, efConstruction 40, `CascadeIndex`'s defaults) first stages are printed beside IVF for reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import recall_at, shared_file, synthetic  # noqa: E402


DIM = 128
K = 10


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length corpus and queries of a data set."""
    if name == "synthetic-1m":
        rows = synthetic(1_000_000 + 300, seed=0)
        return rows[:-300], rows[-300:]
    corpus = np.load(shared_file("embeddings/scifact_sentences_all-MiniLM-L6-v2.npy")).astype(np.float32)
    queries = np.load(shared_file("embeddings/scifact_queries_all-MiniLM-L6-v2.npy")).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return corpus, queries


def rescore(corpus: np.ndarray, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The top `K` of each query's candidates by full-vector inner product."""
    return np.stack(
        [row[np.argsort(-(corpus[row] @ query))[:K]] for row, query in zip(candidates, queries, strict=True)]
    )


def probe(name: str) -> None:
    corpus, queries = load(name)
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    truth = exact.search(queries, K)[1]
    del exact
    sample = corpus[np.random.default_rng(0).choice(len(corpus), min(len(corpus), 50_000), replace=False)]
    projection = np.linalg.svd(sample, full_matrices=False)[2][:DIM].T
    small = corpus @ projection
    small /= np.linalg.norm(small, axis=1, keepdims=True)
    small_queries = queries @ projection
    small_queries /= np.linalg.norm(small_queries, axis=1, keepdims=True)
    print(f"\n{name}: {len(corpus):,} x {corpus.shape[1]}, {len(queries)} queries, first stage {DIM} dims")
    print("| first stage | setting | build s | recall@10 shortlist 100 | shortlist 200 | QPS (100) |")
    print("|---|---|---|---|---|---|")

    def row(stage: str, setting: str, index: faiss.Index, build: float, params=None) -> None:
        recalls, seconds = [], 0.0
        for keep in (100, 200):
            start = time.perf_counter()
            found = rescore(corpus, queries, index.search(small_queries, keep, params=params)[1])
            seconds = seconds or time.perf_counter() - start  # QPS at shortlist 100
            recalls.append(recall_at(found, truth, K))
        print(
            f"| {stage} | {setting} | {build:.1f} | {recalls[0]:.4f} | {recalls[1]:.4f} | {len(queries) / seconds:,.0f} |"
        )

    flat = faiss.IndexFlatIP(DIM)
    flat.add(small)
    row("flat", "exact at 128 dims", flat, 0.0)
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(small)
    build = time.perf_counter() - start
    row("hnsw", "M 32, efC 40, efSearch 200", hnsw, build, faiss.SearchParametersHNSW(efSearch=200))
    for lists in sorted({2 ** round(np.log2(np.sqrt(len(corpus)))), 2 ** round(np.log2(4 * np.sqrt(len(corpus))))}):
        start = time.perf_counter()
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, lists, faiss.METRIC_INNER_PRODUCT)
        ivf.train(small[np.random.default_rng(1).choice(len(small), min(len(small), 64 * lists), replace=False)])
        ivf.add(small)
        build = time.perf_counter() - start
        for probes in (8, 16, 32, 64):
            row("ivf", f"IVF{lists},Flat nprobe {probes}", ivf, build, faiss.SearchParametersIVF(nprobe=probes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="synthetic-1m,scifact_sentences")
    for name in parser.parse_args().datasets.split(","):
        probe(name)


if __name__ == "__main__":
    main()
