from __future__ import annotations

import math

import pytest
import torch

from modeling_cascade import CascadeConfig
from modeling_cascade.losses import (
    CascadeLoss,
    cosine_similarity_matrix,
    similarity_kl_loss,
    similarity_mse_loss,
    topk_similarity_loss,
)


def test_similarity_mse_by_hand():
    teacher = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    student = torch.tensor([[1.0, 0.1], [0.1, 1.0]])
    assert similarity_mse_loss(teacher, student).item() == pytest.approx(0.16)


def test_kl_is_zero_for_identical_and_matches_hand_value():
    teacher = torch.tensor([[1.0, 0.2, 0.0], [0.2, 1.0, 0.1], [0.0, 0.1, 1.0]])
    assert similarity_kl_loss(teacher, teacher, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # student rows are uniform over the two other items; teacher row 0 is softmax([0.2, 0.0])
    expected = 0.0
    for row in ([0.2, 0.0], [0.2, 0.1], [0.0, 0.1]):
        probs = torch.softmax(torch.tensor(row), dim=0)
        expected += float((probs * (probs.log() - math.log(0.5))).sum())
    assert similarity_kl_loss(teacher, student, 1.0).item() == pytest.approx(expected / 3, rel=1e-5)


def test_topk_uses_only_nearest_teacher_neighbours():
    teacher = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    student = teacher.clone()
    student[0, 2] = student[2, 0] = -1.0  # far pair changed: invisible to top-1
    assert topk_similarity_loss(teacher, student, 1).item() == pytest.approx(0.0)
    student[0, 1] = 0.5  # nearest pair of row 0 changed by 0.4
    assert topk_similarity_loss(teacher, student, 1).item() == pytest.approx(0.16 / 3)


def test_cascade_loss_is_zero_when_heads_keep_geometry():
    config = CascadeConfig(input_dim=16, target_dims=[8], kl_loss_weight=1.0, topk_loss_weight=1.0)
    teacher = torch.randn(20, 16)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    assert CascadeLoss(config)(teacher, [teacher @ rotation]).item() == pytest.approx(0.0, abs=1e-5)
    assert cosine_similarity_matrix(teacher).diagonal().allclose(torch.ones(20))
    assert CascadeLoss(config)(teacher, [teacher[:, :8]]).item() > 0.01


def test_each_head_uses_its_own_temperature():
    teacher = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))
    heads = [teacher[:, :8], teacher[:, :4]]
    config = CascadeConfig(input_dim=16, target_dims=[8, 4], kl_temperature=[0.1, 0.05])
    similarity = cosine_similarity_matrix(teacher)
    expected = sum(
        similarity_kl_loss(similarity, cosine_similarity_matrix(head), temperature)
        for head, temperature in zip(heads, (0.1, 0.05), strict=True)
    )
    assert CascadeLoss(config)(teacher, heads).item() == pytest.approx(expected.item() / 2, rel=1e-5)


def test_one_row_batch_has_zero_loss_and_a_gradient():
    """Every term needs pairs; a last batch of one row must not turn the epoch's loss into NaN."""
    config = CascadeConfig(input_dim=16, target_dims=[8], similarity_loss_weight=1.0, topk_loss_weight=1.0)
    head = torch.randn(1, 8, requires_grad=True)
    loss = CascadeLoss(config)(torch.randn(1, 16), [head])
    loss.backward()
    assert loss.item() == 0.0 and head.grad is not None and torch.equal(head.grad, torch.zeros(1, 8))
