"""Bad input through loading and using a cascade (`from_pretrained`, `encode`, `CascadeIndex`, the evaluate command) and
the package's own code. As everywhere in the bad-input tests: each failure names its culprit, and nothing already on disk is touched.

Every case runs a real entry point (`run_distillation.main`, `python -m modeling_cascade.evaluate`, `CascadeIndex`,
`CascadeModel.from_pretrained`, `CascadeModel.encode`) on a hostile input, asserts the user-facing message names the
file, row, column, dim or flag at fault, and compares a SHA-256 of every file that existed before the call with the
same after it. Pickles that would create a marker file when unpickled prove that nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_input_helpers import (
    MARKER,
    REPO_ROOT,
    MarkerPayload,
    main_args,
    refuse,
    untouched,
    write_pickle,
)

import run_distillation
from modeling_cascade import CascadeConfig, CascadeIndex, CascadeModel
from modeling_cascade.commands import evaluate as evaluate_cli
from modeling_cascade.offline import HubUnreachableError


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
