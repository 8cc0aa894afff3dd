from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import train_tiny_run
from transformers import AutoModel

import run_distillation
from modeling_cascade import CascadeModel
from modeling_cascade.commands import train as train_command


def run(tmp_path, embeddings_file, *extra: str) -> dict:
    return train_tiny_run(tmp_path / "out", embeddings_file, "768,256,64,16", *extra)


def test_main_writes_models_curve_and_results(tmp_path, embeddings_file, caplog):
    from transformers.utils import logging as transformers_logging

    caplog.set_level("INFO")
    transformers_logging.warning_once.cache_clear()  # so that a warning given in an earlier test can show again
    metrics = run(tmp_path, embeddings_file, "--cascade_strategy", "direct")
    out = tmp_path / "out"
    for name in (
        "best_model/model.safetensors",
        "final_model/model.safetensors",
        "learning_curve.png",
        "all_results.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "all_results.json").read_text())
    assert results == pytest.approx(metrics)
    assert set(results) >= {"final_train_loss", "best_val_loss", "dim_256_mse", "dim_16_compression_ratio"}
    assert results["dim_64_compression_ratio"] == 6.0
    assert {"dim_64_overlap@10", "dim_64_spearman", "dim_64_kendall"} <= set(results)
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert set(evaluation["methods"]) == {"cascade", "pca", "pca_centered", "truncation"}
    assert evaluation["methods"]["cascade"]["64"]["overlap@10"] == pytest.approx(results["dim_64_overlap@10"])
    assert (out / "dims_tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    log = caplog.text
    assert "Dropping target dims [768]" in log
    for line in ("Added distiller: 384 -> 256", "Added distiller: 384 -> 16", "Epoch 1/2: train_loss=", "Epoch 2/2: train_loss=",
                 "Dimension 64: MSE=", "Compression ratio=6.00x", "Best validation loss:",
                 "cascade  PCA (uncentred)  PCA (centred)  truncation", "overlap@10    64", "Epoch 2/2: overlap@10 256="):  # fmt: skip
        assert line in log, line
    assert "mtime may not be reliable" not in log  # epochs under a second: checkpoints sorted by step, no false alarm

    model = AutoModel.from_pretrained(out / "best_model")
    assert isinstance(model, CascadeModel) and model.config.target_dims == [256, 64, 16]
    inputs = torch.from_numpy(np.load(embeddings_file)[:10])
    reloaded = CascadeModel.from_pretrained(out / "best_model")
    torch.testing.assert_close(model(inputs).cascade_embeddings[1], reloaded(inputs).cascade_embeddings[1])


def test_finished_run_is_not_clobbered(tmp_path, embeddings_file):
    run(tmp_path, embeddings_file)
    before = (tmp_path / "out" / "best_model" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a finished run.*--overwrite_output_dir"):
        run(tmp_path, embeddings_file)
    assert (tmp_path / "out" / "best_model" / "model.safetensors").read_bytes() == before
    run(tmp_path, embeddings_file, "--overwrite_output_dir", "--seed", "7")
    assert (tmp_path / "out" / "best_model" / "model.safetensors").read_bytes() != before


@pytest.mark.parametrize(
    ("target_dims", "message"),
    [
        ("", "--target_dims is empty"),
        ("256,abc", "entry 'abc' is not an integer"),
        ("256,0", "entry 0 must be a positive integer"),
        ("256,256", "lists 256 twice"),
        ("768,512", "No target dim is smaller than the teacher's 384 dims"),
    ],
)
def test_bad_target_dims(tmp_path, embeddings_file, target_dims, message):
    with pytest.raises(ValueError, match=message):
        run_distillation.main(
            ["--input_file", str(embeddings_file), "--output_dir", str(tmp_path), "--target_dims", target_dims,
             "--train_batch_size", "128"]
        )  # fmt: skip


def test_bad_input_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        run_distillation.main(["--input_file", str(tmp_path / "missing.npy"), "--output_dir", str(tmp_path / "o")])
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="must be 2-D"):
        run_distillation.main(["--input_file", str(tmp_path / "flat.npy"), "--output_dir", str(tmp_path / "o")])
    np.save(tmp_path / "few.npy", np.random.default_rng(0).normal(size=(50, 32)).astype(np.float32))
    few = ["--input_file", str(tmp_path / "few.npy"), "--output_dir", str(tmp_path / "o"), "--target_dims", "8"]
    with pytest.raises(ValueError, match="--train_batch_size 64 is larger than the 45 training rows"):
        run_distillation.main([*few, "--train_batch_size", "64"])
    with pytest.raises(ValueError, match="3 rows are too few for --val_split 0.1"):
        np.save(tmp_path / "three.npy", np.ones((3, 32), dtype=np.float32))
        run_distillation.main(["--input_file", str(tmp_path / "three.npy"), "--output_dir", str(tmp_path / "o")])


def test_default_loss_and_kl_temperature_flag(tmp_path, embeddings_file):
    embeddings = np.load(embeddings_file)

    def config(*extra: str):
        argv = ["--input_file", str(embeddings_file), "--output_dir", str(tmp_path), "--target_dims", "768,256,64,16"]
        model_args = train_command.parse_args([*argv, *extra])[0]
        return train_command.build_model(model_args, embeddings.shape[1], embeddings).config

    default = config()
    assert (default.strategy, default.kl_loss_weight, default.similarity_loss_weight) == ("direct", 1.0, 0.0)
    assert default.kl_temperature == [0.1, 0.05, 0.05]
    assert config("--kl_temperature", "0.3,0.2,0.1,0.05").kl_temperature == [0.2, 0.1, 0.05]  # 768 is dropped
    assert config("--kl_temperature", "0.07").kl_temperature == [0.07] * 3
    with pytest.raises(ValueError, match="gives 2 temperatures for the 4 dims"):
        config("--kl_temperature", "0.1,0.05")
    with pytest.raises(ValueError, match="entry 'cold' is not a number"):
        config("--kl_temperature", "cold")
