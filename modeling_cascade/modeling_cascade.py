"""The cascade model: small heads that map teacher embeddings to fewer dims while keeping their neighbourhoods."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hub_constants
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_cascade import CascadeConfig
from .losses import CascadeLoss
from .matrix_rows import MatrixRows, as_matrix_rows, second_moment
from .pca import components_of
from .text_encoding import TextEncodingMixin


logger = logging.get_logger(__name__)

WEIGHTS_FILE = "model.safetensors"
# The Hub options `save_pretrained(push_to_hub=True, ...)` and `push_to_hub` take.
HUB_OPTIONS = ("repo_id", "token", "private", "revision", "create_pr", "commit_message")
# Names that are files, never Hub ids: `from_pretrained` reports them missing instead of asking the Hub.
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".safetensors", ".json", ".npy")


def check_cascade_folder(path: Path) -> Path:
    """The `model.safetensors` of the saved cascade in `path`; a `ValueError` naming the culprit for anything else.

    The one check of "is this a saved cascade" (loading, evaluating, resuming from a checkpoint).

    Nothing in `path` is unpickled: a single file (such as a `.pt` pickle), another model type, or a folder whose only
    weights are pickled (`pytorch_model.bin`) is refused before any weight is read.
    """
    if path.is_file():
        raise ValueError(
            f"{str(path)!r} is a file, not a saved cascade: pass the folder that save_pretrained wrote (config.json "
            f"and {WEIGHTS_FILE}). Pickled checkpoints (.pt, .pth, .bin) are never loaded: they can run code."
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{str(path)!r} holds no config.json: it is not a saved cascade (a folder written by save_pretrained, "
            "such as a training run's best_model/ or final_model/)."
        )
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(
            f"{str(config_file)!r} is not a valid JSON config ({error}): the folder is corrupt."
        ) from None
    if model_type != CascadeConfig.model_type:
        raise ValueError(
            f"{str(config_file)!r} has model_type {model_type!r}, not {CascadeConfig.model_type!r}: {str(path)!r} "
            "holds another kind of model, not a cascade."
        )
    weights = path / WEIGHTS_FILE
    sharded = (path / f"{WEIGHTS_FILE}.index.json").is_file()  # a large cascade saved as safetensors shards
    if not weights.is_file() and not sharded:
        pickled = sorted(file.name for file in path.iterdir() if file.suffix in (".bin", ".pt", ".pth", ".pkl"))
        found = (
            f" (it has {', '.join(pickled)}: pickled weights are never loaded, they can run code)" if pickled else ""
        )
        raise ValueError(f"{str(path)!r} holds no {WEIGHTS_FILE}{found}; save the cascade with save_pretrained.")
    return weights


@dataclass
class CascadeModelOutput(ModelOutput):
    """Output of [`CascadeModel`].

    Args:
        loss (`torch.Tensor`, *optional*): Similarity-preservation loss of the batch, in training mode or when
            `return_loss=True`.
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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained` that loads only a cascade, and only from safetensors.

        A local folder is checked first (see `check_cascade_folder`): a `.pt` file, another model type or pickled
        weights are refused and never unpickled; corrupt weights raise a `ValueError` naming the file. A Hub id that
        cannot be fetched (offline, not cached) raises an `OSError` naming it and the offline options.
        """
        kwargs.setdefault("use_safetensors", True)
        source = str(pretrained_model_name_or_path)
        path = Path(source).expanduser()
        if path.exists():
            weights = check_cascade_folder(path)
            try:
                return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
            except SafetensorError as error:
                raise ValueError(
                    f"{str(weights)!r} is not a readable safetensors file ({error}): the checkpoint is corrupt or "
                    "cut short; save the cascade again."
                ) from None
            except RuntimeError as error:
                if "mismatched" not in str(error):
                    raise
                raise ValueError(
                    f"The weights in {str(weights)!r} do not have the shapes its config.json describes: the folder "
                    "mixes files of different cascades; save the cascade again."
                ) from None
        if source.startswith((".", "/", "~")) or path.suffix in FILE_SUFFIXES:
            raise FileNotFoundError(
                f"{source!r} does not exist: pass a folder written by save_pretrained or a Hub id."
            )
        try:  # with the package installed, an unreachable Hub is detected in seconds instead of after retries
            from modeling_cascade.offline import ensure_hub_or_offline
        except ImportError:
            pass
        else:
            ensure_hub_or_offline()
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except OSError as error:
            if not hub_constants.HF_HUB_OFFLINE:
                raise
            raise OSError(
                f"Cannot load the cascade {source!r}: the Hugging Face Hub cannot be reached (offline mode, "
                "HF_HUB_OFFLINE=1) and it is not in the local cache. Offline options: a local folder written by "
                "save_pretrained (e.g. a training run's output_dir/best_model), or a model already in the Hugging "
                "Face cache (download it where the Hub is reachable)."
            ) from error


SHARD_BAR = "Writing model shards"


@contextlib.contextmanager
def no_shard_progress_bar() -> Iterator[None]:
    """Hide transformers' "Writing model shards" bar while a cascade saves.

    A cascade is one small safetensors file, written in milliseconds; the bar would only print between the Trainer's
    progress bar and log lines at every checkpoint. A transformers tqdm hook disables that one bar and passes every
    other bar to the hook set before (if any), so the progress-bar settings of transformers and huggingface_hub, and
    bars in other threads (Hub uploads), are untouched.
    """

    def hide_shard_bar(factory, args, kwargs):
        if kwargs.get("desc") == SHARD_BAR:
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    previous = logging.set_tqdm_hook(hide_shard_bar)
    try:
        yield
    finally:
        logging.set_tqdm_hook(previous)


class CascadeModel(TextEncodingMixin, CascadePreTrainedModel):
    """Maps teacher embeddings to every target dim of the cascade; each output is L2-normalised.

    `forward(embeddings)` returns a [`CascadeModelOutput`] with one tensor per target dim and, in training mode (or
    with `return_loss=True`), the similarity-preservation loss of the batch, so the stock `Trainer` trains it with no
    labels.

    Args:
        config (`CascadeConfig`): The cascade's layout and losses.

    Example:

    >>> import torch
    >>> from modeling_cascade import CascadeConfig, CascadeModel
    >>> model = CascadeModel(CascadeConfig(input_dim=16, target_dims=[8, 4])).eval()
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
            in_out = list(zip([config.input_dim, *dims[:-1]], dims, strict=True))
        else:
            in_out = [(config.input_dim, dim) for dim in dims]
        self.heads = nn.ModuleList(
            CascadeHead(in_dim, out_dim, config.head_type, config.mlp_hidden_dim) for in_dim, out_dim in in_out
        )
        self.criterion = CascadeLoss(config)
        # The teacher that `encode` loads on first use; kept in a dict so that it is not registered as a submodule
        # (its weights are not part of the cascade's state dict).
        self._teacher_cache: dict = {}
        self._model_card_data = None
        self.post_init()

    @property
    def model_card_data(self):
        """The facts of this cascade's model card (a `modeling_cascade.modelcard.CascadeModelCardData`), created from
        the config on first use and written by [`save_pretrained`]; `None` where the modeling-cascade package is not
        installed (a folder loaded with `trust_remote_code`)."""
        if self._model_card_data is None:
            try:
                from modeling_cascade.modelcard import CascadeModelCardData
            except ImportError:
                return None
            self._model_card_data = CascadeModelCardData()
            self._model_card_data.set_model(self.config)
        return self._model_card_data

    @model_card_data.setter
    def model_card_data(self, card_data) -> None:
        self._model_card_data = card_data

    def save_pretrained(self, save_directory, *args, create_model_card: bool = True, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained` (config.json and model.safetensors), then the model card `README.md`
        from [`model_card_data`] (on the main process; a card that cannot be written is a warning, never an error).

        With `push_to_hub=True` (and `repo_id`, `token`, `private`, `revision`, `create_pr`, `commit_message`), the
        saved folder, card and images included, is then uploaded as it is (see [`push_to_hub`]). Loaded with
        `trust_remote_code` where the modeling-cascade package is absent, the cascade has no card data and saves as
        any `PreTrainedModel`.
        """
        if self.model_card_data is None:
            with no_shard_progress_bar():
                return super().save_pretrained(save_directory, *args, **kwargs)
        push_to_hub = kwargs.pop("push_to_hub", False)
        hub_options = {name: kwargs.pop(name) for name in HUB_OPTIONS if name in kwargs}
        with no_shard_progress_bar():
            super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return None
        if create_model_card:
            self.model_card_data.save(save_directory)
        if push_to_hub:
            hub_options.setdefault("repo_id", Path(save_directory).name)
            self._publish(save_directory, **hub_options)
        return None

    def push_to_hub(self, repo_id: str, **hub_options) -> str:
        """Upload the cascade, its code and its model card to the Hub repo `repo_id` (created if needed).

        The stock `push_to_hub` replaces the card with a generic one; this one saves into a temporary folder with
        [`save_pretrained`] and uploads that folder as it is (with `modeling_cascade.hub.publish_folder`).

        Args:
            repo_id (`str`): `owner/name`.
            hub_options: `token`, `private`, `revision`, `create_pr`, `commit_message`.

        Returns:
            The URL of the commit.
        """
        if self.model_card_data is None:  # loaded with trust_remote_code, without the package: the stock upload
            return super().push_to_hub(repo_id, **hub_options)
        unknown = sorted(set(hub_options) - set(HUB_OPTIONS))
        if unknown:
            raise ValueError(f"push_to_hub got unknown options {unknown}; it takes {list(HUB_OPTIONS[1:])}.")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cascade-push-") as folder:
            self.save_pretrained(folder)
            return self._publish(folder, repo_id=repo_id, **hub_options)

    @staticmethod
    def _publish(folder, **hub_options) -> str:
        try:  # the package is there whenever the cascade has card data
            from modeling_cascade.hub import publish_folder
        except ImportError:
            raise ImportError("Publishing a cascade with its card needs: pip install modeling-cascade") from None
        return publish_folder(folder, **hub_options).commit_url

    def to_sentence_transformer(self, dim: int | None = None):
        """This cascade at `dim` as a plain `SentenceTransformer` (teacher modules, the head as a `Dense`, then
        `Normalize`) that loads anywhere with no custom code; see `modeling_cascade.sentence_transformer_export`.

        Args:
            dim (`int`, *optional*): One of `config.target_dims`; defaults to the largest.
        """
        try:
            from modeling_cascade.sentence_transformer_export import to_sentence_transformer
        except ImportError:
            raise ImportError(
                "Exporting to sentence-transformers needs the package: pip install modeling-cascade"
            ) from None
        return to_sentence_transformer(self, dim)

    def _prepare_inputs(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim == 3 and embeddings.shape[0] == 1:
            raise ValueError(
                f"CascadeModel got a batch of shape {tuple(embeddings.shape)}: a collator stacked the whole batches "
                "that modeling_cascade.trainer.EmbeddingRows reads. Train with CascadeTrainer, or pass "
                "data_collator=collate_embeddings to the Trainer."
            )
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
        for dim, head in zip(target_dims, self.heads, strict=True):
            hidden = head(hidden)
            outputs[dim] = hidden
            if all(d in outputs for d in dims):  # the chain stops at the smallest dim asked for
                break
        return {dim: outputs[dim] for dim in dims}

    def forward(
        self, embeddings: torch.Tensor, return_loss: bool | None = None, return_dict: bool | None = None
    ) -> CascadeModelOutput | tuple:
        """Project a batch of teacher embeddings to every target dim.

        The loss compares all pairs of rows of the batch (a `batch x batch` similarity matrix per head), so it is
        computed only when it is needed: in training mode, or when `return_loss=True` is given (the Trainer's
        evaluation passes it through `collate_embeddings`). Inference on a large batch builds no such matrix.

        Args:
            embeddings (`torch.Tensor` of shape `(batch, input_dim)`): Teacher embeddings.
            return_loss (`bool`, *optional*): Compute the similarity-preservation loss of the batch; defaults to
                `self.training`.
            return_dict (`bool`, *optional*): Return a [`CascadeModelOutput`] (default) or a tuple.
        """
        inputs = self._prepare_inputs(embeddings)
        outputs = self._head_outputs(inputs, self.config.target_dims)
        raw = [outputs[dim] for dim in self.config.target_dims]
        loss = None
        if return_loss or (return_loss is None and self.training):
            loss = self.criterion(inputs, raw)
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
        dim = self.resolve_dim(dim)
        return F.normalize(self._head_outputs(self._prepare_inputs(embeddings), [dim])[dim], dim=-1)

    @torch.no_grad()
    def project(self, embeddings: np.ndarray, dim: int | None = None, batch_size: int = 8192) -> np.ndarray:
        """Like [`embed`] for a NumPy matrix of any length, batched; returns float32 NumPy rows."""
        dim = self.resolve_dim(dim)
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

    def resolve_dim(self, dim: int | None) -> int:
        """`dim` checked against `config.target_dims` (a `ValueError` naming it otherwise); the largest when `None`."""
        if dim is None:
            return self.config.target_dims[0]
        if dim not in self.config.target_dims:
            raise ValueError(f"dim {dim} is not one of this cascade's target_dims {self.config.target_dims}.")
        return dim

    @torch.no_grad()
    def init_from_pca(self, embeddings: np.ndarray | torch.Tensor | MatrixRows) -> None:
        """Set every linear map to the uncentred PCA of `embeddings`, so the untrained cascade equals the PCA baseline.

        Args:
            embeddings (`np.ndarray`, `torch.Tensor` or [`MatrixRows`] of shape `(n, input_dim)`): Training
                embeddings, read in blocks (one pass per head), so a memory-mapped matrix larger than RAM works.
        """
        rows = as_matrix_rows(embeddings)
        moment = None
        for index, head in enumerate(self.heads):
            weight = head.projection.weight
            if moment is None or self.config.strategy == "chained":  # other heads all read the teacher embeddings
                moment, _, _ = second_moment(self._head_inputs(block, index) for block in rows.blocks())
            weight.copy_(components_of(moment, weight.shape[0]).to(weight.dtype))
            if head.mlp is not None:
                head.mlp[-1].weight.zero_()
                head.mlp[-1].bias.zero_()

    def _head_inputs(self, block: np.ndarray, index: int) -> np.ndarray:
        """What head `index` reads for a block of teacher embeddings: the prepared inputs, passed through the heads
        before it when they are chained."""
        inputs = self._prepare_inputs(torch.from_numpy(block).to(self.heads[0].projection.weight.device))
        if self.config.strategy == "chained":
            for head in self.heads[:index]:
                inputs = head(inputs)
        return inputs.double().cpu().numpy()


# `save_pretrained` copies this file and the ones it imports relatively into the saved folder, so the folder loads
# with `AutoModel.from_pretrained(folder, trust_remote_code=True)` where this package is not installed.
CascadeModel.register_for_auto_class("AutoModel")

__all__ = ["CascadeModel", "CascadeModelOutput", "CascadePreTrainedModel", "check_cascade_folder"]
