"""Losses that make each cascade head keep the teacher's neighbourhoods within a batch.

All terms compare the batch's cosine-similarity matrix under the teacher with the one under a head, so they need no
labels: the teacher embeddings are both the input and the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configuration_cascade import CascadeConfig


def cosine_similarity_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the rows of `embeddings`, shape `(n, n)`."""
    normalized = F.normalize(embeddings, dim=-1)
    return normalized @ normalized.T


def similarity_mse_loss(teacher_similarity: torch.Tensor, student_similarity: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between two similarity matrices over the off-diagonal pairs."""
    off_diagonal = ~torch.eye(teacher_similarity.shape[0], dtype=torch.bool, device=teacher_similarity.device)
    return (teacher_similarity - student_similarity)[off_diagonal].pow(2).mean()


def row_log_probs(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(similarity / temperature) of each row, with the self-pair (the diagonal) given probability 0.

    The diagonal is set to a finite logit far below the row's range (logits lie in [-1/T, 1/T] for cosines), so its
    probability is exactly 0 in float32 while the log-probability stays finite and KL terms need no masking.
    """
    self_pairs = torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    return F.log_softmax((similarity / temperature).masked_fill(self_pairs, -2.0 / temperature - 1e3), dim=-1)


def similarity_kl_loss(
    teacher_similarity: torch.Tensor,
    student_similarity: torch.Tensor,
    temperature: float,
    teacher_log_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) between the softmax(similarity / temperature) of each row, self-pairs excluded.

    It weighs the pairs that decide a ranking (each row's closest neighbours) far above the rest.

    Args:
        teacher_similarity (`torch.Tensor` of shape `(n, n)`): Cosine similarities under the teacher.
        student_similarity (`torch.Tensor` of shape `(n, n)`): Cosine similarities under a head.
        temperature (`float`): Softmax temperature.
        teacher_log_probs (`torch.Tensor`, *optional*): `row_log_probs(teacher_similarity, temperature)`, when
            already computed for another head.
    """
    if teacher_log_probs is None:
        teacher_log_probs = row_log_probs(teacher_similarity, temperature)
    student_log_probs = row_log_probs(student_similarity, temperature)
    divergence = F.kl_div(student_log_probs, teacher_log_probs, reduction="sum", log_target=True)
    return divergence / teacher_similarity.shape[0]


def topk_similarity_loss(teacher_similarity: torch.Tensor, student_similarity: torch.Tensor, k: int) -> torch.Tensor:
    """Mean squared similarity difference over each row's `k` nearest teacher neighbours (self excluded)."""
    n = teacher_similarity.shape[0]
    k = min(k, n - 1)
    self_pairs = torch.eye(n, dtype=torch.bool, device=teacher_similarity.device)
    neighbors = teacher_similarity.masked_fill(self_pairs, float("-inf")).topk(k, dim=-1).indices
    return (teacher_similarity.gather(1, neighbors) - student_similarity.gather(1, neighbors)).pow(2).mean()


class CascadeLoss(torch.nn.Module):
    """Weighted sum of the similarity-preservation terms, averaged over the heads.

    Args:
        config (`CascadeConfig`): Supplies the weights (`similarity_loss_weight`, `kl_loss_weight`,
            `topk_loss_weight`), the per-dim `kl_temperature` and `topk_neighbors`.

    Example:

    >>> import torch
    >>> loss = CascadeLoss(CascadeConfig(input_dim=16, target_dims=[8]))
    >>> teacher = torch.randn(32, 16)
    >>> float(loss(teacher, [teacher[:, :8]])) > 0
    True
    """

    def __init__(self, config: CascadeConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, teacher_embeddings: torch.Tensor, head_embeddings: list[torch.Tensor]) -> torch.Tensor:
        """Return the loss for one batch; computed in float32 whatever the autocast dtype.

        A one-row batch (the last batch of an epoch can be one) has no pairs to compare: its loss is zero, kept in the
        graph so that the Trainer can still call `backward`.

        Args:
            teacher_embeddings (`torch.Tensor` of shape `(batch, input_dim)`): The batch under the teacher.
            head_embeddings (`list[torch.Tensor]`): The batch under each head, in the order of `config.target_dims`.
        """
        config = self.config
        if teacher_embeddings.shape[0] < 2:
            return sum(embeddings.float().sum() for embeddings in head_embeddings) * 0.0
        with torch.autocast(device_type=teacher_embeddings.device.type, enabled=False):
            teacher_similarity = cosine_similarity_matrix(teacher_embeddings.float())
            total = teacher_embeddings.new_zeros((), dtype=torch.float32)
            teacher_log_probs = {}  # per temperature: heads that share one share the teacher's softmax
            for embeddings, temperature in zip(head_embeddings, config.kl_temperature, strict=True):
                student_similarity = cosine_similarity_matrix(embeddings.float())
                if config.similarity_loss_weight:
                    total = total + config.similarity_loss_weight * similarity_mse_loss(
                        teacher_similarity, student_similarity
                    )
                if config.kl_loss_weight:
                    if temperature not in teacher_log_probs:
                        teacher_log_probs[temperature] = row_log_probs(teacher_similarity, temperature)
                    total = total + config.kl_loss_weight * similarity_kl_loss(
                        teacher_similarity, student_similarity, temperature, teacher_log_probs[temperature]
                    )
                if config.topk_loss_weight:
                    total = total + config.topk_loss_weight * topk_similarity_loss(
                        teacher_similarity, student_similarity, config.topk_neighbors
                    )
            return total / len(head_embeddings)
