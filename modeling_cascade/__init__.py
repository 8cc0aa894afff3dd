"""modeling-cascade: distil a text-embedding model into a cascade of smaller dims and search coarse to fine."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_cascade import CascadeConfig
from .data import CorpusError, CorpusFilters, load_corpus
from .embeddings import compute_teacher_embeddings
from .modelcard import CardData, ModelCardCallback, save_model_card
from .modeling_cascade import CascadeModel, CascadeModelOutput, CascadePreTrainedModel
from .offline import HubUnreachableError
from .python_docs import python_docs_corpus
from .teacher import Teacher


__version__ = "0.1.0"

AutoConfig.register(CascadeConfig.model_type, CascadeConfig)
AutoModel.register(CascadeConfig, CascadeModel)

__all__ = [
    "CardData",
    "CascadeConfig",
    "CascadeModel",
    "CascadeModelOutput",
    "CascadePreTrainedModel",
    "CorpusError",
    "CorpusFilters",
    "HubUnreachableError",
    "ModelCardCallback",
    "Teacher",
    "__version__",
    "compute_teacher_embeddings",
    "load_corpus",
    "python_docs_corpus",
    "save_model_card",
]
