"""The demo's folder is put in place whole: killed at any write step, ``--out`` holds the old or the new run.

The training is replaced by a tiny stand-in that writes what the demo writes (a key pair, a checkpoint,
the report), so the test takes seconds; what is tested is how :func:`run_demo` puts its folder in place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from backmark.errors import BackmarkError
from backmark.keys import generate_key, load_marking_key, load_verification_key, save_key_pair
from backmark.models import ModelInfo, save_checkpoint
from backmark.study import demo


def fake_run(build: Path, out: Path, **_: Any) -> dict[str, Any]:
    """What the demo writes, tiny; the tag comes from the folder's key seed so each run differs."""
    tag = (build.parent / "tag").read_text()
    seed = hashlib.sha256(tag.encode()).digest()
    mk = generate_key(num_classes=3, input_shape=(1, 8, 8), size=3, kind="noise", seed=seed)
    save_key_pair(mk, build / "key")
    save_checkpoint(build / "models" / "clean.pt", nn.Linear(2, 3), ModelInfo("cnn", {}, (1, 8, 8), 3))
    report = {"tag": tag, "digest": mk.verification_key().digest, "checkpoint": str(out / "models")}
    (build / "report.json").write_text(json.dumps(report))
    (build / "report.md").write_text(f"# {tag}\n")
    return report


def state(out: Path) -> str:
    """The tag of the complete run in ``out``; fails if the folder mixes two runs or lacks a file."""
    report = json.loads((out / "report.json").read_text())
    mk, vk = load_marking_key(out / "key"), load_verification_key(out / "key")
    assert mk.verification_key().digest == vk.digest == report["digest"]
    assert (out / "report.md").read_text() == f"# {report['tag']}\n"
    assert (out / "models" / "clean.pt").stat().st_size > 0
    assert report["checkpoint"] == str(out / "models")  # paths in the report name --out, not the build
    return str(report["tag"])


def test_demo_killed_after_every_step_leaves_the_old_or_the_new_run(
    tmp_path: Path, crasher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "_run", fake_run)
    root = tmp_path / "work"
    out = root / "demo"

    def old_run() -> None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        (root / "tag").write_text("old")
        demo.run_demo(out, progress=False)
        (root / "tag").write_text("new")

    def new_run() -> None:
        demo.run_demo(out, progress=False, force=True)

    old_run()
    assert state(out) == "old"
    steps = crasher.steps(new_run)
    assert steps.count("folder-swapped#1") == 1 and len(steps) > 10
    seen = set()
    for step in steps:
        old_run()
        crasher.kill_after(new_run, step)
        seen.add(state(out))
        demo.run_demo(out, progress=False, force=True)  # the next run sweeps what the killed one left
        assert state(out) == "new" and sorted(p.name for p in root.iterdir()) == ["demo", "tag"], step
    assert seen == {"old", "new"}


def test_demo_refuses_a_folder_with_other_files_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_run(*_: Any, **__: Any) -> dict[str, Any]:
        raise AssertionError("the demo started although its folder was refused")

    monkeypatch.setattr(demo, "_run", no_run)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("an old report")
    with pytest.raises(BackmarkError, match="already holds a demo report; pass force=True to replace it"):
        demo.run_demo(out, progress=False)
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(BackmarkError, match=r"holds files other than a demo report \(thesis\.tex\)"):
        demo.run_demo(out, progress=False, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "thesis.tex"]
