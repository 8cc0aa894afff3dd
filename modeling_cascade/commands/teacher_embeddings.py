"""The first two steps of `run_distillation.py`: the corpus (or an `--input_file`) and the teacher embeddings of it,
with the teacher's fields as the cascade's config records them."""

from __future__ import annotations

import numpy as np
from transformers.utils import logging

from ..configuration_cascade import POOLING_MODES
from ..data import CorpusFilters, load_corpus
from ..embeddings import check_embedding_dim, compute_teacher_embeddings
from ..file_utils import load_embeddings, save_embeddings
from ..teacher import Teacher, resolve_teacher_name
from .arguments import CascadeTrainingArguments, DataArguments, ModelArguments


logger = logging.get_logger(__name__)


def load_teacher(model_args: ModelArguments, training_args: CascadeTrainingArguments, name: str) -> Teacher:
    """Load the teacher on this process's device and check it against `--embedding_dim` and the cascade's poolings."""
    device = model_args.device
    if device == "auto":  # this process's device: cuda:N under DDP, and plain cpu for gloo's cpu:N
        device = "cpu" if training_args.device.type == "cpu" else str(training_args.device)
    teacher = Teacher(
        name,
        revision=model_args.embedding_model_revision,
        pooling=model_args.pooling,
        max_length=model_args.max_length,
        device=device,
    )
    check_embedding_dim(teacher, model_args.embedding_dim)
    if teacher.pooling not in POOLING_MODES:
        raise ValueError(
            f"Teacher {name!r} uses {teacher.pooling!r} pooling; a cascade records a mean- or cls-pooled teacher: "
            "pass --pooling mean or --pooling cls."
        )
    return teacher


def teacher_fields(model_args: ModelArguments, teacher: Teacher) -> dict:
    """The teacher as `CascadeConfig` records it, so the cascade can embed new text the same way."""
    return {
        "teacher_model": teacher.model_name_or_path,
        "teacher_revision": teacher.revision,
        "query_prefix": teacher.prompt("query") if model_args.query_prefix is None else model_args.query_prefix,
        "document_prefix": document_prefix(model_args, teacher),
        "teacher_pooling": teacher.pooling,
        "teacher_max_length": teacher.max_length,
    }


def document_prefix(model_args: ModelArguments, teacher: Teacher) -> str:
    """`--document_prefix`, or the teacher's own document prompt."""
    return teacher.prompt("document") if model_args.document_prefix is None else model_args.document_prefix


def load_teacher_embeddings(
    model_args: ModelArguments, data_args: DataArguments, training_args: CascadeTrainingArguments
) -> tuple[np.ndarray, dict]:
    """The teacher embeddings to distil, and the teacher's `CascadeConfig` fields.

    With `--input_file`, the matrix in that file (its teacher is recorded only when `--embedding_model` names it).
    Otherwise the corpus is loaded, filtered and sampled (the main process goes first, so the others read its cached
    corpus), and embedded by the teacher through the on-disk cache, each process embedding its share of the shards.
    """
    if data_args.input_file is not None:
        embeddings = load_embeddings(
            data_args.input_file,
            expected_dim=model_args.embedding_dim,
            expected_by="--embedding_dim",
            memory_map=data_args.memory_map_input,
        )
        mapped = " (memory-mapped: rows are read as needed)" if isinstance(embeddings, np.memmap) else ""
        logger.info(f"Loaded embeddings: {embeddings.shape} from {data_args.input_file}{mapped}")
        if model_args.embedding_model is None:
            return embeddings, {}
        teacher_name = resolve_teacher_name(model_args.embedding_model, model_args.embedding_model_revision)
        teacher = load_teacher(model_args, training_args, teacher_name)
        if teacher.dim != embeddings.shape[1]:
            raise ValueError(
                f"--input_file {data_args.input_file!r} holds {embeddings.shape[1]}-dim embeddings, but teacher "
                f"{teacher.model_name_or_path!r} outputs {teacher.dim} dims: name the teacher that made them."
            )
        return embeddings, teacher_fields(model_args, teacher)

    teacher_name = resolve_teacher_name(model_args.embedding_model, model_args.embedding_model_revision)
    filters = CorpusFilters(
        collection=data_args.collection,
        languages=data_args.language_list,
        min_token_count=data_args.min_token_count,
    )
    with training_args.main_process_first(desc="corpus"):
        corpus = load_corpus(
            data_args.dataset_name,
            text_column=data_args.text_column,
            filters=filters,
            num_samples=data_args.num_samples,
            seed=training_args.seed,
            shuffle_buffer_size=data_args.shuffle_buffer_size,
            dataset_config_name=data_args.dataset_config_name,
            dataset_revision=data_args.dataset_revision,
            split=data_args.dataset_split,
            cache_dir=data_args.cache_dir,
        )
    teacher = load_teacher(model_args, training_args, teacher_name)
    # every process embeds its share of the shards and receives the whole matrix
    embeddings = compute_teacher_embeddings(
        corpus,
        teacher,
        text_column=data_args.text_column,
        prefix=document_prefix(model_args, teacher),
        batch_size=model_args.batch_size,
        cache_dir=data_args.cache_dir,
        shard_size=data_args.embedding_shard_size,
        memory_map=data_args.memory_map_input,
    )
    logger.info(f"Generated embeddings: {embeddings.shape}")
    if data_args.save_embeddings is not None and training_args.should_save:
        save_embeddings(data_args.save_embeddings, embeddings)
        logger.info(f"Saved embeddings to {data_args.save_embeddings}")
    return embeddings, teacher_fields(model_args, teacher)
