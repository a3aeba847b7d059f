"""Time filling an empty teacher-output store: a teacher's logits for the first N sentences of a TSV (``sentence``
column), in shuffled batches of 32 as full KD's first epoch asks for them, with whichever ``dkd`` is on the path (set
PYTHONPATH to a checkout to time its code). Prints the seconds the fill took.

    python docs/bench/cache_fill.py <teacher folder> ../shared/data/sst5/train.tsv 2048
"""
import csv
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dkd.cache import OutputStore, TeacherOutputs

torch.set_num_threads(1)
folder, tsv, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder)
teacher = AutoModelForSequenceClassification.from_pretrained(folder).eval()
sentences = [r["sentence"] for r in csv.DictReader(open(tsv, encoding="utf-8"), delimiter="\t")][:n]
order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(0))
outputs = TeacherOutputs(teacher, "base", OutputStore.in_memory(len(sentences), {"logits": (teacher.num_labels,)}))
start = time.perf_counter()
for i in range(0, len(sentences), 32):
    idx = order[i:i + 32]
    enc = tokenizer([sentences[j] for j in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
    outputs({"idx": idx, "inputs": {"base": dict(enc)}})
print(f"fill {len(sentences)} rows: {time.perf_counter() - start:.2f} s")
