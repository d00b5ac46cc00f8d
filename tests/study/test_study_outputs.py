"""The folders of ``attack`` and ``reproduce`` are put in place whole; a results file is replaced atomically.

Killed (SIGKILL) after every write step, ``--out`` holds the old or the new run, never a mix, and the next
run leaves no temporary file. Measuring and plotting are replaced by tiny stand-ins that write the same
files, so the tests take seconds; what is tested is how the outputs reach the disk.
"""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backmark.errors import BackmarkError
from backmark.study import attack_checkpoint, reproduce, write_report
from backmark.study import attack_report as report_module

reproduce_module = importlib.import_module("backmark.study.reproduce")  # not the function


def tag_of(root: Path) -> str:
    return (root / "tag").read_text()


def fake_figures(root: Path) -> Any:
    def write_figures(outcomes: Any, out: Path, *, chance: float) -> list[Path]:
        paths = [out / "summary.png", out / "prune-sparsity.png"]
        for path in paths:
            path.write_text(tag_of(root))
        return paths

    return write_figures


@dataclass(frozen=True)
class Tagged:
    """A stand-in for a report or a run: only its tag, which is all it writes."""

    tag: str
    figures: tuple[str, ...] = ()
    seconds: float = 0.0
    models: tuple[Any, ...] = ()
    runs: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag}


def write_old_output(root: Path, run: Any) -> None:
    """A fresh ``root`` holding the output of ``run(False)`` from an 'old' run; later runs are 'new'."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "tag").write_text("old")
    run(False)
    (root / "tag").write_text("new")


def report_state(folder: Path) -> str:
    """The tag of the complete report in ``folder``; fails on a mix of two runs or a missing file."""
    tag = json.loads((folder / "report.json").read_text())["tag"]
    assert (folder / "report.md").read_text() == f"# {tag}\n"
    assert {p.name: p.read_text() for p in folder.glob("*.png")} == {
        "summary.png": tag,
        "prune-sparsity.png": tag,
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["report.json", "report.md", "summary.png", "prune-sparsity.png"]
    )
    return str(tag)


@pytest.fixture
def tiny_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work folder whose ``tag`` file says what the stand-ins write."""
    root = tmp_path / "work"
    monkeypatch.setattr(report_module, "build_report", lambda *a, **k: Tagged(tag_of(root)))
    monkeypatch.setattr(report_module, "write_figures", fake_figures(root))
    monkeypatch.setattr(report_module, "render", lambda report: f"# {report.tag}\n")
    return root


def test_attack_report_killed_after_every_step_is_old_or_new(tiny_reports: Path, crasher: Any) -> None:
    root = tiny_reports
    out = root / "report"

    def run(force: bool) -> None:
        write_report(out, None, [], alpha=1e-6, chance=0.1, force=force)  # type: ignore[arg-type]

    def old_run() -> None:
        write_old_output(root, run)

    old_run()
    steps = crasher.steps(lambda: run(True))
    assert "folder-swapped#1" in steps
    seen = set()
    for step in steps:
        old_run()
        crasher.kill_after(lambda: run(True), step)
        seen.add(report_state(out))
        run(True)
        assert report_state(out) == "new" and sorted(p.name for p in root.iterdir()) == ["report", "tag"]
    assert seen == {"old", "new"}


def test_attack_refuses_its_folder_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "data.csv").write_text("mine")
    with pytest.raises(BackmarkError, match=r"holds files other than an attack report \(data\.csv\)"):
        attack_checkpoint(tmp_path / "missing.pt", tmp_path / "nokey", "fashion-mnist", [], out, force=True)
    (out / "data.csv").unlink()
    (out / "report.md").write_text("old")
    with pytest.raises(BackmarkError, match="already holds an attack report; pass force=True"):
        attack_checkpoint(tmp_path / "missing.pt", tmp_path / "nokey", "fashion-mnist", [], out)


def fake_experiment(root: Path) -> Any:
    """What reproduce's experiment writes into its folder, tiny, and a summary for the results."""

    def experiment(out: Path, **_: Any) -> Tagged:
        tag = tag_of(root)
        (out / "models").mkdir()
        (out / "models" / "clean.pt").write_text(tag)
        for victim in ("from-scratch", "pretrained"):
            write_report(out / victim, None, [], alpha=1e-6, chance=0.1)  # type: ignore[arg-type]
        return Tagged(tag, runs={"from-scratch": None, "pretrained": None})

    return experiment


def run_state(out: Path, results: Path) -> tuple[str, str]:
    """(tag of the run in ``out``, tag of the results file and its figures); each must be whole."""
    tag = json.loads((out / "results.json").read_text())["tag"]
    assert (out / "models" / "clean.pt").read_text() == tag
    assert report_state(out / "from-scratch") == report_state(out / "pretrained") == tag
    text = results.read_text()
    # each figure is replaced atomically on its own (a killed run leaves hidden temporaries here, which
    # the next run sweeps): a figure is whole, old or new
    figures = {p.name: p.read_text() for p in (results.parent / results.stem).glob("[!.]*")}
    assert set(figures.values()) <= {"old", "new", "one", "two"}  # the tags the tests write
    assert set(figures) == {
        f"{v}-{f}" for v in ("from-scratch", "pretrained") for f in ("summary.png", "prune-sparsity.png")
    }
    return str(tag), text.removeprefix("results ")


def test_reproduce_killed_after_every_step_is_old_or_new(
    tiny_reports: Path, crasher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tiny_reports
    out, results = root / "run", root / "docs" / "results.md"
    monkeypatch.setattr(reproduce_module, "_experiment", fake_experiment(root))
    monkeypatch.setattr(
        reproduce_module, "render_results", lambda summary, *a, **k: f"results {summary['tag']}"
    )

    def run(force: bool) -> None:
        reproduce(out, results=results, force=force)

    def old_run() -> None:
        write_old_output(root, run)

    old_run()
    assert run_state(out, results) == ("old", "old")
    steps = crasher.steps(lambda: run(True))
    seen = set()
    for step in steps:
        old_run()
        crasher.kill_after(lambda: run(True), step)
        folder, text = run_state(out, results)
        seen.add((folder, text))
        run(True)
        assert run_state(out, results) == ("new", "new")
        assert sorted(p.name for p in root.iterdir()) == ["docs", "run", "tag"]
        assert sorted(p.name for p in (root / "docs").iterdir()) == ["results", "results.md"]
        assert len(list((root / "docs" / "results").iterdir())) == 4
    # the results file is written before the folder is swapped in: "new results, old folder" happens
    assert seen == {("old", "old"), ("old", "new"), ("new", "new")}


def test_reproduce_results_inside_out_belong_to_the_run(
    tiny_reports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tiny_reports
    root.mkdir()
    (root / "tag").write_text("one")
    monkeypatch.setattr(reproduce_module, "_experiment", fake_experiment(root))
    monkeypatch.setattr(
        reproduce_module, "render_results", lambda summary, *a, **k: f"results {summary['tag']}"
    )
    out = root / "run"
    reproduce(out, results=out / "summary.md")
    assert run_state(out, out / "summary.md") == ("one", "one")
    (root / "tag").write_text("two")
    reproduce(out, results=out / "summary.md", force=True)  # its own results file is not a stranger
    assert run_state(out, out / "summary.md") == ("two", "two")
    reproduce(root / "plain")  # the default: results.md and results/ inside the folder
    assert run_state(root / "plain", root / "plain" / "results.md") == ("two", "two")


def test_reproduce_refuses_results_whose_figures_are_its_folder_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--out X --results X.md`` would put the figures in X/ itself, and the run would refuse its own
    folder at the very end (a 50-minute run lost so): refused at once."""

    def experiment(out: Path, **_: Any) -> Any:
        raise AssertionError("the experiment must not start")

    monkeypatch.setattr(reproduce_module, "_experiment", experiment)
    with pytest.raises(BackmarkError, match=r"puts its figures in .*run/, which is the run's folder"):
        reproduce(tmp_path / "run", results=tmp_path / "run.md")
    with pytest.raises(BackmarkError, match="is the run's folder"):
        reproduce(tmp_path / "run", results=tmp_path / "run")
