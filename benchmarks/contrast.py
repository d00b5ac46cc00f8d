"""The sibling-contrast test measured (issue 24, part 2): innocents first, then attacks that erase the mark.

On Fashion-MNIST split as in the SoK threat model (the owner trains on two thirds, the attacker holds one
third): the owner marks k + 1 models of one recipe (only the seed differs) and deploys the one its salt
draws; innocent models (other seeds on the attacker's data, the owner's own data with other seeds, another
architecture) and stolen copies (extraction, distillation, the adaptive extractors of docs/response-mark.md
done in process, large-rate fine-tuning) are each probed with natural, CutMix and mixup probes.

Order matters for honesty: the margin delta is chosen from the siblings and the innocent models alone,
before any suspect's counts are computed, and the suspects are then decided at that delta.

    PYTHONPATH=src python benchmarks/contrast.py --out docs/contrast.json     # about an hour, 1 thread

Models are cached as checkpoints under --cache, so a second run only queries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks import AttackData, create_attack
from backmark.attacks._fit import fit
from backmark.attacks.base import reinitialised
from backmark.contrast import (
    PROBE_KINDS,
    SiblingPlan,
    answers,
    binomial_tail,
    draw_probes,
    plan_siblings,
    probe_test,
    rank_test,
    sibling_tests,
)
from backmark.data import load_dataset
from backmark.embed import TrainConfig, accuracy, embed_from_scratch, train_clean
from backmark.keys import generate_key
from backmark.models import ModelInfo, load_checkpoint, save_checkpoint
from backmark.models.normalization import channel_stats
from backmark.study.split import threat_model_split
from backmark.training import Batch

SEED = 0
SIBLINGS = 4  # k: the owner trains k + 1 models
EPOCHS = 3  # every model of the study: owner, siblings, innocents (about 90% on Fashion-MNIST)
INNOCENTS = 20  # independently trained models, at least
PROBES = 20000  # probes per kind and suspect
TARGET_P = 1e-6
SHIFT_VOTES = 5


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def benchmark_plan(siblings: int) -> SiblingPlan:
    """The benchmark's sibling plan (its seed and fixed salt): which of the k + 1 models is deployed."""
    return plan_siblings(siblings=siblings, seed=SEED, salt=hashlib.sha256(b"contrast-study/salt").digest())


def suspect_slug(name: str) -> str:
    """The cache name of the suspect ``name`` (a hash of its description)."""
    return "suspect-" + hashlib.sha256(name.encode()).hexdigest()[:10]


def cached_owners(cache: Path) -> list[Path]:
    """The cached owner family's checkpoints in training order; exits with a message if there are none."""
    owners = sorted(cache.glob("owner-*.pt"), key=lambda p: int(p.name.split("-")[1]))
    if not owners:
        sys.exit(f"no cached models in {cache}: run benchmarks/contrast.py first (it trains them)")
    return owners


def cached(
    cache: Path, name: str, make: Callable[[], tuple[nn.Module, ModelInfo]]
) -> tuple[nn.Module, ModelInfo, float]:
    """The model ``name`` from the cache, or made and saved; also the seconds making it took (0 if cached)."""
    path = cache / f"{name}.pt"
    if path.is_file():
        model, info = load_checkpoint(path)
        return model, info, float(info.meta.get("study_seconds", 0.0))
    start = time.perf_counter()
    model, info = make()
    seconds = time.perf_counter() - start
    info = ModelInfo(
        info.arch, info.arch_args, info.input_shape, info.num_classes, {**info.meta, "study_seconds": seconds}
    )
    save_checkpoint(path, model, info)
    log(f"trained {name} in {seconds:.0f} s")
    return model.eval(), info, seconds


# --- the adaptive extractors, in process (docs/response-mark.md ran them against a real server) ---------


def top1(oracle: nn.Module, data: AttackData) -> torch.Tensor:
    return answers(oracle, data.images, num_classes=None)


def shifted_votes(oracle: nn.Module, data: AttackData, votes: int, seed: int) -> torch.Tensor:
    """The majority answer over the image and ``votes - 1`` copies shifted by up to 2 pixels."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(len(data.images), data.num_classes, dtype=torch.int64)
    for v in range(votes):
        images = data.images
        if v:
            dy, dx = (int(t) for t in torch.randint(-2, 3, (2,), generator=gen))
            images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
        counts[
            torch.arange(len(images)), top1(oracle, AttackData(images, data.labels, data.num_classes))
        ] += 1
    return counts.argmax(1)


def smoothing_loss(eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=eps)

    return loss


def mixup(alpha: float, classes: int) -> Callable[[Batch], Batch]:
    """Each batch mixed with a shuffled copy of itself, weights from Beta(alpha, alpha); soft targets."""
    beta = torch.distributions.Beta(alpha, alpha)

    def transform(batch: Batch) -> Batch:
        lam = float(beta.sample())
        order = torch.randperm(len(batch.x))
        onehot = F.one_hot(batch.y, classes).float()
        return Batch(
            lam * batch.x + (1 - lam) * batch.x[order], lam * onehot + (1 - lam) * onehot[order], batch.total
        )

    return transform


def student_of(owner: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return reinitialised(owner).train()


def extract_with(
    owner: nn.Module, data: AttackData, labels: torch.Tensor, *, seed: int, epochs: int = 10, **options: Any
) -> nn.Module:
    student = student_of(owner, seed)
    torch.manual_seed(seed)
    fit(student, data, labels=labels, epochs=epochs, lr=0.05, schedule="onecycle", **options)
    return student.eval()


def agreement_filtered(owner: nn.Module, data: AttackData, hand: int, seed: int) -> nn.Module:
    """Hand-label ``hand`` images, train a helper on them, keep only the answers it agrees with."""
    labels = top1(owner, data)
    helper_data = AttackData(data.images[:hand], data.labels[:hand], data.num_classes)
    helper = extract_with(owner, helper_data, helper_data.labels, seed=seed + 1, epochs=20)
    keep = answers(helper, data.images, num_classes=None) == labels
    kept = AttackData(data.images[keep], labels[keep], data.num_classes)
    return extract_with(owner, kept, kept.labels, seed=seed)


def extract_then_finetune(owner: nn.Module, data: AttackData, hand: int, seed: int) -> nn.Module:
    student = extract_with(owner, data, top1(owner, data), seed=seed)
    hand_data = AttackData(data.images[:hand], data.labels[:hand], data.num_classes)
    torch.manual_seed(seed)
    fit(student.train(), hand_data, epochs=5, lr=0.01)
    return student.eval()


# --- the study --------------------------------------------------------------------------------------------


def probes_needed(rate: float, decided_share: float, delta: float, probes: int) -> int | None:
    """Probes for p <= TARGET_P if the suspect keeps its measured rate: None if the rate is within delta."""
    if rate <= 0.5 + delta or decided_share <= 0:
        return None
    n = 8
    while n < 10**8:
        if binomial_tail(math.ceil(rate * n), n, 0.5 + delta) <= TARGET_P:
            return math.ceil(n / decided_share)
        n = math.ceil(n * 1.1)
    return None


def render(result: dict[str, Any]) -> str:
    """The markdown tables of docs/contrast.md from a result file."""
    lines = []
    accs = result["suspect_test_acc"]
    owner = result["owner"]["test_acc"]
    for kind, k in result["kinds"].items():
        lines += [
            f"### {kind} probes ({result['config']['probes']:,}; delta {k['delta']:.2f}, from innocent rates "
            f"up to {k['innocent_max_rate']:.3f})",
            "",
            "| suspect | test acc (change) | disagreements | sides with deployed / siblings | rate | z "
            "| p-value | rank | probes for p < 1e-6 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, c in k["suspects"].items():
            need = "never" if c["probes_for_p_1e-6"] is None else f"{c['probes_for_p_1e-6']:,}"
            lines.append(
                f"| {name} | {accs[name]:.2%} ({100 * (accs[name] - owner):+.1f}) | {c['disagreements']} "
                f"| {c['sides_deployed']} / {c['sides_siblings']} | {c['rate']:.3f} | {c['z']:.1f} "
                f"| {c['p_value']:.2g} | {c['rank']}/{c['models']} | {need} |"
            )
        lines += [
            "",
            "| innocent | disagreements | sides with deployed / siblings | rate | z | p-value |",
            "|---|---|---|---|---|---|",
        ]
        for name, c in k["innocents"].items():
            lines.append(
                f"| {name} | {c['disagreements']} | {c['sides_deployed']} / {c['sides_siblings']} "
                f"| {c['rate']:.3f} | {c['z']:.1f} | {c['p_value']:.2g} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--siblings", type=int, default=SIBLINGS)
    parser.add_argument("--innocents", type=int, default=INNOCENTS)
    parser.add_argument("--probes", type=int, default=PROBES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--subset", type=int, metavar="N", help="smoke runs: N training and N/5 test images")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/backmark-contrast-cache"))
    parser.add_argument("--out", type=Path, default=Path("docs/contrast.json"))
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the markdown tables of a result")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.time()

    data = load_dataset(args.data)
    if args.subset:
        data = data.subset(train=args.subset, test=args.subset // 5, seed=SEED)
    split = threat_model_split(data, seed=SEED)
    owner_data, attacker = split.owner, split.attacker_data
    key = generate_key(
        num_classes=data.num_classes,
        input_shape=data.input_shape,
        seed=hashlib.sha256(b"contrast-study").digest(),
    )
    plan = benchmark_plan(args.siblings)

    def config_for(seed: int) -> TrainConfig:
        return TrainConfig(epochs=args.epochs, seed=seed)

    # the owner's k + 1 models: one recipe, only the seed differs
    family = []
    for i, seed in enumerate(plan.seeds):
        model, info, seconds = cached(
            args.cache,
            f"owner-{i}-s{seed}",
            lambda seed=seed: (lambda t: (t.model, t.info))(
                embed_from_scratch(owner_data, key, config=config_for(seed), progress=False)
            ),
        )
        family.append((model, info, seconds))
    deployed = family[plan.deployed][0]
    siblings = [m for i, (m, _, _) in enumerate(family) if i != plan.deployed]
    test_x, test_y = data.test_x, data.test_y
    owner_acc = accuracy(deployed, test_x, test_y)
    log(f"deployed model {plan.deployed} of {len(family)}: test accuracy {owner_acc:.2%}")

    # innocents: never derived from the deployed model
    innocent_makers: dict[str, Callable[[], tuple[nn.Module, ModelInfo]]] = {}
    half = args.innocents // 2
    attacker_ds = split.attacker
    for j in range(args.innocents):
        seed = 1000 + j
        if j < half:  # the attacker's own data, its own seed
            innocent_makers[f"innocent-attacker-s{seed}"] = lambda seed=seed: (lambda t: (t.model, t.info))(
                train_clean(attacker_ds, config=config_for(seed), progress=False)
            )
        elif j < args.innocents - 2:  # the owner's own data with another seed, no key
            innocent_makers[f"innocent-ownerdata-s{seed}"] = lambda seed=seed: (lambda t: (t.model, t.info))(
                train_clean(owner_data, config=config_for(seed), progress=False)
            )
        else:  # another architecture on the attacker's data
            innocent_makers[f"innocent-resnet8-s{seed}"] = lambda seed=seed: (lambda t: (t.model, t.info))(
                train_clean(
                    attacker_ds,
                    arch="preact-resnet18",
                    arch_args={"width": 8},
                    config=config_for(seed),
                    progress=False,
                )
            )
    innocents = {name: cached(args.cache, name, make) for name, make in innocent_makers.items()}

    # the suspects: copies that the trigger mark does not survive
    small = AttackData(attacker.images[:5000], attacker.labels[:5000], attacker.num_classes)
    hand = 1000

    def attack(name: str, **options: Any) -> Callable[[], nn.Module]:
        return lambda: create_attack(name, **options)(deployed, attacker)

    suspect_makers: dict[str, Callable[[], nn.Module]] = {
        "extract 20k (same arch)": attack("extract"),
        "extract 5k (same arch)": lambda: create_attack("extract")(deployed, small),
        "extract 20k (preact-resnet18 w8)": attack("extract", arch="preact-resnet18", width=8),
        "distill T=4": attack("distill"),
        "extract, label smoothing 0.2, 2 epochs": lambda: extract_with(
            deployed, attacker, top1(deployed, attacker), seed=1, epochs=2, loss=smoothing_loss(0.2)
        ),
        "extract, labels voted over 5 shifts": lambda: extract_with(
            deployed, attacker, shifted_votes(deployed, attacker, SHIFT_VOTES, 2), seed=2
        ),
        "extract with mixup 0.2": lambda: extract_with(
            deployed, attacker, top1(deployed, attacker), seed=3, transform=mixup(0.2, attacker.num_classes)
        ),
        "extract, agreement-filtered (1,000 hand labels)": lambda: agreement_filtered(
            deployed, attacker, hand, 4
        ),
        "extract, then fine-tuned on 1,000 hand labels": lambda: extract_then_finetune(
            deployed, attacker, hand, 5
        ),
        "ft-large-lr lr 0.1": attack("ft-large-lr", lr=0.1),
        "ft-large-lr lr 0.3": attack("ft-large-lr", lr=0.3),
    }
    owner_info = family[plan.deployed][1]
    mean, std = channel_stats(attacker.images)
    resnet_info = ModelInfo(
        "preact-resnet18",
        {"width": 8, "mean": list(mean), "std": list(std)},
        owner_info.input_shape,
        owner_info.num_classes,
    )

    def with_info(model: nn.Module) -> tuple[nn.Module, ModelInfo]:
        same = type(model) is type(deployed)
        return model, (owner_info if same else resnet_info)

    suspects = {}
    for name, make in suspect_makers.items():
        suspects[name] = cached(args.cache, suspect_slug(name), lambda make=make: with_info(make()))

    # answers on each probe kind, from a fixed study nonce (a verifier's challenge in real use)
    kinds: dict[str, Any] = {}
    for kind in PROBE_KINDS:
        nonce = hashlib.sha256(b"contrast-study/probes/" + kind.encode()).digest()
        images = draw_probes(test_x, kind=kind, count=args.probes, nonce=nonce)
        a = answers(deployed, images, num_classes=None)
        others = torch.stack([answers(m, images, num_classes=None) for m in siblings])

        def counts(
            model: nn.Module,
            a: torch.Tensor = a,
            others: torch.Tensor = others,
            images: torch.Tensor = images,
        ) -> dict[str, Any]:
            s = answers(model, images, num_classes=None)
            e = probe_test(a, others, s, delta=0.0)
            r = rank_test(a, others, s)
            return {
                "disagreements": e.disagreements,
                "sides_deployed": e.sides_deployed,
                "sides_siblings": e.sides_siblings,
                "rate": e.rate,
                "z": e.z,
                "rank": r.rank,
                "models": r.models,
                "rank_p_value": r.p_value,
            }

        calibration = {name: counts(m) for name, (m, _, _) in innocents.items()}
        # each sibling as an innocent suspect: the deployed model against the other siblings
        for i, e in enumerate(sibling_tests(a, others)):
            calibration[f"sibling {i}"] = {
                "disagreements": e.disagreements,
                "sides_deployed": e.sides_deployed,
                "sides_siblings": e.sides_siblings,
                "rate": e.rate,
                "z": e.z,
            }
        worst = max(c["rate"] for c in calibration.values())
        delta = min(0.49, max(0.0, math.ceil((worst - 0.5 + 0.02) * 100) / 100))  # before any suspect
        log(f"{kind}: innocent rates up to {worst:.3f}; delta {delta:.2f}")
        rows = {}
        for name, (m, _, _) in suspects.items():
            c = counts(m)
            decided = c["sides_deployed"] + c["sides_siblings"]
            c["p_value"] = binomial_tail(c["sides_deployed"], decided, 0.5 + delta) if decided else 1.0
            c["probes_for_p_1e-6"] = probes_needed(c["rate"], decided / args.probes, delta, args.probes)
            rows[name] = c
        for c in calibration.values():
            decided = c["sides_deployed"] + c["sides_siblings"]
            c["p_value"] = binomial_tail(c["sides_deployed"], decided, 0.5 + delta) if decided else 1.0
        kinds[kind] = {
            "delta": delta,
            "innocent_max_rate": worst,
            "innocents": calibration,
            "suspects": rows,
            "owner_sibling_disagreement": float((a != others[0]).float().mean()),
        }

    result = {
        "command": "PYTHONPATH=src python benchmarks/contrast.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out",)),
        "config": {
            "seed": SEED,
            "siblings": args.siblings,
            "epochs": args.epochs,
            "innocents": args.innocents,
            "probes": args.probes,
            "threads": args.threads,
            "split": "SoK: owner 2/3, attacker 1/3",
            "owner_train": len(owner_data.train_x),
            "attacker_train": len(attacker.images),
            "test": len(test_x),
            "deployed": plan.deployed,
            "seeds": list(plan.seeds),
        },
        "owner": {
            "test_acc": owner_acc,
            "family_test_acc": [accuracy(m, test_x, test_y) for m, _, _ in family],
            "seconds_per_model": [s for _, _, s in family],
        },
        "suspect_test_acc": {name: accuracy(m, test_x, test_y) for name, (m, _, _) in suspects.items()},
        "innocent_test_acc": {name: accuracy(m, test_x, test_y) for name, (m, _, _) in innocents.items()},
        "kinds": kinds,
        "wall_seconds": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.out} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
