"""Safe file handling: atomic writes and validated loading of embedding matrices (never unpickling)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from transformers.utils import logging


logger = logging.get_logger(__name__)


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_embeddings(path: str | os.PathLike, embeddings: np.ndarray) -> None:
    """Write a float32 `.npy` file atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"Embeddings are saved as .npy files; got {str(path)!r}.")
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.ascontiguousarray(embeddings, dtype=np.float32))


def load_embeddings(path: str | os.PathLike, expected_dim: int | None = None) -> np.ndarray:
    """Load and check a 2-D float `.npy` embedding matrix, refusing pickled objects.

    Args:
        path (`str` or `os.PathLike`): A `.npy` file of shape `(rows, dim)`.
        expected_dim (`int`, *optional*): Required number of columns (e.g. a cascade's `input_dim`).

    Returns:
        `np.ndarray` of dtype float32.

    Raises:
        `FileNotFoundError` for a missing file; `ValueError` naming the file and the problem for anything else
        (not `.npy`, pickled content, not 2-D, not floating point, no rows, wrong dim, NaN/inf rows).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Embeddings file not found: {str(path)!r}.")
    if path.suffix != ".npy":
        raise ValueError(f"{str(path)!r} is not a .npy file: embeddings must be a NumPy .npy matrix (rows x dim).")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as error:
        raise ValueError(
            f"{str(path)!r} holds pickled Python objects, which are never loaded; save a plain float matrix with "
            "numpy.save."
        ) from error
    except Exception as error:
        raise ValueError(f"{str(path)!r} is not a readable .npy file ({error}).") from error
    if array.ndim != 2:
        raise ValueError(f"{str(path)!r} has shape {array.shape}: embeddings must be 2-D (rows x dim).")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{str(path)!r} has dtype {array.dtype}: embeddings must be floating point.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{str(path)!r} has shape {array.shape}: it holds no embeddings.")
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise ValueError(f"{str(path)!r} has dim {array.shape[1]}, but {expected_dim} is expected.")
    array = np.array(array, dtype=np.float32)  # an in-memory, writable copy of the memory map
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad_rows.size:
        shown = ", ".join(str(row) for row in bad_rows[:5]) + (", ..." if bad_rows.size > 5 else "")
        raise ValueError(f"{str(path)!r} has {bad_rows.size} row(s) with NaN or inf values (rows {shown}).")
    return array
