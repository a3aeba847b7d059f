"""Task data: read (local GLUE layout, hub, or custom files), validate, tokenize once per tokenizer, batch."""
from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from dkd.errors import DataError, UserError
from dkd.files import write_whole
from dkd.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One split as plain Python: one list per text column, and label ids (float for regression)."""

    texts: list[list[str]]
    labels: list
    source: str


# ----------------------------------------------------------------------------------------------------- reading
def read_table(path: Path, header: bool = True, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV/TSV/JSON(L) file as strings in ``encoding`` (``task.encoding``; a UTF-8 file may start with a byte
    order mark). TSV is read with no quoting, as GLUE files need."""
    if not path.is_file():
        raise DataError(f"Missing data file {path}.")
    name = codecs.lookup(encoding).name
    codec = "utf-8-sig" if name == "utf-8" else encoding
    if codec != "utf-8-sig":
        warn_if_utf8(path, encoding)
    if not name.startswith(("utf-16", "utf-32")):
        with open(path, "rb") as fh:
            head = fh.read(4096)
        if _nul_heavy(head):  # UTF-16 text decodes as UTF-8 or latin-1 without error, NULs and all
            likely = likely_encoding(head)
            raise DataError(f"{path} holds NUL bytes between its characters: it is UTF-16 (or UTF-32) text, not "
                            f"{encoding}. It looks like {likely}: set task.encoding={likely}.")
    suffix = path.suffix.lower()
    try:
        if suffix in {".json", ".jsonl"}:
            lines = suffix == ".jsonl" or _is_json_lines(path, codec)
            return pd.read_json(path, lines=lines, dtype=False, encoding=codec).astype(str)
        sep = "," if suffix == ".csv" else "\t"
        return pd.read_csv(
            path, sep=sep, quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL, encoding=codec,
            header=0 if header else None, dtype=str, keep_default_na=False,
        )
    except UnicodeDecodeError as err:  # before ValueError, its base class: the fault is the encoding, not the layout
        raise DataError(not_decodable(path, encoding) or f"Could not decode {path} as {encoding}: {err}. Set "
                        f"task.encoding= to the file's encoding.") from err
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"Could not parse {path}: {err}. Expected a {suffix or 'TSV'} file with a header row.") from err


def _is_json_lines(path: Path, codec: str) -> bool:
    with open(path, encoding=codec) as fh:
        return not fh.read(1).lstrip().startswith("[")


def likely_encoding(data: bytes) -> str:
    """A cheap guess at the encoding of ``data``: a UTF-32 or UTF-16 byte order mark, NUL bytes (UTF-16 without a
    mark), valid UTF-8, else cp1252 when the file has bytes 0x80-0x9F that cp1252 maps to characters (curly quotes,
    dashes, €), else latin-1 (which decodes any bytes, and reads 0x80-0x9F as control characters that text rarely
    holds)."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = data[:4096]
    if _nul_heavy(head):
        return "utf-16-le" if head[1::2].count(0) > head[0::2].count(0) else "utf-16-be"
    if _decodes(data, "utf-8"):
        return "utf-8"
    if not any(0x80 <= b <= 0x9F for b in data):
        return "latin-1"  # no byte where the two differ: latin-1 and cp1252 read it alike
    return "cp1252" if _decodes(data, "cp1252") else "latin-1"


def _nul_heavy(head: bytes) -> bool:
    """ASCII text in UTF-16 (or UTF-32): every other byte (or three in four) is 0."""
    return head.count(0) > len(head) // 4


def not_decodable(path: Path, encoding: str) -> str | None:
    """Where ``path`` stops decoding as ``encoding`` (byte offset, line, the text around it) and what it likely is;
    None if it decodes after all."""
    data = path.read_bytes()
    try:
        data.decode(encoding)
        return None
    except UnicodeDecodeError as err:
        start = err.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    context = data[max(line_start, start - 40):start + 40 if line_end < 0 else min(line_end, start + 40)]
    line, likely = data.count(b"\n", 0, start) + 1, likely_encoding(data)
    before = data[:start]
    if codecs.lookup(encoding).name == "utf-8" and not before.isascii() and _decodes(before, "utf-8"):
        fix = ("The text before it is UTF-8 with non-ASCII characters, so the file mixes encodings: no single "
               "task.encoding reads it right; re-save it as UTF-8 from its source.")
    elif likely in ("cp1252", "latin-1") and likely != encoding:
        fix = (f"It looks like {likely}: set task.encoding={likely} (Western European text; for other languages "
               f"name the file's own encoding, e.g. cp1251 or shift_jis).")
    elif likely != encoding:
        fix = f"It looks like {likely}: set task.encoding={likely}."
    else:
        fix = "Set task.encoding= to the file's encoding (e.g. latin-1, cp1252, utf-16)."
    return (f"{path} is not {encoding} text: byte {start} (0x{data[start]:02x}, line {line}, in "
            f"\"{context.decode(encoding, errors='backslashreplace')}\") does not decode as {encoding}, the encoding "
            f"task.encoding names. {fix}")


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def warn_if_utf8(path: Path, encoding: str) -> None:
    """A single-byte encoding reads any file, UTF-8 too, into the wrong characters without an error: say so when the
    file is in fact UTF-8 with non-ASCII text."""
    data = path.read_bytes()
    if data.isascii() or not _decodes(data, "utf-8"):
        return
    log.warning("%s is valid UTF-8, but task.encoding=%s reads its non-ASCII bytes as other characters (é becomes "
                "%r): if the file is UTF-8, drop task.encoding.", path, encoding,
                "é".encode().decode(encoding, errors="replace"))


def frame_to_split(frame: pd.DataFrame, spec: TaskSpec, columns, label_column, source: str) -> Split:
    """Check columns, labels and emptiness of one split and turn it into a :class:`Split`."""
    names = [str(c) for c in frame.columns]
    frame.columns = names
    wanted = [str(c) for c in (*columns, label_column)]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"{source}: no column {', '.join(repr(c) for c in missing)} (columns are {names}). "
            f"Set task.text_columns / task.label_column to the right names."
        )
    if len(frame) == 0:
        raise DataError(f"{source}: the split is empty. Point the task at a file with at least one row.")
    raw = frame[str(label_column)].tolist()
    if spec.is_regression:
        try:
            labels = [float(v) for v in raw]
        except ValueError as err:
            raise DataError(f"{source}: column '{label_column}' must hold numbers for a regression task ({err}).")
    else:
        index = {v: i for i, v in enumerate(spec.labels)}
        labels = []
        for row, value in enumerate(raw):
            key = str(value).strip()
            if key not in index:
                raise DataError(
                    f"{source}: row {row + 1}, column '{label_column}' has label {value!r}, which is not one of "
                    f"{list(spec.labels)} for task '{spec.name}'. Fix the file, or for task=custom set task.labels."
                )
            labels.append(index[key])
    return Split([frame[str(c)].astype(str).tolist() for c in columns], labels, source)


def load_local(spec: TaskSpec, data_dir: Path) -> dict[str, Split]:
    """Read train and dev splits from a folder in the standard GLUE layout."""
    if not data_dir.is_dir():
        raise DataError(f"Task '{spec.name}': data folder {data_dir} does not exist.")
    files = {"train": spec.train_file, **spec.dev_files}
    splits = {}
    for split, name in files.items():
        path = data_dir / name
        if not path.is_file():
            present = sorted(p.name for p in data_dir.iterdir())
            shown = present[:8] + ([f"… {len(present) - 8} more"] if len(present) > 8 else [])
            raise DataError(
                f"Task '{spec.name}': missing {split} file {path} (the folder holds {shown}). "
                f"Point task.data_dir at a folder with {', '.join(files.values())}."
            )
        splits[split] = read_split(spec, path)
    return splits


def read_split(spec: TaskSpec, path: Path) -> Split:
    """One split of the task from a local file, read and checked as the task says (columns, header, encoding)."""
    return frame_to_split(read_table(path, spec.header, spec.encoding), spec, spec.columns, spec.label_column,
                          str(path))


def hub_split_of(spec: TaskSpec, hub_split: str) -> Split:
    """One split of the task's hub copy, validated as a local file would be."""
    import datasets

    frame = datasets.load_dataset(spec.hub_path, spec.hub_config, split=hub_split).to_pandas()
    if not spec.is_regression:  # hub labels are already ids; map back to names to validate one way
        frame["label"] = [spec.labels[i] if 0 <= i < len(spec.labels) else str(i) for i in frame["label"]]
    source = f"hub {spec.hub_path}/{spec.hub_config or ''}:{hub_split}"
    return frame_to_split(frame, spec, spec.hub_columns, "label", source)


def load_hub(spec: TaskSpec, local_hint: str) -> dict[str, Split]:
    """Download the task from the Hugging Face hub (``datasets.load_dataset``)."""
    from dkd.hub import hub_reachable

    hub_reachable()  # offline: fail at once instead of retrying for half a minute
    splits = {}
    try:
        for split, hub_split in {"train": "train", **spec.hub_dev_splits}.items():
            splits[split] = hub_split_of(spec, hub_split)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any hub failure means the same fix for the user
        raise DataError(
            f"Task '{spec.name}': no local data ({local_hint}) and the hub copy {spec.hub_path} could not be loaded "
            f"({type(err).__name__}: {str(err)[:200]}). Offline? Set GLUE_DIR (or task.data_dir=) to a folder in the "
            f"standard GLUE layout, e.g. GLUE_DIR=../shared/data/glue."
        ) from err
    return splits


def load_test_split(spec: TaskSpec, data_dir: str | None) -> Split:
    """The task's labelled test split (``spec.test_file``), from the local folder if it exists, else the hub."""
    if not spec.test_file:
        raise DataError(f"Task '{spec.name}' has no labelled test split in DKD (GLUE's test labels are not public); "
                        f"its dev split is the held-out set.")
    if data_dir and Path(data_dir).is_dir():
        path = Path(data_dir) / spec.test_file
        if not path.is_file():
            raise DataError(f"Task '{spec.name}': missing test file {path}; point task.data_dir at a folder with "
                            f"{spec.test_file}.")
        return read_split(spec, path)
    from dkd.hub import hub_reachable

    hub_reachable()
    return hub_split_of(spec, spec.hub_test_split)


def load_splits(spec: TaskSpec, data_dir: str | None, custom_files: dict | None = None) -> dict[str, Split]:
    """Local folder if it exists, else the hub; ``custom_files`` (train/dev paths) for ``task=custom``."""
    if custom_files is not None:
        return {split: read_split(spec, Path(path)) for split, path in custom_files.items()}
    if data_dir and Path(data_dir).is_dir():
        log.info("Reading %s from %s", spec.name, data_dir)
        return load_local(spec, Path(data_dir))
    hint = f"{data_dir} does not exist" if data_dir else "task.data_dir is not set"
    log.info("Reading %s from the hub (%s): %s", spec.name, spec.hub_path, hint)
    return load_hub(spec, hint)


def subsample(split: Split, limit: int | None, seed: int) -> Split:
    """A fixed random subset of ``limit`` rows (the same for every run with this seed)."""
    if not limit or limit >= len(split.labels):
        return split
    keep = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    keep = keep.tolist()
    return Split([[col[i] for i in keep] for col in split.texts], [split.labels[i] for i in keep], split.source)


def load_task_data(spec: TaskSpec, data_dir: str | None = None, custom_files: dict | None = None,
                   train_limit: int | None = None, dev_limit: int | None = None, subset_seed: int = 0
                   ) -> dict[str, Split]:
    """Every split of the task, read, validated and cut to its limit (train: ``train_limit``, dev: ``dev_limit``)."""
    splits = load_splits(spec, data_dir, custom_files)
    return {name: subsample(split, train_limit if name == "train" else dev_limit, subset_seed)
            for name, split in splits.items()}


def fingerprint(splits: dict[str, Split], labels) -> str:
    """A digest of the examples themselves (texts, label ids and label names), whatever file or hub they came from:
    equal data gives equal digests, and any changed row, column choice, subset or label order changes it."""
    digest = hashlib.sha256(json.dumps(list(labels) if labels else None).encode())
    for name in sorted(splits):
        split = splits[name]
        digest.update(f"\x1e{name}\x1e{len(split.labels)}".encode())
        for col in split.texts:
            digest.update("\x1f".join(col).encode())
            digest.update(b"\x1d")
        digest.update(json.dumps(split.labels).encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ tokenization
def tokenizer_id(tokenizer) -> str:
    """Equal for tokenizers that encode identically (e.g. a model and its fine-tuned copy), whatever their path. The
    padding and truncation stored with a tokenizer are left out: DKD sets both at each call (a sentence-transformers
    export pads to 128, its fine-tuned copy saves no padding, and both give the same ids)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
        spec = json.dumps(spec, sort_keys=True)
    else:
        spec = f"{tokenizer.name_or_path}|{len(tokenizer)}"
    return f"{type(tokenizer).__name__}-{hashlib.sha1(spec.encode()).hexdigest()[:16]}"


def tokenize(split: Split, tokenizer, max_length: int, desc: str, chunk: int = 2048) -> dict[str, list]:
    """Token ids (and type ids when the model uses them) per example; no padding (batches pad dynamically)."""
    out: dict[str, list] = {}
    n = len(split.labels)
    for start in tqdm(range(0, n, chunk), desc=desc, unit="chunk", leave=False, disable=n <= chunk):
        cols = [col[start:start + chunk] for col in split.texts]
        enc = tokenizer(*cols, truncation=True, max_length=max_length)
        for key in ("input_ids", "token_type_ids"):
            if key in enc:
                out.setdefault(key, []).extend(enc[key])
    return out


def cached_tokenize(split: Split, tokenizer, max_length: int, cache_dir: Path | None, desc: str) -> dict[str, list]:
    """:func:`tokenize`, cached on disk under a key of the texts, the tokenizer and ``max_length``."""
    if cache_dir is None:
        return tokenize(split, tokenizer, max_length, desc)
    digest = hashlib.sha1()
    digest.update(json.dumps([tokenizer_id(tokenizer), max_length, split.source]).encode())
    for col in split.texts:
        digest.update("\x1f".join(col).encode())
    path = Path(cache_dir) / f"{digest.hexdigest()[:20]}.pt"
    if path.is_file():
        return torch.load(path)
    enc = tokenize(split, tokenizer, max_length, desc)
    write_whole(path, lambda tmp: torch.save(enc, tmp))
    return enc


class EncodedSplit(Dataset):
    """Examples as ``{"idx", "label", "inputs": {role: {input_ids, token_type_ids?}}}``."""

    def __init__(self, encodings: dict[str, dict[str, list]], labels: list):
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {
            "idx": i,
            "label": self.labels[i],
            "inputs": {role: {k: v[i] for k, v in enc.items()} for role, enc in self.encodings.items()},
        }


PADDING = ("longest", "max_length")


def fixed_width(padding: str, max_seq_length: int) -> int | None:
    """Every batch's width under ``data.padding=max_length`` (``max_seq_length``); None under ``longest``: each batch as
    wide as its longest row. Training, dev and ``python -m dkd.ship.evaluate`` batch alike through it."""
    return max_seq_length if padding == "max_length" else None


class Collator:
    """Pads each role's ids with that role's pad id to the longest in the batch (``data.padding=longest``), or to
    ``width`` tokens (``max_length``: the authors' ``pad_to_max_length``, every batch ``data.max_seq_length`` wide).
    ``multiple`` rounds the longest up to a multiple of that many tokens (the benchmark's ``--pad-multiple``)."""

    def __init__(self, pad_ids: dict[str, int], regression: bool, width: int | None = None, multiple: int = 1):
        self.pad_ids, self.width, self.multiple = pad_ids, width, multiple
        self.label_dtype = torch.float if regression else torch.long

    def __call__(self, examples: list[dict]) -> dict:
        inputs = {}
        for role, pad_id in self.pad_ids.items():
            seqs = [ex["inputs"][role] for ex in examples]
            width = self.width or -(-max(len(s["input_ids"]) for s in seqs) // self.multiple) * self.multiple
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            types = torch.zeros((len(seqs), width), dtype=torch.long) if "token_type_ids" in seqs[0] else None
            for row, s in enumerate(seqs):
                n = len(s["input_ids"])
                ids[row, :n] = torch.tensor(s["input_ids"])
                mask[row, :n] = 1
                if types is not None:
                    types[row, :n] = torch.tensor(s["token_type_ids"])
            inputs[role] = {"input_ids": ids, "attention_mask": mask}
            if types is not None:
                inputs[role]["token_type_ids"] = types
        return {
            "idx": torch.tensor([ex["idx"] for ex in examples]),
            "labels": torch.tensor([ex["label"] for ex in examples], dtype=self.label_dtype),
            "inputs": inputs,
        }


class EpochSampler(Sampler[int]):
    """Example order as a function of ``(seed, epoch)`` alone, sharded over ``replicas`` ranks.

    Epoch e is ``randperm(n)`` drawn from a generator seeded with ``seed + e`` (or ``0..n-1`` unshuffled), padded by
    repeating its head to a multiple of ``replicas``; rank r takes positions r, r + R, r + 2R, … (as
    ``DistributedSampler``). So R ranks with batch b see the same global batches as one process with batch R·b, and
    the order does not depend on the global RNG, which dropout and model initialisation also draw from.
    ``resume(epoch, start)`` makes that epoch begin at the rank's ``start``-th example (mid-epoch resume).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, replicas: int = 1, rank: int = 0):
        self.size, self.seed, self.shuffle, self.replicas, self.rank = size, seed, shuffle, replicas, rank
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it before each epoch
        self.epoch = epoch

    def resume(self, epoch: int, start: int) -> None:
        self._resume = (epoch, start)

    def __len__(self) -> int:
        return math.ceil(self.size / self.replicas)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        padding = len(self) * self.replicas - self.size
        if padding:
            order = torch.cat([order, order[:padding]])
        mine = order[self.rank::self.replicas].tolist()
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start, self._resume = self._resume[1], None
        yield from mine[start:]


def select_rows(batch: dict, rows: torch.Tensor, trim: bool = True) -> dict:
    """The batch (or a role's ``inputs``) cut to ``rows`` (sorted, unique: so all of them means the batch itself, no
    copy), with the padding columns that no kept row uses trimmed off (``trim``; kept under ``data.padding=max_length``,
    where every row is as wide as the authors' code makes it)."""
    if rows.numel() == batch_size(batch):
        return batch
    out = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = select_rows(value, rows, trim)
        else:
            out[key] = value[rows]
    if trim and "attention_mask" in out:
        width = int(out["attention_mask"].sum(-1).max())
        out = {k: v[:, :width] for k, v in out.items()}
    return out


def batch_size(batch: dict) -> int:
    value = next(iter(batch.values()))
    return batch_size(value) if isinstance(value, dict) else value.size(0)


class TaskDataModule(pl.LightningDataModule):
    """Train and dev loaders for one task over already read and validated splits (:func:`load_task_data`),
    tokenized for every model role (student, teachers).

    Roles whose tokenizers are identical share one tokenization; each role gets its own padded tensors. The data is
    sharded over DDP ranks here (Lightning's sampler replacement is turned off, see :class:`EpochSampler`), and the
    position within the current epoch is saved in checkpoints, so that a run resumed mid-epoch goes on with the
    batches an uninterrupted run would have seen.
    """

    def __init__(
        self, spec: TaskSpec, splits: dict[str, Split], tokenizers: dict, max_seq_length: int = 128,
        batch_size: int = 32, eval_batch_size: int = 64, seed: int = 0, cache_dir: str | None = None,
        num_workers: int = 0, padding: str = "longest",
    ):
        super().__init__()
        if padding not in PADDING:
            raise UserError(f"data.padding={padding!r}: choose one of {list(PADDING)}.")
        self.padding = padding
        self.spec = spec
        self.splits = splits
        self.tokenizers = tokenizers
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.num_workers = num_workers
        self.datasets: dict[str, EncodedSplit] = {}
        self._resume: tuple[int, int] | None = None

    @property
    def dev_splits(self) -> list[str]:
        return list(self.spec.dev_files)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split, data in self.splits.items():
            shared: dict[str, dict] = {}
            encodings = {}
            for role, tok in self.tokenizers.items():
                key = tokenizer_id(tok)
                if key not in shared:
                    shared[key] = cached_tokenize(
                        data, tok, self.max_seq_length, self.cache_dir, f"tokenizing {self.spec.name}/{split} ({role})"
                    )
                encodings[role] = shared[key]
            self.datasets[split] = EncodedSplit(encodings, data.labels)
            log.info("%s/%s: %d examples from %s", self.spec.name, split, len(data.labels), data.source)

    def _loader(self, split: str, train: bool) -> DataLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = EpochSampler(len(self.datasets[split]), self.seed, shuffle=train, replicas=world, rank=rank)
        if train and self._resume is not None:
            epoch, batches = self._resume
            sampler.resume(epoch, batches * self.batch_size)
            self._resume = None
        pad_ids = {role: tok.pad_token_id or 0 for role, tok in self.tokenizers.items()}
        return DataLoader(
            self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size, sampler=sampler,
            collate_fn=Collator(pad_ids, self.spec.is_regression, fixed_width(self.padding, self.max_seq_length)),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds: leave the global RNG to dropout
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self):
        loaders = [self._loader(split, train=False) for split in self.dev_splits]
        return loaders[0] if len(loaders) == 1 else loaders

    def state_dict(self) -> dict:
        """Where training stands within the epoch: the batches whose optimizer step ran (saved in checkpoints)."""
        if self.trainer is None or self.trainer.state.fn != TrainerFn.FITTING:
            return {}
        processed = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if processed >= self.trainer.num_training_batches:  # the epoch is done (Lightning may count the next already)
            return {}
        return {"epoch": self.trainer.current_epoch, "batches": processed}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._resume = (state["epoch"], state["batches"])
