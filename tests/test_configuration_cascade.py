from __future__ import annotations

import pytest
from transformers import AutoConfig

from modeling_cascade import CascadeConfig


def test_round_trip_keeps_every_field(tmp_path):
    config = CascadeConfig(
        input_dim=16,
        target_dims=[4, 8],
        strategy="chained",
        head_type="mlp",
        mlp_hidden_dim=12,
        kl_loss_weight=0.5,
        teacher_model="some/teacher",
        query_prefix="query: ",
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, CascadeConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.target_dims == [8, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_dims": []}, "target_dims is empty"),
        ({"target_dims": [8, 0]}, "got 0"),
        ({"target_dims": [8, -4]}, "got -4"),
        ({"target_dims": [16]}, "target dim 16 is not smaller than input_dim 16"),
        ({"target_dims": [8, 8]}, "duplicates"),
        ({"strategy": "pyramid"}, "'pyramid'"),
        ({"head_type": "transformer"}, "'transformer'"),
        ({"teacher_pooling": "max"}, "'max'"),
        ({"kl_loss_weight": -1.0}, "kl_loss_weight must be >= 0"),
        ({"kl_loss_weight": 0.0}, "All loss weights are 0"),
        ({"kl_temperature": 0.0}, "kl_temperature must be > 0"),
        ({"kl_temperature": [0.1, -0.5]}, "kl_temperature must be > 0, got -0.5 for dim 4"),
        ({"kl_temperature": [0.1, 0.05, 0.05]}, "3 temperatures .* for 2 target dims"),
    ],
)
def test_invalid_values_name_the_culprit(kwargs, message):
    arguments = {"input_dim": 16, "target_dims": [8, 4], **kwargs}
    with pytest.raises(ValueError, match=message):
        CascadeConfig(**arguments)


def test_kl_temperature_is_stored_per_dim():
    """The default is 0.1 from 128 dims up and 0.05 below; a list follows the dims it was given with."""
    assert CascadeConfig(input_dim=768, target_dims=[32, 512, 128, 64]).kl_temperature == [0.1, 0.1, 0.05, 0.05]
    assert CascadeConfig(input_dim=16, target_dims=[4, 8], kl_temperature=0.2).kl_temperature == [0.2, 0.2]
    config = CascadeConfig(input_dim=16, target_dims=[4, 8], kl_temperature=[0.05, 0.1])
    assert config.target_dims == [8, 4] and config.kl_temperature == [0.1, 0.05]
