"""The modules that moved into packages in DKD 0.3, under their old names for one release.

``python -m dkd.compress`` (and ``import dkd.samplers``, a ``_target_: dkd.samplers.MostUncertain`` in a config of
your own, a checkpoint that pickled such a name) still works: the old name is the new module, after a one-line
notice that names the new one. The old names go in DKD 0.4. Run folders written before the move name their strategies
by the old ``_target_``s; :func:`current_target` gives today's, so that a report groups old and new runs alike.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys

log = logging.getLogger("dkd")

MOVED = {f"dkd.{name}": f"dkd.{package}.{name}" for package, names in {
    "strategies": ("uncertainty", "samplers", "adoption", "objectives", "weighting"),
    "jobs": ("cluster", "requeue", "resolvers"),
    "ship": ("compress", "card", "evaluate"),
    "studies": ("bench", "report", "reproduction", "verdict"),
}.items() for name in names}


def notice(old: str) -> str:
    return f"{old} moved to {MOVED[old]} in DKD 0.3; the old name goes in 0.4: use the new one"


def current_target(target: str) -> str:
    """``dkd.samplers.MostUncertain`` → ``dkd.strategies.samplers.MostUncertain`` (a name inside it too, such as
    ``dkd.report.SweepSummary.on_multirun_end``); any other name as it is."""
    for old, new in MOVED.items():
        if target == old or target.startswith(f"{old}."):
            return new + target[len(old):]
    return target


def current_targets(tree):
    """A config (nested dicts and lists) with every ``_target_`` under its current name."""
    if isinstance(tree, dict):
        return {k: current_target(v) if k == "_target_" and isinstance(v, str) else current_targets(v)
                for k, v in tree.items()}
    if isinstance(tree, list):
        return [current_targets(v) for v in tree]
    return tree


class OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``dkd.<old name>``: imported, it is the moved module itself; run by ``python -m``, it runs the new
    module as the program."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return None  # a plain module, replaced by the moved one in exec_module

    def exec_module(self, module) -> None:
        log.warning(notice(module.__name__))
        # the import system hands out whatever sys.modules holds under the name once this returns
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])

    def get_code(self, fullname):
        """What ``python -m <old name>`` runs (runpy asks the loader for code, not for a module)."""
        source = (f"import runpy, sys\nprint({notice(fullname)!r}, file=sys.stderr)\n"
                  f"runpy.run_module({MOVED[fullname]!r}, run_name='__main__', alter_sys=True)\n")
        return compile(source, f"<{fullname}, moved to {MOVED[fullname]}>", "exec")


def install() -> None:
    if not any(isinstance(f, OldNames) for f in sys.meta_path):
        sys.meta_path.append(OldNames())
