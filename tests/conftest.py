"""Shared fixtures: tiny configs, real embeddings from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SCIFACT_MINILM = SHARED_DATA / "embeddings" / "scifact_corpus_all-MiniLM-L6-v2.npy"


def require_shared(path: Path) -> Path:
    """Skip the calling test with a clear reason when a file from ../shared/data is missing."""
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads real data from ../shared/data (never copied into the repo)")
    return path


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` / `multi_gpu` tests on machines without enough CUDA devices."""
    devices = torch.cuda.device_count()
    for item in items:
        if "gpu" in item.keywords and devices < 1:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "multi_gpu" in item.keywords and devices < 2:
            item.add_marker(pytest.mark.skip(reason="needs two CUDA devices"))


@pytest.fixture(scope="session")
def scifact_embeddings() -> np.ndarray:
    """Real teacher embeddings: SciFact abstracts under all-MiniLM-L6-v2 (5,183 x 384, L2-normalised)."""
    return np.load(require_shared(SCIFACT_MINILM))


@pytest.fixture(scope="session")
def small_real_embeddings(scifact_embeddings: np.ndarray) -> np.ndarray:
    """The first 600 SciFact rows: enough for a tiny training run."""
    return np.ascontiguousarray(scifact_embeddings[:600])


@pytest.fixture
def embeddings_file(tmp_path: Path, small_real_embeddings: np.ndarray) -> Path:
    """The 600 real rows written as a `.npy` file, as a user passes with --input_file."""
    path = tmp_path / "embeddings.npy"
    np.save(path, small_real_embeddings)
    return path
