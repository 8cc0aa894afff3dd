"""The cascade model: small heads that map teacher embeddings to fewer dims while keeping their neighbourhoods."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_cascade import CascadeConfig
from .losses import CascadeLoss
from .pca import pca_components


logger = logging.get_logger(__name__)


@dataclass
class CascadeModelOutput(ModelOutput):
    """Output of [`CascadeModel`].

    Args:
        loss (`torch.Tensor`, *optional*): Similarity-preservation loss of the batch, when `return_loss=True`.
        cascade_embeddings (`tuple[torch.Tensor]`): One L2-normalised tensor of shape `(batch, dim)` per target dim,
            in the order of `config.target_dims` (largest first).
    """

    loss: torch.Tensor | None = None
    cascade_embeddings: tuple[torch.Tensor, ...] | None = None


class CascadeHead(nn.Module):
    """A linear map, optionally plus a residual MLP whose output layer starts at zero.

    With the MLP at zero, a fresh MLP head computes exactly its linear map, so PCA initialisation gives the PCA
    baseline for either head type and training can only move away from it where the loss improves.

    Args:
        in_dim (`int`): Input size.
        out_dim (`int`): Output size.
        head_type (`str`): `"linear"` or `"mlp"`.
        hidden_dim (`int`): Hidden size of the MLP.
    """

    def __init__(self, in_dim: int, out_dim: int, head_type: str, hidden_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, out_dim, bias=False)
        self.mlp = None
        if head_type == "mlp":
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
            self.mlp[-1].is_residual_output = True

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.projection(inputs)
        if self.mlp is not None:
            outputs = outputs + self.mlp(inputs)
        return outputs


class CascadePreTrainedModel(PreTrainedModel):
    """Base class that ties cascade models to [`CascadeConfig`] and initialises their weights."""

    config_class = CascadeConfig
    base_model_prefix = "cascade"
    main_input_name = "embeddings"

    def _init_weights(self, module: nn.Module) -> None:
        """Random projections scaled to keep norms (so an untrained head roughly keeps similarities); the residual
        MLP output starts at zero."""
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_output", False):
                nn.init.zeros_(module.weight)
            else:
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class CascadeModel(CascadePreTrainedModel):
    """Maps teacher embeddings to every target dim of the cascade; each output is L2-normalised.

    `forward(embeddings)` returns a [`CascadeModelOutput`] with one tensor per target dim and, by default, the
    similarity-preservation loss of the batch, so the stock `Trainer` trains it with no labels.

    Args:
        config (`CascadeConfig`): The cascade's layout and losses.

    Example:

    >>> import torch
    >>> from modeling_cascade import CascadeConfig, CascadeModel
    >>> model = CascadeModel(CascadeConfig(input_dim=16, target_dims=[8, 4]))
    >>> output = model(torch.randn(10, 16))
    >>> [tuple(t.shape) for t in output.cascade_embeddings]
    [(10, 8), (10, 4)]
    """

    def __init__(self, config: CascadeConfig) -> None:
        super().__init__(config)
        dims = config.target_dims
        if config.strategy == "nested":
            in_out = [(config.input_dim, dims[0])]
        elif config.strategy == "chained":
            in_out = list(zip([config.input_dim, *dims[:-1]], dims))
        else:
            in_out = [(config.input_dim, dim) for dim in dims]
        self.heads = nn.ModuleList(
            CascadeHead(in_dim, out_dim, config.head_type, config.mlp_hidden_dim) for in_dim, out_dim in in_out
        )
        self.criterion = CascadeLoss(config)
        self.post_init()

    def _prepare_inputs(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"CascadeModel expects embeddings of shape (batch, {self.config.input_dim}), "
                f"got {tuple(embeddings.shape)}."
            )
        embeddings = embeddings.to(self.heads[0].projection.weight.dtype)
        return F.normalize(embeddings, dim=-1) if self.config.normalize_inputs else embeddings

    def _head_outputs(self, inputs: torch.Tensor, dims: list[int]) -> dict[int, torch.Tensor]:
        """Un-normalised outputs of the requested dims, computing only the heads they need."""
        target_dims = self.config.target_dims
        if self.config.strategy == "nested":
            full = self.heads[0](inputs)
            return {dim: full[:, :dim] for dim in dims}
        if self.config.strategy == "direct":
            return {dim: self.heads[target_dims.index(dim)](inputs) for dim in dims}
        outputs, hidden = {}, inputs
        for dim, head in zip(target_dims, self.heads):
            hidden = head(hidden)
            outputs[dim] = hidden
            if len(outputs) == len(target_dims) or all(d in outputs for d in dims):
                break
        return {dim: outputs[dim] for dim in dims}

    def forward(
        self, embeddings: torch.Tensor, return_loss: bool = True, return_dict: bool | None = None
    ) -> CascadeModelOutput | tuple:
        """Project a batch of teacher embeddings to every target dim.

        Args:
            embeddings (`torch.Tensor` of shape `(batch, input_dim)`): Teacher embeddings.
            return_loss (`bool`, defaults to `True`): Also compute the similarity-preservation loss of the batch.
            return_dict (`bool`, *optional*): Return a [`CascadeModelOutput`] (default) or a tuple.
        """
        inputs = self._prepare_inputs(embeddings)
        outputs = self._head_outputs(inputs, self.config.target_dims)
        raw = [outputs[dim] for dim in self.config.target_dims]
        loss = None
        if return_loss:
            # a one-row batch has no pairs to compare: its loss is zero (kept in the graph for the Trainer)
            loss = self.criterion(inputs, raw) if inputs.shape[0] > 1 else sum(tensor.sum() for tensor in raw) * 0.0
        cascade_embeddings = tuple(F.normalize(tensor, dim=-1) for tensor in raw)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return (loss, cascade_embeddings) if loss is not None else (cascade_embeddings,)
        return CascadeModelOutput(loss=loss, cascade_embeddings=cascade_embeddings)

    @torch.no_grad()
    def embed(self, embeddings: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """L2-normalised cascade embedding at one dim (the smallest-compute path: only the needed heads run).

        Args:
            embeddings (`torch.Tensor` of shape `(batch, input_dim)`): Teacher embeddings.
            dim (`int`, *optional*): One of `config.target_dims`; defaults to the largest.
        """
        dim = self._check_dim(dim)
        return F.normalize(self._head_outputs(self._prepare_inputs(embeddings), [dim])[dim], dim=-1)

    @torch.no_grad()
    def project(self, embeddings: np.ndarray, dim: int | None = None, batch_size: int = 8192) -> np.ndarray:
        """Like [`embed`] for a NumPy matrix of any length, batched; returns float32 NumPy rows."""
        dim = self._check_dim(dim)
        was_training = self.training
        self.eval()
        device = self.heads[0].projection.weight.device
        parts = [
            self.embed(torch.from_numpy(np.ascontiguousarray(embeddings[start : start + batch_size])).to(device), dim)
            .float()
            .cpu()
            .numpy()
            for start in range(0, len(embeddings), batch_size)
        ]
        self.train(was_training)
        return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)

    def _check_dim(self, dim: int | None) -> int:
        if dim is None:
            return self.config.target_dims[0]
        if dim not in self.config.target_dims:
            raise ValueError(f"dim {dim} is not one of this cascade's target_dims {self.config.target_dims}.")
        return dim

    @torch.no_grad()
    def init_from_pca(self, embeddings: np.ndarray | torch.Tensor) -> None:
        """Set every linear map to the uncentred PCA of `embeddings`, so the untrained cascade equals the PCA baseline.

        Args:
            embeddings (`np.ndarray` or `torch.Tensor` of shape `(n, input_dim)`): Training embeddings.
        """
        inputs = self._prepare_inputs(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32))
        for head in self.heads:
            weight = head.projection.weight
            components = pca_components(inputs, weight.shape[0])
            weight.copy_(components.to(weight.dtype))
            if head.mlp is not None:
                head.mlp[-1].weight.zero_()
                head.mlp[-1].bias.zero_()
            if self.config.strategy == "chained":
                inputs = head(inputs)


__all__ = ["CascadeModel", "CascadeModelOutput", "CascadePreTrainedModel"]
