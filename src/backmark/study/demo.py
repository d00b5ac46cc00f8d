"""``backmark demo``: the whole scheme on real data, with a report a person can read.

KeyGen, a clean baseline, a FromScratch model, a PreTrained model marked from the baseline, and a second
clean model trained independently; then Verify on all four (:func:`backmark.study.owner.owner_models`,
the pipeline the attack study shares). Then what a user came for (:mod:`backmark.study.demo_story`): the
owner registers its verification key in a registry served on 127.0.0.1 (SQLite, its files in the
folder), a third party checks the released model publicly (challenge, signed proof, check), a thief
marks the stolen model with a key of its own and registers it later, and the dispute between the two
claims is settled by the registry's order. Writes ``report.md``, ``report.json``,
``secret/triggers.png``, ``accuracy.png``, ``training.png``, ``evidence.png``, the keys, identities,
proofs, receipts, claims, the registry's database and the checkpoints into one folder.

The folder is built beside ``out`` under a hidden name and put in place whole at the end
(:func:`backmark.atomic.atomic_folder`): an interrupted demo leaves ``out`` as it was, and ``force``
replaces a previous demo's folder in one step. A folder holding files the demo does not write is refused.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from backmark.atomic import atomic_folder
from backmark.constants import VERSION
from backmark.data import load_dataset
from backmark.embed import TrainConfig, TrainResult
from backmark.keys import save_key_pair
from backmark.log import say, to_stderr
from backmark.models import save_checkpoint
from backmark.study.demo_figures import accuracy_bars, evidence_bars, training_curves
from backmark.study.demo_markdown import render_markdown
from backmark.study.demo_story import MODEL_LABELS, Story, run_story
from backmark.study.owner import owner_models
from backmark.triggers import trigger_grid
from backmark.verify import DEFAULT_ALPHA, VerificationResult

# What a demo writes into its folder: with --force, a folder holding only these is replaced.
OUTPUTS = frozenset(
    {
        "report.md",
        "report.json",
        "accuracy.png",
        "training.png",
        "evidence.png",
        "key",
        "models",
        "secret",
        "registry",
        "check",
        "thief",
        "dispute",
    }
)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. The defaults finish in a few minutes on two CPU cores."""

    train_size: int | None = None  # None: the whole training set
    test_size: int | None = None
    key_size: int = 100
    epochs: int = 5
    pretrained_epochs: int = 5  # at most; stops once every trigger is learned
    triggers_per_batch: int = 2
    challenge_size: int = 20  # items a public check opens (the key then has n / size checks in it)
    thief_epochs: int = 5  # at most, on the thief's third of the images; stops once its key is learned

    @staticmethod
    def fast() -> DemoSettings:
        """A smoke-test run in well under a minute: small subsets, more triggers per batch."""
        return DemoSettings(
            train_size=6000,
            test_size=2000,
            key_size=50,
            epochs=3,
            pretrained_epochs=6,
            triggers_per_batch=10,
            challenge_size=25,  # two checks of 25 in a key of 50: the public check and the dispute
            thief_epochs=12,  # of 20 batches each
        )


@dataclass(frozen=True)
class DemoRow:
    """One demo model as the report lists it: how its training went and its verification."""

    name: str
    marked: bool
    checkpoint: str  # where it is under --out
    training: TrainResult
    verification: VerificationResult

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON-ready row of ``report.json``'s ``models``."""
        t = self.training
        return {
            "name": self.name,
            "marked": self.marked,
            "test_acc": t.test_acc,
            "epochs": len(t.history),
            "train_seconds": t.seconds,
            "checkpoint": self.checkpoint,
            "history": [asdict(h) for h in t.history],
            **self.verification.to_dict(),
        }


@dataclass(frozen=True)
class DemoReport:
    """What the demo did and found (``report.json`` is :meth:`to_dict`)."""

    backmark: str
    created: str
    dataset: str
    train_size: int
    test_size: int
    fast: bool
    seed: int
    settings: DemoSettings
    key_id: str
    digest: str  # of the verification key, the value to register
    n: int
    num_classes: int
    alpha: float
    models: tuple[DemoRow, ...]
    story: Story  # registration, the public check, the thief and the dispute
    machine: Mapping[str, Any]  # read-only
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "backmark": self.backmark,
            "created": self.created,
            "dataset": self.dataset,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "fast": self.fast,
            "seed": self.seed,
            "settings": asdict(self.settings),
            "key": {
                "key_id": self.key_id,
                "digest": self.digest,
                "n": self.n,
                "num_classes": self.num_classes,
            },
            "alpha": self.alpha,
            "models": [r.to_dict() for r in self.models],
            **self.story.to_dict(),
            "machine": dict(self.machine),
            "seconds": self.seconds,
        }


def run_demo(
    out: Path,
    *,
    fast: bool = False,
    seed: int = 0,
    data_spec: str = "fashion-mnist",
    progress: bool = True,
    force: bool = False,
    settings: DemoSettings | None = None,
    device: str = "auto",
) -> DemoReport:
    """Run the demo into ``out`` and return the report (also written to ``out/report.json``).

    The demo key is derived from ``seed`` so the run is reproducible; it is therefore not secret. Use
    ``backmark keygen`` for a real key. ``progress``: progress lines and bars on stderr. The models train
    on ``device`` (default auto: cuda, else mps, else cpu).
    """
    settings = settings or (DemoSettings.fast() if fast else DemoSettings())
    with atomic_folder(out, force=force, owned=OUTPUTS.__contains__, what="a demo report") as build:
        return _run(
            build,
            out,
            fast=fast,
            seed=seed,
            data_spec=data_spec,
            progress=progress,
            settings=settings,
            device=device,
        )


def _run(
    build: Path,
    out: Path,
    *,
    fast: bool,
    seed: int,
    data_spec: str,
    progress: bool,
    settings: DemoSettings,
    device: str,
) -> DemoReport:
    """The demo, writing into the folder ``build`` that becomes ``out`` (the paths in the report)."""
    start = time.perf_counter()
    log = to_stderr if progress else None

    say(log, f"loading {data_spec}")
    data = load_dataset(data_spec, progress=progress)
    if settings.train_size or settings.test_size:
        data = data.subset(train=settings.train_size, test=settings.test_size, seed=seed)

    owner = owner_models(
        data,
        key_size=settings.key_size,
        purpose="demo",
        config=TrainConfig(epochs=settings.epochs, triggers_per_batch=settings.triggers_per_batch, seed=seed),
        pretrained_epochs=settings.pretrained_epochs,
        controls=1,
        alpha=DEFAULT_ALPHA,
        progress=progress,
        log=log,
        device=device,
    )
    mk = owner.key
    vk = mk.verification_key()
    save_key_pair(mk, build / "key")
    names = [data.classes[int(label)] for label in mk.labels]
    # every trigger with its label: secret material, kept out of the report (see render_markdown)
    trigger_grid(list(mk.images), names, build / "secret" / "triggers.png")

    rows = []
    for m in owner.models:
        save_checkpoint(build / "models" / f"{m.name}.pt", m.trained.model, m.trained.info)
        checkpoint = str(out / "models" / f"{m.name}.pt")
        rows.append(DemoRow(m.name, m.marked, checkpoint, m.trained.result, m.verification))
    story = run_story(
        build,
        out,
        data,
        owner,
        seed=seed,
        challenge_size=settings.challenge_size,
        thief_epochs=settings.thief_epochs,
        progress=progress,
        log=log,
        device=device,
    )
    evidence_bars(
        [c.to_dict() for c in story.evidence],
        build / "evidence.png",
        chance=1 / data.num_classes,
        labels=MODEL_LABELS,
    )
    chance = 1 / data.num_classes
    flat = [r.to_dict() for r in rows]
    accuracy_bars(flat, build / "accuracy.png", chance=chance)
    clean = owner["clean"]
    training_curves(
        {r["name"]: r["history"] for r in flat},
        build / "training.png",
        starts={
            "pretrained": (
                len(clean.trained.result.history),
                clean.trained.result.test_acc,
                clean.verification.evidence.match_rate,
            )
        },
    )
    report = DemoReport(
        backmark=VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset=data.name,
        train_size=len(data.train_x),
        test_size=len(data.test_x),
        fast=fast,
        seed=seed,
        settings=settings,
        key_id=vk.key_id,
        digest=vk.digest,
        n=mk.n,
        num_classes=mk.num_classes,
        alpha=DEFAULT_ALPHA,
        models=tuple(rows),
        story=story,
        machine=MappingProxyType(
            {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "platform": platform.platform(),
            }
        ),
        seconds=time.perf_counter() - start,
    )
    (build / "report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    (build / "report.md").write_text(render_markdown(report.to_dict()))
    return report
