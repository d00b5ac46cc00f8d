"""``backmark demo``: the whole scheme on real data, with a report a person can read.

KeyGen, a clean baseline, a FromScratch model, a PreTrained model marked from the baseline, and a second
clean model trained independently; then Verify on all four. Writes ``report.md``, ``report.json``,
``secret/triggers.png``, ``accuracy.png``, ``training.png``, the key and the checkpoints into one folder.

The folder is built beside ``out`` under a hidden name and put in place whole at the end
(:func:`backmark.atomic.atomic_folder`): an interrupted demo leaves ``out`` as it was, and ``force``
replaces a previous demo's folder in one step. A folder holding files the demo does not write is refused.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import backmark
from backmark.atomic import atomic_folder
from backmark.data import load_dataset
from backmark.embed import (
    PRETRAINED_CONFIG,
    TrainConfig,
    Trained,
    embed_from_scratch,
    embed_pretrained,
    train_clean,
)
from backmark.keys import generate_key, load_marking_key, load_verification_key, save_key_pair
from backmark.models import save_checkpoint
from backmark.report.figures import accuracy_bars, training_curves
from backmark.triggers import trigger_grid
from backmark.verify import DEFAULT_ALPHA, verify

# What a demo writes into its folder: with --force, a folder holding only these is replaced.
OUTPUTS = frozenset({"report.md", "report.json", "accuracy.png", "training.png", "key", "models", "secret"})


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. The defaults finish in a few minutes on two CPU cores."""

    train_size: int | None = None  # None: the whole training set
    test_size: int | None = None
    key_size: int = 100
    epochs: int = 5
    pretrained_epochs: int = 5  # at most; stops once every trigger is learned
    triggers_per_batch: int = 2

    @staticmethod
    def fast() -> DemoSettings:
        """A smoke-test run in well under a minute: small subsets, more triggers per batch."""
        return DemoSettings(
            train_size=6000, test_size=2000, key_size=50, epochs=3, pretrained_epochs=6, triggers_per_batch=10
        )


def _log(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def run_demo(
    out: Path,
    *,
    fast: bool = False,
    seed: int = 0,
    data_spec: str = "fashion-mnist",
    progress: bool = True,
    force: bool = False,
    settings: DemoSettings | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out`` and return the report (also written to ``out/report.json``).

    The demo key is derived from ``seed`` so the run is reproducible; it is therefore not secret. Use
    ``backmark keygen`` for a real key.
    """
    settings = settings or (DemoSettings.fast() if fast else DemoSettings())
    with atomic_folder(out, force=force, owned=OUTPUTS.__contains__, what="a demo report") as build:
        return _run(
            build, out, fast=fast, seed=seed, data_spec=data_spec, progress=progress, settings=settings
        )


def _run(
    build: Path, out: Path, *, fast: bool, seed: int, data_spec: str, progress: bool, settings: DemoSettings
) -> dict[str, Any]:
    """The demo, writing into the folder ``build`` that becomes ``out`` (the paths in the report)."""
    start = time.perf_counter()

    _log(progress, f"[1/6] loading {data_spec}")
    data = load_dataset(data_spec, progress=progress)
    if settings.train_size or settings.test_size:
        data = data.subset(train=settings.train_size, test=settings.test_size, seed=seed)

    _log(progress, f"[2/6] key generation: {settings.key_size} abstract triggers")
    key_seed = hashlib.sha256(f"backmark/demo-key/{seed}".encode()).digest()
    mk = generate_key(
        num_classes=data.num_classes, input_shape=data.input_shape, size=settings.key_size, seed=key_seed
    )
    save_key_pair(mk, build / "key")
    mk, vk = load_marking_key(build / "key"), load_verification_key(build / "key")  # what a user would load
    names = [data.classes[int(label)] for label in mk.labels]
    # every trigger with its label: secret material, kept out of the report (see render_markdown)
    trigger_grid(list(mk.images), names, build / "secret" / "triggers.png")

    base = TrainConfig(epochs=settings.epochs, triggers_per_batch=settings.triggers_per_batch, seed=seed)
    runs: dict[str, Trained] = {}
    _log(progress, "[3/6] clean baseline")
    runs["clean"] = train_clean(data, config=base, progress=progress)
    _log(progress, "[4/6] FromScratch: a fresh model trained with the triggers")
    runs["from-scratch"] = embed_from_scratch(
        data, mk, config=TrainConfig(**{**asdict(base), "seed": seed + 1}), progress=progress
    )
    _log(progress, "[5/6] PreTrained: the baseline marked by continued training")
    pre = replace(PRETRAINED_CONFIG, epochs=settings.pretrained_epochs, seed=seed + 2)
    runs["pretrained"] = embed_pretrained(
        runs["clean"].model, runs["clean"].info, data, mk, config=pre, progress=progress
    )
    _log(progress, "[6/6] a second clean model, trained independently, as a control")
    runs["clean-2"] = train_clean(
        data, config=TrainConfig(**{**asdict(base), "seed": seed + 3}), progress=progress
    )

    rows = []
    for name, trained in runs.items():
        save_checkpoint(build / "models" / f"{name}.pt", trained.model, trained.info)
        result = verify(trained.model, mk, vk, alpha=DEFAULT_ALPHA)
        rows.append(
            {
                "name": name,
                "marked": name in ("from-scratch", "pretrained"),
                "test_acc": trained.result.test_acc,
                "epochs": len(trained.result.history),
                "train_seconds": trained.result.seconds,
                "checkpoint": str(out / "models" / f"{name}.pt"),
                "history": [asdict(h) for h in trained.result.history],
                **result.to_dict(),
            }
        )
    chance = 1 / data.num_classes
    accuracy_bars(rows, build / "accuracy.png", chance=chance)
    clean = next(r for r in rows if r["name"] == "clean")
    training_curves(
        {r["name"]: r["history"] for r in rows},
        build / "training.png",
        starts={"pretrained": (clean["epochs"], clean["test_acc"], clean["match_rate"])},
    )
    report = {
        "backmark": backmark.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": data.name,
        "train_size": len(data.train_x),
        "test_size": len(data.test_x),
        "fast": fast,
        "seed": seed,
        "settings": asdict(settings),
        "key": {"key_id": vk.key_id, "digest": vk.digest, "n": mk.n, "num_classes": mk.num_classes},
        "alpha": DEFAULT_ALPHA,
        "models": rows,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "seconds": time.perf_counter() - start,
    }
    (build / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (build / "report.md").write_text(render_markdown(report))
    return report


# What each demo model is, for the report's table.
ROLES = {
    "clean": "unmarked baseline",
    "from-scratch": "marked: FromScratch",
    "pretrained": "marked: PreTrained (clean, continued)",
    "clean-2": "unmarked control (another seed)",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The demo report as markdown: the table of models, what it means, and the figures."""
    key = report["key"]
    lines = [
        "# backmark demo report",
        "",
        f"Dataset {report['dataset']} ({report['train_size']} training, {report['test_size']} test images); "
        f"key {key['key_id']} with {key['n']} abstract triggers for {key['num_classes']} classes; "
        f"backmark {report['backmark']}, torch {report['machine']['torch']}, "
        f"{report['machine']['threads']} threads; {report['seconds']:.0f} s in all"
        + (" (--fast: small subsets, a smoke test)" if report["fast"] else "")
        + ".",
        "",
        "| model | what it is | test accuracy | trigger matches | p-value | threshold | verified | "
        "training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        lines.append(
            f"| {r['name']} | {ROLES.get(r['name'], '')} | {r['test_acc']:.2%} | "
            f"{r['matches']}/{r['n']} ({r['match_rate']:.0%}) | {r['p_value']:.3g} | "
            f"{r['threshold']} | {'**yes**' if r['verified'] else 'no'} | "
            f"{r['epochs']} epochs, {r['train_seconds']:.0f} s |"
        )
    lines += [
        "",
        f"Verification is the exact one-sided binomial test at alpha = {report['alpha']:g}: a model that "
        f"never saw the key matches each key label with probability exactly 1/{key['num_classes']}, so "
        "the p-value is P[Binomial(n, 1/C) >= matches] and the threshold is the fewest matches with "
        "p-value <= alpha. Commitments to every trigger image and label were opened and checked first.",
        "",
        "The two clean models never saw the key: they show what an unmarked model answers (about chance) "
        "and that two independent trainings of the same architecture agree with the key no more than "
        "chance. *pretrained* is the first clean model after a few more epochs with the triggers mixed "
        "in (the paper's PreTrained mode), so its training curve continues where *clean*'s ends.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "![training](training.png)",
        "",
        "Files: `models/*.pt` (checkpoints), `report.json` (every number above, with per-epoch "
        "histories). Secret material is kept out of this report: `key/` holds the marking key and its "
        "public verification key, and `secret/triggers.png` shows every trigger image with its label. "
        "(The demo key is derived from the seed, so it is reproducible and not really secret; a real "
        "key from `backmark keygen` is. Do not share `key/marking-key.bmk` or `secret/`.)",
        "",
    ]
    return "\n".join(lines)
