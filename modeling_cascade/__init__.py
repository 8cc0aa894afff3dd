"""modeling-cascade: distil a text-embedding model into a cascade of smaller dims and search coarse to fine."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_cascade import CascadeConfig
from .modeling_cascade import CascadeModel, CascadeModelOutput, CascadePreTrainedModel


__version__ = "0.1.0"

AutoConfig.register(CascadeConfig.model_type, CascadeConfig)
AutoModel.register(CascadeConfig, CascadeModel)

__all__ = ["CascadeConfig", "CascadeModel", "CascadeModelOutput", "CascadePreTrainedModel", "__version__"]
