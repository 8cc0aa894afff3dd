"""Saving and loading a `CascadeIndex` without pickle: `index_config.json`, `vectors.safetensors` (the stage vectors,
and a FAISS PQ first stage as bytes) and the cascade in `cascade/`."""

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
        "first_stage": lambda value: value in ("flat", "pq"),
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
    if index.first_stage == "pq":
        import faiss

        arrays[PQ_ARRAY] = faiss.serialize_index(index._faiss_index)
    index_config = {
        "format_version": FORMAT_VERSION,
        "num_vectors": index.num_vectors,
        "stages": list(index.stages),
        "dtype": index.dtype,
        "first_stage": index.first_stage,
        "arrays": {name: list(array.shape) for name, array in arrays.items()},
    }
    with atomic_directory(save_directory) as temporary:
        index.cascade.save_pretrained(temporary / CASCADE_DIR, create_model_card=False)  # not a Hub model folder
        save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, temporary / VECTORS_FILE)
        (temporary / INDEX_CONFIG_FILE).write_text(json.dumps(index_config, indent=2) + "\n")
    logger.info(f"Saved {index!r} to {save_directory}")


def load_index_parts(load_directory: str | os.PathLike, use_faiss: bool | None = None) -> dict[str, Any]:
    """Read and check what [`save_index`] wrote: the cascade, stages, stored vectors, dtype, first stage and (for a
    `"pq"` first stage where FAISS is used) the PQ index; nothing is unpickled.

    Args:
        load_directory (`str` or `os.PathLike`): The folder.
        use_faiss (`bool`, *optional*): As in `CascadeIndex`. An index saved with a `"pq"` first stage falls back to
            a flat one (with a warning) where FAISS is not used.
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
        arrays = load_file(vectors_path)
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
        if name == PQ_ARRAY:
            continue
        if name not in expected or list(array.shape) != expected[name] or array.dtype != index_config["dtype"]:
            raise ValueError(
                f"{str(vectors_path)!r}: array {name!r} of shape {list(array.shape)} {array.dtype} does not fit "
                f"stages {list(stages)} of {index_config['num_vectors']} {index_config['dtype']} vectors "
                f"(expected {expected}); rebuild the index."
            )
    missing = sorted(set(expected) - set(arrays))
    if missing or (index_config["first_stage"] == "pq") != (PQ_ARRAY in arrays):
        raise ValueError(
            f"{str(vectors_path)!r} lacks arrays {missing or [PQ_ARRAY]} for stages {list(stages)} and first "
            f"stage {index_config['first_stage']!r}; rebuild the index."
        )
    pq_bytes = arrays.pop(PQ_ARRAY, None)
    first_stage, pq_index = index_config["first_stage"], None
    if first_stage == "pq" and (use_faiss is False or not faiss_available()):
        logger.warning("This index was saved with a FAISS 'pq' first stage, but FAISS is not used: using 'flat'.")
        first_stage = "flat"
    elif first_stage == "pq":
        import faiss

        try:
            pq_index = faiss.deserialize_index(pq_bytes)
        except RuntimeError as error:
            raise ValueError(f"{str(vectors_path)!r}: the FAISS array {PQ_ARRAY!r} is corrupt ({error}).") from None
        if pq_index.ntotal != index_config["num_vectors"] or pq_index.d != stages[0]:
            raise ValueError(
                f"{str(vectors_path)!r}: the FAISS array {PQ_ARRAY!r} holds {pq_index.ntotal} x {pq_index.d} "
                f"codes, not {index_config['num_vectors']} x {stages[0]}; rebuild the index."
            )
    return {
        "cascade": cascade,
        "stages": stages,
        "vectors": arrays,
        "dtype": index_config["dtype"],
        "first_stage": first_stage,
        "pq_index": pq_index,
    }
