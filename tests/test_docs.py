"""The README and the docs pages: every `python train.py …` line of their code blocks composes as written, every
relative link and anchor resolves, and the README stays one screen of overview with the reference in docs/."""
import functools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"&", "&&", "|", "||", ";", ">", ">>", "2>&1"}
INLINE = {"README.md", "configuration.md", "strategies.md", "paper_vs_code.md", "teachers_and_cache.md",
          "cluster_and_compression.md"}
REFERENCE = ["configuration.md", "strategies.md", "paper_vs_code.md", "teachers_and_cache.md",
             "cluster_and_compression.md", "results.md"]


def train_commands(page: Path) -> list[tuple[int, list[str]]]:
    """(line, arguments) of each `python train.py` command of the page: the lines of its fenced code blocks
    (continuation lines joined, comments and what follows a shell operator dropped) and, on the README and the
    reference pages, its inline code spans (the results pages' spans record what ran at their commits)."""
    commands, fenced, pending, start = [], False, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            if page.name in INLINE:
                commands += [(number, shlex.split(span)) for span in re.findall(r"`python train\.py ([^`]*)`", line)]
            continue
        if not pending:
            start = number
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        command, pending = pending, ""
        if re.search(r"(^|\s)python train\.py(\s|$)", command):  # a shell line, not Python or a log
            words = shlex.split(command, comments=True)
            words = words[words.index("train.py") + 1:]
            end = next((i for i, w in enumerate(words) if w in SHELL), len(words))  # `… &`, `… | tee log`
            commands.append((start, words[:end]))
    return commands


def jobs(arguments: list[str]) -> list[list[str]]:
    """The overrides of each job `--cfg job` composes for a command, ``<placeholders>`` filled in: for a multirun,
    one job per option of each swept config group (``sampler=none,margin``; a value of another key, as in
    ``seed=1,2,3``, composes alike, so its first stands for all); ``--cfg <part>`` and ``-m`` dropped. A sweep
    without ``-m`` stays as written, which fails as it would for the user."""
    overrides, rest = [], iter(arguments)
    for arg in rest:
        if arg in ("--cfg", "-c"):
            next(rest)
        elif arg not in ("-m", "--multirun"):
            overrides.append(re.sub(r"<[^<>]+>", "placeholder", arg))
    if not {"-m", "--multirun"} & set(arguments):
        return [overrides]
    values = []
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if not parsed.is_sweep_override():
            values.append([text])
            continue
        key, options = parsed.get_key_element(), list(parsed.sweep_string_iterator())
        group = (ROOT / "conf" / key.lstrip("+~")).is_dir()
        values.append([f"{key}={v}" for v in (options if group else options[:1])])
    return [[v[min(i, len(v) - 1)] for v in values] for i in range(max(map(len, values), default=1))]


COMMANDS = [(page, line, args) for page in PAGES for line, args in train_commands(page)]


def test_the_readme_and_docs_commands_are_found():
    readme = [args for page, _, args in COMMANDS if page.name == "README.md"]
    assert len(readme) >= 10 and [] in readme  # the two commands of the first screen: setup.sh, then `python train.py`
    pages = {page.name for page, _, _ in COMMANDS}
    assert pages >= {"README.md", "strategies.md", "paper_vs_code.md", "cluster_and_compression.md"}


# Runs `python train.py --cfg job <overrides>` for each command given as JSON: train.py as __main__ under that argv,
# as `python` runs it, a process importing Hydra once for many commands. Prints the failures as JSON.
CFG_JOB = """
import io, json, runpy, sys
from contextlib import redirect_stderr, redirect_stdout
from hydra.core.global_hydra import GlobalHydra

failures = []
for args in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    GlobalHydra.instance().clear()
    sys.argv = ["train.py", "--cfg", "job", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            runpy.run_path("train.py", run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    if code or "task:" not in out.getvalue():
        failures.append([args, err.getvalue()[-600:]])
print(json.dumps(failures))
"""


def test_every_train_command_of_the_readme_and_docs_composes_with_cfg_job():
    """Each command run as written, `--cfg job` added (a multirun as each of its jobs); two processes share them."""
    todo = list({json.dumps(job): job for _, _, args in COMMANDS for job in jobs(args)}.values())
    halves = [subprocess.Popen([sys.executable, "-c", CFG_JOB, json.dumps(todo[i::2])], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    failures = []
    for half in halves:
        stdout, stderr = half.communicate(timeout=300)
        assert half.returncode == 0, stderr[-2000:]
        failures += json.loads(stdout.strip().splitlines()[-1])
    where = {json.dumps(job): f"{page.relative_to(ROOT)}:{line}" for page, line, args in COMMANDS for job in jobs(args)}
    report = [f"{where[json.dumps(args)]}: python train.py {shlex.join(args)}\n{error}" for args, error in failures]
    assert not failures, "\n".join(report)


def test_a_command_that_does_not_compose_is_reported():
    out = subprocess.run([sys.executable, "-c", CFG_JOB, json.dumps([["sampler=nonsense"], ["seed=1"]])], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    (failure,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert failure[0] == ["sampler=nonsense"] and "Could not find 'sampler/nonsense'" in failure[1]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_the_readme_is_an_overview_that_links_the_reference():
    """The first screen: what DKD is, the two commands, the verdicts, where to go next; the reference in docs/."""
    text = (ROOT / "README.md").read_text()
    first_screen = "\n".join(text.splitlines()[:50])
    assert "bash setup.sh" in first_screen and "\npython train.py " in first_screen
    assert "| finding | claim | setting | verdict |" in first_screen and "docs/reproduction.md#" in first_screen
    for name in REFERENCE:
        assert f"(docs/{name})" in first_screen, name
    assert len(text.splitlines()) <= 150
    for name in REFERENCE:
        assert len((ROOT / "docs" / name).read_text().splitlines()) <= 300, name


RECORDS = ("results_dropout_off_selection.md", "results_dropout_off_studies.md")  # what ran at their commits


def module_commands() -> list[tuple[str, int, str, bool]]:
    """(file, line, module, run by ``python -m``) of every ``python -m dkd.…`` and every ``dkd.x.y`` module name in the
    README, the docs, the configs' comments, the requirements and the package's own text; a record of what ran (the
    record pages, the benchmark's "Produced by" line) is left as it ran."""
    files = [*PAGES, *sorted((ROOT / "conf").rglob("*.yaml")), *sorted((ROOT / "dkd").rglob("*.py")),
             ROOT / "requirements.txt", ROOT / "setup.sh"]
    found = []
    for path in files:
        if path.name in RECORDS or path.name == "moved.py":
            continue
        text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("Produced by"))
        for m in re.finditer(r"python\s+-m\s+(dkd[\w.]*)|(?<![\w/])(dkd\.[a-z_]+(?:\.[a-z_]+)*)", text):
            found.append((str(path.relative_to(ROOT)), text.count("\n", 0, m.start()) + 1, m.group(1) or m.group(2),
                          bool(m.group(1))))
    return found


def test_every_python_m_entry_point_and_module_name_is_one_of_today():
    """``python -m dkd.x`` (also across a line break) and every ``dkd.x.y`` module name in prose, comments and
    messages: no name a module had before it moved."""
    from dkd.moved import MOVED

    found = module_commands()
    assert {m for _, _, m, run in found if run} >= {"dkd.ship.compress", "dkd.ship.card", "dkd.studies.report"}
    stale = [f"{f}:{n}: {m}" for f, n, m, _ in found if any(m == o or m.startswith(f"{o}.") for o in MOVED)]
    assert not stale, "old module names (dkd/moved.py maps them):\n" + "\n".join(stale)
    missing = [f"{f}:{n}: python -m {m}" for f, n, m, run in found
               if run and not (ROOT / (m.replace(".", "/") + ".py")).is_file()]
    assert not missing, "python -m names of no module:\n" + "\n".join(missing)


VERDICT_TABLE = re.compile(r"`python -m dkd\.studies\.report --verdicts ([^`]+)`")


@functools.cache
def verdict_table_of(sources: tuple[str, ...]) -> str:  # the README and the report quote the same JSON: read once
    from dkd.studies.reproduction import verdict_table

    return verdict_table([ROOT / p for p in sources])


@pytest.mark.parametrize("page", ["README.md", "docs/reproduction.md"])
def test_the_verdict_table_is_the_reports(page):
    """The README's and the report's verdict table are what the report makes of the committed study JSON, by the
    command quoted under it."""
    text = (ROOT / page).read_text()
    command = VERDICT_TABLE.search(text)
    assert command, f"{page}: no `python -m dkd.studies.report --verdicts …` quoted"
    assert verdict_table_of(tuple(command.group(1).split())) in text, (
        f"{page}: its verdict table is not the report's; paste the output of {command.group(0)}")


def test_the_bf16_warning_quotes_the_precision_study():
    """The figures the bf16-with-selection warning quotes are the precision study's, recomputed from its JSON."""
    from dkd.preflight import BF16_ENTROPY_ON_TEST
    from dkd.studies.design import STUDIES
    from dkd.studies.jobs import load_jobs
    from dkd.studies.reproduction import summarise

    summary = summarise(STUDIES["precision"], load_jobs([ROOT / "docs" / "repro" / "precision_sst5.json"]))
    (claim,) = [c for c in summary["claims"] if c["variant"] == "entropy r=0.1 bf16"]
    test = claim["test"]
    assert BF16_ENTROPY_ON_TEST == tuple(round(100 * test[k], 1) for k in ("mean", "low", "high"))
