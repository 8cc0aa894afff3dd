"""Safe file handling: atomic writes, validated loading of embedding matrices (never unpickling), and the checks a
checkpoint passes before a run resumes from it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from transformers.utils import logging

from .matrix_rows import BLOCK_ROWS, MatrixRows


logger = logging.get_logger(__name__)

NPY_MAGIC = b"\x93NUMPY"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` only if the block finishes.

    A run killed mid-write therefore leaves either the old file or none, never a half-written one that a later run
    would trust.

    Args:
        path (`str` or `os.PathLike`): Final location of the file.

    Example:

    >>> with atomic_path("/tmp/result.json") as tmp:
    ...     _ = tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; swap it in for `path` only if the block finishes.

    A run killed while saving a model therefore leaves the previous folder (or none), never a half-written one.

    Args:
        path (`str` or `os.PathLike`): Final location of the folder.

    Example:

    >>> with atomic_directory("/tmp/final_model") as folder:
    ...     _ = (folder / "config.json").write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    previous = temporary.with_name(temporary.name + ".old")
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp creates 0700; give the folder the usual permissions
        if path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    finally:
        if previous.exists() and not path.exists():  # interrupted between the two renames: put the old folder back
            os.replace(previous, path)
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def save_figure(figure, path: str | os.PathLike) -> str:
    """Write a matplotlib `figure` to `path` as a PNG, atomically, and close it; returns `path` as a string."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return str(path)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def save_embeddings(path: str | os.PathLike, embeddings: np.ndarray) -> None:
    """Write a float32 `.npy` file atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"Embeddings are saved as .npy files; got {str(path)!r}.")
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.ascontiguousarray(embeddings, dtype=np.float32))


# `load_embeddings(..., memory_map=None)` maps files larger than this instead of loading them.
MEMORY_MAP_BYTES = 1 << 30


def load_embeddings(
    path: str | os.PathLike,
    expected_dim: int | None = None,
    expected_by: str = "the expected dim",
    memory_map: bool | None = False,
) -> np.ndarray:
    """Load and check a 2-D float `.npy` embedding matrix, refusing pickled objects.

    Args:
        path (`str` or `os.PathLike`): A `.npy` file of shape `(rows, dim)`.
        expected_dim (`int`, *optional*): Required number of columns (e.g. a cascade's `input_dim`).
        expected_by (`str`, defaults to `"the expected dim"`): What requires `expected_dim`, for the error message
            (e.g. `"--embedding_dim"` or `"the cascade's input_dim"`).
        memory_map (`bool`, *optional*, defaults to `False`): Return the file's read-only memory map instead of
            loading it (read it through [`~matrix_rows.MatrixRows`] to keep memory flat); `None` maps files larger
            than 1 GiB. Either way every row is checked, in blocks.

    Returns:
        `np.ndarray` of dtype float32, or a read-only `np.memmap` of the file's float dtype.

    Raises:
        `FileNotFoundError` for a missing file; `ValueError` naming the file and the problem for anything else
        (not `.npy`, pickled content, not 2-D, not floating point, no rows, wrong dim, NaN/inf rows).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Embeddings file not found: {str(path)!r}.")
    if path.suffix != ".npy":
        raise ValueError(f"{str(path)!r} is not a .npy file: embeddings must be a NumPy .npy matrix (rows x dim).")
    with open(path, "rb") as handle:
        magic = handle.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise ValueError(
            f"{str(path)!r} is not a NumPy .npy file (it does not start with the .npy header): it is cut short or in "
            "another format. Pickles and torch files are never loaded; save a float matrix with numpy.save."
        )
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as error:
        if isinstance(error, ValueError) and ("allow_pickle" in str(error) or "Python objects" in str(error)):
            raise ValueError(
                f"{str(path)!r} holds pickled Python objects, which are never loaded; save a plain float matrix "
                "with numpy.save."
            ) from error
        raise ValueError(f"{str(path)!r} is not a readable .npy file (cut short or damaged: {error}).") from error
    if array.ndim != 2:
        raise ValueError(f"{str(path)!r} has shape {array.shape}: embeddings must be 2-D (rows x dim).")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{str(path)!r} has dtype {array.dtype}: embeddings must be floating point.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{str(path)!r} has shape {array.shape}: it holds no embeddings.")
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise ValueError(f"{str(path)!r} has dim {array.shape[1]}, but {expected_by} is {expected_dim}.")
    if memory_map is None:
        memory_map = path.stat().st_size > MEMORY_MAP_BYTES
    if not memory_map:
        array = np.array(array, dtype=np.float32)  # an in-memory, writable copy of the memory map
    bad_rows = np.concatenate(
        [
            start + np.flatnonzero(~np.isfinite(block).all(axis=1))
            for start, block in zip(range(0, len(array), BLOCK_ROWS), MatrixRows(array).blocks(), strict=True)
        ]
    )
    if bad_rows.size:
        shown = ", ".join(str(row) for row in bad_rows[:5]) + (", ..." if bad_rows.size > 5 else "")
        raise ValueError(f"{str(path)!r} has {bad_rows.size} row(s) with NaN or inf values (rows {shown}).")
    return array
