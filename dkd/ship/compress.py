"""The compression report of a distillation run: how much smaller and faster the student is than its teachers, and
the student as ONNX (fp32, and int8 by ONNX Runtime's dynamic quantisation) for deployment.

    python -m dkd.ship.compress outputs/runs/<date>          # also run after every `python train.py` (compress.enabled)

writes into the run folder ``compression.md``, ``compression.json``, ``compression.png`` (and ``student.onnx``,
``student-int8.onnx``): per model its parameters, weights on disk (``model.safetensors``; the ``.onnx`` file), dev
metrics (every model scored here on the run's dev split(s), in its own tokenization), and CPU latency at batch 1 and
32 over sequences padded to the run's ``data.max_seq_length`` (median of ``repeats`` timed forwards after ``warmup``
untimed ones, on the CPUs this process may use unless ``threads`` says otherwise) and throughput; then teacher ÷
student ratios. The ONNX student must give PyTorch's logits within ``tolerance`` (max absolute difference over the
dev set); a larger difference is reported as a failure.

ONNX export goes through ``torch.onnx.export(dynamo=True)``, torch's own exporter (``torch.export`` graph, translated
by onnxscript): it traces transformers 5's models as they are, whereas ``optimum-onnx`` 0.1.0 (the newest on PyPI on
2026-11-25) requires ``transformers<4.58`` and would downgrade transformers 5.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from dkd.cpu import available_cpus, cpu_threads
from dkd.data import TaskDataModule
from dkd.errors import UserError
from dkd.metrics import TaskMetrics
from dkd.models import count_parameters, load_classifier, load_tokenizer, short_name
from dkd.quiet import quiet_libraries
from dkd.ship.card import refresh_compression
from dkd.ship.finished import run_config, run_dev_splits

log = logging.getLogger(__name__)

ONNX_FILES = {"onnx": "student.onnx", "int8": "student-int8.onnx"}


# ------------------------------------------------------------------------------------------------ measuring
def weights_bytes(path: Path) -> int:
    """Bytes of a model's weights on disk: a Hugging Face folder's safetensors (else its ``.bin`` weights, not
    ``training_args.bin``), or one ``.onnx`` file."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    files = list(path.glob("*.safetensors")) or [f for f in path.glob("*.bin") if f.name != "training_args.bin"]
    return sum(f.stat().st_size for f in files)


def latency(forward, warmup: int, repeats: int) -> dict:
    """Seconds of ``forward()``: median, min and max of ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        forward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def timing_inputs(tokenizer, texts: list[tuple[str, ...]], batch: int, max_length: int) -> dict[str, torch.Tensor]:
    """``batch`` dev examples (repeated if the dev set is smaller), padded to ``max_length`` tokens."""
    rows = [texts[i % len(texts)] for i in range(batch)]
    enc = tokenizer(*map(list, zip(*rows)), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt")
    return {k: enc[k] for k in tokenizer.model_input_names if k in enc}


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_feed(session, inputs: dict[str, torch.Tensor]) -> dict:
    return {i.name: inputs[i.name].numpy() for i in session.get_inputs()}


def run_onnx(session, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.from_numpy(session.run(None, onnx_feed(session, inputs))[0])


# ------------------------------------------------------------------------------------------------ ONNX
class LogitsOnly(torch.nn.Module):
    """The classifier as ``inputs → logits`` with the tokenizer's input names, for export."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).logits


def export_onnx(model: torch.nn.Module, example: dict[str, torch.Tensor], path: Path) -> Path:
    """One self-contained ``.onnx`` file, dynamic in batch and sequence length; its inputs are named as the
    tokenizer's outputs, so ``session.run(None, dict(tokenizer(texts, return_tensors="np")))`` works."""
    import warnings

    for library in ("onnxscript", "onnx_ir"):  # their optimiser passes log a line per pass and node at INFO
        logging.getLogger(library).setLevel(logging.WARNING)
    # torch's exporter warns once per torchvision operator it could register, and DKD has no use for torchvision
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    names = list(example)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings():  # the exporter's deprecation notes on transformers' internals
        warnings.simplefilter("ignore")
        torch.onnx.export(LogitsOnly(model.eval(), names), tuple(example.values()), str(path), input_names=names,
                          output_names=["logits"], dynamic_shapes=(({0: batch, 1: seq},) * len(names),), dynamo=True,
                          external_data=False, verbose=False)
    return path


def quantize_int8(fp32: Path, int8: Path) -> Path:
    """ONNX Runtime's dynamic quantisation: int8 weights of the matrix multiplications, activations quantised on
    the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(quiet_quantizer)
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet_quantizer)
    return int8


def quiet_quantizer(record: logging.LogRecord) -> bool:
    """The quantizer logs a line per tensor it leaves in fp32 to the root logger, and advises ONNX Runtime's
    pre-processing, which made no difference here (int8 student on SST-2: 17.0 vs 16.7 MiB, the same b32 latency).
    Its warnings pass."""
    return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()


# ------------------------------------------------------------------------------------------------ the report
def dev_batches(cfg: DictConfig, tokenizers: dict) -> tuple[list[dict], list[tuple[str, ...]], object]:
    """The run's dev split(s) in each model's tokenization (``tokenizers``: role → tokenizer), as the run evaluated
    them; and the first dev split's texts."""
    spec, dev = run_dev_splits(cfg)
    dm = TaskDataModule(spec, dev, tokenizers, max_seq_length=cfg.data.max_seq_length,
                        eval_batch_size=cfg.data.eval_batch_size, cache_dir=cfg.data.cache_dir)
    dm.setup()
    loaders = dm.val_dataloader()
    loaders = loaders if isinstance(loaders, list) else [loaders]
    batches = [dict(b, split=i) for i, loader in enumerate(loaders) for b in loader]
    return batches, list(zip(*dev[dm.dev_splits[0]].texts)), spec


def dev_scores(predict, batches: list[dict], role: str, spec, desc: str) -> tuple[dict, torch.Tensor]:
    """Dev metrics of ``predict`` (inputs → logits) over the batches in ``role``'s tokenization, and its logits."""
    metrics = TaskMetrics(list(spec.metrics), list(spec.dev_files), spec.num_labels)
    outputs = []
    for b in tqdm(batches, desc=desc, unit="batch", leave=False):
        logits = predict(b["inputs"][role])
        metrics.update(b["split"], logits, b["labels"])
        outputs.append(logits)
    return {k: round(v, 4) for k, v in metrics.compute().items()}, torch.cat(outputs)


def compress(run_dir: str | Path, batch_sizes=(1, 32), repeats: int = 20, warmup: int = 3, threads: int | None = None,
             onnx: bool = True, tolerance: float = 1e-4) -> dict:
    """Measure the run's student and teachers, export the student to ONNX, write the report; returns it."""
    run_dir = Path(run_dir)
    metrics, cfg = run_config(run_dir)
    threads = threads or available_cpus()
    with cpu_threads(threads):
        report = _measure(run_dir, metrics, cfg, list(batch_sizes), repeats, warmup, threads, onnx, tolerance)
    (run_dir / "compression.json").write_text(json.dumps(report, indent=2))
    (run_dir / "compression.md").write_text(markdown(report))
    plot(report, run_dir / "compression.png")
    try:
        refresh_compression(run_dir, report)
    except Exception:  # noqa: BLE001 - the report stands without the card
        log.exception("The model card's compression part was not refreshed; the report is written. Write the card "
                      "with python -m dkd.ship.card %s", run_dir)
    return report


def _measure(run_dir: Path, metrics: dict, cfg: DictConfig, batch_sizes: list[int], repeats: int, warmup: int,
             threads: int, onnx: bool, tolerance: float) -> dict:
    max_length = cfg.data.max_seq_length
    exported = run_dir / "student"  # the run folder may have moved since metrics.json named it
    folders = {role: Path(t["dir"]) for role, t in metrics["teachers"].items()}
    folders["student"] = exported if exported.is_dir() else Path(metrics["student_dir"])
    tokenizers = {role: load_tokenizer(str(folder)) for role, folder in folders.items()}
    batches, texts, spec = dev_batches(cfg, tokenizers)
    inputs = {role: {b: timing_inputs(tok, texts, b, max_length) for b in batch_sizes}
              for role, tok in tokenizers.items()}

    def timed(forward_at) -> dict:
        out = {}
        for b in batch_sizes:
            t = latency(forward_at(b), warmup, repeats)
            out[str(b)] = {"latency_ms": round(1e3 * t["median_s"], 3), "min_ms": round(1e3 * t["min_s"], 3),
                           "max_ms": round(1e3 * t["max_s"], 3), "examples_per_s": float(f"{b / t['median_s']:.4g}")}
        return out

    rows, logits, models = [], {}, {}
    for role, folder in folders.items():
        model = models[role] = load_classifier(str(folder), spec.num_labels).float().eval()
        name = "student" if role == "student" else short_name(str(folder))
        with torch.inference_mode():
            dev, logits[role] = dev_scores(lambda x, m=model: m(**x).logits, batches, role, spec, f"dev ({name})")
            timing = timed(lambda b, m=model, i=inputs[role]: lambda: m(**i[b]))
        rows.append({"model": name, "role": role, "format": "PyTorch fp32", "path": str(folder),
                     "parameters": count_parameters(model), "weights_bytes": weights_bytes(folder), "dev": dev,
                     "timing": timing})
    check = None
    if onnx:
        student = models["student"]
        fp32 = export_onnx(student, inputs["student"][batch_sizes[0]], run_dir / ONNX_FILES["onnx"])
        int8 = quantize_int8(fp32, run_dir / ONNX_FILES["int8"])
        for fmt, path in (("ONNX fp32", fp32), ("ONNX int8", int8)):
            session = onnx_session(path, threads)
            dev, out = dev_scores(lambda x, s=session: run_onnx(s, x), batches, "student", spec, f"dev ({fmt})")
            diff = float((out - logits["student"]).abs().max())
            if fmt == "ONNX fp32":
                check = {"max_abs_logit_diff": diff, "tolerance": tolerance, "passed": diff <= tolerance,
                         "examples": int(out.size(0))}
                if not check["passed"]:
                    log.error("ONNX student's logits differ from PyTorch's by %.3g on the dev set (tolerance %g): "
                              "%s is not a faithful export", diff, tolerance, path)
            feeds = {b: onnx_feed(session, inputs["student"][b]) for b in batch_sizes}
            rows.append({"model": "student", "role": "student", "format": fmt, "path": str(path),
                         "parameters": count_parameters(student),
                         "weights_bytes": weights_bytes(path), "dev": dev, "max_abs_logit_diff": round(diff, 6),
                         "timing": timed(lambda b, s=session, f=feeds: lambda: s.run(None, f[b]))})
    return {"run": str(run_dir), "task": spec.name, "example": list(texts[0]), "max_seq_length": max_length,
            "threads": threads, "repeats": repeats, "warmup": warmup, "batch_sizes": batch_sizes,
            "machine": f"{platform.processor() or platform.machine()}, {available_cpus()} CPUs available, "
                       f"torch {torch.__version__}",
            "models": rows, "onnx_check": check, "ratios": ratios(rows, batch_sizes)}


def ratios(rows: list[dict], batch_sizes: list[int]) -> dict:
    """Each teacher ÷ each student format: parameters, weights on disk, and latency (the speed-up) per batch size."""
    def ms(row: dict, b: int) -> float:
        return row["timing"][str(b)]["latency_ms"]

    out = {}
    for t in (r for r in rows if r["role"] != "student"):
        for s in (r for r in rows if r["role"] == "student"):
            out[f"{t['role']} / student {s['format']}"] = {
                "parameters": round(t["parameters"] / s["parameters"], 2),
                "weights_bytes": round(t["weights_bytes"] / s["weights_bytes"], 2),
                **{f"speed_up_batch_{b}": round(ms(t, b) / ms(s, b), 2) for b in batch_sizes}}
    return out


def plot(report: dict, png: Path) -> Path:
    """Weights on disk, latency and dev score per model, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["models"]
    names = [f"{r['role']}\n{r['format']}" for r in rows]
    colors = ["#888888" if r["role"] != "student" else "#1f77b4" for r in rows]
    sizes = report["batch_sizes"]
    fig, axes = plt.subplots(1, 2 + len(sizes), figsize=(4 * (2 + len(sizes)), 3.8))
    panels = [([r["weights_bytes"] / 2**20 for r in rows], "weights on disk (MiB)"),
              *(([r["timing"][str(b)]["latency_ms"] for r in rows], f"latency, batch {b} (ms)") for b in sizes),
              ([r["dev"].get("dev/score", float("nan")) for r in rows], "dev score")]
    for ax, (values, title) in zip(axes, panels):
        ax.barh(names, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{report['task']}: teachers (grey) and the student, CPU, {report['threads']} thread(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def markdown(report: dict) -> str:
    sizes = report["batch_sizes"]
    dev_keys = list(next(r["dev"] for r in report["models"] if r["role"] == "student"))
    head = (["model", "role", "format", "parameters", "weights MiB", *dev_keys]
            + [f"latency b{b} (ms)" for b in sizes] + [f"throughput b{b} (ex/s)" for b in sizes])
    lines = [f"# Compression report: {report['task']}", "",
             f"Run `{report['run']}`. CPU latency: median of {report['repeats']} timed forwards after "
             f"{report['warmup']} warm-up ones, sequences padded to {report['max_seq_length']} tokens, "
             f"{report['threads']} thread(s) ({report['machine']}). Dev metrics: every model measured here on the "
             f"run's dev set, each in its own tokenization.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["models"]:
        cells = [r["model"], r["role"], r["format"], f"{r['parameters'] / 1e6:.2f}M",
                 f"{r['weights_bytes'] / 2**20:.1f}", *(f"{r['dev'].get(k, float('nan')):.4f}" for k in dev_keys),
                 *(f"{r['timing'][str(b)]['latency_ms']:.1f}" for b in sizes),
                 *(f"{r['timing'][str(b)]['examples_per_s']:.1f}" for b in sizes)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| teacher ÷ student | parameters | weights on disk | " +
              " | ".join(f"speed-up b{b}" for b in sizes) + " |", "|---|---|---|" + "---|" * len(sizes)]
    for pair, r in report["ratios"].items():
        lines.append(f"| {pair} | {r['parameters']:.2f}× | {r['weights_bytes']:.2f}× | " +
                     " | ".join(f"{r[f'speed_up_batch_{b}']:.2f}×" for b in sizes) + " |")
    check = report["onnx_check"]
    if check:
        lines += ["", f"ONNX check: the fp32 ONNX student's logits differ from PyTorch's by at most "
                      f"{check['max_abs_logit_diff']:.2g} over {check['examples']} dev examples (tolerance "
                      f"{check['tolerance']:g}): {'passed' if check['passed'] else 'FAILED'}.",
                  "", "Load it with ONNX Runtime (the student's tokenizer is in its `student/` folder); the input is "
                      f"the first dev row, in the task's text column{'s' if len(report['example']) > 1 else ''}:", "",
                  "```python",
                  "import onnxruntime as ort; from transformers import AutoTokenizer",
                  f"tokenizer, session = AutoTokenizer.from_pretrained({str(Path(report['run']) / 'student')!r}), "
                  f"ort.InferenceSession({str(Path(report['run']) / ONNX_FILES['onnx'])!r})",
                  "logits = session.run(None, dict(tokenizer(" + ", ".join(repr([t]) for t in report["example"])
                  + f", truncation=True, max_length={report['max_seq_length']}, return_tensors='np')))[0]",
                  "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    def at_least(minimum: int):
        def parse(text: str) -> int:
            if int(text) < minimum:
                raise argparse.ArgumentTypeError(f"{text}: must be an integer >= {minimum}")
            return int(text)
        return parse

    p = argparse.ArgumentParser(prog="python -m dkd.ship.compress", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a distillation run's folder (holds metrics.json and student/)")
    p.add_argument("--batch-sizes", type=at_least(1), nargs="+", default=[1, 32], help="timed batch sizes")
    p.add_argument("--repeats", type=at_least(1), default=20, help="timed forwards per model and batch size")
    p.add_argument("--warmup", type=at_least(0), default=3, help="untimed forwards before them")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads (default: the CPUs this process may use)")
    p.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX and int8 student")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |ONNX − PyTorch| logit on the dev set")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_libraries()  # as train.py does: no per-file weight-loading bars
    try:
        report = compress(args.run_dir, args.batch_sizes, args.repeats, args.warmup, args.threads, args.onnx,
                          args.tolerance)
    except UserError as err:
        raise SystemExit(f"Error: {err}") from None
    print(markdown(report), f"\nwritten to {args.run_dir / 'compression.md'}")
    if report["onnx_check"] and not report["onnx_check"]["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
