"""Saving and loading a `CascadeIndex` without pickle: `index_config.json`, `vectors.safetensors` (the stage vectors,
and a FAISS PQ or HNSW first stage as bytes) and the cascade in `cascade/`. Loading can memory-map the vectors."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from transformers.utils import logging

from .array_utils import faiss_available
from .file_utils import atomic_directory
from .modeling_cascade import CascadeModel


logger = logging.get_logger(__name__)

INDEX_CONFIG_FILE = "index_config.json"
VECTORS_FILE = "vectors.safetensors"
CASCADE_DIR = "cascade"
FORMAT_VERSION = 1
DTYPES = ("float32", "float16")
PQ_ARRAY = "first_stage_pq"
HNSW_ARRAY = "first_stage_hnsw"
# first stages stored as a FAISS index serialised by FAISS itself (bytes in a uint8 array, never pickled)
FAISS_ARRAYS = {"pq": PQ_ARRAY, "hnsw": HNSW_ARRAY}
SAVED_FIRST_STAGES = ("exact", "flat", "hnsw", "pq")
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "U8": np.uint8}


def check_stages(cascade: CascadeModel, stages: Sequence[int]) -> tuple[int, ...]:
    """Stages as a tuple of strictly increasing dims, each a target dim of `cascade` or its `input_dim`."""
    config = cascade.config
    stages = tuple(int(dim) for dim in stages)
    if not stages:
        raise ValueError(f"stages is empty: give increasing dims, e.g. (128, {config.input_dim}).")
    for dim in stages:
        if dim not in config.target_dims and dim != config.input_dim:
            raise ValueError(
                f"stage dim {dim} is neither one of the cascade's target_dims {config.target_dims} nor its "
                f"input_dim {config.input_dim} (the full teacher vectors)."
            )
    if list(stages) != sorted(set(stages)):
        raise ValueError(f"stages must be strictly increasing dims, got {list(stages)}.")
    return stages


def expected_arrays(cascade: CascadeModel, stages: Sequence[int], num_vectors: int) -> dict[str, list[int]]:
    """Names and shapes of the stored matrices of an index: one `nested` matrix at the widest cascade stage for a
    nested cascade (its prefixes are the smaller stages), one `stage_{dim}` matrix per cascade stage otherwise, and
    `teacher` when the teacher dim is a stage."""
    config = cascade.config
    cascade_dims = [dim for dim in stages if dim != config.input_dim]
    arrays = {}
    if config.strategy == "nested" and cascade_dims:
        arrays["nested"] = [num_vectors, max(cascade_dims)]
    else:
        arrays.update({f"stage_{dim}": [num_vectors, dim] for dim in cascade_dims})
    if config.input_dim in stages:
        arrays["teacher"] = [num_vectors, config.input_dim]
    return arrays


def read_index_config(path: Path) -> dict:
    """The checked `index_config.json` of a saved index, or a `ValueError` naming the file and what is wrong."""
    try:
        index_config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}): not a saved CascadeIndex.") from None
    if not isinstance(index_config, dict) or "format_version" not in index_config:
        raise ValueError(f"{str(path)!r} has no format_version: it was not written by CascadeIndex.save.")
    if index_config["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {index_config['format_version']!r}; this version of "
            f"modeling_cascade reads {FORMAT_VERSION}."
        )
    checks = {
        "num_vectors": lambda value: isinstance(value, int) and value > 0,
        "stages": lambda value: isinstance(value, list) and all(isinstance(dim, int) for dim in value),
        "dtype": lambda value: value in DTYPES,
        "first_stage": lambda value: value in SAVED_FIRST_STAGES,
        "arrays": lambda value: isinstance(value, dict),
    }
    for key, check in checks.items():
        if key not in index_config or not check(index_config[key]):
            raise ValueError(f"{str(path)!r}: {key} is missing or invalid ({index_config.get(key)!r}).")
    return index_config


def save_index(index, save_directory: str | os.PathLike) -> None:
    """Write `index` (a `CascadeIndex`) to a folder: `index_config.json`, `vectors.safetensors` (the stage vectors, and the FAISS
    PQ codes as bytes) and the cascade in `cascade/`. The folder is written beside the target and swapped in, so
    a failed save leaves any previous index there intact."""
    save_directory = Path(save_directory)
    save_directory.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(index._vectors)
    if index.first_stage in FAISS_ARRAYS:
        import faiss

        arrays[FAISS_ARRAYS[index.first_stage]] = faiss.serialize_index(index._faiss_index)
    index_config = {
        "format_version": FORMAT_VERSION,
        "num_vectors": index.num_vectors,
        "stages": list(index.stages),
        "dtype": index.dtype,
        "first_stage": index.first_stage,
        "arrays": {name: list(array.shape) for name, array in arrays.items()},
        "hnsw": {
            "neighbors": index.hnsw_neighbors,
            "ef_construction": index.hnsw_ef_construction,
            "ef_search": index.hnsw_ef_search,
        },
    }
    with atomic_directory(save_directory) as temporary:
        index.cascade.save_pretrained(temporary / CASCADE_DIR, create_model_card=False)  # not a Hub model folder
        save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, temporary / VECTORS_FILE)
        (temporary / INDEX_CONFIG_FILE).write_text(json.dumps(index_config, indent=2) + "\n")
    logger.info(f"Saved {index!r} to {save_directory}")


def memory_map_safetensors(path: Path) -> dict[str, np.memmap]:
    """The arrays of a safetensors file as read-only `np.memmap`s (nothing read into RAM until used), from the
    file's JSON header of dtypes, shapes and byte offsets."""
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        if not 0 < header_size <= path.stat().st_size - 8:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file (header size {header_size}).")
        try:
            header = json.loads(file.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file ({error}).") from None
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry.get("dtype") not in SAFETENSORS_DTYPES:
            raise ValueError(f"{str(path)!r}: array {name!r} has dtype {entry.get('dtype')!r}, not one an index uses.")
        start, stop = entry["data_offsets"]
        dtype = np.dtype(SAFETENSORS_DTYPES[entry["dtype"]])
        shape = tuple(entry["shape"])
        if stop - start != dtype.itemsize * int(np.prod(shape)) or 8 + header_size + stop > path.stat().st_size:
            raise ValueError(f"{str(path)!r}: array {name!r} does not fit its byte range; the file is truncated.")
        if stop == start:
            arrays[name] = np.empty(shape, dtype)  # np.memmap refuses empty arrays
            continue
        arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + header_size + start, shape=shape)
    return arrays


def load_index_parts(
    load_directory: str | os.PathLike, use_faiss: bool | None = None, mmap: bool = False
) -> dict[str, Any]:
    """Read and check what [`save_index`] wrote: the cascade, stages, stored vectors, dtype, first stage, HNSW
    parameters and (for a `"pq"` or `"hnsw"` first stage where FAISS is used) the FAISS index; nothing is unpickled.

    Args:
        load_directory (`str` or `os.PathLike`): The folder.
        use_faiss (`bool`, *optional*): As in `CascadeIndex`. An index saved with a `"pq"` or `"hnsw"` first stage
            falls back to a flat one (with a warning) where FAISS is not used.
        mmap (`bool`, defaults to `False`): Return the stored vectors as read-only memory maps of the file.
    """
    load_directory = Path(load_directory)
    config_path = load_directory / INDEX_CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{str(config_path)!r} not found: {str(load_directory)!r} is not a saved CascadeIndex."
        )
    index_config = read_index_config(config_path)
    try:
        cascade = CascadeModel.from_pretrained(load_directory / CASCADE_DIR)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{str(load_directory / CASCADE_DIR)!r} does not hold a readable cascade ({error}); rebuild the index."
        ) from error
    vectors_path = load_directory / VECTORS_FILE
    if not vectors_path.is_file():
        raise FileNotFoundError(f"{str(vectors_path)!r} not found: the saved CascadeIndex is incomplete.")
    try:
        arrays = memory_map_safetensors(vectors_path) if mmap else load_file(vectors_path)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{str(vectors_path)!r} is not a readable safetensors file ({error}).") from error
    shapes = {name: list(array.shape) for name, array in arrays.items()}
    if shapes != index_config["arrays"]:
        raise ValueError(
            f"{str(vectors_path)!r} holds arrays {shapes}, but {INDEX_CONFIG_FILE} lists "
            f"{index_config['arrays']}: the folder is inconsistent; rebuild the index."
        )
    stages = check_stages(cascade, index_config["stages"])
    expected = expected_arrays(cascade, stages, index_config["num_vectors"])
    for name, array in arrays.items():
        if name in FAISS_ARRAYS.values():
            continue
        if name not in expected or list(array.shape) != expected[name] or array.dtype != index_config["dtype"]:
            raise ValueError(
                f"{str(vectors_path)!r}: array {name!r} of shape {list(array.shape)} {array.dtype} does not fit "
                f"stages {list(stages)} of {index_config['num_vectors']} {index_config['dtype']} vectors "
                f"(expected {expected}); rebuild the index."
            )
    first_stage = index_config["first_stage"]
    faiss_array = FAISS_ARRAYS.get(first_stage)
    missing = sorted(set(expected) - set(arrays))
    stray = sorted(name for name in FAISS_ARRAYS.values() if name in arrays and name != faiss_array)
    if missing or stray or (faiss_array is not None and faiss_array not in arrays):
        raise ValueError(
            f"{str(vectors_path)!r} lacks arrays {missing or [faiss_array]} or holds stray {stray} for stages "
            f"{list(stages)} and first stage {first_stage!r}; rebuild the index."
        )
    index_bytes = arrays.pop(faiss_array, None) if faiss_array else None
    first_stage_index = None
    if faiss_array and (use_faiss is False or not faiss_available()):
        logger.warning(
            f"This index was saved with a FAISS {first_stage!r} first stage, but FAISS is not used: using 'flat'."
        )
        first_stage = "flat"
    elif faiss_array:
        first_stage_index = read_faiss_index(
            index_bytes, first_stage, index_config["num_vectors"], stages[0], vectors_path
        )
    hnsw = index_config.get("hnsw", {})
    return {
        "cascade": cascade,
        "stages": stages,
        "vectors": arrays,
        "dtype": index_config["dtype"],
        "first_stage": first_stage,
        "hnsw": hnsw if isinstance(hnsw, dict) else {},
        "first_stage_index": first_stage_index,
    }


def read_faiss_index(index_bytes: np.ndarray, first_stage: str, num_vectors: int, dim: int, vectors_path: Path):
    """Deserialise (with FAISS's own format) and check the first-stage FAISS index stored in `vectors_path`."""
    import faiss

    name = FAISS_ARRAYS[first_stage]
    try:
        index = faiss.deserialize_index(np.ascontiguousarray(index_bytes))
    except RuntimeError as error:
        raise ValueError(f"{str(vectors_path)!r}: the FAISS array {name!r} is corrupt ({error}).") from None
    kind = faiss.IndexHNSW if first_stage == "hnsw" else faiss.IndexPQFastScan
    if not isinstance(index, kind):
        raise ValueError(f"{str(vectors_path)!r}: the FAISS array {name!r} holds a {type(index).__name__}.")
    if index.ntotal != num_vectors or index.d != dim:
        raise ValueError(
            f"{str(vectors_path)!r}: the FAISS array {name!r} holds {index.ntotal} x {index.d} "
            f"codes, not {num_vectors} x {dim}; rebuild the index."
        )
    return index
