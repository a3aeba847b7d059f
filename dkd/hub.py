"""The Hugging Face hub: find out once, quickly, whether it can be reached.

Offline, ``from_pretrained`` and ``load_dataset`` retry for about 25 s before they give up; a run that needs the hub
should fail in a second instead. When the hub is unreachable, the Hugging Face libraries are put in offline mode:
copies already in the local Hugging Face cache still load, everything else fails at once.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from urllib.parse import urlparse

log = logging.getLogger(__name__)


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the hub's endpoint opens within ``timeout`` seconds (and offline mode is off)."""
    import huggingface_hub.constants as hf

    if hf.HF_HUB_OFFLINE:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", hf.ENDPOINT))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError as err:
        log.info("The Hugging Face hub (%s) is unreachable (%s): only local folders, packaged models and the local "
                 "Hugging Face cache can be used.", url.geturl(), err)
        _go_offline()
        return False


def _go_offline() -> None:
    import huggingface_hub.constants as hf

    hf.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub, transformers and datasets
    if "datasets" in sys.modules:
        sys.modules["datasets"].config.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"  # for libraries imported later (datasets reads it on import)
