"""The command-line layer: user errors are one `error:` line with exit status 2, bugs keep their traceback, and
every CLI reads lists the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import run_distillation
from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.commands import evaluate as evaluate_cli
from modeling_cascade.commands import run_command, split_list
from modeling_cascade.commands import search as search_cli


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder with good and bad embedding files and a tiny saved cascade."""
    rng = np.random.default_rng(0)
    good = rng.normal(size=(64, 32)).astype(np.float32)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))
    nan = good.copy()
    nan[7, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    cascade = CascadeModel(CascadeConfig(input_dim=32, target_dims=[16, 8]))
    cascade.init_from_pca(good)
    cascade.save_pretrained(tmp_path / "cascade")
    return tmp_path


def one_error_line(capsys: pytest.CaptureFixture, call, *culprits: str) -> str:
    """Run a CLI entry point; it must exit 2 with exactly one `error:` line on stderr naming every culprit."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    for culprit in culprits:
        assert culprit in errors[0], (culprit, errors[0])
    return errors[0]


def train_cli(monkeypatch: pytest.MonkeyPatch, *argv: str):
    monkeypatch.setattr(sys, "argv", ["run_distillation.py", *argv])
    return run_distillation.cli


@pytest.mark.parametrize(
    ("flags", "culprits"),
    [
        (["--input_file", "{dir}/flat.npy"], ["flat.npy", "2-D"]),
        (["--input_file", "{dir}/nan.npy"], ["nan.npy", "rows 7"]),
        (["--input_file", "{dir}/missing.npy"], ["missing.npy"]),
        (["--input_file", "{dir}/good.npy", "--target_dims", "0"], ["--target_dims", "0"]),
        (["--input_file", "{dir}/good.npy", "--target_dims", "32,abc"], ["--target_dims", "'abc'"]),
        (["--input_file", "{dir}/good.npy", "--target_dims", "16", "--train_batch_size", "4096"],
         ["--train_batch_size 4096", "58 training rows"]),
        (["--input_file", "{dir}/good.npy", "--no_such_flag", "1"], ["--no_such_flag"]),
        (["--input_file", "{dir}/good.npy", "--epochs", "many"], ["--num_train_epochs", "'many'"]),
        (["--input_file", "{dir}/good.npy", "--collection", "OpenSomething"], ["OpenSomething", "OpenScience"]),
    ],
)  # fmt: skip
def test_run_distillation_user_errors(inputs, monkeypatch, capsys, flags, culprits):
    argv = [flag.format(dir=inputs) for flag in flags]
    one_error_line(capsys, train_cli(monkeypatch, *argv, "--output_dir", str(inputs / "out")), *culprits)
    assert not (inputs / "out" / "final_model").exists()


@pytest.mark.parametrize(
    ("flags", "culprits"),
    [
        (["--model_dir", "{dir}/missing", "--test_queries", "q"], ["--model_dir", "missing", "does not exist"]),
        (["--model_dir", "{dir}/cascade", "--test_queries", " , "], ["--test_queries", "holds no query"]),
        (["--model_dir", "{dir}/cascade"], ["--test_queries", "--beir"]),
        (["--model_dir", "{dir}/cascade", "--test_queries", "q", "--top_k", "0"], ["--top_k", "0"]),
        (["--model_dir", "{dir}/cascade", "--test_queries", "q", "--k", "x"], ["--k", "'x'"]),
    ],
)
def test_evaluate_user_errors(inputs, monkeypatch, capsys, flags, culprits):
    monkeypatch.setattr(sys, "argv", ["cascade-evaluate", *(flag.format(dir=inputs) for flag in flags)])
    one_error_line(capsys, evaluate_cli.cli, *culprits)


@pytest.mark.parametrize(
    ("flags", "culprits"),
    [
        (["--query_embeddings", "{dir}/good.npy"], ["exactly one of --model_dir"]),
        (["--model_dir", "{dir}/cascade", "--corpus_embeddings", "{dir}/good.npy", "--query_embeddings",
          "{dir}/good.npy", "--stages", "8,x"], ["--stages", "'8,x'"]),
        (["--model_dir", "{dir}/cascade", "--corpus_embeddings", "{dir}/nan.npy", "--query_embeddings",
          "{dir}/good.npy"], ["nan.npy", "rows 7"]),
        (["--model_dir", "{dir}/cascade", "--corpus_embeddings", "{dir}/good.npy", "--query_embeddings",
          "{dir}/good.npy", "--k", "100"], ["k=100", "64"]),
        (["--model_dir", "{dir}/cascade", "--first_stage", "magic"], ["--first_stage", "'magic'"]),
    ],
)  # fmt: skip
def test_search_user_errors(inputs, monkeypatch, capsys, flags, culprits):
    monkeypatch.setattr(sys, "argv", ["cascade-search", *(flag.format(dir=inputs) for flag in flags)])
    one_error_line(capsys, search_cli.cli, *culprits)


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "run_distillation.py", "--input_file", "{dir}/flat.npy", "--output_dir", "{dir}/out"],
        [sys.executable, "-m", "modeling_cascade.evaluate", "--model_dir", "{dir}/missing", "--test_queries", "q"],
        [sys.executable, "-m", "modeling_cascade.search", "--model_dir", "{dir}/cascade", "--stages", "8,x",
         "--corpus_embeddings", "{dir}/good.npy", "--query_embeddings", "{dir}/good.npy"],
    ],
    ids=["run_distillation", "evaluate", "search"],
)  # fmt: skip
def test_each_cli_process_prints_one_line_and_exits_2(inputs, command):
    """As a user sees it: the whole stderr of the process is one `error:` line (logging stays quiet here)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [part.format(dir=inputs) for part in command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert not [line for line in lines if line.startswith("error: ")][1:], result.stderr


def test_unexpected_errors_keep_their_traceback():
    """A ValueError raised by a library we call (a bug of ours) is not dressed up as a user error."""

    def bug():
        return np.zeros((2, 3)) @ np.zeros((2, 3))  # numpy raises the ValueError

    with pytest.raises(ValueError, match="matmul"):
        run_command(bug)
    with pytest.raises(KeyError):
        run_command(lambda: {}["missing"])
    from modeling_cascade.array_utils import blockwise_search

    with pytest.raises(ValueError, match="matmul"):  # raised in our code, by numpy, not by one of our checks: a bug
        run_command(lambda: blockwise_search(np.zeros((2, 3), np.float32), np.zeros((5, 4), np.float32), 2))


def test_split_list_unescapes_in_both_forms():
    assert split_list(["a\\,b", "c"]) == ["a,b", "c"]
    assert split_list("a\\,b,c") == ["a,b", "c"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("256,128, 64,32", ["256", "128", "64", "32"]),
        (["What is X?,How do Y?"], ["What is X?", "How do Y?"]),
        (["What is X, really?", "How do Y?"], ["What is X, really?", "How do Y?"]),
        (r"one\, two,three", ["one, two", "three"]),
        (" , ", []),
        (None, []),
    ],
)
def test_one_list_syntax(values, expected):
    assert split_list(values) == expected


def test_text_flags_take_commas_or_several_values(inputs, monkeypatch):
    parse = evaluate_cli.EvaluateArguments
    assert parse(model_dir="m", test_queries=["a,b"]).query_list == ["a", "b"]
    assert parse(model_dir="m", test_queries=["a, with comma", "b"]).query_list == ["a, with comma", "b"]
    argv = ["--model_dir", str(inputs / "cascade"), "--corpus_embeddings", str(inputs / "good.npy"),
            "--queries", "first", "second, with a comma", "--teacher", "unused"]  # fmt: skip
    seen = {}
    monkeypatch.setattr(search_cli, "read_texts", lambda *args: seen.setdefault("read", args))

    def stop(self, queries, **kwargs):
        seen["queries"] = queries
        raise SystemExit(0)

    monkeypatch.setattr(search_cli.CascadeIndex, "search", stop)
    monkeypatch.setattr("modeling_cascade.teacher.Teacher.__init__", lambda self, name: None)
    with pytest.raises(SystemExit):
        search_cli.main(argv)
    assert seen["queries"] == ["first", "second, with a comma"]


def test_import_is_light_and_exports_the_public_names():
    code = (
        "import sys, modeling_cascade\n"
        "heavy = [m for m in ('datasets', 'matplotlib', 'sentence_transformers', 'faiss') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from modeling_cascade import CascadeIndex, SearchResult, Teacher, load_corpus\n"
        "assert all(getattr(modeling_cascade, name) for name in modeling_cascade.__all__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
