"""The weight-lineage test (issue 24) against every weight-based attack, the evasions aimed at it, and
innocent models: what each p-value was, and how the innocent p-values compare with uniform.

The setting is the other attack studies' (benchmarks/_study.py): a seeded subset of Fashion-MNIST split as
in the standard benchmark (the attacker holds a third); the owner marks the CNN on its two thirds with a
derived key of 100 abstract triggers, as ``backmark reproduce`` trains its FromScratch model (seed
``--seed`` + 1). Then:

- every weight-based attack of the suite at its strongest setting within the 5-point budget
  (docs/adaptive-search-full.md) and the suite's fixed settings that matter for lineage;
- the evasions aimed at lineage: the owner's units permuted, rescaled across their ReLUs, both and then
  fine-tuned, the first layers re-initialised and retrained, a wider and a narrower copy retrained;
- extraction and distillation (fresh weights: not seen, reported as such), and distillation into a
  student that starts from the owner's seed (the trap of a shared initialisation);
- innocent models: ``--innocents`` trained independently (the attacker's data and the owner's data,
  other seeds, the owner's recipe without triggers; some wider), each compared with the owner, and every
  pair of innocent models with each other.

    PYTHONPATH=src .venv/bin/python benchmarks/lineage.py --train 12000 --epochs 3 --threads 1
    PYTHONPATH=src .venv/bin/python benchmarks/lineage.py --train 3000 --test 500 --epochs 1 \
        --innocents 4 --only ft-large-lr,permuted --out /tmp/lineage.json
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _study import attack_row, evidence, marked_owner, run_record, study_data, study_options, study_sizes
from torch import nn

from backmark.attacks import Attack, AttackData, create_attack
from backmark.data import ImageDataset
from backmark.embed import TrainConfig, train_clean
from backmark.lineage import LineageResult, Plan, lineage_test, permute_units, rescale_units, trace_plan
from backmark.models import create_model
from backmark.training import accuracy
from backmark.verify import DEFAULT_ALPHA, verify

# (registry name, options): the suite's weight-based attacks at their strongest settings within budget
# (docs/adaptive-search-full.md, docs/results.md), and the fixed settings lineage should be shown against.
ATTACKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ft-large-lr", {"lr": 0.5, "epochs": 5}),
    ("ft-large-lr", {"lr": 0.3, "epochs": 5}),
    ("fine-prune", {"fraction": 0.95}),
    ("weight-shift", {"shift": 3.0}),
    ("regularize", {"decay": 0.2}),
    ("overwrite", {"kind": "abstract", "epochs": 5, "count": 1000, "lr": 0.1}),
    ("launder", {"lr": 0.1}),
    ("prune", {"sparsity": 0.5}),
    ("quantize", {"bits": 3}),
    ("rekey", {"triggers": 100, "epochs": 5, "lr": 0.01}),
    ("unlearn", {}),
    ("rtal", {"epochs": 20, "lr": 0.01}),
    ("ft-large-lr", {"lr": 0.1, "epochs": 5}),
    ("ft-large-lr", {"lr": 0.2, "epochs": 5}),
    ("weight-shift", {"shift": 2.0}),
    ("regularize", {"decay": 0.1}),
    ("launder", {"threshold": 2.0, "fraction": 0.3, "epochs": 3, "lr": 0.05}),
    ("transfer", {}),
    ("adv-train", {"eps": 0.07}),
    ("ftal", {"epochs": 40, "lr": 0.01}),
)
# Fresh weights: extraction and distillation train a new model; lineage is not expected to see them.
FRESH: tuple[tuple[str, dict[str, Any]], ...] = (
    ("extract", {"epochs": 10}),
    ("distill", {"epochs": 5}),
    ("distill", {"epochs": 2}),
)
RETRAIN = {"lr": 0.1, "epochs": 5}  # how an evasion retrains afterwards: ft-large-lr at lr 0.1


def lineage_record(owner: nn.Module, suspect: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    r: LineageResult = lineage_test(owner=owner, suspect=suspect, input_shape=shape)
    return {
        "p_value": r.p_value,
        "log10_p_value": round(r.log10_p_value, 3),
        "verified": r.verified,
        "exact_log10_p": round(r.exact_log10_p, 3),
        "robust_log10_p": round(r.robust_log10_p, 3),
        "layers": [
            {
                "name": x.name,
                "units": [x.owner_units, x.suspect_units],
                "hits": x.hits,
                "agreements": x.agreements,
                "cosine": round(x.cosine, 3),
                "exact_log10_p": round(x.exact_log10_p, 2),
                "robust_log10_p": round(x.robust_log10_p, 2),
            }
            for x in r.layers
        ],
    }


def short(rec: dict[str, Any]) -> str:
    layers = " ".join(f"{x['hits']}/{x['agreements']}" for x in rec["layers"])
    return (
        f"lineage p {rec['p_value']:.2g} (exact 1e{rec['exact_log10_p']:.1f}, robust "
        f"1e{rec['robust_log10_p']:.1f}; hits/agreements {layers})"
    )


def _index(t: torch.Tensor, axis: int, block: int, idx: torch.Tensor) -> torch.Tensor:
    if t.dim() == 2 and axis == 1 and block > 1:
        return t.reshape(t.shape[0], -1, block)[:, idx].reshape(t.shape[0], -1)
    return t.index_select(axis, idx)


def _axes(plan: Plan) -> dict[str, list[tuple[int, int, int]]]:
    """tensor name -> [(axis, group, block)] for every axis that indexes a group's units."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for g, group in enumerate(plan.groups):
        for p in group.producers:
            out.setdefault(f"{p.layer}.weight", []).append((0, g, 1))
        for name in group.unit_tensors:
            out.setdefault(name, []).append((0, g, 1))
        for c in group.consumers:
            out.setdefault(f"{c.layer}.weight", []).append((1, g, c.block))
    return out


def narrower(owner: nn.Module, plan: Plan, keep: float, make: Callable[[float], nn.Module]) -> nn.Module:
    """A copy with ``keep`` of each group's units (those of largest incoming weight norm), unretrained."""
    small = make(keep)
    state = owner.state_dict()
    chosen = []
    for group in plan.groups:
        w = state[f"{group.producers[0].layer}.weight"].flatten(1).norm(dim=1)
        chosen.append(torch.sort(torch.topk(w, round(group.size * keep)).indices).values)
    new = {}
    axes = _axes(plan)
    for name, t in state.items():
        for axis, g, block in axes.get(name, []):
            if t.dim() > axis:
                t = _index(t, axis, block, chosen[g])
        new[name] = t
    small.load_state_dict(new)
    return small


def wider(
    owner: nn.Module, plan: Plan, grow: float, make: Callable[[float], nn.Module], seed: int
) -> nn.Module:
    """A copy with ``grow`` times the units of each group: the owner's at random positions, fresh units
    elsewhere whose outgoing weights are zero, so it computes exactly what the owner's model does."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    big = make(grow)
    big_plan = trace_plan(big, input_shape=SHAPE)
    state, new = owner.state_dict(), big.state_dict()
    pos = [
        torch.randperm(bg.size, generator=gen)[: g.size]
        for g, bg in zip(plan.groups, big_plan.groups, strict=True)
    ]
    axes = _axes(plan)
    for name, t in state.items():
        target = new[name]
        if name not in axes or t.dim() == 0:
            continue
        spec = {axis: (g, block) for axis, g, block in axes[name]}
        if 1 in spec:  # zero what the fresh units send on
            g, block = spec[1]
            fresh = torch.ones(big_plan.groups[g].size, dtype=torch.bool)
            fresh[pos[g]] = False
            view = target.reshape(target.shape[0], -1, block) if target.dim() == 2 else target
            view[:, fresh] = 0
        rows = pos[spec[0][0]] if 0 in spec else torch.arange(t.shape[0])
        if t.dim() == 1:
            target[rows] = t
        elif 1 in spec:
            g, block = spec[1]
            if target.dim() == 2:
                tv, sv = target.reshape(target.shape[0], -1, block), t.reshape(t.shape[0], -1, block)
                tv[rows[:, None], pos[g][None, :]] = sv
            else:
                target[rows[:, None], pos[g][None, :]] = t
        else:
            target[rows] = t
    for name in ("fc.bias",):
        new[name] = state[name]
    big.load_state_dict(new)
    return big


SHAPE: tuple[int, ...] = (1, 28, 28)


def _p(log10: float) -> str:
    return "1" if log10 > -0.005 else (f"{10**log10:.2g}" if log10 > -300 else f"1e{log10:.0f}")


def _layers(rec: dict[str, Any]) -> str:
    return ", ".join(f"{x['hits']}/{x['agreements']}" for x in rec["layers"])


def _row(name: str, row: dict[str, Any]) -> str:
    lin = row["lineage"]
    drop = row.get("acc_drop_points")
    return (
        f"| {name} | {row['test_acc_after']:.2%} | {-drop:+.1f} | {row['owner']['matches']}/100 | "
        f"{_p(lin['exact_log10_p'])} | {_p(lin['robust_log10_p'])} | {_p(lin['log10_p_value'])} | "
        f"{'**yes**' if lin['verified'] else 'no'} | {_layers(lin)} | "
        + ", ".join(str(x["cosine"]) for x in lin["layers"])
        + " |"
    )


def render(result: dict[str, Any]) -> str:
    """Markdown tables of a result: attacks, evasions, fresh weights, innocents against uniform."""
    head = (
        "| suspect | test acc | change (points) | owner's triggers | exact p | robust p | decision p "
        "(either) | derived at 1e-6 | hits/agreements per layer | mean cosine per layer |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    out = ["### Attacks (weights)", "", head]
    out += [_row(r["attack"], r) for r in result["attacks"]]
    out += ["", "### Evasions aimed at lineage", "", head]
    out += [_row(f"{r['name']}: {r['what']}", r) for r in result["evasions"]]
    out += ["", "### Fresh weights (not seen by design) and the trap", "", head]
    out += [_row(r.get("attack") or r["name"], r) for r in result["fresh"]]
    if "same_seed" in result:
        out.append(_row(result["same_seed"]["name"], result["same_seed"]))
    inn = result["innocents"]
    if inn:
        out += ["", "### Innocent models against the owner", "", head]
        out += [_row(f"{r['name']} ({r['what']})", r) for r in inn]
        pairs = [r["lineage"] for r in inn] + result["innocent_pairs"]
        out += ["", f"### Innocent p-values against uniform ({len(pairs)} pairs: {len(inn)} with the owner, "
                f"{len(result['innocent_pairs'])} among the innocents)", "",
                "| quantile (uniform: the same) | exact p | robust p | decision p |",
                "|---|---|---|---|"]  # fmt: skip
        for q in (0.01, 0.05, 0.1, 0.25, 0.5, 0.75):
            cells = [float(np.quantile([10 ** r[k] for r in pairs], q)) for k in
                     ("exact_log10_p", "robust_log10_p", "log10_p_value")]  # fmt: skip
            out.append(f"| {q:g} | " + " | ".join(f"{c:.3g}" for c in cells) + " |")
        for k in ("exact_log10_p", "robust_log10_p", "log10_p_value"):
            vals = np.array([10 ** r[k] for r in pairs])
            out.append(f"\n{k}: min {vals.min():.3g}; share <= 0.05: {np.mean(vals <= 0.05):.3f}; "
                       f"<= 0.01: {np.mean(vals <= 0.01):.3f}")  # fmt: skip
        shares = [x["agreements"] / max(1, x["units"][0]) for r in inn for x in r["lineage"]["layers"]]
        out.append(f"\nlargest share of agreeing units, innocent vs owner: {max(shares):.3f}")
    return "\n".join(out)


def main() -> None:
    global SHAPE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_options(parser, epochs=3)
    parser.add_argument("--innocents", type=int, default=20, help="independently trained models")
    parser.add_argument("--only", default=None, help="comma-separated rows to run (attack or evasion names)")
    parser.add_argument("--out", type=Path, default=Path("docs/lineage.json"))
    parser.add_argument("--render", type=Path, help="print the markdown tables of a result file and stop")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data, split = study_data(args)
    SHAPE = data.input_shape
    attacker: AttackData = split.attacker_data
    owner = marked_owner(args, data, split, purpose="lineage")
    plan = trace_plan(owner.model, input_shape=SHAPE)
    chosen = None if args.only is None else {n.strip() for n in args.only.split(",")}
    result: dict[str, Any] = {
        "config": {**{k: v for k, v in vars(args).items() if k != "out"}, "attacks": ATTACKS, "fresh": FRESH,
                   "retrain": RETRAIN, "alpha": DEFAULT_ALPHA, "test": "either"},
        **study_sizes(data, split),
        "owner": owner.record(),
        "attacks": [], "evasions": [], "fresh": [], "innocents": [], "innocent_pairs": [],
    }  # fmt: skip

    def save() -> None:
        result["run"] = run_record("lineage.py", args, start)
        result["seconds"] = result["run"]["seconds"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    def run(section: str, attack: Attack) -> None:
        if chosen is not None and attack.name not in chosen:
            return
        row, attacked = attack_row(attack, owner, attacker, data)
        row["lineage"] = lineage_record(owner.model, attacked, SHAPE)
        result[section].append(row)
        print(f"{attack.describe()}: acc {row['test_acc_after']:.2%}, triggers {row['owner']['matches']}, "
              f"{short(row['lineage'])} ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
        save()

    def measure(name: str, model: nn.Module, seconds: float, what: str) -> dict[str, Any]:
        model.eval()
        acc = accuracy(model, data.test_x, data.test_y)
        row = {
            "name": name,
            "what": what,
            "test_acc_after": acc,
            "acc_drop_points": round(100 * (owner.test_acc - acc), 2),
            "owner": evidence(verify(model, owner.key, owner.vk, alpha=DEFAULT_ALPHA).evidence),
            "seconds": round(seconds, 1),
            "lineage": lineage_record(owner.model, model, SHAPE),
        }
        print(
            f"{name}: acc {acc:.2%}, triggers {row['owner']['matches']}, {short(row['lineage'])}", flush=True
        )
        return row

    def evasion(name: str, what: str, make: Callable[[], nn.Module], retrain: bool) -> None:
        if chosen is not None and name not in chosen:
            return
        t0 = time.perf_counter()
        model = make()
        if retrain:
            model = create_attack("ft-large-lr", **RETRAIN, seed=args.seed)(model, attacker)
        result["evasions"].append(measure(name, model, time.perf_counter() - t0, what))
        save()

    def cnn(scale: float) -> nn.Module:
        info_args = {k: v for k, v in owner_arch_args.items() if k not in ("width", "hidden")}
        return create_model("cnn", num_classes=data.num_classes, input_shape=SHAPE, **info_args,
                            width=round(32 * scale), hidden=round(128 * scale))  # fmt: skip

    owner_arch_args: dict[str, Any] = {"mean": list(owner.model.normalize.mean.flatten().tolist()),
                                       "std": list(owner.model.normalize.std.flatten().tolist())}  # fmt: skip

    def reinit(names: tuple[str, ...]) -> nn.Module:
        model = copy.deepcopy(owner.model)
        torch.manual_seed(args.seed + 77)
        for name, module in model.named_modules():
            if name in names and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return model

    # innocents: the owner's recipe without triggers, other seeds; the attacker's data, the owner's data
    innocents: list[nn.Module] = [owner.model]
    sources: list[tuple[str, ImageDataset, float]] = [
        ("attacker's data", split.attacker, 1.0),
        ("owner's data", split.owner, 1.0),
        ("attacker's data, 1.5x wider", split.attacker, 1.5),
    ]
    if chosen is None or "innocents" in chosen:
        for i in range(args.innocents):
            source, dataset, scale = sources[i % len(sources)]
            seed = 1000 + i
            t0 = time.perf_counter()
            arch_args = None if scale == 1.0 else {"width": 48, "hidden": 192}
            config = TrainConfig(epochs=args.epochs, lr=owner.config.lr, seed=seed)
            model = train_clean(
                dataset, config=config, arch_args=arch_args, progress=False, device="cpu"
            ).model
            row = measure(f"innocent seed {seed}", model, time.perf_counter() - t0, source)
            row["seed"] = seed
            result["innocents"].append(row)
            innocents.append(model.eval())
            save()
        # the trap: an innocent model on the attacker's data with the owner's seed
        t0 = time.perf_counter()
        config = TrainConfig(epochs=args.epochs, lr=owner.config.lr, seed=owner.config.seed)
        same = train_clean(split.attacker, config=config, progress=False, device="cpu").model
        result["same_seed"] = measure(
            "same seed as the owner, attacker's data", same, time.perf_counter() - t0, "trap"
        )
        save()
        for (i, a), (j, b) in itertools.combinations(enumerate(innocents), 2):
            if i == 0:
                continue  # owner pairs are above
            rec = lineage_record(a, b, SHAPE)
            keys = ("p_value", "log10_p_value", "exact_log10_p", "robust_log10_p")
            result["innocent_pairs"].append({"pair": [i, j], **{k: rec[k] for k in keys}})
        save()
        logs = np.array([r["lineage"]["log10_p_value"] for r in result["innocents"]]
                        + [r["log10_p_value"] for r in result["innocent_pairs"]])  # fmt: skip
        print(f"innocent pairs: {len(logs)}, smallest p 1e{logs.min():.2f}", flush=True)
    s = args.seed
    evasion(
        "permuted",
        "every hidden unit permuted (same function)",
        lambda: permute_units(owner.model, plan, seed=s),
        False,
    )
    evasion(
        "rescaled",
        "units rescaled across ReLUs by 1/4..4 (same function)",
        lambda: rescale_units(owner.model, plan, seed=s),
        False,
    )
    evasion(
        "permuted+rescaled+ft",
        "permuted, rescaled, then ft-large-lr lr 0.1",
        lambda: rescale_units(permute_units(owner.model, plan, seed=s), plan, seed=s + 1),
        True,
    )
    evasion(
        "permuted+ft-0.3",
        "permuted, then ft-large-lr lr 0.3",
        lambda: create_attack("ft-large-lr", lr=0.3, epochs=5, seed=s)(
            permute_units(owner.model, plan, seed=s), attacker
        ),
        False,
    )
    evasion(
        "reinit-conv1+ft",
        "first convolution (and its batch norm) re-initialised, then ft lr 0.1",
        lambda: reinit(("features.0", "features.1")),
        True,
    )
    evasion(
        "reinit-conv1-conv2+ft",
        "both convolutions re-initialised, then ft lr 0.1",
        lambda: reinit(("features.0", "features.1", "features.4", "features.5")),
        True,
    )
    evasion(
        "reinit-head+ft",
        "hidden linear layer and output layer re-initialised, then ft lr 0.1",
        lambda: reinit(("head.2", "fc")),
        True,
    )
    evasion(
        "wider+ft",
        "1.5x wider copy (owner's units at random positions, fresh units silent), ft lr 0.1",
        lambda: wider(owner.model, plan, 1.5, cnn, s),
        True,
    )
    evasion(
        "narrower+ft",
        "0.75x narrower copy (largest units kept), then ft lr 0.1",
        lambda: narrower(owner.model, plan, 0.75, cnn),
        True,
    )
    evasion(
        "permuted+wider+ft",
        "permuted, 1.5x wider, then ft lr 0.1",
        lambda: wider(permute_units(owner.model, plan, seed=s), plan, 1.5, cnn, s + 2),
        True,
    )
    for shift in (2.0, 3.0):  # weight shifting leaves the robust test little (see the attacks' rows)
        evasion(
            f"permuted+weight-shift-{shift:g}",
            f"permuted, then weight-shift {shift:g}",
            lambda shift=shift: create_attack("weight-shift", shift=shift, seed=s)(
                permute_units(owner.model, plan, seed=s), attacker
            ),
            False,
        )

    for name, options in ATTACKS[:-2]:
        run("attacks", create_attack(name, **options, seed=s))
    for name, options in FRESH:
        run("fresh", create_attack(name, **options, seed=s))
    if chosen is None or "distill-owner-seed" in chosen:  # the trap: the student starts from the owner's seed
        t0 = time.perf_counter()
        student = create_attack("distill", epochs=5, seed=owner.config.seed)(owner.model, attacker)
        row = measure("distill (student seeded as the owner)", student, time.perf_counter() - t0, "trap")
        result["fresh"].append(row)
        save()

    for name, options in ATTACKS[-2:]:  # the slowest last
        run("attacks", create_attack(name, **options, seed=s))
    save()
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
