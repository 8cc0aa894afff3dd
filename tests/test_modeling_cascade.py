from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel

from modeling_cascade import CascadeConfig, CascadeModel, CascadeModelOutput
from modeling_cascade.pca import PCAProjection


class CascadeModelTester:
    """Builds tiny configs and inputs and checks the model's contract on them."""

    def __init__(self, input_dim: int = 16, target_dims: tuple[int, ...] = (8, 4), batch_size: int = 12) -> None:
        self.input_dim = input_dim
        self.target_dims = list(target_dims)
        self.batch_size = batch_size

    def prepare_config_and_inputs(self, **config_kwargs) -> tuple[CascadeConfig, torch.Tensor]:
        config = CascadeConfig(input_dim=self.input_dim, target_dims=self.target_dims, **config_kwargs)
        inputs = torch.randn(self.batch_size, self.input_dim, generator=torch.Generator().manual_seed(0))
        return config, inputs

    def create_and_check_model(self, config: CascadeConfig, inputs: torch.Tensor) -> CascadeModel:
        model = CascadeModel(config).eval()
        output = model(inputs, return_loss=True)
        assert isinstance(output, CascadeModelOutput)
        assert [tuple(t.shape) for t in output.cascade_embeddings] == [
            (self.batch_size, d) for d in config.target_dims
        ]
        for tensor in output.cascade_embeddings:
            torch.testing.assert_close(tensor.norm(dim=-1), torch.ones(self.batch_size))
        assert output.loss is not None and output.loss.ndim == 0 and output.loss.item() > 0
        for dim, tensor in zip(config.target_dims, output.cascade_embeddings, strict=True):
            torch.testing.assert_close(model.embed(inputs, dim), tensor)
        return model


STRATEGIES = ["direct", "chained", "nested"]
HEADS = ["linear", "mlp"]


@pytest.mark.parametrize("head_type", HEADS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shapes_normalisation_and_loss(strategy, head_type):
    tester = CascadeModelTester()
    config, inputs = tester.prepare_config_and_inputs(strategy=strategy, head_type=head_type)
    tester.create_and_check_model(config, inputs)


def test_heads_per_strategy():
    tester = CascadeModelTester(input_dim=16, target_dims=(8, 4, 2))
    layouts = {}
    for strategy in STRATEGIES:
        config, _ = tester.prepare_config_and_inputs(strategy=strategy)
        model = CascadeModel(config)
        layouts[strategy] = [tuple(head.projection.weight.shape) for head in model.heads]
    assert layouts == {
        "direct": [(8, 16), (4, 16), (2, 16)],
        "chained": [(8, 16), (4, 8), (2, 4)],
        "nested": [(8, 16)],
    }


def test_no_loss_when_not_asked_and_tuple_output():
    config, inputs = CascadeModelTester().prepare_config_and_inputs()
    model = CascadeModel(config)
    assert model.training and model(inputs).loss is not None  # training mode: the Trainer's loss
    assert model(inputs, return_loss=False).loss is None
    output = model(inputs, return_dict=False)
    assert isinstance(output, tuple) and output[0].ndim == 0 and len(output[1]) == 2
    model.eval()
    assert model(inputs).loss is None
    assert model(inputs, return_loss=True).loss is not None


def test_inference_builds_no_batch_by_batch_matrix(monkeypatch):
    """In eval mode a forward over many rows computes no loss, so no rows x rows similarity matrix is allocated."""
    config, _ = CascadeModelTester().prepare_config_and_inputs()
    model = CascadeModel(config).eval()
    rows = 4096
    inputs = torch.randn(rows, config.input_dim)
    shapes = []
    original_matmul = torch.Tensor.__matmul__

    def recording_matmul(self, other):
        result = original_matmul(self, other)
        shapes.append(tuple(result.shape))
        return result

    def refuse_loss(*args, **kwargs):
        raise AssertionError("the loss was computed at inference")

    monkeypatch.setattr(torch.Tensor, "__matmul__", recording_matmul)
    monkeypatch.setattr(model.criterion, "forward", refuse_loss)
    with torch.no_grad():
        output = model(inputs)
    assert output.loss is None
    assert [tuple(t.shape) for t in output.cascade_embeddings] == [(rows, dim) for dim in config.target_dims]
    assert (rows, rows) not in shapes


def test_wrong_input_dim_and_unknown_dim_are_refused():
    config, _ = CascadeModelTester().prepare_config_and_inputs()
    model = CascadeModel(config)
    with pytest.raises(ValueError, match=r"expects embeddings of shape \(batch, 16\), got \(3, 12\)"):
        model(torch.randn(3, 12))
    with pytest.raises(ValueError, match=r"dim 5 is not one of this cascade's target_dims \[8, 4\]"):
        model.embed(torch.randn(3, 16), dim=5)


@pytest.mark.parametrize("head_type", HEADS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pca_initialised_heads_reproduce_pca(small_real_embeddings, strategy, head_type):
    config = CascadeConfig(input_dim=384, target_dims=[128, 32], strategy=strategy, head_type=head_type)
    model = CascadeModel(config)
    model.init_from_pca(small_real_embeddings)
    pca = PCAProjection(small_real_embeddings / np.linalg.norm(small_real_embeddings, axis=1, keepdims=True), 128)
    for dim in (128, 32):
        expected = pca.transform(small_real_embeddings, dim)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(model.project(small_real_embeddings, dim), expected, atol=2e-4)


def test_saving_shows_no_shard_bar_and_leaves_other_bars_alone(tmp_path, capsys):
    """Each checkpoint saves the cascade: transformers' "Writing model shards" bar would print between the Trainer's
    lines every time. It is hidden while the cascade saves; the progress-bar settings of transformers and
    huggingface_hub (Hub uploads run in another thread meanwhile) and a tqdm hook the user set are untouched."""
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as transformers_logging

    model = CascadeModel(CascadeModelTester().prepare_config_and_inputs()[0])
    bars_seen = []

    def user_hook(factory, args, kwargs):
        bars_seen.append((kwargs.get("desc"), kwargs.get("disable", False)))
        return factory(*args, **kwargs)

    settings = (transformers_logging.is_progress_bar_enabled(), are_progress_bars_disabled())
    previous = transformers_logging.set_tqdm_hook(user_hook)
    try:
        model.save_pretrained(tmp_path)
        assert (transformers_logging.is_progress_bar_enabled(), are_progress_bars_disabled()) == settings
        hook = transformers_logging.set_tqdm_hook(previous)
    finally:
        transformers_logging.set_tqdm_hook(previous)
    assert hook is user_hook
    assert bars_seen == [("Writing model shards", True)]  # passed on to the user's hook, disabled
    assert "Writing model shards" not in capsys.readouterr().err
    assert (tmp_path / "model.safetensors").is_file()


def test_save_load_identity_and_automodel(tmp_path):
    config, inputs = CascadeModelTester().prepare_config_and_inputs(strategy="direct", head_type="mlp")
    model = CascadeModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(tmp_path)
    # weights, config, the model card, and the code that loads them without this package (tests/test_remote_code.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "config.json",
        "configuration_cascade.py",
        "losses.py",
        "matrix_rows.py",
        "model.safetensors",
        "modeling_cascade.py",
        "pca.py",
        "teacher_encoder.py",
        "text_encoding.py",
    ]
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, CascadeModel)
    for expected, actual in zip(model(inputs).cascade_embeddings, loaded(inputs).cascade_embeddings, strict=True):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_training_lowers_loss_on_real_embeddings(small_real_embeddings):
    config = CascadeConfig(input_dim=384, target_dims=[64, 16], strategy="direct")
    model = CascadeModel(config)  # random projections: far from the teacher geometry
    batch = torch.from_numpy(small_real_embeddings[:256])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    initial = model(batch).loss.item()
    for _ in range(30):
        optimizer.zero_grad()
        model(batch).loss.backward()
        optimizer.step()
    assert model(batch).loss.item() < 0.5 * initial
