from __future__ import annotations

import numpy as np
import torch

from modeling_cascade.pca import PCAProjection, pca_components


def test_components_are_orthonormal_and_sorted_by_variance():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 6)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    components = pca_components(data, 6)
    assert torch.allclose(components @ components.T, torch.eye(6), atol=1e-5)
    variances = ((torch.as_tensor(data, dtype=torch.float32) @ components.T) ** 2).mean(dim=0)
    assert torch.all(variances[:-1] >= variances[1:])
    # axis-aligned data: the axes are the coordinate axes, signed positive
    assert torch.allclose(components.abs(), torch.eye(6), atol=0.1)


def test_uncentred_and_centred_differ_on_shifted_data():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(400, 3)) + np.array([10.0, 0.0, 0.0])
    uncentred = pca_components(data, 1)[0]
    centred = pca_components(data, 1, centered=True)[0]
    assert abs(float(uncentred[0])) > 0.99  # the mean direction dominates the second moment
    assert abs(float(centred[0])) < 0.5


def test_projection_matches_manual_computation():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(200, 8)).astype(np.float32)
    pca = PCAProjection(data, 4, centered=True)
    expected = (data - data.mean(axis=0)) @ pca.components[:2].T
    np.testing.assert_allclose(pca.transform(data, 2), expected, rtol=1e-4, atol=1e-4)
