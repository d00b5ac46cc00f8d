"""Heldout triggers against abstract ones: accuracy cost, survival under the attack suite, detectability.

Issue 12's second part. A seeded subset of Fashion-MNIST is split as in the standard benchmark (the
attacker holds a third). The owner trains three CNNs exactly as ``backmark reproduce`` trains its
FromScratch model (one-cycle lr 0.05, 2 triggers per batch of 100, then the trigger phase): a clean one,
one marked with 100 abstract triggers, and one marked with 100 ``heldout`` triggers (real images drawn
from the owner's two thirds, left out of its training, each labelled with a class other than its own;
the decision's null is 1/(C-1)). For each marked model: test accuracy against the clean one, trigger
accuracy, and the outcome of every attack of a suite that takes each family of ``reproduce`` once at its
strongest setting there (plus the scheme-aware ones). For each trigger kind, two detectors the attacker
could put in front of the model, fitted on the attacker's images: the registry's PCA reconstruction
error (the ``ood-detector`` attack) and the model's own maximum softmax probability (Hendrycks and
Gimpel, ICLR 2017); their detection rate on the triggers against their false-refusal rate on the test
images, at several thresholds (quantiles of the attacker's held-out images) and as a whole ROC curve.
Clean models of several seeds are measured against both keys (they must never be verified).

    PYTHONPATH=src .venv/bin/python benchmarks/heldout_triggers.py     # docs/heldout-triggers.json, .png
    PYTHONPATH=src .venv/bin/python benchmarks/heldout_triggers.py --train 3000 --epochs 1 --suite smoke \\
        --out /tmp/h.json --figure /tmp/h.png
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _study import owner_config, run_record, study_data, study_options, study_sizes, write_result
from torch import nn

from backmark.attacks import (
    FTAL,
    RTAL,
    Attack,
    AttackData,
    EnsembleAttack,
    Extraction,
    FinePruning,
    Jpeg,
    MagnitudePruning,
    Noise,
    OODDetector,
    Overwrite,
    Rekey,
    Smooth,
    Transfer,
    Unlearn,
    WeightQuantization,
)
from backmark.attacks.evasion import DetectorGuard
from backmark.attacks.large_lr import lr_sweep
from backmark.embed import TrainConfig, embed_from_scratch, train_clean
from backmark.infra.seeds import key_seed
from backmark.keys import MarkingKey, generate_key
from backmark.study import Trial, run_attacks
from backmark.study.owner import derived_key
from backmark.training import accuracy
from backmark.verify import DEFAULT_ALPHA, Evidence
from backmark.verify.labelfree import verify_tests

KEY_SIZE = 100
QUANTILES = (0.9, 0.95, 0.99, 0.995)


def suite(kind: str, seed: int) -> list[Attack]:
    """Each attack family of ``reproduce`` once at its strongest setting there, and the scheme-aware ones."""
    if kind == "smoke":
        return [FTAL(epochs=1, lr=0.01), MagnitudePruning(sparsity=0.5), OODDetector(quantile=0.95)]
    return [
        FTAL(epochs=20, lr=0.01),
        RTAL(epochs=20, lr=0.01),
        *lr_sweep((0.1,), epochs=5),
        Transfer(classes="5-9", epochs=10),
        MagnitudePruning(sparsity=0.9),
        FinePruning(epochs=5),
        WeightQuantization(bits=4),
        Extraction(epochs=10),
        Jpeg(quality=50),
        Noise(sigma=0.1),
        Smooth(sigma=1.0),
        OODDetector(quantile=0.99),
        OODDetector(quantile=0.95),
        EnsembleAttack(epochs=5),
        Overwrite(kind="abstract", epochs=5, lr=0.05, count=1000, seed=seed),
        Overwrite(kind="noise", epochs=5, lr=0.05, count=1000, seed=seed),
        Rekey(triggers=100, epochs=5, seed=seed),
        Unlearn(steps=60, epochs=3, seed=seed),
    ]


def evidence(e: Evidence) -> dict[str, Any]:
    return {
        "matches": e.matches,
        "n": e.n,
        "null": f"1/{e.null_classes}",
        "p_value": e.p_value,
        "verified": e.verified,
    }


def real_key(kind: str, owner_x: torch.Tensor, owner_y: torch.Tensor, seed: int) -> MarkingKey:
    """A ``heldout`` or ``blend`` key made from the owner's training images."""
    master = key_seed(f"backmark/{kind}-benchmark-key/", seed)
    return generate_key(
        num_classes=10,
        input_shape=tuple(owner_x.shape[1:]),  # type: ignore[arg-type]
        size=KEY_SIZE,
        kind=kind,
        seed=master,
        pool=(owner_x.numpy(), owner_y.numpy()),
        pool_name="fashion-mnist owner's training images",
    )


def max_softmax_score(model: nn.Module, x_uint8: torch.Tensor) -> torch.Tensor:
    """1 - the model's largest softmax probability: high for inputs it is unsure of."""
    model.eval()
    with torch.no_grad():
        out = [
            model(x_uint8[i : i + 1000].float().div(255.0)).softmax(1).amax(1)
            for i in range(0, len(x_uint8), 1000)
        ]
    return 1.0 - torch.cat(out)


def pca_detector(model: nn.Module, attacker: AttackData) -> tuple[DetectorGuard, torch.Tensor]:
    """The ood-detector attack's PCA (fitted as it fits it) and the scores of the attacker's held-out
    images."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        order = torch.randperm(len(attacker.images))
    guard = OODDetector(quantile=0.99).run(model, attacker, None)
    assert isinstance(guard, DetectorGuard)
    n_fit = min(5000, max(1, len(order) // 2))
    held = attacker.images[order[n_fit:]].float().div(255.0)
    with torch.no_grad():
        return guard, guard.score(held)


def rates(triggers: torch.Tensor, test: torch.Tensor, held: torch.Tensor) -> dict[str, Any]:
    """Detection and false-refusal rates at the quantiles of ``held``, and the ROC curve (thresholds at every
    score) with its area."""
    at = []
    for q in QUANTILES:
        t = float(torch.quantile(held, q))
        at.append(
            {
                "quantile": q,
                "threshold": t,
                "triggers_flagged": float((triggers > t).float().mean()),
                "test_refused": float((test > t).float().mean()),
            }
        )
    cuts = torch.cat([triggers, test]).unique().flip(0)
    tpr = [(triggers >= c).float().mean().item() for c in cuts]
    fpr = [(test >= c).float().mean().item() for c in cuts]
    auc = float(np.trapezoid([0.0, *tpr], [0.0, *fpr]))
    step = max(1, len(cuts) // 400)
    return {"at_quantiles": at, "auc": auc, "roc": {"fpr": [*fpr[::step], 1.0], "tpr": [*tpr[::step], 1.0]}}


def detection(
    model: nn.Module, key: MarkingKey, attacker: AttackData, test_x: torch.Tensor
) -> dict[str, Any]:
    trig = torch.from_numpy(key.images)
    guard, held_pca = pca_detector(model, attacker)
    with torch.no_grad():
        pca = rates(guard.score(trig.float().div(255.0)), guard.score(test_x.float().div(255.0)), held_pca)
    msp = rates(
        max_softmax_score(model, trig),
        max_softmax_score(model, test_x),
        max_softmax_score(model, attacker.images),
    )
    return {"pca": pca, "max_softmax": msp}


def figure(path: Path, detections: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    titles = {"pca": "PCA reconstruction error (ood-detector)", "max_softmax": "1 - max softmax of the model"}
    for ax, det in zip(axes, ("pca", "max_softmax"), strict=True):
        for kind, style in zip(detections, ("-", "--", "-.", ":"), strict=False):
            r = detections[kind][det]
            ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], style, label=f"{kind} triggers (AUC {r['auc']:.2f})")
            for p in r["at_quantiles"]:
                ax.plot(p["test_refused"], p["triggers_flagged"], "o", color="black", ms=3)
        ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
        ax.set(
            title=titles[det],
            xlabel="test images refused",
            ylabel="triggers flagged",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Can a query filter single out the triggers? (dots: thresholds at quantiles 0.9-0.995)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_options(parser, threads=2)
    parser.add_argument(
        "--kinds", default="abstract,heldout", help="trigger kinds compared (abstract,heldout,blend)"
    )
    parser.add_argument("--attack-kinds", help="the kinds whose models meet the attack suite (default: all)")
    parser.add_argument("--triggers-per-batch", type=int, default=2, help="real-image models' (abstract: 2)")
    parser.add_argument("--clean-seeds", type=int, default=3, help="clean models measured against both keys")
    parser.add_argument("--suite", choices=("full", "smoke"), default="full")
    parser.add_argument("--out", type=Path, default=Path("docs/heldout-triggers.json"))
    parser.add_argument("--figure", type=Path, default=Path("docs/heldout-roc.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data, split = study_data(args)
    attacker = split.attacker_data
    test = (data.test_x, data.test_y)
    keys = {
        kind: derived_key(split.owner, size=KEY_SIZE, seed=args.seed, purpose="heldout-benchmark")
        if kind == "abstract"
        else real_key(kind, split.owner.train_x, split.owner.train_y, args.seed)
        for kind in args.kinds.split(",")
    }
    base = owner_config(args)
    configs = {
        kind: base if kind == "abstract" else replace(base, triggers_per_batch=args.triggers_per_batch)
        for kind in keys
    }
    attacked = args.attack_kinds.split(",") if args.attack_kinds else list(keys)

    cleans = []
    for s in range(args.clean_seeds):
        t0 = time.perf_counter()
        clean = train_clean(
            split.owner, config=TrainConfig(**{**asdict(base), "seed": 100 + s}), progress=False, device="cpu"
        ).model
        row: dict[str, Any] = {
            "seed": 100 + s,
            "test_acc": accuracy(clean, *test),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        for kind, key in keys.items():
            tested = verify_tests(clean, key, key.verification_key(), test="labels", alpha=DEFAULT_ALPHA)
            row[kind] = {
                "labels": evidence(tested.labels.evidence),
                "label_free": evidence(tested.label_free),
            }
        cleans.append(row)
        print(
            f"clean seed {100 + s}: {row['test_acc']:.2%}, "
            + ", ".join(f"{kind} {row[kind]['labels']['matches']}" for kind in keys)
            + f" ({row['seconds']:.0f} s)",
            flush=True,
        )
    clean_acc = cleans[0]["test_acc"] if cleans else None

    models: dict[str, Any] = {}
    detections: dict[str, Any] = {}
    for kind, key in keys.items():
        t0 = time.perf_counter()
        trained = embed_from_scratch(split.owner, key, config=configs[kind], progress=False, device="cpu")
        seconds = time.perf_counter() - t0
        marked = trained.model
        vk = key.verification_key()
        print(
            f"{kind}: test acc {accuracy(marked, *test):.2%}, trigger acc "
            f"{trained.result.history[-1].trigger_acc:.2%} ({seconds:.0f} s)",
            flush=True,
        )
        detections[kind] = detection(marked, key, attacker, data.test_x)
        for det in ("pca", "max_softmax"):
            d = detections[kind][det]
            print(
                f"  {det}: AUC {d['auc']:.3f}; "
                + ", ".join(
                    f"q{p['quantile']}: flags {p['triggers_flagged']:.0%} of triggers, "
                    f"{p['test_refused']:.1%} of test"
                    for p in d["at_quantiles"]
                ),
                flush=True,
            )
        attacks = suite(args.suite, args.seed) if kind in attacked else []
        baseline, outcomes = run_attacks(Trial(marked, key, vk, attacker, test), attacks, log=print)
        models[kind] = {
            "triggers_per_batch": configs[kind].triggers_per_batch,
            "train_seconds": round(seconds, 1),
            "trigger_rounds_run": trained.result.finish_rounds_run,
            "test_acc": baseline.test_acc,
            "acc_cost_points": None if clean_acc is None else round(100 * (clean_acc - baseline.test_acc), 2),
            "baseline": evidence(baseline.evidence),
            "baseline_label_free": None if baseline.label_free is None else evidence(baseline.label_free),
            "attacks": [
                {
                    "attack": o.label,
                    "test_acc_after": o.test_acc_after,
                    "acc_drop_points": round(100 * o.acc_drop, 2),
                    "owner": evidence(o.evidence),
                    "label_free": None if o.label_free is None else evidence(o.label_free),
                    "removed": o.removed,
                    "seconds": round(o.seconds, 1),
                }
                for o in outcomes
            ],
        }
    figure(args.figure, detections)
    result = {
        **study_sizes(data, split),
        "key_size": KEY_SIZE,
        "alpha": DEFAULT_ALPHA,
        "clean": cleans,
        "models": models,
        "detection": detections,
        **run_record("heldout_triggers.py", args, start, files=("out", "figure")),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()


def render(result: dict[str, Any]) -> str:
    """Markdown tables of a run: the models, the detectors at each quantile, every attack per kind."""
    models, det = result["models"], result["detection"]
    lines = [
        "| trigger kind | null | test accuracy | cost (clean minus marked, points) | triggers | p-value "
        "| trigger rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, m in models.items():
        b = m["baseline"]
        lines.append(
            f"| {kind} | {b['null']} | {m['test_acc']:.2%} | {m['acc_cost_points']:+.2f} | "
            f"{b['matches']}/{b['n']} | {b['p_value']:.2g} | {m['trigger_rounds_run']} |"
        )
    lines += ["", "| detector | trigger kind | AUC | " + " | ".join(f"q {q}" for q in QUANTILES) + " |"]
    lines.append("|---|---|---|" + "---|" * len(QUANTILES))
    for name in ("pca", "max_softmax"):
        for kind in det:
            r = det[kind][name]
            cells = " | ".join(
                f"{p['triggers_flagged']:.0%} / {p['test_refused']:.1%}" for p in r["at_quantiles"]
            )
            lines.append(f"| {name} | {kind} | {r['auc']:.2f} | {cells} |")
    attacked = [k for k, m in models.items() if m["attacks"]]
    if attacked:
        lines += ["", "| attack | " + " | ".join(attacked) + " |", "|---|" + "---|" * len(attacked)]
        for i, row in enumerate(models[attacked[0]]["attacks"]):
            cells = []
            for kind in attacked:
                a = models[kind]["attacks"][i]
                verdict = (
                    "**removed**"
                    if a["removed"]
                    else "verified"
                    if a["owner"]["verified"]
                    else "not verified"
                )
                cells.append(f"{a['owner']['matches']}/100, {-a['acc_drop_points']:+.1f} pt, {verdict}")
            lines.append(f"| {row['attack']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
