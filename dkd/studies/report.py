"""The summary of a multirun (``python -m dkd.studies.report <multirun folder>``: dev score mean ± std over seeds,
with wall time and FLOPs), also written at the end of every multirun; with ``--study``, a reproduction study's
report (:mod:`dkd.studies.reproduction`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback

from dkd.moved import current_target

log = logging.getLogger(__name__)


def collect(folder: Path) -> list[dict]:
    """One row per finished job of a multirun folder: its sweep overrides (from ``.hydra/overrides.yaml``) and its
    ``metrics.json``."""
    import yaml

    rows = []

    def job_order(metrics: Path) -> tuple:  # numbered jobs in number order, then named ones
        name = metrics.parent.name
        return (not name.isdigit(), int(name) if name.isdigit() else name)

    jobs = sorted(Path(folder).glob("*/metrics.json"), key=job_order)
    for metrics in jobs:
        overrides = yaml.safe_load((metrics.parent / ".hydra" / "overrides.yaml").read_text()) or []
        result = json.loads(metrics.read_text())
        rows.append({"job": metrics.parent.name, "result": result,
                     "overrides": {k: current_target(v) if k.endswith("_target_") and v else v  # old names
                                   for k, v in ((*o.split("=", 1), None)[:2] for o in overrides)}})  # ~key: no value
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, std


def sweep_table(rows: list[dict], over: str = "seed") -> tuple[str, list[dict]]:
    """Markdown table of a multirun, one line per setting (the overrides that vary between jobs, except ``over``),
    with the dev score as mean ± sample std over ``over``, each job's score (``1 class``: it collapsed), how many
    jobs collapsed, and each job's wall time and FLOPs."""
    # here, not at the top: Hydra loads this module for its callback at every multirun's start, and the studies'
    # module brings scipy and statsmodels
    from dkd.studies.reproduction import collapsed

    keys = [k for k in dict.fromkeys(k for r in rows for k in r["overrides"])
            if k != over and len({r["overrides"].get(k) for r in rows}) > 1]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r["overrides"].get(k) for k in keys), []).append(r)
    summary, lines = [], []
    header = [*keys, "n", "dev score (mean ± std)", f"per {over}", "one class", "wall s per run", "GFLOPs/example",
              "FLOP ratio to full KD", "teacher GFLOPs/example asked", "spent (cache hits free)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, jobs in groups.items():
        scores = [j["result"]["dev"]["dev/score"] for j in jobs]
        mean, std = _mean_std(scores)
        flops = [j["result"].get("flops") or {} for j in jobs]
        per = lambda name: [f.get("gflops_per_example", {}).get(name) for f in flops]  # noqa: E731
        ratio = [f.get("ratio_to_full_kd") for f in flops]
        walls = [j["result"].get("wall_time_s") for j in jobs]
        fell = [collapsed(j["result"]) for j in jobs]
        row = {**dict(zip(keys, setting)), "n": len(jobs), "mean": round(mean, 4), "std": round(std, 4),
               "scores": {j["overrides"].get(over, j["job"]): s for j, s in zip(jobs, scores)},
               "collapsed": {j["overrides"].get(over, j["job"]): c for j, c in zip(jobs, fell)},
               "wall_s": walls, "gflops_per_example": per("total"), "ratio_to_full_kd": ratio,
               "teacher_gflops_per_example": per("teacher"), "teacher_gflops_spent_per_example": per("teacher_spent"),
               "teacher_per_example": [f.get("teacher_per_example") for f in flops],
               "decisions": [j["result"].get("decisions") for j in jobs]}
        summary.append(row)
        fmt = lambda xs: " / ".join("–" if x is None else f"{x:g}" for x in xs)  # noqa: E731
        per_job = " / ".join(f"{s:g}" + (" (1 class)" if c else "") for s, c in zip(scores, fell))
        known = [c for c in fell if c is not None]
        lines.append("| " + " | ".join([*map(str, setting), str(len(jobs)), f"{mean:.4f} ± {std:.4f}",
                                        per_job, f"{sum(known)}/{len(known)}" if known else "–", fmt(walls),
                                        fmt(row["gflops_per_example"]), fmt(ratio),
                                        fmt(row["teacher_gflops_per_example"]),
                                        fmt(row["teacher_gflops_spent_per_example"])]) + " |")
    return "\n".join(lines) + "\n", summary


def summarise(rows: list[dict], where: str, over: str = "seed") -> tuple[str, list[dict]]:
    """The sweep's summary as text (what ``python -m dkd.studies.report`` prints) and as JSON-ready rows."""
    table, summary = sweep_table(rows, over)
    return f"{len(rows)} finished jobs in {where}\n\n{table}", summary


class SweepSummary(Callback):
    """At the end of every multirun (any launcher or sweeper), its summary as ``python -m dkd.studies.report`` gives it:
    printed, and written beside the jobs as ``summary.md`` and ``summary.json``."""

    def on_multirun_end(self, config, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        rows = collect(folder)
        if not rows:
            log.warning("No job of %s finished (no */metrics.json): no sweep summary.", folder)
            return
        text, summary = summarise(rows, str(folder))
        (folder / "summary.md").write_text(f"# Sweep summary\n\n{text}")
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"\n{text}\nsummary: {folder / 'summary.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dkd.studies.report",
        description="Summarise a multirun folder: dev score mean ± std over seeds. With --study: a reproduction "
                    "study's tables, paired intervals and verdicts (docs/reproduction.md).")
    parser.add_argument("folders", nargs="+", help="multirun folders (outputs/multiruns/<date>), read as one sweep; "
                                                   "with --study also job folders or a study JSON saved by --save")
    parser.add_argument("--over", default="seed", help="the override averaged over (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the summary as JSON here")
    parser.add_argument("--study", default=None, help="a reproduction study (dkd/studies/reproduction.py: STUDIES)")
    parser.add_argument("--save", default=None, help="with --study: its jobs as one JSON (rebuild without outputs)")
    parser.add_argument("--png", default=None, help="with --study: its plot")
    parser.add_argument("--md", default=None, help="with --study: also write the Markdown here")
    args = parser.parse_args(argv)
    if args.study:
        from dkd.errors import UserError
        from dkd.studies.reproduction import report as study_report

        try:
            text = study_report(args.study, [Path(f) for f in args.folders], args.save and Path(args.save),
                                args.png and Path(args.png))
        except UserError as err:  # a user's mistake: the message, not a traceback
            raise SystemExit(f"python -m dkd.studies.report: {err}") from None
        print(text)
        if args.md:
            Path(args.md).write_text(text)
        return
    rows = [row for folder in args.folders for row in collect(Path(folder))]
    if not rows:
        raise SystemExit(f"No finished job (*/metrics.json) under {' '.join(args.folders)}")
    text, summary = summarise(rows, " ".join(args.folders), args.over)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
