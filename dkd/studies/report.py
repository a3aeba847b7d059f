"""The summary of a multirun (``python -m dkd.studies.report <multirun folder>``: dev score mean ± std over seeds,
with wall time and FLOPs), also written at the end of every multirun; with ``--study``, a reproduction study's
report (:mod:`dkd.studies.reproduction`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback

from dkd.errors import UserError
from dkd.moved import current_target
from dkd.studies.jobs import RECIPE, csv_log
from dkd.studies.records import collapsed, mean_std

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


# a pilot's sampler and recipe (dkd.studies.jobs.RECIPE), a column of the summary wherever every job sets it, even to
# one value: design v2's pick reads them
RECIPE_KEYS = ("sampler", *RECIPE)


def sweep_table(rows: list[dict], over: str = "seed") -> tuple[str, list[dict]]:
    """Markdown table of a multirun, one line per setting (the overrides that vary between jobs, except ``over``, and
    those of ``RECIPE_KEYS`` every job sets),
    with the dev score as mean ± sample std over ``over``, each job's score (``1 class``: it collapsed), how many
    jobs collapsed, and each job's wall time and FLOPs."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r["overrides"])
            if k != over and (len({r["overrides"].get(k) for r in rows}) > 1
                              or k in RECIPE_KEYS and all(k in r["overrides"] for r in rows))]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r["overrides"].get(k) for k in keys), []).append(r)
    summary, lines = [], []
    header = [*keys, "n", "dev score (mean ± std)", f"per {over}", "one class", "wall s per run", "GFLOPs/example",
              "FLOP ratio to full KD", "teacher GFLOPs/example asked", "spent (cache hits free)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, jobs in groups.items():
        scores = [j["result"]["dev"]["dev/score"] for j in jobs]
        mean, std = mean_std(scores)
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


# design v2's pilot grid (docs/reproduction.md, docs/repro/v2_pilot_run.sh): (distill.lr, distill.epochs)
PILOT_GRID = frozenset((lr, epochs) for lr in (7.5e-5, 2e-4) for epochs in (3, 6))


def parse_grid(text: str) -> frozenset:
    """``--grid 7.5e-5:2,2e-4:2``: the (distill.lr, distill.epochs) recipes a pilot ran."""
    try:
        return frozenset((float(lr), int(epochs)) for lr, epochs in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise UserError(f"--grid {text}: give the recipes as <lr>:<epochs>, comma-separated, e.g. "
                        f"7.5e-5:3,2e-4:3.") from None


def dev_by_epoch(job: Path) -> dict[int, float]:
    """The dev score after each epoch (1, 2, …) of a finished job, from its CSV log (``logger=csv``)."""
    import csv

    log_file = csv_log(job)
    if not log_file:
        raise UserError(f"{job}: no csv/**/metrics.csv, so its dev score per epoch is not known; run it with "
                        f"logger=csv (the repro_* experiments' default).")
    with open(log_file, newline="") as fh:
        return {int(float(r["epoch"])) + 1: float(r["dev/score"]) for r in csv.DictReader(fh) if r.get("dev/score")}


def epochs_needed(curves: dict[str, dict[int, float]], within: float = 0.005) -> tuple[str, int]:
    """How many passes over the pool full KD needs to stop improving (design v2 on SST-2's pool): the fewest epochs
    whose mean dev over the pilot jobs is within ``within`` of the best epoch's. ``curves``: job → epoch → dev."""
    epochs = {frozenset(c) for c in curves.values()}
    if len(epochs) != 1 or not next(iter(epochs)):
        shown = "; ".join(f"{job}: {sorted(c) or 'none'}" for job, c in curves.items())
        raise UserError(f"The pilot's jobs logged dev after different epochs ({shown}): every job must finish the "
                        f"same epochs before the epochs are read.")
    means = {e: mean_std([c[e] for c in curves.values()])[0] for e in sorted(next(iter(epochs)))}
    best = max(means.values())
    pick = min(e for e, m in means.items() if m >= best - within)
    lines = ["| epoch | " + " | ".join(curves) + " | mean | picked |", "|---|" + "---|" * (len(curves) + 2)]
    for e, m in means.items():
        lines.append(f"| {e} | " + " | ".join(f"{100 * c[e]:.2f}" for c in curves.values())
                     + f" | {100 * m:.2f} | {'**yes**' if e == pick else ''} |")
    said = f"E = {pick}: the fewest epochs within {100 * within:g} point of the best mean."
    return "\n".join(lines) + f"\n\n{said}\n", pick


def pilot_picks(rows: list[dict], cheaper_within: float = 0.005,
                grid: frozenset = PILOT_GRID) -> tuple[str, dict]:
    """Design v2's recipe check (docs/reproduction.md): per mode (``sampler=none``: full KD; any other sampler:
    efficient mode, its samplers pooled), among the recipes (``distill.lr``, ``distill.epochs``) where no pilot job
    predicts one class on dev, the best mean dev score; within ``cheaper_within`` of it, the fewest epochs. Where
    every recipe collapses somewhere, the best mean, said so (``every_recipe_collapses``: the mode's verdicts are
    flagged). A mode's pilot must have run every recipe of ``grid``, each with the same samplers and seeds, and no
    other. ``rows``: the pilot's sweep summary (``--json``)."""
    modes: dict[str, dict[tuple, dict]] = {}
    for r in rows:
        missing = [k for k in RECIPE_KEYS if k not in r]
        if missing:
            raise UserError(f"A pilot row without {', '.join(missing)}: the pilot's summary varies the sampler, "
                            f"distill.lr and distill.epochs (docs/repro/v2_pilot_run.sh).")
        if None in r["collapsed"].values():
            raise UserError(f"Pilot jobs {r['sampler']} lr {r['distill.lr']} epochs {r['distill.epochs']}: the number "
                            f"of classes they predict is not recorded, so collapse cannot be ruled out.")
        recipe = (float(r["distill.lr"]), int(r["distill.epochs"]))
        arm = modes.setdefault("full KD" if r["sampler"] == "none" else "efficient", {}).setdefault(
            recipe, {"scores": [], "collapsed": 0, "samplers": [], "seeds": []})
        arm["scores"] += list(r["scores"].values())
        arm["seeds"] += [(r["sampler"], seed) for seed in r["scores"]]
        arm["collapsed"] += sum(r["collapsed"].values())
        arm["samplers"].append(r["sampler"])
    lines = ["| mode | student lr | epochs | samplers | pilot jobs | one class | dev (mean) | picked |",
             "|---|---|---|---|---|---|---|---|"]
    picks = {}
    for mode, recipes in modes.items():
        missing, other = sorted(grid - set(recipes)), sorted(set(recipes) - grid)
        if missing or other:
            shown = lambda recs: ", ".join(f"lr {lr:g} × {epochs} epochs" for lr, epochs in recs)  # noqa: E731
            raise UserError(f"The {mode} pilot is not the design's grid: "
                            + "; ".join(filter(None, (missing and f"not run (or not finished): {shown(missing)}",
                                                      other and f"outside the grid: {shown(other)}")))
                            + ". Finish the pilot (docs/repro/v2_pilot_run.sh) before a recipe is picked.")
        jobs = {rec: sorted(map(str, a["seeds"])) for rec, a in recipes.items()}
        if len({tuple(j) for j in jobs.values()}) > 1:
            shown = "; ".join(f"lr {rec[0]:g} × {rec[1]} epochs: {', '.join(j)}" for rec, j in jobs.items())
            raise UserError(f"The {mode} pilot is not complete (sampler and seed of each job: {shown}): every recipe "
                            f"needs the same samplers and seeds before one is picked.")
        means = {rec: mean_std(a["scores"])[0] for rec, a in recipes.items()}
        healthy = [rec for rec, a in recipes.items() if not a["collapsed"]]
        if healthy:  # the best mean; within cheaper_within of it, the fewest epochs
            best = max(means[rec] for rec in healthy)
            pick = min((rec for rec in healthy if means[rec] >= best - cheaper_within),
                       key=lambda rec: (rec[1], -means[rec]))
        else:  # every recipe has a one-class job: the best mean, said so
            pick = max(recipes, key=lambda rec: means[rec])
        picks[mode] = {"distill.lr": pick[0], "distill.epochs": pick[1], "dev": means[pick],
                       "every_recipe_collapses": not healthy}
        for rec, a in sorted(recipes.items(), key=lambda item: (item[0][1], item[0][0])):
            said = "" if rec != pick else "**yes**" + ("" if healthy else " (every recipe has a one-class job)")
            lines.append(f"| {mode} | {rec[0]:g} | {rec[1]} | {', '.join(a['samplers'])} | {len(a['scores'])} | "
                         f"{a['collapsed']} | {100 * means[rec]:.2f} | {said} |")
    return "\n".join(lines) + "\n", picks


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
    parser.add_argument("--study", default=None, help="a reproduction study (dkd/studies/design.py: STUDIES)")
    parser.add_argument("--save", default=None, help="with --study: its jobs as one JSON (rebuild without outputs)")
    parser.add_argument("--png", default=None, help="with --study: its plot")
    parser.add_argument("--md", default=None, help="with --study or --verdicts: also write the Markdown here")
    parser.add_argument("--data-dir", default=None,
                        help="with --study: the task's data folder, for the recall per class (default: where the "
                             "jobs were evaluated, under this checkout)")
    parser.add_argument("--pick", action="store_true",
                        help="design v2's recipe check: the recipe per mode from a pilot's summary JSON (--json)")
    parser.add_argument("--grid", default=None,
                        help="with --pick: the recipes the pilot ran as <lr>:<epochs>,… (default: SST-5's, "
                             "7.5e-5 and 2e-4 × 3 and 6 epochs)")
    parser.add_argument("--epochs", action="store_true",
                        help="design v2 on SST-2's pool: from the pilot's full-KD job folders, the dev score per "
                             "epoch and the fewest epochs within half a point of the best")
    parser.add_argument("--verdicts", action="store_true",
                        help="the verdict table of the paper's findings (README.md, docs/reproduction.md); the "
                             "positional arguments are study JSONs saved by --study … --save (those of one study and "
                             "task are read as one)")
    args = parser.parse_args(argv)
    modes = [f"--{m}" for m in ("study", "verdicts", "pick", "epochs") if getattr(args, m)]
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)}: give one of them")
    if args.grid and not args.pick:
        parser.error("--grid names a pilot's recipes for --pick; give it with --pick")
    if args.study or args.verdicts:
        from dkd.studies.reproduction import report as study_report
        from dkd.studies.reproduction import verdict_table

        sources = [Path(f) for f in args.folders]
        try:
            text = verdict_table(sources) if args.verdicts else study_report(
                args.study, sources, args.save and Path(args.save), args.png and Path(args.png),
                args.data_dir and Path(args.data_dir))
        except UserError as err:  # a user's mistake: the message, not a traceback
            raise SystemExit(f"python -m dkd.studies.report: {err}") from None
        print(text)
        if args.md:
            Path(args.md).write_text(text)
        return
    if args.pick or args.epochs:
        try:
            if args.pick:
                grid = parse_grid(args.grid) if args.grid else PILOT_GRID
                text, _ = pilot_picks([row for f in args.folders for row in json.loads(Path(f).read_text())],
                                      grid=grid)
            else:
                from dkd.ship.evaluate import jobs_under

                jobs = [job for f in args.folders for job in jobs_under(Path(f))]
                text, _ = epochs_needed({str(job): dev_by_epoch(job) for job in jobs})
        except UserError as err:
            raise SystemExit(f"python -m dkd.studies.report: {err}") from None
        print(text)
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
