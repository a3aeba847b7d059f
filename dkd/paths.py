"""Where the checkout is: the folder that holds the ``dkd`` package, and its ``conf/``. Found from this file alone, so
that modules in any subpackage reach the configs the same way."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # dkd/paths.py -> the checkout
CONF = ROOT / "conf"
