"""The reproduction report's Markdown: a study's table of variants and its claims' verdicts (:func:`markdown`), and
the verdict table of every finding, one row per claim with its setting (:func:`verdict_markdown`), from the summaries
of :func:`dkd.studies.reproduction.summarise`."""
from __future__ import annotations

import statistics

from dkd.studies.design import FIRST_SEEDS, MOST_SEEDS, STUDIES
from dkd.studies.records import mean_std
from dkd.studies.verdict import ALPHA


def _collapse_rate(flags: dict) -> str:
    """Collapsed jobs / jobs of one variant on one split, saying how many were not recorded."""
    if not flags:
        return "–"
    known = [f for f in flags.values() if f is not None]
    if not known:
        return "not recorded"
    rate = f"{sum(known)}/{len(known)}"
    return rate if len(known) == len(flags) else f"{rate} ({len(flags) - len(known)} not recorded)"


def _collapse_flag(r: dict) -> str:
    """A claim's flag on one split: which arm predicts one class in which paired seeds."""
    if r["collapse"] is None:
        return "not recorded"
    if not r["collapse"]:
        return "no"
    seeds = [f"{arm} {', '.join(map(str, r['collapsed'][arm]))}" for arm in ("baseline", "variant")
             if r["collapsed"][arm]]
    return f"**yes**: {'; '.join(seeds)}"


def _gloss(r: dict, kind: str, delta: float, so_far: bool = False) -> str:
    """What a refuted claim's interval excludes, and a gain shown to be below δ (verdict.py's table); for a pending
    claim, its seeds of those the design reads it at and (``so_far``) what the rule reads on them."""
    if r["verdict"] == "pending":
        reading = f"{r['reading']}{_gloss({**r, 'verdict': r['reading']}, kind, delta)}"
        return f" ({r['n']} of {r['planned']} seeds" + (f"; reads {reading} so far)" if so_far else ")")
    size = f"{100 * delta:g} point" + ("" if f"{100 * delta:g}" == "1" else "s")
    if r["below_delta"]:
        return f": higher, by less than {size}"
    if r["verdict"] != "refuted":
        return ""
    return ": " + {"higher": f"no gain of {size} or more", "keeps": f"more than {size} lower",
                   "differ": f"within ±{size}", "same": f"more than {size} apart"}[kind]


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _deciding(r: dict) -> str:
    """The Holm-adjusted p of the test that decided the claim, against its level; both tests where neither did."""
    def test(side: str, sign: str) -> str:
        return f"{side} {_p(r[f'holm_{side}'])} {sign} {r[f'level_{side}']:g}"

    verdict = r.get("reading", r["verdict"])  # a pending claim: the test that decides it so far
    if verdict == "confirmed":
        return test("confirm", "<")
    if verdict == "refuted":
        return test("refute", "<")
    return f"{test('confirm', '≥')}; {test('refute', '≥')}"


def _baseline(claim: dict) -> str:
    """The claim's baseline, and where it was chosen as the better of several, which they were."""
    chosen = claim.get("chosen_from")
    return claim["baseline"] + (f" (the better of {', '.join(chosen)})" if chosen else "")


def _arms(claim: dict) -> list[str]:
    """A claim's arms: its baseline (every candidate, where it was chosen as the better of several) and its variant."""
    return [*claim.get("chosen_from", [claim["baseline"]]), claim["variant"]]


def _recipe(recipe: dict) -> str:
    return f"{recipe['distill.lr']:g}, {recipe['distill.epochs']}"


def _precisions(summary: dict) -> str:
    """The studied variants' training precision (fp32: Lightning's 32 and 32-true, and no key in older jobs)."""
    named = {str(v["recipe"]["trainer.precision"]) for v in summary["variants"].values()}
    return ", ".join(sorted("fp32" if p in ("32", "32-true", "None") else p for p in named))


def _kernels(summary: dict) -> str:
    """The CPU kernels' instruction sets the jobs trained with, where a job recorded them (dkd.cpu.kernels): models
    trained with other kernels differ in their last bits."""
    counts = summary.get("kernels") or {}
    if set(counts) <= {"not recorded"}:
        return ""
    return " Kernels: " + ", ".join(f"{k} ({n} jobs)" for k, n in counts.items()) + "."


def _teachers(sets: list[dict]) -> str:
    """The teachers' dev scores (and weights, where the jobs recorded them); where a teacher was fine-tuned again and
    moved, each set of teachers with the seeds that learnt from it."""
    def one(teachers: dict) -> str:
        def score(dev: float | None) -> str:
            return "–" if dev is None else f"{100 * dev:.2f}"
        return ", ".join(f"{role} {score(t['dev'])}" + (f" (weights {t['weights'][:12]}…)" if t["weights"] else "")
                         for role, t in teachers.items())
    if len(sets) == 1:
        return f"Teacher dev score: {one(sets[0]['teachers'])}."
    shown = "; ".join(f"set {i} (seeds {', '.join(map(str, s['seeds']))}): {one(s['teachers'])}"
                      for i, s in enumerate(sets, 1))
    return (f"Teachers: {len(sets)} sets, each a refit by the same recipe whose weights moved (another CPU); each "
            f"seed's jobs learnt from one set, so every paired difference stays within a set, and the verdicts are "
            f"conditional on the sets and the seeds each holds (docs/reproduction.md, \"If the teacher is lost\"). "
            f"Dev score: {shown}.")


def markdown(summary: dict, classes: dict | str | None = None, kd_classes: dict | None = None) -> str:
    """The study's Markdown: its variants, the recall per class (``classes``, :func:`dkd.studies.labels.class_recall`,
    or why it is not shown), the classes of the KD rows (``kd_classes``, :func:`dkd.studies.reproduction.asked_shares`)
    and its claims' verdicts."""
    pts = lambda x: f"{100 * x:+.2f}"  # noqa: E731 - differences in points
    span = lambda lo, hi: f"[{pts(lo)}, {pts(hi)}]"  # noqa: E731

    def acc(xs) -> str:  # mean ± std over seeds; one seed has no spread to show
        xs = list(xs)
        if len(xs) < 2:
            return f"{100 * xs[0]:.2f}" if xs else "–"
        m, s = mean_std(xs)
        return f"{100 * m:.2f} ± {100 * s:.2f}"

    sets = summary["teacher_sets"]
    # a study whose jobs learn from two teachers or more (any job: a study may mix teacher=base and teacher=both)
    roles = list(dict.fromkeys(r for v in summary["variants"].values() for r in v.get("teacher_gflops") or {}))
    pool = len(roles) > 1
    split = summary["verdict_split"]
    lines = [f"### {summary['title']} — {summary['task']}", "",
             f"{_teachers(sets)} Precision: {_precisions(summary)}.{_kernels(summary)} "
             f"Commits: {', '.join(summary['commits'])}.", "",
             "| variant | seeds | student lr, epochs | dev (mean ± std) | test (mean ± std) | one class: dev | "
             "one class: test | rows distilled | GFLOPs / instance / epoch | GFLOPs / instance, run | wall min / run | "
             f"train ex/s |{' teacher GFLOPs / instance / epoch |' if pool else ''} "
             "paper (setting differs, see text) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if pool else "")]
    for label, v in summary["variants"].items():
        g, run = ("–" if v[key] is None else f"{v[key]:.3f}"
                  for key in ("gflops_per_instance", "gflops_per_instance_run"))
        asked = v.get("teacher_gflops") or {}
        # each teacher's part of the cost: hard asks each for its own rows, soft and the ensemble both for every row
        per_teacher = (" + ".join(f"{role} {asked.get(role, 0):.3f}" for role in roles) if asked
                       else "–") + " | " if pool else ""
        lines.append(f"| {label} | {len(v['seeds'])} | {_recipe(v['recipe'])} | {acc(v['dev'].values())} | "
                     f"{acc(v['test'].values())} | "
                     f"{_collapse_rate(v['collapsed']['dev'])} | {_collapse_rate(v['collapsed']['test'])} | "
                     f"{v['selected']:.3f} | {g} | {run} | {v['wall_min']:.1f} | {v['examples_per_s']:.1f} | "
                     f"{per_teacher}{v['paper']} |")
    lines += _recall_lines(classes) + _asked_lines(kd_classes or {})
    why = "dev only chose the checkpoints" if split == "test" else "the jobs carry no test predictions"
    other = ["dev: d [95% t]"] if split == "test" else []
    header = ["claim", "variant − baseline", "kind (δ, points)", "n", "d", "95% t interval (unadjusted)",
              "two-level bootstrap (95%, unadjusted)", "Holm-adjusted p of the deciding test", "verdict",
              "one class in a paired seed", *(["d per teacher set"] if len(sets) > 1 else []), *other]
    m = summary["families"][split]
    lines += ["", f"Verdicts on **{split}** ({why}): d = variant − baseline in points over the paired seeds. Each "
                  f"verdict is decided by Holm-adjusted p-values over the {m} claim{'' if m == 1 else 's'} of this "
                  f"study with two or more paired seeds on {split} (one family, pending claims included: until they "
                  f"are read, every adjusted p of the family is provisional), each test against its level: "
                  f"{ALPHA / 2:g} "
                  f"one-sided, {ALPHA:g} two-sided (differ's confirm, same's refute), which for one claim alone is "
                  "the rule of the 95% t interval; the intervals shown are not adjusted.", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    untested = "not tested (n < 2)"
    for c in summary["claims"]:
        r = c[split]
        if r["verdict"] == "not tested":
            cells = [str(r["n"]), "–", "–", "–", "–", untested, "–", *(["–"] if len(sets) > 1 else [])]
        else:
            b = r.get("bootstrap")
            verdict = f"**{r['verdict']}**" + _gloss(r, c["kind"], c["delta"], so_far=True)
            d = pts(r["mean"]) + (" (d constant over seeds)" if r["constant"] else "")
            n = str(r["n"]) + (f" (+{r['not_read']} not read)" if r.get("not_read") else "")
            cells = [n, d, span(r["low"], r["high"]), "–" if b is None else span(*b), _deciding(r), verdict,
                     _collapse_flag(r)]
            if len(sets) > 1:
                cells.append("; ".join(f"set {t['set']}: {pts(t['mean'])} (n = {t['n']})" for t in r["by_teachers"]))
        if other:
            dev = c["dev"]
            cells.append(untested if dev["verdict"] == "not tested"
                         else f"{pts(dev['mean'])} {span(dev['low'], dev['high'])}")
        lines.append(f"| {c['claim']}: {c['says']} | {c['variant']} − {_baseline(c)} | "
                     f"{c['kind']} ({100 * c['delta']:g}) | " + " | ".join(cells) + " |")
    early = [c for c in summary["claims"] if c[split]["n"] < FIRST_SEEDS]
    if early:  # the ten-seed rule is read at five: a wide interval before that says nothing yet
        many = len(summary["claims"]) > 1
        lines += ["", f"{len(early)} of the {len(summary['claims'])} comparison{'s' if many else ''} "
                      f"{'have' if len(early) > 1 else 'has'} fewer than {FIRST_SEEDS} paired seeds on {split}: "
                      f"whether {'they get' if len(early) > 1 else 'it gets'} seeds up to {MOST_SEEDS} is decided at "
                      f"{FIRST_SEEDS}."]
    wide = [c for c in summary["claims"] if c[split].get("planned") == MOST_SEEDS and c[split]["n"] < MOST_SEEDS]
    if wide:  # design v2's sample size: such a comparison gets seeds up to ten, in both arms
        arms = ", ".join(dict.fromkeys(arm for c in wide for arm in _arms(c)))
        shown = "; ".join(f"{c['variant']} − {c['baseline']} (±{100 * c[split]['first_stage_half']:.2f}; n = "
                          f"{c[split]['n']} now)" for c in wide)
        lines += ["", f"Wider than ±δ on {split} at the first {FIRST_SEEDS} seeds run, so design v2 adds seeds "
                      f"up to {MOST_SEEDS} to both arms: {shown}. Arms to extend: {arms}."]
    sized = {label: v for label, v in summary["variants"].items()
             if any(n.startswith("train/pt_") for n in v.get("first_epoch_terms", {}))}
    if sized:  # the alignment term beside the KD term, as the loss weighs them (α · unweighted mean, epoch 0)
        lines += ["", "Loss terms over the first epoch (mean over seeds and steps, before the per-row weights):", "",
                  "| variant | KD term | alignment term | α_kd · KD | α_pt · alignment |", "|---|---|---|---|---|"]
        for label, v in sized.items():
            t, a = v["first_epoch_terms"], v["alpha"]
            kd = statistics.mean(x for n, x in t.items() if n.startswith("train/kd_"))
            pt = statistics.mean(x for n, x in t.items() if n.startswith("train/pt_"))
            lines.append(f"| {label} | {kd:.4f} | {pt:.5f} | {a['alpha_kd'] * kd:.4f} | {a['alpha_pt'] * pt:.4f} |")
    return "\n".join(lines) + "\n"


def _recall_lines(classes: dict | str | None) -> list[str]:
    """Which classes each variant's students get right: the recall per class on the verdict split."""
    if classes is None:
        return []
    if isinstance(classes, str):
        return ["", f"Recall per class: {classes}"]
    examples = classes["examples"]
    lines = ["", f"Recall per class on **{classes['split']}**, mean over each variant's seeds (the share of a class's "
                 "examples the students label right; one predicting a single class scores 100 there and 0 elsewhere; "
                 "their mean is the balanced accuracy):", "",
             "| variant | " + " | ".join(f"class {c} (n = {n})" for c, n in examples.items())
             + " | mean over classes |",
             "|---|" + "---|" * (len(examples) + 1)]
    for label, recall in classes["variants"].items():
        cells = [f"{100 * recall[c]:.1f}" if c in recall else "–" for c in examples]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * statistics.mean(recall.values()):.1f} |")
    return lines


def _asked_lines(asked: dict) -> list[str]:
    """Which classes each variant asked the teacher about: the class shares of its KD rows (none logged: nothing)."""
    if not asked:
        return []
    ids = sorted(set().union(*asked.values()))
    lines = ["", "Which classes the teacher was asked about: of the KD rows, the share in each gold class of the "
                 "training data, in %, mean over seeds of each job's mean over its steps (full KD asks about every "
                 "row: its shares are the data's; variants whose jobs did not log them are left out):", "",
             "| variant | " + " | ".join(f"class {c}" for c in ids) + " |", "|---|" + "---|" * len(ids)]
    return lines + [f"| {label} | " + " | ".join(f"{100 * shares.get(c, 0.0):.1f}" for c in ids) + " |"
                    for label, shares in asked.items()]


TASKS = {"sst5": "SST-5, original data (8,544 sentences)", "sst2": "SST-2's pool of 67,349 phrases (redundant)"}
FINDINGS = ("selection", "objective", "adoption", "combined")  # the paper's findings, in the verdict table's order


def verdict_rows(name: str, summary: dict) -> list[dict]:
    """One row per claim of a study (its name and what it says), the comparisons that test it on the verdict split:
    what each decided, with the setting they share."""
    study, split = STUDIES[name], summary["verdict_split"]
    variants, rows = summary["variants"], {}
    for c in summary["claims"]:
        if c[split]["verdict"] != "not tested":
            rows.setdefault((c["claim"], c["says"]), []).append(c)
    out = []
    for (claim, says), claims in rows.items():
        arms = list(dict.fromkeys(a for c in claims for a in _arms(c)))
        recipes: dict[str, list[str]] = {}
        for arm in arms:
            recipe = variants[arm]["recipe"]
            recipes.setdefault(f"lr {recipe['distill.lr']:g}, {recipe['distill.epochs']} epochs", []).append(arm)
        ns = sorted({c[split]["n"] for c in claims})
        seeds = f"{ns[0]} seeds" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} seeds (n per comparison)"
        recipe = ("student " + next(iter(recipes)) if len(recipes) == 1 else
                  "student " + "; ".join(f"{', '.join(a)}: {r}" for r, a in recipes.items()))
        where = "verdict on test" if split == "test" else "verdict on dev (no test split)"
        sets = max(len(c[split].get("by_teachers", ())) for c in claims)  # among the seeds these comparisons read
        refits = f"seeds under {sets} refits of the teachers (d per set in the study's table)" if sets > 1 else ""
        setting = "; ".join(filter(None, (TASKS.get(summary["task"], summary["task"]), study.setting, where, seeds,
                                          refits,
                                          _precisions({"variants": {a: variants[a] for a in arms}}), recipe)))
        out.append({"finding": study.title, "claim": claim, "says": says, "setting": setting, "comparisons": claims,
                    "split": split, "collapsed": _collapse_cell({a: variants[a]["collapsed"][split] for a in arms}),
                    "n_max": ns[-1]})
    return sorted(out, key=lambda row: row["claim"])


def _collapse_cell(flags: dict[str, dict]) -> str:
    """The arms of a row with a job that predicts one class, as collapsed jobs / jobs; those not counted."""
    fell = [f"{arm} {_collapse_rate(f)}" for arm, f in flags.items() if any(f.values())]
    unknown = [arm for arm, f in flags.items() if any(v is None for v in f.values())]
    if len(unknown) == len(flags):
        return "not recorded (jobs run before the count)"
    return "; ".join(fell + ([f"not recorded for {', '.join(unknown)}"] if unknown else [])) or "none"


def _under_way(name: str, summary: dict) -> str:
    """The verdict table's row of a study whose jobs have begun while none of its comparisons can be read yet."""
    study, split = STUDIES[name], summary["verdict_split"]
    claims = ", ".join(dict.fromkeys(c.name for c in study.claims))
    paired = max((c[split]["n"] for c in summary["claims"]), default=0)
    seeds = f"{paired} paired seed{'s' * (paired != 1)} so far" if paired else "no arm paired with its baseline yet"
    flags = {label: v["collapsed"][split] for label, v in summary["variants"].items()}
    setting = "; ".join(filter(None, (TASKS.get(summary["task"], summary["task"]), study.setting)))
    return (f"| {study.title} | {claims} | {setting} | **under way**: {seeds}, and a verdict needs two (design v2 "
            f"reads {FIRST_SEEDS}) | — | {_collapse_cell(flags)} |")


def verdict_markdown(summaries: list[tuple[str, dict]]) -> str:
    """The verdict of every claim of the paper's findings, one row per claim and setting, from each study's summaries
    ((study name, :func:`dkd.studies.reproduction.summarise`'s), one per task a study ran on: finding 2 on SST-5 and
    on SST-2's pool); the findings without one are said to be not run, those whose jobs began without two paired seeds
    to be under way, and the comparisons a study defines but cannot read yet are counted under the table."""
    pts = lambda x: f"{100 * x:+.2f}".replace("-", "−")  # noqa: E731 - differences in points
    lines = ["| finding | claim | setting | verdict | d, points [95% t interval] | one class on the verdict split "
             "(jobs of an arm) |", "|---|---|---|---|---|---|"]
    left_out = []
    tasks: dict[str, list[str]] = {}
    for name, summary in summaries:
        tasks.setdefault(name, []).append(summary["task"])
    for name, summary in summaries:
        tested = {(c["variant"], tuple(c["chosen_from"]) if "chosen_from" in c else c["baseline"], c["kind"])
                  for c in summary["claims"] if c[summary["verdict_split"]]["verdict"] != "not tested"}
        untested = [c for c in STUDIES[name].claims if (c.variant, c.baseline, c.kind) not in tested]
        if untested:
            shown = ("; ".join(f"{c.variant} − {c.baseline_label}" for c in untested) if len(untested) <= 3
                     else f"{len(untested)} comparisons, claims {', '.join(dict.fromkeys(c.name for c in untested))}")
            where = f" ({TASKS.get(summary['task'], summary['task'])})" if len(tasks[name]) > 1 else ""
            left_out.append(f"{STUDIES[name].title}{where}: {shown}")
        rows = verdict_rows(name, summary)
        if not rows:  # its jobs have begun, but no comparison has the two paired seeds a verdict needs
            lines.append(_under_way(name, summary))
        for row in rows:
            claims, split = row["comparisons"], row["split"]
            common = len({c["baseline"] for c in claims}) == 1
            label = lambda c: (c["variant"] if common and len(claims) > 1  # noqa: E731
                               else f"{c['variant']} − {_baseline(c)}")
            by_verdict: dict[str, list[str]] = {}
            for c in claims:
                by_verdict.setdefault(f"**{c[split]['verdict']}**{_gloss(c[split], c['kind'], c['delta'])}",
                                      []).append(label(c))
            verdict = "; ".join(f"{v} for {', '.join(labels)}" if len(claims) > 1 else v
                                for v, labels in by_verdict.items())
            d = "; ".join(
                f"{label(c)} {pts(c[split]['mean'])} [{pts(c[split]['low'])}, {pts(c[split]['high'])}]"
                + (f" (n = {c[split]['n']})" if c[split]["n"] != row["n_max"] else "")
                + (" †" if c[split]["collapse"] else "") for c in claims)
            against = f" (against {_baseline(claims[0])})" if common and len(claims) > 1 else ""
            lines.append(f"| {row['finding']} | {row['claim']}: {row['says']}{against} | {row['setting']} | "
                         f"{verdict} | {d} | {row['collapsed']} |")
    for name in FINDINGS:
        if name not in tasks:
            study = STUDIES[name]
            claims = ", ".join(dict.fromkeys(c.name for c in study.claims))
            lines.append(f"| {study.title} | {claims} | — | **not run yet** | — | — |")
    lines += ["", "† an arm of the comparison predicts one class in a paired seed."]
    if left_out:
        lines.append("Defined by a study but without two paired seeds on the verdict split (not run, or under way), so "
                     f"without a verdict in the table: {'; '.join(left_out)}.")
    return "\n".join(lines) + "\n"
