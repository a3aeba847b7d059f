"""The benchmark's pipeline on tiny random models: every case runs, ratios are computed, the files are written."""
import json

import pytest
from transformers import BertConfig

from dkd.studies import bench


def tiny(layers: int) -> BertConfig:
    return BertConfig(vocab_size=1100, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32)


def test_cases_cover_the_grid():
    labels = [c.label for c in bench.cases((0.5, 0.1))]
    assert labels[0] == "full KD" and len(labels) == 1 + 2 * 2 * 3 + 5
    assert "entropy r=0.1 efficient+pool10" in labels and "random r=0.5 faithful" in labels
    assert "entropy r=0.1 efficient+pool10 (cache)" in labels and "full KD (cache)" in labels


@pytest.mark.slow  # about 20 s; python -m dkd.studies.bench itself is a benchmark
def test_bench_writes_table_record_and_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "PAPER", {"student": tiny(1), "base": tiny(2), "large": tiny(3)})
    out = tmp_path / "b.md"
    bench.main(["--models", "paper", "--teachers", "base", "--examples", "64", "--batch-size", "8", "--length", "8",
                "--ratios", "0.5", "--precision", "32-true", "bf16-mixed", "--out", str(out),
                "--png", str(tmp_path / "img" / "b.png")])
    record = json.loads(out.with_suffix(".json").read_text())
    both = {(r["label"], r["precision"]): r for r in record["rows"]}
    assert len(both) == 2 * (1 + 2 * 3 + 5)
    bf16 = {label: r for (label, precision), r in both.items() if precision == "bf16-mixed"}
    assert all(set(r["speed_up_over_fp32"]) == {"wall", "teacher", "scoring"} for r in bf16.values())
    assert bf16["full KD"]["time_ratio"] == 1.0  # each precision against its own full KD
    rows = {label: r for (label, precision), r in both.items() if precision == "32-true"}
    assert all(r["speed_up_over_fp32"] is None for r in rows.values())
    assert rows["full KD"]["teacher_s"] > 0 and rows["full KD"]["scoring_s"] == 0  # full KD scores nothing
    assert rows["entropy r=0.5 efficient"]["scoring_s"] > 0 and rows["random r=0.5 efficient"]["scoring_s"] == 0
    assert rows["full KD (cache)"]["teacher_s"] == 0  # every row a cache hit: no teacher forward
    assert len(rows) == 1 + 2 * 3 + 5 and all(r["examples"] == 64 for r in rows.values())
    assert rows["full KD"]["time_ratio"] == 1.0 and rows["full KD"]["flop_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert rows["random r=0.5 efficient"]["flop_ratio"] == pytest.approx(0.5, abs=1e-3)  # equal lengths: exactly r
    assert rows["full KD (cache)"]["cache_hits"] == 64 and rows["full KD (cache)"]["flop_ratio_spent"] < 1
    assert rows["entropy r=0.5 efficient+pool2"]["flop_ratio"] > rows["random r=0.5 efficient+pool2"]["flop_ratio"]
    assert (tmp_path / "img" / "b.png").stat().st_size > 0
    text = out.read_text()
    assert "| full KD | " in text and "](img/b.png)" in text and "## Targets" in text
    paper = {p["teacher"]: p for p in record["paper_accounting"]}
    assert paper["bert-base"]["full_kd"] == pytest.approx(paper["bert-base"]["teacher_fwd"]
                                                          + 3 * paper["bert-base"]["student_fwd"], abs=0.02)
