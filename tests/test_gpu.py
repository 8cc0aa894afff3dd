"""The CUDA paths: the teacher embedding on a GPU, mixed-precision training, and DDP over two GPUs.

They are skipped without a CUDA device (see `conftest.py`); benchmarks/gpu_check.sh runs them on a lent GPU machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import run_distillation
from modeling_cascade.embeddings import compute_teacher_embeddings
from modeling_cascade.teacher import Teacher


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.gpu
def test_teacher_embeds_on_cuda_like_on_cpu(tiny_teacher_dir, tmp_path):
    import datasets

    texts = [f"Document {index}: " + "words " * (index % 37) for index in range(300)]
    corpus = datasets.Dataset.from_dict({"text": texts})
    on_cuda = Teacher(str(tiny_teacher_dir), max_length=64, device="cuda")
    assert on_cuda.device.startswith("cuda")
    embedded = compute_teacher_embeddings(corpus, on_cuda, cache_dir=tmp_path, shard_size=100)
    expected = Teacher(str(tiny_teacher_dir), max_length=64, device="cpu").encode(texts)
    np.testing.assert_allclose(embedded, expected, atol=1e-4)


@pytest.mark.gpu
def test_mixed_precision_trains_like_fp32_on_cuda(embeddings_file, tmp_path):
    argv = ["--input_file", str(embeddings_file), "--target_dims", "128,32", "--epochs", "4"]
    argv += ["--train_batch_size", "64"]
    results = {}
    for precision in ("fp32", "bf16", "fp16"):
        flags = [] if precision == "fp32" else [f"--{precision}"]
        results[precision] = run_distillation.main([*argv, *flags, "--output_dir", str(tmp_path / precision)])
        # mixed precision computes in half precision but keeps (and saves) float32 weights
        weights = load_file(tmp_path / precision / "best_model" / "model.safetensors")
        assert {array.dtype for array in weights.values()} == {np.dtype("float32")}
    for precision in ("bf16", "fp16"):
        assert results[precision].keys() == results["fp32"].keys()
        assert math.isfinite(results[precision]["final_val_loss"])
        assert results[precision]["final_val_loss"] == pytest.approx(results["fp32"]["final_val_loss"], rel=0.1)
        for dim in (128, 32):
            key = f"dim_{dim}_overlap@10"
            assert results[precision][key] == pytest.approx(results["fp32"][key], abs=0.05)


@pytest.mark.multi_gpu
def test_two_gpus_train_like_one(embeddings_file, tmp_path):
    argv = ["--input_file", str(embeddings_file), "--target_dims", "128,32", "--epochs", "4"]
    argv += ["--train_batch_size", "32"]
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO_ROOT / "accelerate_config.yaml"),
        "--num_processes", "2", "run_distillation.py", *argv, "--output_dir", str(tmp_path / "two"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launch, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    one = run_distillation.main([*argv, "--output_dir", str(tmp_path / "one")])
    two = json.loads((tmp_path / "two" / "all_results.json").read_text())
    assert two.keys() == one.keys()
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=0.1)
    for dim in (128, 32):
        assert two[f"dim_{dim}_overlap@10"] == pytest.approx(one[f"dim_{dim}_overlap@10"], abs=0.05)
