"""Does bf16 scoring pick the rows fp32 scoring picks? (issue 27: why the bf16 entropy students differ)

Per student, on the task's first ``--batches`` training batches in file order (batch 32, each padded to its longest
row as DKD's loader does), the top ``k = round(ratio * 32)`` rows by entropy from the student's logits in fp32 and
under bf16 autocast (the scoring pass of ``trainer.precision=bf16-mixed``), and from bf16 with the pooler and the
classifier head run in fp32. Prints how many of the fp32 picks each keeps, the tied u values per batch in bf16 (rows
that bf16 cannot order), and u's mean and std.

    python docs/bench/bf16_selection.py --task sst5                          # the student as training starts
    python docs/bench/bf16_selection.py --task sst5 outputs/precision/*/student   # trained students

The student as training starts is the default one (``backbone.student``: all-MiniLM-L6-v2's first 3 layers under a
fresh classifier head), its head drawn at ``--seed``. Single-sentence tasks (the first text column).
"""
from __future__ import annotations

import argparse

import torch

from dkd.data import load_task_data
from dkd.models import load_classifier, load_tokenizer, truncate
from dkd.strategies.uncertainty import uncertainty
from dkd.studies.bench import compose_cfg
from dkd.tasks import get_task


def top(logits: torch.Tensor, k: int) -> set[int]:
    return set(uncertainty(logits.float(), "entropy").topk(k).indices.tolist())


def agreement(model, tokenizer, texts: list[str], k: int, batch: int = 32) -> dict:
    same = {"bf16": 0, "bf16, pooler + head fp32": 0}
    ties, us = 0, []
    for i in range(0, len(texts), batch):
        b = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            fp32 = model(**b).logits
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = model(**b).logits
                encoded = model.base_model(**b).last_hidden_state
            mixed = model.classifier(model.base_model.pooler(encoded.float()))
        ref = top(fp32, k)
        same["bf16"] += len(ref & top(bf16, k))
        same["bf16, pooler + head fp32"] += len(ref & top(mixed, k))
        u16 = uncertainty(bf16.float(), "entropy")
        ties += len(u16) - len(torch.unique(u16))
        us.append(uncertainty(fp32, "entropy"))
    n, u = len(texts) // batch, torch.cat(us)
    return {**{key: f"{v}/{k * n}" for key, v in same.items()}, "tied u per batch (bf16)": round(ties / n, 1),
            "u mean": round(u.mean().item(), 4), "u std": round(u.std().item(), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("students", nargs="*", help="exported student folders (<run>/student); none: a fresh one")
    parser.add_argument("--task", default="sst5")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose_cfg([f"task={args.task}"])
    spec, student = get_task(args.task), cfg.backbone.student
    texts = load_task_data(spec, cfg.task.data_dir)["train"].texts[0][:32 * args.batches]
    k = max(1, round(args.ratio * 32))
    tokenizer = load_tokenizer(student.name_or_path)
    print(f"{args.task}, first {args.batches} training batches of 32, top {k} by entropy; torch {torch.__version__}")
    for source in args.students or [None]:
        torch.manual_seed(args.seed)
        model = (load_classifier(source, spec.num_labels) if source
                 else truncate(load_classifier(student.name_or_path, spec.num_labels), student.layers)).eval()
        print(source or f"fresh student (seed {args.seed})", agreement(model, tokenizer, texts, k))


if __name__ == "__main__":
    main()
