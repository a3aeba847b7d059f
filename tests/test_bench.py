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


def row(label: str, sampler: str, setting: tuple[str, bool], wall: float, **extra) -> dict:
    precision, compiled = setting
    return {"teacher": "base", "label": label, "sampler": sampler, "ratio": 1.0 if sampler == "none" else 0.1,
            "mode": "efficient", "pool": 1, "cache": False, "precision": precision, "compiled": compiled,
            "wall_s": wall, "teacher_s": wall / 2, "scoring_s": 0.0, "flop_ratio_spent": 1.0,
            "examples_per_s": round(100 / wall, 1), **extra}


def test_speed_ups_compare_with_fp32_eager_and_compiling_pays_only_when_it_saves_enough():
    """Each setting's time ratio is to its own full KD; its speed-up to the same case in fp32, not compiled. Compiling
    costs the compiled warm-up's extra seconds: it pays within N examples only when the seconds it saves per example
    (full KD, same precision), times N, exceed that."""
    settings = [("32-true", False), ("32-true", True), ("bf16-mixed", False), ("bf16-mixed", True)]
    walls = {("32-true", False): 10.0, ("32-true", True): 8.0, ("bf16-mixed", False): 5.0, ("bf16-mixed", True): 6.0}
    rows = [row("full KD", "none", s, walls[s]) for s in settings]
    rows += [row("entropy", "entropy", s, walls[s] / 2) for s in settings]
    bench.add_ratios(rows)
    by = {(r["label"], r["precision"], r["compiled"]): r for r in rows}
    assert by[("full KD", "32-true", True)]["speed_up_over_fp32"]["wall"] == 1.25
    assert by[("entropy", "bf16-mixed", False)]["speed_up_over_fp32"]["wall"] == 2.0
    assert by[("full KD", "32-true", False)]["speed_up_over_fp32"] is None
    assert all(by[("entropy", *s)]["time_ratio"] == 0.5 for s in settings)  # each against its own full KD
    warmups = [{"teacher": "base", "precision": p, "compiled": c, "seconds": 60.0 if c else 10.0,
                "graphs_compiled": 4 if c else 0} for p, c in settings]
    # fp32: 0.1 → 0.08 s per example saves 0.02 s; 50 s of compiling pays after 2,500 examples
    costs = {c["precision"]: c for c in bench.compile_costs(rows, warmups, examples=3000)}
    assert costs["32-true"]["compile_s"] == 50.0 and costs["32-true"]["break_even_examples"] == 2500
    assert costs["32-true"]["pays"]
    assert not bench.compile_costs(rows, warmups, examples=2000)[0]["pays"]
    assert costs["bf16-mixed"]["break_even_examples"] is None and not costs["bf16-mixed"]["pays"]  # slower compiled
