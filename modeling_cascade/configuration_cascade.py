"""Configuration of a dimensional cascade: which dims, how the heads are built, how they are trained."""

from __future__ import annotations

from numbers import Real
from typing import Any

from transformers import PretrainedConfig


STRATEGIES = ("direct", "chained", "nested")
HEAD_TYPES = ("linear", "mlp")
POOLING_MODES = ("mean", "cls")
# Default KL temperatures (see `default_kl_temperature`), measured by benchmarks/quality.py (benchmarks/README.md, "Quality against PCA").
KL_TEMPERATURE_LARGE_DIMS = 0.1
KL_TEMPERATURE_SMALL_DIMS = 0.05
KL_TEMPERATURE_SWITCH_DIM = 128


def default_kl_temperature(dim: int) -> float:
    """The default KL temperature of a head of `dim` outputs: 0.1 from 128 dims up, 0.05 below.

    A low temperature puts the loss on each row's few nearest neighbours, which is what a small head loses first and
    where the 64- and 32-dim heads gain on PCA. A large head already keeps those; for it the softer 0.1 spreads the
    loss over more of the ranking (on SciFact 0.05 and 0.1 measured within 0.002 of each other at 256 and 128 dims).
    """
    return KL_TEMPERATURE_LARGE_DIMS if dim >= KL_TEMPERATURE_SWITCH_DIM else KL_TEMPERATURE_SMALL_DIMS


class CascadeConfig(PretrainedConfig):
    """Configuration of a [`CascadeModel`]: the teacher space, the target dims and the losses.

    The config is the single source of truth for a cascade: it records the teacher the cascade was distilled from
    (so `CascadeModel.encode` can embed text), the head layout, and the loss weights used in training.

    Args:
        input_dim (`int`, defaults to 384): Size of the teacher embeddings the cascade reads.
        target_dims (`list[int]`, defaults to `[256, 128, 64, 32]`): Output sizes, each smaller than `input_dim`;
            stored in decreasing order.
        strategy (`str`, defaults to `"direct"`): `"direct"` (one head per dim from the teacher space), `"chained"`
            (each head reads the previous head's output) or `"nested"` (one projection whose prefixes are the
            smaller dims, so one stored vector serves every stage of a cascade search).
        head_type (`str`, defaults to `"linear"`): `"linear"` or `"mlp"` (linear map plus a residual MLP whose output
            layer starts at zero, so an MLP head starts exactly where the linear head does).
        mlp_hidden_dim (`int`, *optional*): Hidden size of MLP heads; defaults to `input_dim`.
        normalize_inputs (`bool`, defaults to `True`): L2-normalise the teacher embeddings before the heads.
        similarity_loss_weight (`float`, defaults to 0.0): Weight of the MSE between batch cosine-similarity matrices.
        kl_loss_weight (`float`, defaults to 1.0): Weight of the KL divergence between softmax(similarity /
            kl_temperature) rows of teacher and head.
        topk_loss_weight (`float`, defaults to 0.0): Weight of the MSE restricted to each row's teacher top-k.
        kl_temperature (`float` or `list[float]`, *optional*): Temperature of the KL term: one for every head, or one
            per target dim (in the order given with `target_dims`). Defaults to `default_kl_temperature` of each dim
            (0.1 from 128 dims up, 0.05 below). Stored as a list, one per dim of `target_dims` (largest first).
        topk_neighbors (`int`, defaults to 10): Neighbours per row in the top-k term.
        teacher_model (`str`, *optional*): Hub id or local path of the teacher the cascade was distilled from.
        teacher_revision (`str`, *optional*): Revision of the teacher.
        query_prefix (`str`, defaults to `""`): Text prepended to queries before the teacher embeds them.
        document_prefix (`str`, defaults to `""`): Text prepended to documents before the teacher embeds them.
        teacher_pooling (`str`, defaults to `"mean"`): Pooling of the teacher's token embeddings (`"mean"` or `"cls"`).
        teacher_max_length (`int`, defaults to 512): Token limit of the teacher.

    Example:

    >>> from modeling_cascade import CascadeConfig
    >>> config = CascadeConfig(input_dim=384, target_dims=[64, 256, 128])
    >>> config.target_dims
    [256, 128, 64]
    """

    model_type = "cascade"

    def __init__(
        self,
        input_dim: int = 384,
        target_dims: list[int] | tuple[int, ...] = (256, 128, 64, 32),
        strategy: str = "direct",
        head_type: str = "linear",
        mlp_hidden_dim: int | None = None,
        normalize_inputs: bool = True,
        similarity_loss_weight: float = 0.0,
        kl_loss_weight: float = 1.0,
        topk_loss_weight: float = 0.0,
        kl_temperature: float | list[float] | tuple[float, ...] | None = None,
        topk_neighbors: int = 10,
        teacher_model: str | None = None,
        teacher_revision: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        teacher_pooling: str = "mean",
        teacher_max_length: int = 512,
        **kwargs: Any,
    ) -> None:
        self.input_dim = int(input_dim)
        given_dims = [int(dim) for dim in target_dims]
        self.target_dims = sorted(given_dims, reverse=True)
        self.strategy = strategy
        self.head_type = head_type
        self.mlp_hidden_dim = int(mlp_hidden_dim) if mlp_hidden_dim is not None else self.input_dim
        self.normalize_inputs = normalize_inputs
        self.similarity_loss_weight = float(similarity_loss_weight)
        self.kl_loss_weight = float(kl_loss_weight)
        self.topk_loss_weight = float(topk_loss_weight)
        self.kl_temperature = self._per_dim_temperatures(kl_temperature, given_dims)
        self.topk_neighbors = int(topk_neighbors)
        self.teacher_model = teacher_model
        self.teacher_revision = teacher_revision
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.teacher_pooling = teacher_pooling
        self.teacher_max_length = int(teacher_max_length)
        self._validate()
        super().__init__(**kwargs)

    def _per_dim_temperatures(
        self, kl_temperature: float | list[float] | tuple[float, ...] | None, given_dims: list[int]
    ) -> list[float]:
        """One KL temperature per dim of `self.target_dims` (largest first) from a scalar, a list or the default."""
        if kl_temperature is None:
            return [default_kl_temperature(dim) for dim in self.target_dims]
        if isinstance(kl_temperature, Real):
            return [float(kl_temperature)] * len(self.target_dims)
        temperatures = [float(value) for value in kl_temperature]
        if len(temperatures) != len(given_dims):
            raise ValueError(
                f"kl_temperature lists {len(temperatures)} temperatures {temperatures} for {len(given_dims)} target "
                f"dims {given_dims}: give one temperature, or one per target dim."
            )
        by_dim = dict(zip(given_dims, temperatures, strict=True))
        return [by_dim[dim] for dim in self.target_dims]

    def _validate(self) -> None:
        """Raise `ValueError` naming the first invalid value."""
        if self.input_dim < 1:
            raise ValueError(f"input_dim must be a positive integer, got {self.input_dim}.")
        if not self.target_dims:
            raise ValueError("target_dims is empty: give at least one output dimension, e.g. [256, 128, 64].")
        for dim in self.target_dims:
            if dim < 1:
                raise ValueError(f"target_dims must be positive integers, got {dim} in {self.target_dims}.")
            if dim >= self.input_dim:
                raise ValueError(
                    f"target dim {dim} is not smaller than input_dim {self.input_dim}: a cascade head must reduce "
                    "the dimension."
                )
        if len(set(self.target_dims)) != len(self.target_dims):
            raise ValueError(f"target_dims has duplicates: {self.target_dims}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}.")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}.")
        if self.mlp_hidden_dim < 1:
            raise ValueError(f"mlp_hidden_dim must be a positive integer, got {self.mlp_hidden_dim}.")
        if self.teacher_pooling not in POOLING_MODES:
            raise ValueError(f"teacher_pooling must be one of {POOLING_MODES}, got {self.teacher_pooling!r}.")
        for name in ("similarity_loss_weight", "kl_loss_weight", "topk_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.similarity_loss_weight + self.kl_loss_weight + self.topk_loss_weight == 0:
            raise ValueError("All loss weights are 0: set at least one of similarity/kl/topk_loss_weight above 0.")
        for dim, temperature in zip(self.target_dims, self.kl_temperature, strict=True):
            if temperature <= 0:
                raise ValueError(f"kl_temperature must be > 0, got {temperature} for dim {dim}.")
        if self.topk_neighbors < 1:
            raise ValueError(f"topk_neighbors must be a positive integer, got {self.topk_neighbors}.")
        if self.teacher_max_length < 1:
            raise ValueError(f"teacher_max_length must be a positive integer, got {self.teacher_max_length}.")


# A saved cascade carries this file, so `AutoConfig` loads it with `trust_remote_code=True` without the package.
CascadeConfig.register_for_auto_class()

__all__ = ["CascadeConfig"]
