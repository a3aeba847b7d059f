"""The reproduction report's plots: a study's accuracy against compute, wall time and the selection ratio, with its
decisions over training (:func:`plot`), its claims' paired differences coloured by verdict (:func:`plot_claims`), and
which classes its students get right (:func:`plot_classes`)."""
from __future__ import annotations

from pathlib import Path

from dkd.errors import UserError
from dkd.studies.design import Study
from dkd.studies.jobs import variant_of
from dkd.studies.records import mean_std


def ratio_curves(study: Study, summary: dict) -> dict[str, list[tuple[float, float, float]]]:
    """Per selection measure (efficient mode, pool 1): (r, mean, std) of the metric on the verdict split, full KD at
    r = 1."""
    split = summary["verdict_split"]
    curves: dict[str, list] = {}
    full = summary["variants"].get("full KD")
    for label, v in summary["variants"].items():
        spec = study.variants[label]
        if "sampler.ratio" in spec and spec["sampler.mode"] == "efficient" and spec["sampler.pool"] == 1:
            curves.setdefault(spec["sampler"], []).append((spec["sampler.ratio"], *mean_std(list(v[split].values()))))
    for points in curves.values():
        if full:
            points.append((1.0, *mean_std(list(full[split].values()))))
        points.sort()
    return {k: v for k, v in curves.items() if len(v) > 1}


def plot(summary: dict, jobs: list[dict], png: Path, study: Study) -> Path:
    """The metric on the verdict split (test where the jobs carry it, dev only choosing checkpoints) against the
    training GFLOPs per instance of the whole run and against wall time (mean ± std over seeds); the study's decisions
    over training (one seed per variant); the metric against the selection ratio where r varies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    split = summary["verdict_split"]
    metric = "test accuracy (%)" if split == "test" else "dev score (%)"  # dev/score: the task's metric
    ratios = ratio_curves(study, summary)
    colour = {label: f"C{i % 10}" for i, label in enumerate(summary["variants"])}  # one colour a variant, every panel
    for label in summary["variants"]:  # a ratio curve takes the colour of its measure's first variant
        colour.setdefault(study.variants[label].get("sampler", label), colour[label])
    fig, axes = plt.subplots(1, 4 if ratios else 3, figsize=(22 if ratios else 17, 4.8))
    for label, v in summary["variants"].items():
        mean, std = mean_std(list(v[split].values()))
        for ax, x in ((axes[0], v["gflops_per_instance_run"]), (axes[1], v["wall_min"])):
            if x is not None:
                ax.errorbar(x, 100 * mean, yerr=100 * std, fmt="o", capsize=3, label=label, color=colour[label])
    axes[0].set(xlabel="training GFLOPs per pool instance, whole run (our count)", ylabel=metric,
                title=f"{summary['task']}: accuracy vs compute (mean ± std over seeds)", xscale="log")
    axes[1].set(xlabel="wall time per run (min, 1 CPU thread)", ylabel=metric,
                title="accuracy vs wall time")
    axes[0].legend(fontsize=7)
    axes[0].xaxis.set_minor_formatter(NullFormatter())  # log axis: label the decades only
    seeds = {j["metrics"]["seed"] for j in jobs}
    first = 42 if 42 in seeds else min(seeds)
    for job in jobs:
        curves = job.get("curves", {})
        if job["metrics"]["seed"] != first:
            continue
        label = variant_of(study, job)
        for name, style in zip(study.curves, ("-", ":", "--")):
            if curves.get(name):
                axes[2].plot(*zip(*curves[name]), style, linewidth=1, color=colour[label],
                             label=f"{label}: {name.removeprefix('train/')}")
    axes[2].set(xlabel="step", ylabel="value per step", title=f"decisions over training (seed {first})")
    if axes[2].lines:
        axes[2].legend(fontsize=6)
    if ratios:
        for name, points in ratios.items():
            r, mean, std = zip(*points)
            axes[3].errorbar(r, [100 * m for m in mean], yerr=[100 * s for s in std], marker="o", capsize=3,
                             label=name, color=colour.get(name))
        axes[3].set(xlabel="selection ratio r (1 = full KD)", ylabel=metric,
                    xscale="log", title="accuracy vs selection ratio")
        axes[3].legend(fontsize=7)
        axes[3].xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


VERDICT_COLOURS = {"confirmed": "tab:green", "refuted": "tab:red", "unresolved": "tab:gray",
                   "pending": "tab:blue"}  # pending: fewer paired seeds than the design reads the claim at


def plot_claims(summary: dict, png: Path) -> Path:
    """One row per claim with two or more paired seeds on the verdict split: the paired difference d̄ with its 95% t
    interval (thick) and the two-level bootstrap (thin), coloured by the Holm verdict (or pending), against 0 and the
    ±δ band; a hollow marker where an arm predicts one class in a paired seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = summary["verdict_split"]
    rows = [c for c in summary["claims"] if c[split]["verdict"] != "not tested"]
    if not rows:
        raise UserError(f"{summary['title']}: no claim has two or more paired seeds on {split}; nothing to plot.")
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    delta = 100 * max(c["delta"] for c in rows)
    ax.axvspan(-delta, delta, color="0.92", zorder=0, label=f"±δ = {delta:g} point")
    ax.axvline(0, color="0.4", linewidth=0.8)
    for y, c in enumerate(reversed(rows)):
        r = c[split]
        colour = VERDICT_COLOURS[r["verdict"]]
        ax.plot([100 * r["low"], 100 * r["high"]], [y, y], color=colour, linewidth=3.5, solid_capstyle="butt")
        if r.get("bootstrap"):  # just under the t interval, so that neither hides the other
            ax.plot([100 * x for x in r["bootstrap"]], [y - 0.22] * 2, color="0.2", linewidth=1)
        ax.plot(100 * r["mean"], y, "o", color=colour, markerfacecolor="white" if r["collapse"] else colour,
                markersize=7)
    ax.set_yticks(range(len(rows)), [f"{c['claim']}: {c['variant']} − {c['baseline']} ({c['kind']})"
                                     for c in reversed(rows)], fontsize=8)
    handles = [plt.Line2D([], [], color=col, linewidth=3.5,
                          label="pending (fewer seeds than planned)" if v == "pending" else v)
               for v, col in VERDICT_COLOURS.items() if v != "pending" or any(c[split]["verdict"] == v for c in rows)]
    handles += [plt.Line2D([], [], color="0.2", linewidth=1, label="two-level bootstrap"),
                plt.Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="",
                           label="an arm predicts one class")]
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1), title="95% t interval, Holm verdict", title_fontsize=7)
    ax.set(xlabel=f"d = variant − baseline on {split} (accuracy points, paired seeds)",
           title=f"{summary['title']} — {summary['task']}: {len(rows)} claims")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def plot_classes(classes: dict, title: str, png: Path) -> Path:
    """The recall of each class per variant (:func:`dkd.studies.labels.class_recall`) as a heat map, the figures in
    its cells: which classes a variant's students never get right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, columns = list(classes["variants"]), list(classes["examples"])
    grid = [[100 * classes["variants"][v].get(c, float("nan")) for c in columns] for v in names]
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 3.2, 0.42 * len(names) + 1.4))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for y, row in enumerate(grid):
        for x, value in enumerate(row):
            ax.text(x, y, f"{value:.0f}", ha="center", va="center", fontsize=8,
                    color="black" if value > 60 else "white")
    ax.set_xticks(range(len(columns)), [f"{c}\n(n = {classes['examples'][c]})" for c in columns], fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel=f"class on {classes['split']}", title=f"{title}: recall per class (%, mean over seeds)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
