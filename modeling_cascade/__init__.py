"""modeling-cascade: distil a text-embedding model into a cascade of smaller dims and search coarse to fine.

Importing the package registers `CascadeConfig` / `CascadeModel` with `AutoConfig` / `AutoModel` and loads nothing
else: the other public names (corpus loading, teacher embeddings, the model card, the search index) are imported on
first use, so `import modeling_cascade` does not pull in `datasets`, `matplotlib`, `sentence-transformers` or FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModel

from .configuration_cascade import CascadeConfig
from .modeling_cascade import CascadeModel, CascadeModelOutput, CascadePreTrainedModel


if TYPE_CHECKING:
    from .data import CorpusError, CorpusFilters, load_corpus, python_docs_corpus
    from .embeddings import compute_teacher_embeddings
    from .index import CascadeIndex, SearchResult
    from .modelcard import CascadeModelCardData, save_model_card
    from .modelcard_callback import ModelCardCallback
    from .offline import HubUnreachableError
    from .qdrant import QdrantCascadeIndex
    from .teacher import Teacher


__version__ = "0.1.0"

AutoConfig.register(CascadeConfig.model_type, CascadeConfig)
AutoModel.register(CascadeConfig, CascadeModel)

# Public names imported on first use: name -> the submodule that defines it.
_LAZY_NAMES = {
    "CascadeModelCardData": "modelcard",
    "CascadeIndex": "index",
    "CorpusError": "data",
    "CorpusFilters": "data",
    "HubUnreachableError": "offline",
    "ModelCardCallback": "modelcard_callback",
    "QdrantCascadeIndex": "qdrant",
    "SearchResult": "index",
    "Teacher": "teacher",
    "compute_teacher_embeddings": "embeddings",
    "load_corpus": "data",
    "python_docs_corpus": "data",
    "save_model_card": "modelcard",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule the first time it is asked for (PEP 562)."""
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


__all__ = [
    "CascadeConfig",
    "CascadeIndex",
    "CascadeModel",
    "CascadeModelCardData",
    "CascadeModelOutput",
    "CascadePreTrainedModel",
    "CorpusError",
    "CorpusFilters",
    "HubUnreachableError",
    "ModelCardCallback",
    "QdrantCascadeIndex",
    "SearchResult",
    "Teacher",
    "__version__",
    "compute_teacher_embeddings",
    "load_corpus",
    "python_docs_corpus",
    "save_model_card",
]
