"""Teacher-output cache (``distill.teacher_cache``): a frozen eval-mode teacher gives the same logits for the same
tokens, so each training example's logits are computed once, in memory within a run or on disk across runs.

A disk entry is a folder ``<paths.cache_dir>/teacher-outputs/<model>-<key>/`` holding ``logits.npy`` (float32, one
row per training example), ``filled.npy`` (which rows hold logits) and ``key.json``. The key digests the teacher's
weights (:func:`dkd.models.model_identity`), the token ids of every training example as this teacher reads them
(tokenizer, ``max_seq_length``, data and example order in one) and the trainer's precision; anything else makes
another folder. Both arrays are memory-mapped, so concurrent runs and DDP ranks on one machine share what each
computed. Rows are written before they are marked filled: a run killed mid-write leaves them to be computed again.

``python -m dkd.cache [dir]`` lists the entries.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from dkd.data import select_rows
from dkd.errors import UserError
from dkd.models import model_identity, short_name

MODES = ("auto", "off", "memory", "disk")
FORMAT = 1


def resolve_mode(mode: str, teacher_dropout: bool) -> str:
    """``auto`` is ``disk``, or ``off`` when the teachers run with dropout (their outputs then vary per call)."""
    if mode not in MODES:
        raise UserError(f"distill.teacher_cache={mode!r}: choose one of {list(MODES)}.")
    if teacher_dropout and mode in ("memory", "disk"):
        raise UserError(f"distill.teacher_cache={mode} with distill.teacher_dropout=true: a teacher with dropout gives "
                        f"another output at every call, so there is nothing to cache. Set distill.teacher_cache=off "
                        f"(or auto), or distill.teacher_dropout=false.")
    if mode == "auto":
        return "off" if teacher_dropout else "disk"
    return mode


def tokens_digest(encodings: dict[str, list]) -> str:
    """Digest of every example's token ids, in dataset order (``idx`` is the position)."""
    digest = hashlib.sha256()
    for name in sorted(encodings):
        digest.update(name.encode())
        for ids in encodings[name]:
            digest.update(np.asarray(ids, dtype=np.int64).tobytes())
            digest.update(b"|")
    return digest.hexdigest()[:16]


class OutputStore:
    """Logits per example index: ``lookup`` says which of some indices are filled and returns their rows; ``write``
    fills rows. Backed by CPU tensors (``memory``) or by memory-mapped ``.npy`` files (:meth:`open_disk`)."""

    def __init__(self, logits: torch.Tensor, filled: torch.Tensor, folder: Path | None = None, maps: tuple = ()):
        self.logits, self.filled, self.folder, self._maps = logits, filled, folder, maps

    @classmethod
    def in_memory(cls, size: int, num_labels: int) -> "OutputStore":
        return cls(torch.zeros(size, num_labels), torch.zeros(size, dtype=torch.bool))

    @classmethod
    def open_disk(cls, folder: Path, key: dict, size: int, num_labels: int) -> "OutputStore":
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):  # one creator among concurrent runs and ranks
            if not (folder / "key.json").is_file():
                np.lib.format.open_memmap(folder / "logits.npy", "w+", np.float32, (size, num_labels)).flush()
                np.lib.format.open_memmap(folder / "filled.npy", "w+", np.bool_, (size,)).flush()
                tmp = folder / f"key.json.{os.getpid()}.tmp"
                tmp.write_text(json.dumps(key, indent=2))
                tmp.replace(folder / "key.json")  # last: an entry with a key.json is complete
        store = cls.mapped(folder)
        if tuple(store.logits.shape) != (size, num_labels) or tuple(store.filled.shape) != (size,):
            raise UserError(f"Teacher-output cache {folder} holds {tuple(store.logits.shape)} logits, this run needs "
                            f"({size}, {num_labels}): delete the folder.")
        return store

    @classmethod
    def mapped(cls, folder: Path) -> "OutputStore":
        try:
            logits = np.lib.format.open_memmap(folder / "logits.npy", "r+")
            filled = np.lib.format.open_memmap(folder / "filled.npy", "r+")
        except (OSError, ValueError) as err:
            raise UserError(f"Teacher-output cache {folder} is unreadable ({err}): delete the folder.") from err
        return cls(torch.from_numpy(logits), torch.from_numpy(filled), folder, (logits, filled))

    def __getstate__(self) -> dict:
        """A disk store travels (to ``ddp_spawn`` workers) as its folder, and maps the same files there."""
        return {"folder": self.folder} if self.folder else self.__dict__

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(vars(self.mapped(state["folder"])) if "logits" not in state else state)

    def lookup(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(filled mask over ``idx``, logits of those rows in ``idx`` order; rows not filled are zeros)."""
        return self.filled[idx], self.logits[idx]

    def write(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        self.logits[idx] = logits.float()
        self.filled[idx] = True  # after the values, so that a reader never takes an unwritten row

    def flush(self) -> None:
        for mapped in self._maps:
            mapped.flush()


class TeacherOutputs:
    """A frozen teacher's logits on rows of a training batch, from the store where it has them and from a forward of
    the teacher on the other rows only (then stored). Without a store every call runs the teacher.

    Counts ``hits`` and ``misses`` (rows) of the current batch, added to the totals by :meth:`commit` when its step
    is done (so that a batch interrupted and redone counts once), and keeps each call's ``requests`` (rows, padded
    width) so that the FLOP counter can charge what the teacher forward would have cost, separately from what ran."""

    def __init__(self, teacher: nn.Module, role: str, store: OutputStore | None = None, mode: str = "off"):
        self.teacher, self.role, self.store, self.mode = teacher, role, store, mode
        self.hits = self.misses = 0
        self._batch = [0, 0]  # hits, misses of the batch in progress
        self.requests: list[tuple[int, int]] = []

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        """Logits of the teacher on every row of ``batch`` (rows carry ``idx``, the example's dataset position)."""
        inputs = batch["inputs"][self.role]
        self.requests.append(tuple(inputs["input_ids"].shape))
        if self.store is None:
            self._batch[1] += inputs["input_ids"].size(0)
            return self.teacher(**inputs).logits
        idx = batch["idx"].cpu()
        filled, logits = self.store.lookup(idx)
        missing = (~filled).nonzero().flatten()
        self._batch[0] += idx.numel() - missing.numel()
        self._batch[1] += missing.numel()
        if missing.numel():
            computed = self.teacher(**select_rows(batch, missing.to(batch["idx"].device))["inputs"][self.role]).logits
            self.store.write(idx[missing], computed.detach().cpu())
            logits[missing] = computed.detach().float().cpu()
        return logits.to(device=batch["idx"].device)

    def start_batch(self) -> None:
        self._batch = [0, 0]  # what an interrupted attempt at this batch counted is dropped

    def commit(self) -> None:
        self.hits, self.misses = self.hits + self._batch[0], self.misses + self._batch[1]
        self._batch = [0, 0]

    def drain_requests(self) -> list[tuple[int, int]]:
        requests, self.requests = self.requests, []
        return requests

    def state_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses}

    def load_state_dict(self, state: dict) -> None:
        self.hits, self.misses = state["hits"], state["misses"]



def teacher_outputs(mode: str, teachers: dict[str, nn.Module], teacher_dirs: dict[str, str],
                    encodings: dict[str, dict[str, list]], cache_dir: str, precision) -> dict[str, TeacherOutputs]:
    """One :class:`TeacherOutputs` per teacher for ``mode`` (resolved: off, memory or disk); ``encodings``: the
    training split's token ids per role."""
    out = {}
    for role, teacher in teachers.items():
        size, num_labels = len(encodings[role]["input_ids"]), teacher.config.num_labels
        if mode == "off":
            store = None
        elif mode == "memory":
            store = OutputStore.in_memory(size, num_labels)
        else:
            key = {"format": FORMAT, "teacher": model_identity(teacher_dirs[role]),
                   "tokens": tokens_digest(encodings[role]), "precision": str(precision), "outputs": "logits"}
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
            folder = Path(cache_dir) / "teacher-outputs" / f"{short_name(teacher_dirs[role])}-{digest}"
            store = OutputStore.open_disk(folder, {**key, "model": str(teacher_dirs[role]), "examples": size}, size,
                                          num_labels)
        out[role] = TeacherOutputs(teacher, role, store, mode)
    return out


def summary(mode: str, outputs: dict[str, TeacherOutputs], metrics: dict) -> dict:
    """``metrics.json``'s ``teacher_cache``: per teacher, rows answered from the cache (hits) and by a forward
    (misses), summed over ranks as logged."""
    out = {}
    for role, o in outputs.items():
        hits, misses = (int(metrics.get(f"cache/{role}_{k}", 0)) for k in ("hits", "misses"))
        out[role] = {"mode": mode, "folder": str(o.store.folder) if o.store is not None and o.store.folder else None,
                     "hits": hits, "misses": misses,
                     "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}
    return out


def entries(cache_dir: Path) -> list[dict]:
    """The disk entries under ``cache_dir`` with their size and how many rows are filled."""
    rows = []
    for key_file in sorted(Path(cache_dir).glob("teacher-outputs/*/key.json")):
        folder = key_file.parent
        key = json.loads(key_file.read_text())
        filled = np.load(folder / "filled.npy", mmap_mode="r")
        size = sum(f.stat().st_size for f in folder.iterdir())
        rows.append({"folder": str(folder), "model": key.get("model"), "examples": int(filled.size),
                     "filled": int(filled.sum()), "mib": round(size / 2**20, 2)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dkd.cache", description="List (or clear) teacher-output caches.")
    parser.add_argument("cache_dir", nargs="?", default="outputs/cache", help="paths.cache_dir (default: %(default)s)")
    parser.add_argument("--clear", action="store_true", help="delete every entry")
    args = parser.parse_args(argv)
    found = entries(Path(args.cache_dir))
    if not found:
        print(f"No teacher-output cache under {args.cache_dir}/teacher-outputs")
    for e in found:
        print(f"{e['folder']}\n  {e['model']}: {e['filled']}/{e['examples']} examples filled, {e['mib']} MiB")
        if args.clear:
            with FileLock(e["folder"] + ".lock"):  # not while a run is creating it
                shutil.rmtree(e["folder"])
            Path(e["folder"] + ".lock").unlink(missing_ok=True)
            print("  deleted")


if __name__ == "__main__":
    main()
