"""Each dim of a cascade as a plain `SentenceTransformer`: the teacher's own modules, the head as a `Dense` module and a
`Normalize`, so `SentenceTransformer("user/my-cascade-64d")` loads it anywhere sentence-transformers is used (vector
stores, RAG frameworks, MTEB), with no custom code and no `trust_remote_code`.

A linear head is exactly a `Dense` module (identity activation, no bias) after the teacher's L2-normalised output; a
chained cascade's heads compose into one matrix; a `nested` cascade exports once, at its widest dim, and
`truncate_dim` selects a stage. Heads with an MLP are refused: no built-in module computes them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers.modelcard import make_markdown_table
from transformers.utils import logging

from .configuration_cascade import POOLING_MODES
from .file_utils import atomic_directory
from .modelcard import card_template_path
from .modelcard_text import teacher_hub_id
from .teacher import Teacher


if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from .modeling_cascade import CascadeModel


logger = logging.get_logger(__name__)

ST_CARD_TEMPLATE = "sentence_transformer_card.md"
ST_TAGS = (
    "sentence-transformers",
    "sentence-similarity",
    "feature-extraction",
    "modeling-cascade",
    "dimensionality-reduction",
)


def check_exportable(cascade: CascadeModel) -> None:
    """Refuse, naming the reason, a cascade that no stock sentence-transformers modules can compute.

    Raises:
        `ValueError` for heads that are not linear, or a teacher whose pooling the config does not record as mean
        or CLS pooling.
    """
    config = cascade.config
    if not config.teacher_model:
        raise ValueError(
            "The cascade's config names no teacher_model (it was trained from pre-generated embeddings without "
            "--embedding_model): an exported model must embed texts itself. Name the teacher that made the "
            "embeddings (config.teacher_model, or --embedding_model when training)."
        )
    if config.head_type != "linear":
        raise ValueError(
            f"Only linear heads export to sentence-transformers (as a Dense module): this cascade's heads are "
            f"{config.head_type!r} (a linear map plus a residual MLP), which no built-in module computes. Use the "
            "cascade itself (AutoModel.from_pretrained(..., trust_remote_code=True)) for these dims."
        )
    if config.teacher_pooling not in POOLING_MODES:
        raise ValueError(
            f"The cascade's teacher pooling is {config.teacher_pooling!r}, not one of {list(POOLING_MODES)}: the "
            "exported model could not pool as the teacher did. Train with a sentence-transformers teacher or a "
            "transformers encoder with --pooling mean or --pooling cls."
        )


def head_matrix(cascade: CascadeModel, dim: int) -> torch.Tensor:
    """The `(dim, input_dim)` float32 matrix that maps a unit teacher embedding to the head's output at `dim`:
    the head's weights (`direct`), the product of the chain up to `dim` (`chained`), or the nested projection's
    first `dim` rows (`nested`)."""
    config = cascade.config
    if config.strategy == "nested":
        return cascade.heads[0].projection.weight.detach()[:dim].float().cpu()
    if config.strategy == "direct":
        return cascade.heads[config.target_dims.index(dim)].projection.weight.detach().float().cpu()
    matrix = None
    for head_dim, head in zip(config.target_dims, cascade.heads, strict=True):
        weight = head.projection.weight.detach().float().cpu()
        matrix = weight if matrix is None else weight @ matrix
        if head_dim == dim:
            return matrix
    raise ValueError(f"dim {dim} is not one of this cascade's target_dims {config.target_dims}.")


def to_sentence_transformer(
    cascade: CascadeModel, dim: int | None = None, teacher: Teacher | None = None
) -> SentenceTransformer:
    """The cascade at `dim` as a `SentenceTransformer`: teacher modules -> Normalize -> Dense -> Normalize.

    Its `encode_query` / `encode_document` (and `encode` where the teacher has no prompts) equal `cascade.encode(texts,
    dim=dim, prompt=...)`: the config's query and document prefixes become the model's prompts. A `nested` cascade
    exports its widest dim with `truncate_dim=dim`: pass `normalize_embeddings=True` (or compare by cosine) for unit
    vectors at a smaller stage.

    Args:
        cascade (`CascadeModel`): A cascade with linear heads whose config names its teacher.
        dim (`int`, *optional*): One of `config.target_dims`; defaults to the largest.
        teacher (`Teacher`, *optional*): The teacher already loaded; by default `Teacher.from_config(cascade.config)`.

    Raises:
        `ValueError` (see [`check_exportable`]) for heads or a teacher that stock modules cannot reproduce.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    check_exportable(cascade)
    config = cascade.config
    dim = cascade.resolve_dim(dim)
    teacher = Teacher.from_config(config, device="cpu") if teacher is None else teacher
    exported_dim = config.target_dims[0] if config.strategy == "nested" else dim
    matrix = head_matrix(cascade, exported_dim)
    modules = list(copy.deepcopy(teacher.model).cpu())  # the caller's teacher stays as it was
    if not isinstance(modules[-1], Normalize):  # the cascade's heads read unit teacher embeddings (encode normalises)
        modules.append(Normalize())
    dense = Dense(
        matrix.shape[1], matrix.shape[0], bias=False, activation_function=torch.nn.Identity(), init_weight=matrix
    )
    prompts = {
        name: prefix
        for name, prefix in (("query", config.query_prefix), ("document", config.document_prefix))
        if prefix
    }
    model = SentenceTransformer(
        modules=[*modules, dense, Normalize()],
        device="cpu",
        prompts=prompts,
        similarity_fn_name="cosine",
        truncate_dim=dim if exported_dim != dim else None,
    )
    model.eval()
    return model


def save_sentence_transformer(
    cascade: CascadeModel,
    folder: str | Path,
    dim: int | None = None,
    repo_id: str | None = None,
    cascade_repo_id: str | None = None,
    teacher: Teacher | None = None,
) -> Path:
    """Export the cascade at `dim` ([`to_sentence_transformer`]) into `folder` with a sentence-transformers style
    card, atomically (a failed save leaves any previous folder intact).

    Args:
        cascade (`CascadeModel`): The cascade; its `model_card_data` gives the card's license, language, dataset and
            the dim's quality against the full teacher when the run evaluated it.
        folder (`str` or `Path`): Where to write the model.
        dim (`int`, *optional*): One of `config.target_dims`; defaults to the largest.
        repo_id (`str`, *optional*): Hub id the card's usage snippet names; the folder when `None`.
        cascade_repo_id (`str`, *optional*): The cascade's own repo, linked from the card.
        teacher (`Teacher`, *optional*): As in [`to_sentence_transformer`].

    Returns:
        The folder.
    """
    model = to_sentence_transformer(cascade, dim, teacher)
    dim = model.truncate_dim or model.get_embedding_dimension()
    folder = Path(folder)
    with atomic_directory(folder) as temporary:
        model.save(str(temporary), create_model_card=False)
        card = sentence_transformer_card(cascade, dim, repo_id or str(folder), cascade_repo_id, model.truncate_dim)
        card.save(temporary / "README.md")
    logger.info(f"Saved the {dim}-dim sentence-transformers model to {folder}")
    return folder


def sentence_transformer_card(
    cascade: CascadeModel, dim: int, repo_id: str, cascade_repo_id: str | None, truncate_dim: int | None
) -> ModelCard:
    """The card of one exported dim: sentence-transformers metadata (`library_name`, `pipeline_tag`, the teacher as
    `base_model`) and, from the cascade's card data, what the dim keeps of the teacher's ranking."""
    config, facts = cascade.config, cascade.model_card_data
    evaluation = (facts.evaluation or {}) if facts is not None else {}
    metrics = evaluation.get("methods", {}).get("cascade", {}).get(str(dim), {})
    pca = evaluation.get("methods", {}).get("pca", {}).get(str(dim), {})
    k = evaluation.get("k", 10)
    rows = [
        {"metric": name, "cascade": f"{metrics[key]:.4f}", "PCA (uncentred)": f"{pca[key]:.4f}" if key in pca else "-"}
        for key, name in (
            (f"overlap@{k}", f"overlap@{k}"),
            (f"full_ranking_ndcg@{k}", f"nDCG@{k} against the full-dim ranking"),
            (f"ndcg@{k}", f"nDCG@{k}"),
            ("spearman", "Spearman"),
        )
        if key in metrics
    ]
    data = ModelCardData(
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        base_model=teacher_hub_id(config.teacher_model),
        tags=list(dict.fromkeys([*ST_TAGS, *(facts.tags if facts is not None else [])])),
        license=facts.license if facts is not None else None,
        language=(facts.language or None) if facts is not None else None,
        datasets=[facts.dataset_id] if facts is not None and facts.dataset_id else None,
    )
    return ModelCard.from_template(
        data,
        template_path=str(card_template_path(ST_CARD_TEMPLATE)),
        repo_id=repo_id,
        dim=dim,
        truncate_dim=truncate_dim,
        input_dim=config.input_dim,
        compression=f"{config.input_dim / dim:.2f}x",
        teacher=config.teacher_model,
        teacher_hub_id=teacher_hub_id(config.teacher_model),
        cascade_repo_id=cascade_repo_id,
        strategy=config.strategy,
        query_prefix=config.query_prefix,
        document_prefix=config.document_prefix,
        quality_table=make_markdown_table(rows).rstrip() if rows else None,
        evaluation_description=evaluation.get("description"),
        num_queries=evaluation.get("num_queries"),
        num_documents=evaluation.get("num_documents"),
    )


__all__ = [
    "check_exportable",
    "head_matrix",
    "save_sentence_transformer",
    "sentence_transformer_card",
    "to_sentence_transformer",
]
