"""The model card of an exported student, ``student/README.md``: what it is, for whoever receives the folder or finds
it on the Hugging Face Hub.

    python -m dkd.ship.card outputs/runs/<date>      # written after every distillation; this writes it again

Written with ``huggingface_hub``'s model-card API from the run's ``metrics.json`` (and ``compression.json`` when the
compression report ran): the Hub's metadata (library, pipeline tag, base model, datasets, metrics, the dev results
as a model index, the source model's license where its own card names one) and a body: results, teachers,
strategies, data, training, FLOPs, compression, the command that reproduces the run, and a ``pipeline(...)``
example for the task's inputs. ``python -m dkd.ship.compress`` rewrites only the compression part, between
:data:`BEGIN` and :data:`END`, so edits elsewhere in the card stay.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from omegaconf import OmegaConf

from dkd.errors import UserError
from dkd.metrics import describe
from dkd.models import load_config, resolve, short_name
from dkd.ship.finished import run_config, run_dev_splits
from dkd.tasks import task_spec

log = logging.getLogger(__name__)

CARD = "README.md"
BEGIN, END = "<!-- dkd:compression -->", "<!-- /dkd:compression -->"
# DKD's metric names -> the Hub's metric ids (those of the `evaluate` library) and their display names
HUB_METRICS = {"acc": ("accuracy", "Accuracy"), "f1": ("f1", "F1"), "mcc": ("matthews_correlation", "MCC"),
               "pearson": ("pearsonr", "Pearson r"), "spearman": ("spearmanr", "Spearman rho")}
STRATEGY_GROUPS = ("sampler", "adoption", "objective", "weighting")


def source_metadata(name_or_path: str) -> dict:
    """The license and language of the source model's own card, when one is at hand: in its folder (a packaged
    model, a local folder) or in the local Hugging Face cache. Nothing is downloaded."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        folder = Path(resolve(name_or_path))
    except UserError:
        return {}
    readme = folder / CARD
    if not readme.is_file() and hub_id(name_or_path):
        try:
            cached = try_to_load_from_cache(name_or_path, CARD)
        except HFValidationError:
            cached = None
        readme = Path(cached) if isinstance(cached, str) else readme
    if not readme.is_file():
        return {}
    data = ModelCard.load(readme, ignore_metadata_errors=True).data
    return {k: getattr(data, k) for k in ("license", "language") if getattr(data, k, None)}


def hub_id(name_or_path: str) -> str | None:
    """``name_or_path`` when it names a Hub model (``org/name`` or a bare id), None for a folder on disk."""
    if Path(name_or_path).exists() or name_or_path.startswith((".", "/", "~")):
        return None
    return name_or_path


def model_name(metrics: dict, layers: int) -> str:
    student = metrics["config"]["backbone"]["student"]["name_or_path"]
    return f"dkd-{metrics['task']}-{short_name(student)}-{layers}L"


def student_layers(run_dir: Path) -> int:
    return load_config(str(run_dir / "student")).num_hidden_layers  # also where a config names it n_layers


def teacher_source(folder: Path) -> str:
    """What a teacher was fine-tuned from: its store recipe's model, else the folder's own config."""
    recipe = folder / "recipe.json"
    if recipe.is_file():
        return f"`{json.loads(recipe.read_text())['model']}` fine-tuned on the task"
    return f"a fine-tuned `{load_config(str(folder)).name_or_path or folder.name}`"


def task_facts(metrics: dict) -> dict:
    """The run's task, its Hub dataset and config, and the Hub's names of its dev splits."""
    spec = task_spec(OmegaConf.create(metrics["config"]))
    return {"spec": spec, "dataset": spec.hub_path or None, "config": spec.hub_config,
            "splits": spec.hub_dev_splits if spec.hub_path else {}}


def card_data(metrics: dict, layers: int) -> ModelCardData:
    facts = task_facts(metrics)
    spec, source = facts["spec"], metrics["config"]["backbone"]["student"]["name_or_path"]
    results = []
    for key, value in metrics["dev"].items():
        split, metric = key.split("/", 1)
        if metric not in HUB_METRICS:  # dev/score: DKD's mean of the task's metrics
            continue
        results.append(EvalResult(
            task_type="text-classification", task_name="Text Classification",
            dataset_type=facts["dataset"] or "custom", dataset_name=f"{spec.name} ({split})",
            dataset_config=facts["config"], dataset_split=facts["splits"].get(split, split),
            metric_type=HUB_METRICS[metric][0], metric_name=HUB_METRICS[metric][1], metric_value=value))
    return ModelCardData(
        library_name="transformers", pipeline_tag="text-classification", base_model=hub_id(source),
        datasets=[facts["dataset"]] if facts["dataset"] else None,
        metrics=[HUB_METRICS[m][0] for m in spec.metrics], tags=["knowledge-distillation", "dkd"],
        model_name=model_name(metrics, layers), eval_results=results or None, **source_metadata(source))


# ------------------------------------------------------------------------------------------------ the body
def usage(student: str, example: list[str], max_length: int) -> str:
    """Three lines of ``pipeline(...)`` for the task's inputs: a text, or a text pair as ``text`` / ``text_pair``, cut
    to the run's ``data.max_seq_length`` as it was trained and scored."""
    texts = [" ".join(t.split()) for t in example]
    arg = (repr(texts[0]) if len(texts) == 1 else
           "{" + f"'text': {texts[0]!r}, 'text_pair': {texts[1]!r}" + "}")
    return "\n".join(["```python", "from transformers import pipeline",
                      f"classifier = pipeline('text-classification', model={student!r})",
                      f"print(classifier({arg}, truncation=True, max_length={max_length}))", "```"])


def selected(which: str) -> str:
    """metrics.json's ``selected`` without the run's local paths: ``best dev checkpoint, epoch2-score0.8394``, or
    ``last epoch (2), no best-checkpoint selection``."""
    return f"best dev checkpoint, {Path(which.removeprefix('checkpoint ')).stem}" if which.startswith("checkpoint ") \
        else which


def kept(which: str) -> str:
    """Which model the run kept, as a sentence's end, read from metrics.json's ``selected``."""
    if which.startswith("checkpoint "):
        return f"the checkpoint with the best dev score kept ({Path(which.removeprefix('checkpoint ')).stem})"
    return f"the model of the {which.replace(', no best-checkpoint selection', '')} kept, no best-checkpoint selection"


def settings(group: dict) -> str:
    """A strategy's class and settings, as its config gives them."""
    items = {k: v for k, v in group.items() if k != "_target_"}
    return f"`{group['_target_'].rsplit('.', 1)[-1]}`" + (
        " (" + ", ".join(f"{k}={v}" for k, v in items.items()) + ")" if items else "")


def flops_lines(flops: dict | None) -> list[str]:
    if not flops:
        return ["FLOPs were not counted in this run."]
    per = flops["gflops_per_example"]
    return [f"Training cost, counted as the run went (forward 2·N·L FLOPs per token and layer, backward twice that): "
            f"{per['total']:.4g} GFLOPs per training example, of which the teachers {per['teacher']:.4g}; full KD "
            f"(every teacher on every row) on the same batches: {per['full_kd']:.4g}, so this run cost "
            f"**{flops['ratio_to_full_kd']:.1%} of full KD**" + (
                f" ({flops['ratio_spent_to_full_kd']:.1%} with the teacher-output cache's hits spared)"
                if "ratio_spent_to_full_kd" in flops else "") + f", over {flops['examples']} training examples."]


def compression_part(report: dict | None, run_dir: Path) -> str:
    """The card's compression part, from ``compression.json``."""
    if not report:
        return (f"Not measured in this run: `python -m dkd.ship.compress {run_dir}` measures the student against its "
                f"teachers (size, CPU latency, ONNX fp32 and int8) and fills this part in.")
    sizes = report["batch_sizes"]
    lines = [f"Measured by `python -m dkd.ship.compress` on {report['machine']}, {report['threads']} thread(s), "
             f"sequences of {report['max_seq_length']} tokens, median of {report['repeats']} timed forwards.", "",
             "| model | format | parameters | weights MiB | dev score | " +
             " | ".join(f"latency b{b} (ms)" for b in sizes) + " |", "|---|---|---|---|---|" + "---|" * len(sizes)]
    for r in report["models"]:
        lines.append(f"| {r['role'] if r['role'] == 'student' else 'teacher ' + r['role']} | {r['format']} | "
                     f"{r['parameters'] / 1e6:.2f}M | {r['weights_bytes'] / 2**20:.1f} | "
                     f"{r['dev'].get('dev/score', float('nan')):.4f} | " +
                     " | ".join(f"{r['timing'][str(b)]['latency_ms']:.1f}" for b in sizes) + " |")
    for pair, r in report["ratios"].items():
        if pair.endswith("PyTorch fp32"):
            lines += ["", f"{pair.split(' / ')[0].capitalize()} teacher ÷ student: {r['parameters']:.2f}× the "
                          f"parameters, {r['weights_bytes']:.2f}× the weights on disk; the student runs " +
                      ", ".join(f"{r[f'speed_up_batch_{b}']:.2f}× faster at batch {b}" for b in sizes) + "."]
    check = report.get("onnx_check")
    if check:
        lines += ["", f"ONNX export (`student.onnx`, `student-int8.onnx` in the run folder, not in this one): the "
                      f"fp32 model's logits "
                      f"differ from PyTorch's by at most {check['max_abs_logit_diff']:.2g} over {check['examples']} "
                      f"dev examples (tolerance {check['tolerance']:g}): "
                      f"{'passed' if check['passed'] else 'FAILED'}."]
    return "\n".join(lines)


ORIGIN = {"store": "from the teacher store", "store (fine-tuned now)": "fine-tuned by this run into the teacher store",
          "teacher.dirs": "a folder given by teacher.dirs"}


def card_license(source: str, known: str | None) -> str:
    return (f"That of the source model `{source}`: {known}." if known else
            f"Not known: the card of the source model `{source}` was not at hand. Set `license:` in the metadata "
            f"above to the source model's license before you publish this model.")


def data_line(metrics: dict, spec) -> str:
    cfg = metrics["config"]
    limit, subset = cfg["task"].get("train_limit"), cfg["distill"].get("train_limit")
    rows = metrics.get("pool_examples", metrics["train_examples"])
    read = (f"a fixed random {rows} of its training rows (task.train_limit)" if limit == rows else
            f"its {rows} training rows")
    student = (f"the student on a fixed random {metrics['train_examples']} of them (distill.train_limit)" if subset
               else f"the student on all {metrics['train_examples']}")
    dev = "its dev splits" if len(spec.dev_files) > 1 else "its dev split"
    return (f"Data: {spec.name}, {read}, {student}; sequences cut to {cfg['data']['max_seq_length']} tokens; scored "
            f"on {dev}.")


def body(metrics: dict, report: dict | None, run_dir: Path, example: list[str], layers: int,
         license: str | None) -> str:
    """The card's text; ``layers`` the student's depth, ``license`` the source model's (None: unknown)."""
    cfg, spec = metrics["config"], task_facts(metrics)["spec"]
    student, hp = cfg["backbone"]["student"], cfg["distill"]
    choices = metrics.get("choices") or {}
    teachers = [f"- **{role}**: `{Path(t['dir']).name}`, {teacher_source(Path(t['dir']))} "
                f"({ORIGIN.get(t.get('source'), t.get('source'))}); dev: {describe(t.get('dev') or {})}"
                for role, t in metrics["teachers"].items()]
    strategies = [f"- {group}: **{choices.get(group, '?')}**, {settings(cfg[group])}" for group in STRATEGY_GROUPS]
    code = metrics.get("code") or {}
    commit = (f" at commit `{code['commit'][:7]}`" + (" (with local changes)" if code.get("dirty") else "")
              if code else "")
    command = metrics.get("command") or "python train.py  # the run's overrides were not recorded"
    return "\n".join([
        f"# {model_name(metrics, layers)}", "",
        f"A {layers}-layer student of `{student['name_or_path']}` for **{spec.name}** "
        f"(text column{'s' if len(spec.columns) > 1 else ''} {', '.join(spec.columns)}; "
        f"{'labels ' + ', '.join(spec.labels) if spec.labels else 'a score'}), distilled with DKD, a framework that "
        f"reproduces and extends *Dynamic Knowledge Distillation for Pre-trained Language Models* (Li et al., EMNLP "
        f"2021; the authors' own code is github.com/lancopku/DynamicKD): the student's uncertainty may choose which "
        f"rows to query the teacher on, which teacher to learn from and how to weight the objectives.", "",
        "## Results", "",
        f"- student, dev: {describe(metrics['dev'])} ({selected(metrics['selected'])})",
        *[f"- teacher {role}, dev: {describe(t.get('dev') or {})}" for role, t in metrics["teachers"].items()], "",
        "## Usage", "",
        ("The output `score` is the predicted value on the task's scale (a regression: one output, LABEL_0). "
         if spec.is_regression else "Labels are the task's label values as written in its data files. ")
        + "From this folder, or from its Hub repo id once pushed:", "",
        usage(str(run_dir / "student"), example, cfg["data"]["max_seq_length"]), "",
        "## Training", "",
        "Teachers:", "", *teachers, "",
        "Strategies (the config groups of DKD):", "", *strategies, "",
        data_line(metrics, spec), "",
        f"Training: {hp['epochs']} epoch{'s' if hp['epochs'] > 1 else ''}, lr {hp['lr']}, batch {hp['batch_size']}, "
        f"warm-up {hp['warmup_ratio']}, weight decay {hp['weight_decay']}, seed {metrics['seed']}; "
        f"{kept(metrics['selected'])}.", "",
        *flops_lines(metrics.get("flops")), "",
        "## Compression", "", BEGIN, compression_part(report, run_dir), END, "",
        "## Reproduce", "",
        f"With the DKD checkout{commit}, after its `setup.sh`:", "", "```bash", command, "```", "",
        "## License", "", card_license(student["name_or_path"], license), "",
    ])


# ------------------------------------------------------------------------------------------------ writing
def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def first_dev_example(metrics: dict) -> list[str]:
    """The texts of the run's first dev row, as the usage example."""
    _, dev = run_dev_splits(OmegaConf.create(metrics["config"]))
    split = next(iter(dev.values()))
    return [column[0] for column in split.texts]


def write_card(run_dir: str | Path, example: list[str] | None = None) -> Path:
    """Write ``student/README.md`` of a finished distillation run from its metrics.json (and compression.json)."""
    run_dir = Path(run_dir)
    metrics, _ = run_config(run_dir)
    layers = student_layers(run_dir)
    data = card_data(metrics, layers)
    text = body(metrics, read_json(run_dir / "compression.json"), run_dir, example or first_dev_example(metrics),
                layers, data.license)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")
    path = run_dir / "student" / CARD
    card.save(path)
    return path


def refresh_compression(run_dir: str | Path, report: dict) -> Path | None:
    """Rewrite the card's compression part only; write the whole card if the student has none yet."""
    path = Path(run_dir) / "student" / CARD
    if not path.is_file():
        return write_card(run_dir)
    text = path.read_text(encoding="utf-8")
    part = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not part.search(text):
        log.warning("%s has no compression part (between %s and %s) to refresh: left as it is; "
                    "python -m dkd.ship.card %s writes the card anew", path, BEGIN, END, run_dir)
        return None
    path.write_text(part.sub(lambda _: f"{BEGIN}\n{compression_part(report, Path(run_dir))}\n{END}", text),
                    encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dkd.ship.card", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a distillation run's folder (holds metrics.json and student/)")
    args = p.parse_args(argv)
    try:
        print(f"model card: {write_card(args.run_dir)}")
    except UserError as err:
        raise SystemExit(f"Error: {err}") from None


if __name__ == "__main__":
    main()
