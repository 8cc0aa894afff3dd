"""Rows of an embedding matrix that may be larger than RAM: a selection of rows (the training or validation part)
read by position or in blocks, from an in-memory array or a read-only memory map (`np.load(..., mmap_mode="r")`).

Reading through a memory map maps the file's pages into the process, and the kernel maps whole page-cache folios
around each row read (here about 1.5 GB for 1,024 random rows of a 3 GB file), so a few batches would put the whole
file into the process's resident memory. So the rows of a memory-mapped `.npy` file are read with positional reads
(`os.preadv`, one per run of consecutive rows) straight into the batch, and never mapped: the file stays in the page
cache, which the kernel reclaims as it needs, and the process holds only the rows it uses. Where `os.preadv` is
missing (Windows), rows are read through the map, whose pages are released (`MADV_DONTNEED`) after each read.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np


# Rows per block of a sequential pass (PCA, fingerprints, checks): 4,096 x 768 float32 is 12 MiB, as fast as larger.
BLOCK_ROWS = 4096
# Open read-only descriptors of memory-mapped files, per process (a forked data-loader worker opens its own).
_FILE_DESCRIPTORS: dict[tuple[int, str], int] = {}


def release_pages(matrix: np.ndarray) -> None:
    """Unmap the pages a read-only memory map (`np.memmap` in mode `"r"`) holds in this process; a no-op otherwise.

    Nothing is lost: the pages stay in the page cache and a later read maps them again.
    """
    memory_map = getattr(matrix, "_mmap", None)
    if memory_map is not None and getattr(matrix, "mode", None) == "r" and hasattr(mmap, "MADV_DONTNEED"):
        memory_map.madvise(mmap.MADV_DONTNEED)


def _file_rows(matrix: np.ndarray) -> tuple[str, int] | None:
    """`(path, offset of row 0)` when `matrix` is a whole C-ordered memory map of a file that `os.preadv` can read."""
    filename, offset = getattr(matrix, "filename", None), getattr(matrix, "offset", None)
    whole_map = isinstance(getattr(matrix, "base", None), mmap.mmap)  # a view of a map has another array as base
    if not (filename and offset is not None and whole_map and matrix.flags.c_contiguous and hasattr(os, "preadv")):
        return None
    return str(filename), int(offset)


def read_file_rows(path: str, offset: int, dtype: np.dtype, dim: int, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (row numbers, in any order) of a C-ordered `(n, dim)` matrix of `dtype` stored at `offset` in `path`,
    read with one `os.preadv` per run of consecutive rows, as a new float32 array in the order of `rows`."""
    key = (os.getpid(), path)
    if key not in _FILE_DESCRIPTORS:
        _FILE_DESCRIPTORS[key] = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    descriptor = _FILE_DESCRIPTORS[key]
    raw = np.empty((len(rows), dim), dtype=dtype)
    row_bytes = dim * raw.itemsize
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
        buffer = memoryview(raw[start:stop]).cast("B")
        position, done = offset + int(rows[start]) * row_bytes, 0
        while done < len(buffer):
            count = os.preadv(descriptor, [buffer[done:]], position + done)
            if count == 0:
                held = max(os.fstat(descriptor).st_size - offset, 0) // row_bytes
                raise ValueError(
                    f"{path!r} ends before row {int(rows[start]) + done // row_bytes}: it holds {held} rows now, so it "
                    "was cut short or rewritten while this run read it. Restore the file, or pass a complete one."
                )
            done += count
    return raw.astype(np.float32, copy=False)


class MatrixRows:
    """Some rows of a 2-D float matrix, read as float32 without copying the matrix.

    Indexing with row positions (an int array, a list or a slice) returns those rows as a new float32 array, and
    `blocks()` walks all of them in order; either way a memory-mapped matrix keeps only what was read in memory.

    Args:
        matrix (`np.ndarray` of shape `(n, dim)`): The whole matrix, in memory or a read-only `np.memmap`.
        rows (`np.ndarray`, *optional*): Sorted row numbers of `matrix` to keep; all rows when `None`.
        normalize (`bool`, defaults to `False`): Return rows scaled to unit length.

    Example:

    >>> import numpy as np
    >>> rows = MatrixRows(np.arange(12, dtype=np.float32).reshape(4, 3), rows=np.array([1, 3]))
    >>> rows[[1]]
    array([[ 9., 10., 11.]], dtype=float32)
    >>> [block.shape for block in rows.blocks(block_rows=1)]
    [(1, 3), (1, 3)]
    """

    def __init__(self, matrix: np.ndarray, rows: np.ndarray | None = None, normalize: bool = False) -> None:
        if matrix.ndim != 2:
            raise ValueError(f"An embedding matrix is 2-D (rows x dim), got shape {matrix.shape}.")
        self.matrix = matrix
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.normalize = normalize

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.matrix) if self.rows is None else len(self.rows)

    def select(self, positions: np.ndarray) -> MatrixRows:
        """The rows at sorted `positions` of this selection, as a selection of the same matrix (nothing is read)."""
        positions = np.asarray(positions, dtype=np.int64)
        return MatrixRows(self.matrix, positions if self.rows is None else self.rows[positions], self.normalize)

    def normalized(self) -> MatrixRows:
        """The same rows, read at unit length."""
        return MatrixRows(self.matrix, self.rows, normalize=True)

    def __getitem__(self, positions) -> np.ndarray:
        if isinstance(positions, slice):
            positions = np.arange(len(self))[positions]
        positions = np.asarray(positions, dtype=np.int64)
        matrix_rows = positions if self.rows is None else self.rows[positions]
        return self._read(matrix_rows)

    def _read(self, matrix_rows: np.ndarray | slice) -> np.ndarray:
        file_rows = _file_rows(self.matrix)
        if file_rows is not None:
            if isinstance(matrix_rows, slice):
                matrix_rows = np.arange(len(self.matrix))[matrix_rows]
            block = read_file_rows(*file_rows, self.matrix.dtype, self.matrix.shape[1], np.asarray(matrix_rows))
        else:
            block = np.array(self.matrix[matrix_rows], dtype=np.float32)  # always a copy: the map's pages go next
            release_pages(self.matrix)
        if self.normalize:
            block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        return block

    def blocks(self, block_rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
        """All the rows in order, `block_rows` at a time (float32 copies)."""
        for start in range(0, len(self), block_rows):
            stop = min(start + block_rows, len(self))
            yield self._read(slice(start, stop) if self.rows is None else self.rows[start:stop])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """All the rows as one in-memory array (what `np.asarray` gives): for matrices that fit in RAM."""
        array = self._read(slice(None) if self.rows is None else self.rows)
        return array if dtype is None else array.astype(dtype, copy=False)


def as_matrix_rows(embeddings: np.ndarray | MatrixRows) -> MatrixRows:
    """`embeddings` as [`MatrixRows`] (all rows of an array, or a tensor's values)."""
    if isinstance(embeddings, MatrixRows):
        return embeddings
    if hasattr(embeddings, "detach"):  # a torch tensor
        embeddings = embeddings.detach().cpu().numpy()
    return MatrixRows(np.asarray(embeddings) if not isinstance(embeddings, np.ndarray) else embeddings)


def second_moment(blocks: Iterator[np.ndarray], centered: bool = False) -> tuple[np.ndarray, np.ndarray | None, int]:
    """`X^T X / n` of the rows of all `blocks` in float64, about their mean when `centered`; with the mean and `n`.

    One pass when uncentred; a centred moment is `X^T X / n - mean mean^T`, also one pass.
    """
    total, sums, count = None, None, 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        total = block.T @ block if total is None else total + block.T @ block
        sums = block.sum(axis=0) if sums is None else sums + block.sum(axis=0)
        count += len(block)
    if total is None or count == 0:
        raise ValueError("PCA needs at least one row, got none.")
    moment, mean = total / count, sums / count
    if centered:
        moment = moment - np.outer(mean, mean)
    return moment, (mean if centered else None), count
