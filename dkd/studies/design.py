"""The reproduction report's studies as designed: which variants each compares (the values of its studied options),
which claims of the paper it tests, each with its kind and smallest effect of interest (docs/reproduction.md, design
v2), read by the rest of :mod:`dkd.studies`."""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from dkd.paths import CONF
from dkd.studies.verdict import DELTA, KINDS


@dataclass(frozen=True)
class Claim:
    """``variant`` − ``baseline`` tested by :func:`dkd.studies.verdict.verdicts` as ``kind`` (higher, keeps, differ,
    same) with the smallest effect of interest ``delta``. A tuple of labels as ``baseline`` is the better of them: the
    one with the higher mean dev score over the seeds they share, chosen once for the study (the harder baseline, as
    "the better single teacher"; dev, which chooses checkpoints, not the verdict split), named in the claim's row."""

    name: str
    variant: str
    baseline: str | tuple[str, ...]
    says: str
    kind: str = "higher"
    delta: float = DELTA

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.name} ({self.variant} − {self.baseline_label}): kind={self.kind!r}, not "
                             f"one of {', '.join(KINDS)}")

    @property
    def baselines(self) -> tuple[str, ...]:
        """The baseline's candidates: one label, or those the better is chosen from."""
        return (self.baseline,) if isinstance(self.baseline, str) else self.baseline

    @property
    def baseline_label(self) -> str:
        return self.baseline if isinstance(self.baseline, str) else f"the better of {', '.join(self.baseline)}"


@dataclass(frozen=True)
class Study:
    """``keys``: the studied options (a config group's choice, or a dotted key); ``variants``: label → the values of
    those keys that make it (None: the key left at its default of null); ``setting``: what the variants' labels leave
    unsaid, for the verdict table."""

    title: str
    keys: tuple[str, ...]
    variants: dict[str, dict]
    claims: tuple[Claim, ...] = ()
    paper: dict[str, str] = field(default_factory=dict)
    curves: tuple[str, ...] = ()  # logged decisions plotted over training (one seed per variant)
    setting: str = ""

    def __post_init__(self):
        seen = [(c.variant, c.baseline, c.kind) for c in self.claims]
        twice = sorted({x for x in seen if seen.count(x) > 1})
        if twice:  # one comparison counted twice in a Holm family
            raise ValueError(f"{self.title}: claims given twice (variant, baseline, kind): {twice}")


# design v2's sample size: five seeds, extended to ten where a comparison's 95% interval is wider than ±δ at five
FIRST_SEEDS, MOST_SEEDS = 5, 10
SEED_ORDER = (42, 1, 2, 3, 4, 5, 6, 7, 8, 9)  # the order seeds are run in: the first five are the first stage


def run_order(seeds) -> list[int]:
    """``seeds`` in the order they are run (SEED_ORDER, then any other seed by value): a claim's first five are its
    first stage, and a claim is read on its first five or ten, whatever has been added since for other claims."""
    rank = {s: i for i, s in enumerate(SEED_ORDER)}
    return sorted(seeds, key=lambda s: (rank.get(s, len(SEED_ORDER)), s))


MODES = (("efficient", 1, ""), ("efficient", 10, " (pool 10)"), ("faithful", 1, " (faithful)"))


def _selection() -> Study:
    full = {"sampler": "none", "distill.train_limit": None}
    variants = {"full KD": full}
    for r in (0.1, 0.5):
        variants[f"fixed random {r:.0%} subset"] = {"sampler": "none", "distill.train_limit": f"{r:.0%} of the pool"}
        for name in ("random", "entropy", "margin", "least_confidence"):
            for mode, pool, tail in MODES:
                variants[f"{name} r={r}{tail}"] = {"sampler": name, "sampler.ratio": r, "sampler.mode": mode,
                                                   "sampler.pool": pool, "distill.train_limit": None}
    claims = []
    for r in (0.1, 0.5):
        for _, _, tail in MODES:
            for m in ("entropy", "margin", "least_confidence"):
                v = f"{m} r={r}{tail}"
                claims += [Claim("2a", v, "full KD", "keeps accuracy within 1 point of full KD", "keeps"),
                           Claim("2b", v, f"random r={r}{tail}", "beats random selection")]
            claims += [Claim("2d", f"{a} r={r}{tail}", f"{b} r={r}{tail}", "the measures differ", "differ")
                       for a, b in (("entropy", "margin"), ("entropy", "least_confidence"),
                                    ("margin", "least_confidence"))]
        claims.append(Claim("2c", f"entropy r={r}", f"fixed random {r:.0%} subset",
                            "selecting per batch beats a fixed random subset of the same share"))
    paper = {  # Table 4 of the paper: augmented data, r = 0.1, BERT-base teacher, 6-layer BERT student (SST-5 acc)
        "full KD": "51.4 (TinyBERT full KD; 24.9 GFLOPs)", "random r=0.1": "51.1 (2.49 GFLOPs)",
        "entropy r=0.1": "51.5 (4.65 GFLOPs)", "margin r=0.1": "51.6 (4.65 GFLOPs)",
        "least_confidence r=0.1": "51.2 (4.65 GFLOPs)"}
    return Study("Finding 2: data selection", ("sampler", "sampler.ratio", "sampler.mode", "sampler.pool",
                                               "distill.train_limit"), variants, tuple(claims), paper,
                 ("train/sampler_u_selected", "train/sampler_u_all"),
                 "efficient mode unless marked (faithful: the authors' mode; pool 10: k rows of 10 batches)")


def _adoption() -> Study:
    singles = ("smallest", "largest")
    variants = {n: {"adoption": n, "adoption.faithful": False}
                for n in (*singles, "ensemble", "hard", "soft", "soft_instance")}
    # the authors' semantics of hard and soft (preset=authors_teacher's faithful=true), the rest of the recipe as above
    variants.update({f"{n} (faithful)": {"adoption": n, "adoption.faithful": True} for n in ("hard", "soft")})
    dynamic = ("hard", "soft", "soft_instance", "hard (faithful)", "soft (faithful)")
    claims = [Claim("1a", n, singles, "adoption beats the better single teacher") for n in dynamic]
    claims.append(Claim("1b", "smallest", "largest",
                        "the smaller teacher's student beats the larger's (read with the teacher check)"))
    claims += [Claim("1c", n, "ensemble", "dynamic adoption beats the ensemble") for n in dynamic]
    paper = {  # BERT-base + BERT-large teachers, 6-layer BERT student; the paper has no SST-5 adoption column
        "hard": "CoLA 42.7 MCC, RTE 66.9; dynamic adoption's average 65.3",
        "ensemble": "average 63.8 (the paper's tasks)"}
    paper["hard (faithful)"] = paper["hard"]  # the paper's figures come from the authors' semantics, the faithful row
    return Study("Finding 1: teacher adoption", ("adoption", "adoption.faithful"), variants, tuple(claims), paper,
                 ("train/adoption_weight_large", "train/adoption_share_large"),
                 "both teachers' logits cached; faithful: the authors' adoption semantics")


def _objective() -> Study:
    names = ("kd", "kd_uncertainty", "kd_pt", "kd_pt_uncertainty", "kd_pt_uncertainty_r")
    claims = (Claim("3", "kd_pt_uncertainty", "kd_pt", "weighting KD against alignment by u beats fixed weights"),
              Claim("3", "kd_pt_uncertainty", "kd_pt_uncertainty_r", "the paper's direction beats the reverse"),
              Claim("3", "kd_uncertainty", "kd", "u-weighted logit KD beats plain KD"))
    return Study("Finding 3: objective adaptation", ("variant",), {n: {"variant": n} for n in names}, claims,
                 curves=("train/weighting_u", "train/weighting_pt"),
                 setting="full KD, logit KD + [CLS] alignment")


def combined_choices() -> tuple[dict, float]:
    """The combined run's choices as ``experiment=repro_combined`` commits them (its one source): the studied options
    (the selection and its mode, the adoption and its semantics, the objective variant) and, apart, the selection
    ratio that every arm that selects shares (an option of the recipe, not a studied one)."""
    recipe = yaml.safe_load((CONF / "experiment" / "repro_combined.yaml").read_text())
    groups = {key.split("/")[-1]: value for entry in recipe["defaults"] if isinstance(entry, dict)
              for key, value in entry.items()}
    return {"sampler": groups["sampler"], "sampler.mode": recipe["sampler"]["mode"],
            "adoption": groups["adoption"], "adoption.faithful": recipe.get("adoption", {}).get("faithful", False),
            "variant": groups["variant"]}, recipe["sampler"]["ratio"]


def _combined() -> Study:
    chosen, ratio = combined_choices()
    static = {"sampler": "none", "sampler.mode": "efficient", "adoption": "single", "adoption.faithful": False,
              "variant": "kd"}
    selection = {k: chosen[k] for k in ("sampler", "sampler.mode")}
    adoption = {k: chosen[k] for k in ("adoption", "adoption.faithful")}
    variants = {"static KD": static, "selection alone": {**static, **selection},
                "adoption alone": {**static, **adoption},
                "objective alone": {**static, "variant": chosen["variant"]}, "combined": chosen}
    claims = tuple(Claim("combined", "combined", v, "the three strategies together beat each alone")
                   for v in ("selection alone", "adoption alone", "objective alone", "static KD"))
    keys = ("sampler", "sampler.mode", "adoption", "adoption.faithful", "variant", "teacher")
    curves = ("train/sampler_u_selected", "train/adoption_weight_large", "train/weighting_pt")
    return Study("The combined run", keys, variants, claims, curves=curves,
                 setting=f"{chosen['sampler']} r={ratio} ({chosen['sampler.mode']} mode), adoption "
                 f"{chosen['adoption']}{' (faithful)' if chosen['adoption.faithful'] else ''}, "
                 f"variant {chosen['variant']}; static KD and the arms without adoption learn from the smaller teacher")


def _precision() -> Study:
    """bf16 against fp32 on the CPU (docs/results.md, issue 27): the same students within a point?"""
    methods = {"full KD": {"sampler": "none"}, "entropy r=0.1": {"sampler": "entropy"}}
    variants = {f"{m} {name}": {**keys, "trainer.precision": p} for m, keys in methods.items()
                for name, p in (("fp32", 32), ("bf16", "bf16-mixed"))}
    claims = tuple(Claim("bf16", f"{m} bf16", f"{m} fp32", "bf16 trains the student fp32 trains, within 1 point",
                         "same") for m in methods)
    return Study("bf16 against fp32 on the CPU", ("sampler", "trainer.precision"), variants, claims)


STUDIES = {"selection": _selection(), "adoption": _adoption(), "objective": _objective(), "combined": _combined(),
           "precision": _precision()}
