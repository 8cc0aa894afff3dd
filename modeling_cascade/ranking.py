"""How much of the teacher's ranking each cascade dim keeps, side by side with PCA and truncation on the same rows.

Queries are searched against a corpus at full dim (the reference) and at every reduced dim; the metrics in
`modeling_cascade.metrics` compare the two. A trained cascade is validated as a search index uses it
([`split_queries_corpus`]): held-out rows, never trained on, are the queries, and they are searched against the corpus
the index holds, the training rows included. The PCA baselines are fitted on the same training rows as the heads'
start, so every method has seen the corpus and none has seen the queries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from transformers.utils import logging

from .array_utils import normalize_rows, top_k
from .file_utils import atomic_path, save_figure
from .matrix_rows import MatrixRows, as_matrix_rows
from .metrics import (
    kendall_correlation,
    ndcg_at_k,
    overlap_at_k,
    reference_relevance,
    similarity_mse,
    spearman_correlation,
)
from .pca import PCAProjection


if TYPE_CHECKING:  # only annotations: the evaluation needs a model's `project`, not this package's model class
    from .modeling_cascade import CascadeModel


logger = logging.get_logger(__name__)

EVAL_RESULTS_FILE = "eval_results.json"
DIMS_TRADEOFF_FILE = "dims_tradeoff.png"
# Bounds on the cost of an evaluation, whatever the corpus size: held-out queries, and corpus rows searched.
MAX_QUERIES = 500
MAX_CORPUS_ROWS = 10_000
SEARCH_PROTOCOL = "held-out rows searched against the training corpus"
METHOD_LABELS = {
    "cascade": "cascade",
    "pca": "PCA (uncentred)",
    "pca_centered": "PCA (centred)",
    "truncation": "truncation",
}

# A projection maps (rows, input_dim) teacher embeddings to (rows, dim) at one of the evaluated dims.
Projection = Callable[[np.ndarray, int], np.ndarray]
# Relevance judgments of one query: corpus rows and their grades.
Judgments = tuple[Sequence[int], Sequence[float]]


def build_projections(
    model: CascadeModel | None, fit_embeddings: np.ndarray | MatrixRows, max_dim: int
) -> dict[str, Projection]:
    """The cascade and its baselines as functions of (teacher embeddings, dim).

    Args:
        model (`CascadeModel`, *optional*): The trained cascade; left out of the result when `None`.
        fit_embeddings (`np.ndarray` or [`MatrixRows`] of shape `(n, input_dim)`): Rows the PCA baselines are fitted on: the cascade's
            training rows (or the corpus, for a cascade evaluated on a new collection), never the queries.
        max_dim (`int`): Largest dim that will be asked for.
    """
    fit_rows = as_matrix_rows(fit_embeddings).normalized()  # read in blocks: the training rows may exceed RAM
    pca = PCAProjection(fit_rows, max_dim)
    pca_centered = PCAProjection(fit_rows, max_dim, centered=True)
    projections: dict[str, Projection] = {}
    if model is not None:
        projections["cascade"] = lambda embeddings, dim: model.project(embeddings, dim)
    projections["pca"] = lambda embeddings, dim: pca.transform(normalize_rows(embeddings), dim)
    projections["pca_centered"] = lambda embeddings, dim: pca_centered.transform(normalize_rows(embeddings), dim)
    projections["truncation"] = lambda embeddings, dim: normalize_rows(embeddings)[:, :dim]
    return projections


def split_queries_corpus(
    train_embeddings: np.ndarray | MatrixRows,
    val_embeddings: np.ndarray | MatrixRows,
    seed: int = 0,
    max_queries: int = MAX_QUERIES,
    max_corpus_rows: int = MAX_CORPUS_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """The validation protocol of a search index: held-out rows (at most `max_queries`) are the queries, searched
    against the corpus an index would hold, the training rows and the other held-out rows (a uniform sample of at most
    `max_corpus_rows` of them), never a query row itself.

    Raises:
        `ValueError` when there is no held-out row or no training row.
    """
    train, val = as_matrix_rows(train_embeddings), as_matrix_rows(val_embeddings)
    if len(val) < 1 or len(train) < 1:
        raise ValueError(
            f"Evaluation needs held-out rows (the queries) and training rows (the corpus), got {len(val)} and "
            f"{len(train)}."
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(val))
    query_rows, other_val_rows = np.sort(order[:max_queries]), order[max_queries:]
    candidates = len(train) + len(other_val_rows)
    picked = np.sort(rng.choice(candidates, size=min(candidates, max_corpus_rows), replace=False))
    train_rows = picked[picked < len(train)]
    val_rows = np.sort(other_val_rows[picked[picked >= len(train)] - len(train)])
    corpus = np.concatenate([train[train_rows], val[val_rows]]) if len(val_rows) else train[train_rows]
    return val[query_rows], corpus


def ranking_metrics(
    full_scores: np.ndarray,
    reduced_scores: np.ndarray,
    k: int = 10,
    judgments: Sequence[Judgments] | None = None,
    correlations: bool = True,
    full_top: np.ndarray | None = None,
) -> dict[str, float]:
    """Compare one reduced-dim score matrix with the full-dim one (rows: queries, columns: corpus rows).

    Returns `mse` (similarity MSE), `overlap@k`, `full_ranking_ndcg@k` (nDCG against the full-dim ranking),
    `spearman` and `kendall` (when `correlations`), and `ndcg@k` against `judgments` when given. `full_top` (the
    full-dim `top_k(full_scores, k)`) saves recomputing it when many reduced matrices are compared with one full one.
    """
    k = min(k, full_scores.shape[1])
    full_top = top_k(full_scores, k) if full_top is None else full_top[:, :k]
    reduced_top = top_k(reduced_scores, k)
    grades = [reference_relevance(k)] * len(full_top)
    metrics = {
        "mse": similarity_mse(reduced_scores, full_scores),
        f"overlap@{k}": overlap_at_k(reduced_top, full_top, k=k),
        f"full_ranking_ndcg@{k}": ndcg_at_k(reduced_top, full_top, grades, k=k),
    }
    if correlations:
        metrics["spearman"] = spearman_correlation(reduced_scores, full_scores)
        metrics["kendall"] = kendall_correlation(reduced_scores, full_scores)
    if judgments is not None:
        metrics[f"ndcg@{k}"] = ndcg_at_k(reduced_top, [rows for rows, _ in judgments], [g for _, g in judgments], k=k)
    return metrics


@dataclass
class EvaluationResults:
    """Per-dim metrics of the cascade and its baselines on one set of queries and corpus.

    Args:
        input_dim (`int`): The teacher's dim.
        dims (`list[int]`): Evaluated dims, largest first.
        k (`int`): Cut-off of overlap@k and nDCG@k.
        num_queries (`int`): Queries searched.
        num_documents (`int`): Corpus rows searched.
        methods (`dict[str, dict[int, dict[str, float]]]`): method -> dim -> metric name -> value.
        full_dim (`dict[str, float]`): Metrics of the full-dim teacher itself (`ndcg@k` when judgments were given).
        description (`str`): Where the queries and corpus come from.

    Example:

    >>> import numpy as np
    >>> rows = np.random.default_rng(0).normal(size=(60, 16)).astype("float32")
    >>> projections = build_projections(None, rows[:40], max_dim=8)
    >>> results = evaluate_projections(rows[40:45], rows[45:], projections, dims=[8, 4], k=5)
    >>> sorted(results.methods)
    ['pca', 'pca_centered', 'truncation']
    """

    input_dim: int
    dims: list[int]
    k: int
    num_queries: int
    num_documents: int
    methods: dict[str, dict[int, dict[str, float]]]
    full_dim: dict[str, float] = field(default_factory=dict)
    description: str = ""

    @property
    def ndcg_key(self) -> str:
        """The nDCG reported and plotted: against judgments when there were any, else against the full-dim ranking."""
        return f"ndcg@{self.k}" if f"ndcg@{self.k}" in self.full_dim else f"full_ranking_ndcg@{self.k}"

    def to_dict(self) -> dict:
        """JSON-ready dict (dims become string keys)."""
        result = asdict(self)
        result["methods"] = {
            method: {str(dim): values for dim, values in per_dim.items()} for method, per_dim in self.methods.items()
        }
        return result

    def save(self, output_dir: str | os.PathLike) -> str:
        """Write `eval_results.json` into `output_dir` atomically; return its path."""
        path = os.path.join(output_dir, EVAL_RESULTS_FILE)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def flat_metrics(self, method: str = "cascade") -> dict[str, float]:
        """`dim_<dim>_<metric>` entries of one method, as `all_results.json` holds them."""
        return {
            f"dim_{dim}_{name}": value
            for dim, values in self.methods.get(method, {}).items()
            for name, value in values.items()
        }

    def table(self, metric_names: Sequence[str] | None = None) -> list[str]:
        """A fixed-width table: one row per (metric, dim), one column per method."""
        if metric_names is None:
            metric_names = [f"overlap@{self.k}", "spearman"]
        methods = list(self.methods)
        headers = [METHOD_LABELS.get(method, method) for method in methods]
        widths = [max(len(header), 8) for header in headers]
        name_width = max(len(name) for name in metric_names)
        lines = [
            f"{'metric':<{name_width}}  {'dim':>4}  "
            + "  ".join(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True))
        ]
        for name in metric_names:
            for dim in self.dims:
                cells = []
                for method, width in zip(methods, widths, strict=True):
                    value = self.methods[method].get(dim, {}).get(name)
                    cells.append(f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}")
                lines.append(f"{name:<{name_width}}  {dim:>4}  " + "  ".join(cells))
        return lines

    def log(self) -> None:
        """Log the guide's "Similarity preservation results:" lines, then the side-by-side table."""
        logger.info("Similarity preservation results:")
        for dim, metrics in self.methods.get("cascade", {}).items():
            logger.info(
                f"Dimension {dim}: MSE={metrics['mse']:.5f}, Compression ratio={metrics['compression_ratio']:.2f}x"
            )
        logger.info(
            f"Ranking preservation ({self.description}; {self.num_queries} queries x {self.num_documents} documents):"
        )
        names = [f"overlap@{self.k}", "spearman"]
        if f"ndcg@{self.k}" in self.full_dim:
            names.append(f"ndcg@{self.k}")
            logger.info(f"Full-dim ({self.input_dim}) teacher: nDCG@{self.k}={self.full_dim[f'ndcg@{self.k}']:.4f}")
        for line in self.table(names):
            logger.info(line)

    def plot(self, output_dir: str | os.PathLike) -> str:
        """Write `dims_tradeoff.png`: overlap@k and nDCG@k against dims, one line per method; return its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [(f"overlap@{self.k}", f"overlap@{self.k} with full-dim search", 1.0)]
        if self.ndcg_key.startswith("ndcg"):
            panels.append((self.ndcg_key, f"nDCG@{self.k} (relevance judgments)", self.full_dim[self.ndcg_key]))
        else:
            panels.append((self.ndcg_key, f"nDCG@{self.k} against the full-dim ranking", 1.0))
        figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for axis, (name, title, full_value) in zip(axes, panels, strict=True):
            for method, per_dim in self.methods.items():
                dims = [dim for dim in self.dims if name in per_dim.get(dim, {})]
                axis.plot(
                    dims, [per_dim[dim][name] for dim in dims], marker="o", label=METHOD_LABELS.get(method, method)
                )
            axis.axhline(full_value, color="gray", linestyle="--", label=f"full dim ({self.input_dim})")
            axis.set_xscale("log", base=2)
            axis.set_xticks(self.dims, [str(dim) for dim in self.dims])
            axis.set_xlabel("dims")
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
        axes[0].legend()
        figure.suptitle(
            f"{self.description}: {self.num_queries} queries x {self.num_documents} documents", fontsize=10
        )
        figure.tight_layout()
        path = os.path.join(output_dir, DIMS_TRADEOFF_FILE)
        return save_figure(figure, path)


def evaluate_projections(
    queries: np.ndarray,
    corpus: np.ndarray,
    projections: dict[str, Projection],
    dims: Sequence[int],
    k: int = 10,
    judgments: Sequence[Judgments] | None = None,
    correlations: bool = True,
    description: str = "",
) -> EvaluationResults:
    """Search `queries` against `corpus` at full dim and with every projection at every dim, and compare.

    Args:
        queries (`np.ndarray` of shape `(q, input_dim)`): Teacher embeddings of the queries.
        corpus (`np.ndarray` of shape `(n, input_dim)`): Teacher embeddings of the documents.
        projections (`dict[str, Projection]`): Methods to compare, e.g. from [`build_projections`].
        dims (`Sequence[int]`): Dims to evaluate.
        k (`int`, defaults to 10): Cut-off of overlap@k and nDCG@k (at most the corpus size).
        judgments (`Sequence[Judgments]`, *optional*): Per query, the relevant corpus rows and their grades.
        correlations (`bool`, defaults to `True`): Also compute Spearman and Kendall over each query's whole row.
        description (`str`): Where the queries and corpus come from (shown in the log and the plot).
    """
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"Queries have dim {queries.shape[1]} but the corpus has dim {corpus.shape[1]}.")
    if judgments is not None and len(judgments) != len(queries):
        raise ValueError(f"Got judgments for {len(judgments)} queries but {len(queries)} queries.")
    k = min(k, len(corpus))
    dims = sorted(dims, reverse=True)
    full_scores = normalize_rows(queries) @ normalize_rows(corpus).T
    full_top = top_k(full_scores, k)
    full_dim = {}
    if judgments is not None:
        full_dim[f"ndcg@{k}"] = ndcg_at_k(full_top, [rows for rows, _ in judgments], [g for _, g in judgments], k=k)
    methods: dict[str, dict[int, dict[str, float]]] = {}
    for method, project in projections.items():
        methods[method] = {}
        for dim in dims:
            reduced_scores = normalize_rows(project(queries, dim)) @ normalize_rows(project(corpus, dim)).T
            metrics = ranking_metrics(
                full_scores, reduced_scores, k=k, judgments=judgments, correlations=correlations, full_top=full_top
            )
            methods[method][dim] = {"compression_ratio": queries.shape[1] / dim, **metrics}
    return EvaluationResults(
        input_dim=int(queries.shape[1]),
        dims=list(dims),
        k=k,
        num_queries=len(queries),
        num_documents=len(corpus),
        methods=methods,
        full_dim=full_dim,
        description=description,
    )


def evaluate_cascade(
    model: CascadeModel,
    train_embeddings: np.ndarray | MatrixRows,
    val_embeddings: np.ndarray | MatrixRows,
    k: int = 10,
    seed: int = 0,
) -> EvaluationResults:
    """Evaluate a trained cascade next to PCA (fitted on `train_embeddings`) and truncation as a search index uses
    it: held-out queries searched against the training corpus ([`split_queries_corpus`]).

    Args:
        model (`CascadeModel`): The trained cascade.
        train_embeddings (`np.ndarray` of shape `(n, input_dim)`): The training rows (the baselines are fitted here).
        val_embeddings (`np.ndarray` of shape `(m, input_dim)`): Held-out rows, never seen in training.
        k (`int`, defaults to 10): Cut-off of overlap@k and nDCG@k.
        seed (`int`, defaults to 0): Seed of the held-out sample and split.
    """
    queries, corpus = split_queries_corpus(train_embeddings, val_embeddings, seed=seed)
    projections = build_projections(model, train_embeddings, model.config.target_dims[0])
    return evaluate_projections(
        queries, corpus, projections, model.config.target_dims, k=k, description=SEARCH_PROTOCOL
    )


def held_out_ranking_metrics(
    model: CascadeModel, queries: np.ndarray, corpus: np.ndarray, k: int = 10
) -> dict[str, float]:
    """The cascade's ranking metrics per dim on held-out rows, as flat `dim_<dim>_<metric>` entries: what the
    Trainer's evaluation reports next to `eval_loss` (`eval_dim_64_overlap@10`, ...).

    Args:
        model (`CascadeModel`): The cascade being trained.
        queries, corpus (`np.ndarray`): Held-out queries and the corpus they search, from [`split_queries_corpus`].
        k (`int`, defaults to 10): Cut-off of overlap@k and nDCG@k.
    """
    results = evaluate_projections(
        queries, corpus, {"cascade": model.project}, model.config.target_dims, k=k, correlations=False
    )
    return {name: value for name, value in results.flat_metrics().items() if not name.endswith("compression_ratio")}
