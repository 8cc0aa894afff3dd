"""Shared by the bad-input tests: run an entry point on a hostile input, assert the message names the culprits, and
check that nothing already on disk changed (SHA-256 of every file before and after). Pickles that would create a
marker file when unpickled prove that nothing is ever unpickled."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch


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


def main_args(workspace: Path, *extra: str, input_file: str | None = "good.npy") -> list[str]:
    argv = ["--output_dir", str(workspace / "out"), "--epochs", "1", "--train_batch_size", "64"]
    if input_file is not None:
        argv += ["--input_file", str(workspace / input_file)]
    return argv + list(extra)


def npy(folder: Path, name: str, array: np.ndarray) -> str:
    """Save `array` as `folder/name` (pickling object arrays, as numpy does by default); return `name`."""
    np.save(folder / name, array)
    return name
