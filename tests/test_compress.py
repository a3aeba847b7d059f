"""The compression report: its numbers are measured (sizes are the files', parameters the models'), and the ONNX
student gives PyTorch's logits."""
import json
import re
from pathlib import Path

import pytest
import torch

from dkd.errors import UserError
from dkd.models import count_parameters, load_classifier, load_tokenizer
from dkd.run import run
from dkd.ship.compress import compress, latency, main, onnx_session, run_onnx, weights_bytes


def test_the_report_after_a_run_is_measured(distilled):
    out = json.loads((distilled / "compression.json").read_text())
    rows = {(r["role"], r["format"]): r for r in out["models"]}
    assert set(rows) == {("base", "PyTorch fp32"), ("student", "PyTorch fp32"), ("student", "ONNX fp32"),
                         ("student", "ONNX int8")}
    for r in rows.values():
        assert r["weights_bytes"] == weights_bytes(Path(r["path"])) > 0
        for b in ("1", "4"):
            t = r["timing"][b]
            assert 0 < t["min_ms"] <= t["latency_ms"] <= t["max_ms"]
            assert t["examples_per_s"] == pytest.approx(int(b) / t["latency_ms"] * 1e3, rel=1e-2)
    metrics = json.loads((distilled / "metrics.json").read_text())
    teacher = load_classifier(metrics["teachers"]["base"]["dir"], 2)
    student = load_classifier(str(distilled / "student"), 2)
    assert rows["base", "PyTorch fp32"]["parameters"] == count_parameters(teacher)
    assert rows["student", "PyTorch fp32"]["parameters"] == count_parameters(student)
    assert (rows["student", "PyTorch fp32"]["weights_bytes"]
            == (distilled / "student" / "model.safetensors").stat().st_size)
    # the student's dev metric, measured again here, is the run's; the teacher's is the store's
    assert rows["student", "PyTorch fp32"]["dev"]["dev/acc"] == pytest.approx(metrics["dev"]["dev/acc"], abs=1e-4)
    assert rows["base", "PyTorch fp32"]["dev"]["dev/acc"] == pytest.approx(
        metrics["teachers"]["base"]["dev"]["dev/acc"], abs=1e-4)
    assert out["onnx_check"]["passed"] and out["onnx_check"]["max_abs_logit_diff"] <= 1e-4
    assert rows["student", "ONNX int8"]["weights_bytes"] < rows["student", "ONNX fp32"]["weights_bytes"]
    ratio = out["ratios"]["base / student PyTorch fp32"]
    assert ratio["parameters"] == round(count_parameters(teacher) / count_parameters(student), 2)
    text = (distilled / "compression.md").read_text()
    assert "| student | student | ONNX int8 |" in text and "passed" in text
    assert (distilled / "compression.png").stat().st_size > 0


def test_the_onnx_snippet_runs_as_printed_and_feeds_the_pair(distilled):
    """compression.md's snippet, executed as printed, tokenizes the first dev row of MRPC as a sentence pair and gives
    the student's logits for it."""
    from omegaconf import OmegaConf

    from dkd.ship.compress import run_dev_splits

    code = re.search(r"```python\n(.*?)```", (distilled / "compression.md").read_text(), re.S).group(1)
    scope = {}
    exec(code, scope)  # noqa: S102 - the point of the test
    metrics = json.loads((distilled / "metrics.json").read_text())
    first, second = (column[0] for column in run_dev_splits(OmegaConf.create(metrics["config"]))[1]["dev"].texts)
    model, tokenizer = load_classifier(str(distilled / "student"), 2).eval(), load_tokenizer(str(distilled / "student"))
    assert f"tokenizer({[first]!r}, {[second]!r}, truncation=True, max_length=32" in code  # both columns, a pair
    with torch.no_grad():
        pair = model(**tokenizer([first], [second], return_tensors="pt")).logits
    assert torch.allclose(torch.from_numpy(scope["logits"]), pair, atol=1e-4)


def test_onnx_logits_equal_pytorch_for_any_batch_and_length(distilled):
    """The run's student.onnx (exported from one example) against PyTorch on other batch sizes and lengths."""
    model = load_classifier(str(distilled / "student"), 2).eval()
    tokenizer = load_tokenizer(str(distilled / "student"))
    session = onnx_session(distilled / "student.onnx", threads=1)
    texts = ["a fine film", "the plot is dull and slow , the actors are bad"]
    for batch in (texts, texts[1:] * 3):  # padding, and another batch size and length than the export's example
        inputs = dict(tokenizer(batch, padding=True, return_tensors="pt"))
        with torch.no_grad():
            expected = model(**inputs).logits
        assert torch.allclose(run_onnx(session, inputs), expected, atol=1e-5)


def test_latency_times_each_call():
    calls = []
    t = latency(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and 0 <= t["min_s"] <= t["median_s"] <= t["max_s"]


def test_a_folder_that_is_not_a_distillation_run_is_refused(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        compress(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"stage": "teacher", "teachers": {}}))
    with pytest.raises(UserError, match="stage=teacher"):
        compress(tmp_path)
    with pytest.raises(SystemExit, match="stage=teacher"):
        main([str(tmp_path)])


def test_bad_compress_options_fail_before_training(make_cfg, no_fit):
    for option, message in (("compress.batch_sizes=[0]", "compress.batch_sizes"),
                            ("compress.repeats=0", "compress.repeats"), ("compress.threads=0", "compress.threads")):
        with pytest.raises(UserError, match=message):
            run(make_cfg("compress.enabled=true", option))
