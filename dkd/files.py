"""Files written whole or not at all: a kill mid-write leaves the old file (or none), never half of a new one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into a temporary file beside ``path`` (named by the process, so that concurrent writers never
    share one), then renamed onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON (values JSON does not know, as their ``str``), written whole."""
    write_whole(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=str)))
