"""Teacher-output cache (``distill.teacher_cache``): a frozen eval-mode teacher gives the same logits for the same
tokens, so each training example's logits are computed once, in memory within a run or on disk across runs.

A disk entry is a folder ``<paths.cache_dir>/teacher-outputs/<model>-<key>/`` holding ``logits.npy`` (float32, one row
per training example), ``hidden.npy`` when the objective aligns [CLS] hidden states (``objective=kd_pt``: a few layers ×
H floats per example), ``filled.npy`` (which rows are filled) and ``key.json``. The key digests the teacher's weights
(:func:`dkd.models.model_identity`), the token ids of every training example as this teacher reads them (tokenizer,
``max_seq_length``, data and example order in one), the trainer's precision and the outputs kept (logits, which hidden
layers); anything else makes another folder. A row is computed alone, at its own length: a teacher's outputs for a row
move in their last bits with the batch around it (its width and other rows choose the kernels' blocking), so a row
computed in the batch that first asked for it would make every later run depend on which runs filled the entry before
it. The arrays are memory-mapped, so concurrent runs and DDP ranks on one machine share what each computed. Rows are
written before they are marked filled: a run killed mid-write leaves them to be computed again.

``python -m dkd.cache [dir]`` lists the entries and marks those of another format, which this code never reads;
``--clear`` deletes every entry, ``--clear --stale`` only those.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from dkd.errors import UserError
from dkd.files import write_json
from dkd.models import model_identity, short_name

MODES = ("auto", "off", "memory", "disk")
FORMAT = 2  # 1: rows computed in the batch that asked for them (values depend on the entry's history)

log = logging.getLogger(__name__)


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
    """Teacher outputs per example index as named arrays (``logits``: (size, C); ``hidden``: (size, layers, 1, H) when
    the objective aligns [CLS] states): ``lookup`` says which of some indices are filled and returns their rows;
    ``write`` fills rows. Backed by CPU tensors (``memory``) or by memory-mapped ``.npy`` files (:meth:`open_disk`)."""

    def __init__(self, arrays: dict[str, torch.Tensor], filled: torch.Tensor, folder: Path | None = None,
                 maps: tuple = ()):
        self.arrays, self.filled, self.folder, self._maps = arrays, filled, folder, maps

    @classmethod
    def in_memory(cls, size: int, shapes: dict[str, tuple]) -> "OutputStore":
        """``shapes``: name → shape of one example's array, e.g. ``{"logits": (2,)}``."""
        return cls({name: torch.zeros(size, *shape) for name, shape in shapes.items()},
                   torch.zeros(size, dtype=torch.bool))

    @classmethod
    def open_disk(cls, folder: Path, key: dict, size: int, shapes: dict[str, tuple]) -> "OutputStore":
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):  # one creator among concurrent runs and ranks
            if not (folder / "key.json").is_file():
                for name, shape in shapes.items():
                    np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float32, (size, *shape)).flush()
                np.lib.format.open_memmap(folder / "filled.npy", "w+", np.bool_, (size,)).flush()
                write_json(folder / "key.json", key)  # last: an entry with a key.json is complete
        store = cls.mapped(folder)
        held = {name: tuple(a.shape) for name, a in store.arrays.items()}
        wanted = {name: (size, *shape) for name, shape in shapes.items()}
        if held != wanted or tuple(store.filled.shape) != (size,):
            raise UserError(f"Teacher-output cache {folder} holds {held}, this run needs {wanted}: delete the folder.")
        return store

    @classmethod
    def mapped(cls, folder: Path) -> "OutputStore":
        try:
            maps = {f.stem: np.lib.format.open_memmap(f, "r+") for f in sorted(folder.glob("*.npy"))}
            filled = maps.pop("filled")
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"Teacher-output cache {folder} is unreadable ({err}): delete the folder.") from err
        return cls({name: torch.from_numpy(a) for name, a in maps.items()}, torch.from_numpy(filled), folder,
                   (*maps.values(), filled))

    def __getstate__(self) -> dict:
        """A disk store travels (to ``ddp_spawn`` workers) as its folder, and maps the same files there."""
        return {"folder": self.folder} if self.folder else self.__dict__

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(vars(self.mapped(state["folder"])) if "arrays" not in state else state)

    def lookup(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(filled mask over ``idx``, each array's rows in ``idx`` order; rows not filled are zeros)."""
        return self.filled[idx], {name: a[idx] for name, a in self.arrays.items()}

    def write(self, idx: torch.Tensor, outputs: dict[str, torch.Tensor]) -> None:
        for name, a in self.arrays.items():
            a[idx] = outputs[name].float()
        self.filled[idx] = True  # after the values, so that a reader never takes an unwritten row

    def flush(self) -> None:
        for mapped in self._maps:
            mapped.flush()


class TeacherOutputs:
    """A frozen teacher's outputs on rows of a training batch, from the store where it has them and from forwards
    of the teacher on the other rows, each alone (then stored). Without a store every call runs the teacher on the
    batch as it is.

    Returns ``logits``, and with ``hidden=(layers, positions)`` (asked by ``objective=kd_pt``) ``hidden``: the
    teacher's hidden states of those layers, ``(rows, layers, 1, H)`` for ``cls`` or ``(rows, layers, width, H)`` for
    ``all`` with its ``attention_mask``.

    Counts ``hits`` and ``misses`` (rows) of the current batch, added to the totals by :meth:`commit` when its step
    is done (so that a batch interrupted and redone counts once), and keeps each call's ``requests`` (rows, padded
    width) so that the FLOP counter can charge what the teacher forward would have cost, separately from what ran."""

    def __init__(self, teacher: nn.Module, role: str, store: OutputStore | None = None, mode: str = "off",
                 hidden: tuple[list[int], str] | None = None):
        self.teacher, self.role, self.store, self.mode, self.hidden = teacher, role, store, mode, hidden
        self.hits = self.misses = 0
        self._batch = [0, 0]  # hits, misses of the batch in progress
        self.requests: list[tuple[int, int]] = []

    def forward(self, inputs: dict) -> dict[str, torch.Tensor]:
        out = self.teacher(**inputs, output_hidden_states=self.hidden is not None)
        result = {"logits": out.logits}
        if self.hidden is not None:
            layers, positions = self.hidden
            width = 1 if positions == "cls" else None
            result["hidden"] = torch.stack([out.hidden_states[layer][:, :width] for layer in layers], 1)
            if positions == "all":
                result["attention_mask"] = inputs["attention_mask"]
        return result

    def alone(self, inputs: dict, rows: list[int]) -> dict[str, torch.Tensor]:
        """The outputs for ``rows`` of ``inputs``, each from a forward of that row alone, its padding dropped: the
        same values to the bit whatever batch the row came in (for the store; cached hidden states are [CLS] only)."""
        width, outputs = inputs["input_ids"].size(1), []
        for row in rows:
            one = {name: value[row:row + 1] for name, value in inputs.items()}
            keep = one["attention_mask"][0].bool()
            outputs.append(self.forward({name: value[:, keep] if value.dim() == 2 and value.size(1) == width
                                         else value for name, value in one.items()}))
        return {name: torch.cat([o[name] for o in outputs]).detach().float().cpu() for name in outputs[0]}

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        """The teacher's outputs on every row of ``batch`` (rows carry ``idx``, the example's dataset position)."""
        inputs = batch["inputs"][self.role]
        self.requests.append(tuple(inputs["input_ids"].shape))
        if self.store is None:
            self._batch[1] += inputs["input_ids"].size(0)
            return self.forward(inputs)
        idx = batch["idx"].cpu()
        filled, outputs = self.store.lookup(idx)
        missing = (~filled).nonzero().flatten()
        self._batch[0] += idx.numel() - missing.numel()
        self._batch[1] += missing.numel()
        if missing.numel():
            computed = self.alone(inputs, missing.tolist())
            self.store.write(idx[missing], computed)
            for name, value in outputs.items():
                value[missing] = computed[name]
        return {name: value.to(device=batch["idx"].device) for name, value in outputs.items()}

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
                    encodings: dict[str, dict[str, list]], cache_dir: str, precision,
                    hidden: dict[str, tuple[list[int], str]] | None = None) -> dict[str, TeacherOutputs]:
    """One :class:`TeacherOutputs` per teacher for ``mode`` (resolved: off, memory or disk); ``encodings``: the
    training split's token ids per role; ``hidden``: per role, the hidden states the objective needs (layers,
    positions). All-token states are not cached (a few MB per example: recomputing is cheaper than reading them): that
    teacher runs every time, and the log says so."""
    out = {}
    for role, teacher in teachers.items():
        size, request = len(encodings[role]["input_ids"]), (hidden or {}).get(role)
        shapes = {"logits": (teacher.config.num_labels,)}
        if request is not None:
            shapes["hidden"] = (len(request[0]), 1, teacher.config.hidden_size)
        role_mode = mode
        if request is not None and request[1] == "all" and mode != "off":
            log.info("Teacher-output cache off for the %s teacher: objective.positions=all needs its hidden states at "
                     "every token, which are not cached (objective.positions=cls would be)", role)
            role_mode = "off (all-token hidden states)"
        if role_mode != mode or mode == "off":
            store = None
        elif mode == "memory":
            store = OutputStore.in_memory(size, shapes)
        else:
            outputs = "logits" if request is None else f"logits+hidden{request[0]}@{request[1]}"
            key = {"format": FORMAT, "teacher": model_identity(teacher_dirs[role]),
                   "tokens": tokens_digest(encodings[role]), "precision": str(precision), "outputs": outputs}
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
            folder = Path(cache_dir) / "teacher-outputs" / f"{short_name(teacher_dirs[role])}-{digest}"
            store = OutputStore.open_disk(folder, {**key, "model": str(teacher_dirs[role]), "examples": size}, size,
                                          shapes)
        out[role] = TeacherOutputs(teacher, role, store, role_mode, request)
    return out


def summary(mode: str, outputs: dict[str, TeacherOutputs], metrics: dict) -> dict:
    """``metrics.json``'s ``teacher_cache``: per teacher, rows answered from the cache (hits) and by a forward
    (misses), summed over ranks as logged."""
    out = {}
    for role, o in outputs.items():
        hits, misses = (int(metrics.get(f"cache/{role}_{k}", 0)) for k in ("hits", "misses"))
        out[role] = {"mode": o.mode, "folder": str(o.store.folder) if o.store is not None and o.store.folder else None,
                     "hits": hits, "misses": misses,
                     "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}
    return out


def entries(cache_dir: Path) -> list[dict]:
    """The disk entries under ``cache_dir`` with their format, size and how many rows are filled."""
    rows = []
    for key_file in sorted(Path(cache_dir).glob("teacher-outputs/*/key.json")):
        folder = key_file.parent
        key = json.loads(key_file.read_text())
        filled = np.load(folder / "filled.npy", mmap_mode="r")
        size = sum(f.stat().st_size for f in folder.iterdir())
        rows.append({"folder": str(folder), "model": key.get("model"), "format": key.get("format", 1),
                     "examples": int(filled.size), "filled": int(filled.sum()), "mib": round(size / 2**20, 2)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dkd.cache", description="List (or clear) teacher-output caches.")
    parser.add_argument("cache_dir", nargs="?", default="outputs/cache", help="paths.cache_dir (default: %(default)s)")
    parser.add_argument("--clear", action="store_true", help="delete every entry")
    parser.add_argument("--stale", action="store_true",
                        help=f"with --clear: delete only entries of another format than {FORMAT} (never read)")
    args = parser.parse_args(argv)
    if args.stale and not args.clear:
        parser.error("--stale only narrows --clear: add --clear to delete the stale entries")
    found = entries(Path(args.cache_dir))
    if not found:
        print(f"No teacher-output cache under {args.cache_dir}/teacher-outputs")
    for e in found:
        stale = e["format"] != FORMAT
        print(f"{e['folder']}\n  {e['model']}: {e['filled']}/{e['examples']} examples filled, {e['mib']} MiB")
        if stale:
            print(f"  format {e['format']}: this code (format {FORMAT}) never reads it; "
                  f"`python -m dkd.cache --clear --stale` deletes it")
        if args.clear and (stale or not args.stale):
            with FileLock(e["folder"] + ".lock"):  # not while a run is creating it
                shutil.rmtree(e["folder"])
            Path(e["folder"] + ".lock").unlink(missing_ok=True)
            print("  deleted")


if __name__ == "__main__":
    main()
