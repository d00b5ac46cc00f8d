"""Inputs near the boundary, and other statistics, for the contrast test: do they separate copies better?

The probe test separates a copy from innocent models only as far as the copy's rate stands above the
innocents' spread (docs/contrast.md: innocents at 0.50 +- 0.03 against every choice of the deployed model,
the study's extractions at 0.55-0.58). This benchmark measures whether another probe or another count
stands further out, in units of the innocents' own spread (the quantity no number of draws improves):

- natural probes, three counts over the whole test pool, each against the deployed model's k siblings:
  `pairwise` (today's test: where the deployed model and a sibling differ, how often the suspect answers
  as the deployed model), `odd one out` (where the deployed model differs from its siblings' plurality
  answer, how often the suspect answers as the deployed model rather than as that plurality), and
  `mirror` (the odd-one-out rate for the deployed model minus its mean for each sibling taken in its
  place: the same count for every model the owner could have deployed, so the suspect's own lean cancels);
- boundary probes (the issue's "inputs near the deployed model's boundary"): from natural test images,
  a projected sign-gradient walk (L-infinity radius `eps`, `--steps` steps, rounded to 8-bit pixels) that
  changes one model's answer while the other k models keep theirs; kept only where it did. Such a probe
  is specific to the model it was made from, so the count is mirrored: for each of the k + 1 models, the
  share of its probes on which the suspect gives that model's new answer rather than the old one; the
  statistic is the deployed model's share minus the mean of its siblings' (made the same way, so the
  construction is symmetric under the random choice of the deployed model).

Suspects: benchmarks/contrast.py's 11 copies against its deployed model, and the study's copies
(extraction into the same architecture and into a preact-ResNet-18, distillation: `backmark reproduce`'s
attacks and seeds) of the FromScratch model of `--families` (default 0, 7, 13; cached beside the others).
Innocents: every innocent benchmarks/contrast_strong.py measures (each family's own, the better models, and
every model of the other families), against every choice of the deployed model.

    PYTHONPATH=src python benchmarks/contrast.py --out docs/contrast.json      # trains its cache first
    PYTHONPATH=src python benchmarks/contrast_strong.py --out docs/contrast-strong.json  # the study's
    PYTHONPATH=src python benchmarks/contrast_boundary.py --out docs/contrast-boundary.json
    PYTHONPATH=src python benchmarks/contrast_boundary.py --render docs/contrast-boundary.json
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from contrast import benchmark_plan, cached, cached_owners, suspect_slug
from contrast_pool import SUSPECTS
from contrast_strong import STRONG, begin, family_parser, finish, from_other_families, log, study_family
from contrast_study_kinds import over_pool
from torch import nn

from backmark.contrast import answers
from backmark.models import ModelInfo, load_checkpoint
from backmark.models.normalization import channel_stats
from backmark.study.reproduce import Settings, attack_suite
from backmark.study.split import threat_model_split

EPS = (0.05, 0.1)  # L-infinity radii of the boundary walk, on pixels in [0, 1]
PER_MODEL = 600  # natural test images each model's boundary probes start from
PROBE_SEED = 123  # which test images (a verifier's challenge in real use)
TOP = 5  # the largest innocents kept, by name, for each count


def study_copies(cache: Path, data: Any, base: int) -> dict[str, nn.Module]:
    """The study's extractions and distillation of family ``base``'s FromScratch model (its attacks and
    seeds, on its attacker's data), cached."""
    s = Settings()
    split = threat_model_split(data, attacker_fraction=s.attacker_fraction, seed=base)
    owner, info = load_checkpoint(cache / f"study{base}-from-scratch.pt")
    mean, std = channel_stats(split.attacker_data.images)
    copies = {}
    for attack in attack_suite(s, data.num_classes):
        if attack.name not in ("extract", "distill"):
            continue
        attack = replace(attack, seed=base)

        def make(attack: Any = attack) -> tuple[nn.Module, ModelInfo]:
            copy = attack(owner.eval(), split.attacker_data, monitor=None)
            if type(copy) is type(owner):
                return copy, info
            arch_args = {"width": attack.width, "mean": list(mean), "std": list(std)}
            return copy, ModelInfo(attack.arch, arch_args, info.input_shape, info.num_classes)

        slug = "".join(c if c.isalnum() else "-" for c in attack.describe()).strip("-")
        model, _, _ = cached(cache, f"study{base}-copy-{slug}", make)
        copies[attack.describe()] = model.eval()
    return copies


def plurality(others: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per probe, the answer most of ``others`` (k, N) give, or -1 where two answers tie for most."""
    counts = torch.zeros(num_classes, others.shape[1], dtype=torch.int64)
    counts.scatter_add_(0, others, torch.ones_like(others))
    top, answer = counts.max(dim=0)
    counts[answer, torch.arange(others.shape[1])] = -1
    return torch.where(counts.max(dim=0).values == top, -1, answer)


def odd_rate(deployed: torch.Tensor, others: torch.Tensor, suspect: torch.Tensor, num_classes: int) -> float:
    """Where ``deployed`` differs from the plurality of ``others``: the share of the suspect's answers that
    are the deployed model's, among those that are either (0.5 if none)."""
    p = plurality(others, num_classes)
    where = (p >= 0) & (deployed != p)
    a = int((suspect[where] == deployed[where]).sum())
    b = int((suspect[where] == p[where]).sum())
    return a / (a + b) if a + b else 0.5


def natural_counts(
    family: list[torch.Tensor], suspect: torch.Tensor, num_classes: int
) -> list[dict[str, float]]:
    """For each choice d of the deployed model: the pairwise rate, the odd-one-out rate and the mirror
    difference of the suspect's answers ``suspect`` (N,) against the family's answers."""
    odd = []
    for i, a in enumerate(family):
        others = torch.stack([b for j, b in enumerate(family) if j != i])
        odd.append(odd_rate(a, others, suspect, num_classes))
    rows = []
    for d, a in enumerate(family):
        pairwise, _ = over_pool(a, [b for j, b in enumerate(family) if j != d], suspect)
        rest = [r for j, r in enumerate(odd) if j != d]
        rows.append({"pairwise": pairwise, "odd one out": odd[d], "mirror": odd[d] - statistics.fmean(rest)})
    return rows


def boundary_probes(
    model: nn.Module, refs: list[nn.Module], images: torch.Tensor, *, eps: float, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probes near ``model``'s boundary from uint8 ``images``: a projected sign-gradient walk of radius
    ``eps`` raising ``model``'s loss at its own answer and lowering ``refs``' loss at that answer, rounded
    to uint8; kept where ``model``'s answer changed and every ref kept it. Returns the probes (uint8), the
    model's new answers and the old ones."""
    x = images.float() / 255
    with torch.no_grad():
        old = model(x).argmax(1)
    step = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        moved = (x + step).clamp(0, 1)
        loss = -F.cross_entropy(model(moved), old) + sum(F.cross_entropy(r(moved), old) for r in refs) / len(
            refs
        )
        (grad,) = torch.autograd.grad(loss, step)
        with torch.no_grad():
            step -= eps / 8 * grad.sign()
            step.clamp_(-eps, eps)
    probes = ((x + step.detach()).clamp(0, 1) * 255).round().to(torch.uint8)
    with torch.no_grad():
        new = model(probes.float() / 255).argmax(1)
        keep = new != old
        for r in refs:
            keep &= r(probes.float() / 255).argmax(1) == old
    return probes[keep], new[keep], old[keep]


def boundary_shares(
    probes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], suspect: nn.Module
) -> list[dict[str, float]]:
    """For each model's probes: the share of the suspect's answers that are the model's new answer among
    those that are the new or the old one, and that count."""
    out = []
    for images, new, old in probes:
        said = answers(suspect, images, num_classes=None)
        a, b = int((said == new).sum()), int((said == old).sum())
        out.append({"share": a / (a + b) if a + b else 0.5, "decided": a + b})
    return out


def mirrored(shares: list[dict[str, float]], d: int) -> float:
    """The deployed model's share minus the mean of its siblings'."""
    return shares[d]["share"] - statistics.fmean(s["share"] for j, s in enumerate(shares) if j != d)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.pstdev(values),
        "largest": max(values),
    }


def render(result: dict[str, Any]) -> str:
    """Markdown: the innocents' spread under each count, then each copy's value under each, with its
    distance from the innocents' mean in their standard deviations (bold: above the largest innocent)."""
    innocents = result["innocents"]
    stats = list(innocents)
    lines = [
        "| count | innocent/deployed pairs | mean +- sd | largest |",
        "|---|---|---|---|",
        *(
            f"| {s} | {v['count']:,} | {v['mean']:.3f} +- {v['sd']:.3f} | {v['largest']:.3f} |"
            for s, v in innocents.items()
        ),
        "",
        "Each copy against its family's deployed model: the value, and in brackets how many of the "
        "innocents' standard deviations it stands above their mean (bold: above the largest innocent).",
        "",
        "| family | copy | " + " | ".join(stats) + " |",
        "|---|---|" + "---|" * len(stats),
    ]
    for c in result["copies"]:
        cells = []
        for s in stats:
            v, inn = c["values"][s], innocents[s]
            cell = f"{v:.3f} ({(v - inn['mean']) / inn['sd']:.1f})"
            cells.append(f"**{cell}**" if v > inn["largest"] else cell)
        lines.append(f"| {c['family']} | {c['name']} | " + " | ".join(cells) + " |")
    if all("top" in v for v in innocents.values()):
        lines += ["", "The largest innocents under each count:", ""]
        for s, v in innocents.items():
            lines.append(f"- {s}: " + "; ".join(f"{x:.3f} ({who})" for x, who in v["top"]))
    made = result["boundary_made"]
    lines += [
        "",
        f"Boundary probes kept per model (of {result['per_model']} starting images, "
        f"{result['steps']} steps): "
        + "; ".join(
            f"{f}, eps {e}: {', '.join(map(str, n))}" for f, by in made.items() for e, n in by.items()
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Families:
    """The four families and everything measured against them: the better innocents, each family's
    models and own innocents (``groups``), its copies and which of its models the copies were made from."""

    strong: dict[str, nn.Module]
    groups: dict[str, tuple[list[nn.Module], dict[str, nn.Module]]]
    copies: dict[str, dict[str, nn.Module]]
    deployed: dict[str, int]


def load_families(args: argparse.Namespace, data: Any) -> Families:
    """The benchmark's cached family, its innocents and copies, and the study families of
    ``args.families`` with theirs (trained and cached where missing)."""
    owners = cached_owners(args.cache)
    strong = {
        f"better, seed {s}, {e} epochs": load_checkpoint(args.cache / f"strong-s{s}-e{e}.pt")[0].eval()
        for s, e in STRONG
    }
    bench = [load_checkpoint(p)[0].eval() for p in owners]
    innocents = {p.stem: load_checkpoint(p)[0].eval() for p in sorted(args.cache.glob("innocent-*.pt"))}
    groups = {"benchmark": (bench, innocents)}
    copies = {
        "benchmark": {n: load_checkpoint(args.cache / f"{suspect_slug(n)}.pt")[0].eval() for n in SUSPECTS}
    }
    deployed = {"benchmark": benchmark_plan(len(bench) - 1).deployed}
    for base in args.families:
        name = f"study, seed {base}"
        groups[name] = study_family(args.cache, data, base, args.innocents)
        copies[name] = study_copies(args.cache, data, base)
        deployed[name] = 0  # the study deploys its FromScratch model
    return Families(strong, groups, copies, deployed)


def main() -> None:
    parser = family_parser(__doc__)
    parser.add_argument("--steps", type=int, default=20, help="steps of the boundary walk")
    begun = begin(parser, render)
    if begun is None:
        return
    args, data, started = begun
    loaded = load_families(args, data)
    strong, groups, copies, deployed = loaded.strong, loaded.groups, loaded.copies, loaded.deployed
    for model in [m for fam, own in groups.values() for m in [*fam, *own.values()]]:
        model.requires_grad_(False)
    order = torch.randperm(len(data.test_x), generator=torch.Generator().manual_seed(PROBE_SEED))
    stats = ["pairwise", "odd one out", "mirror", *(f"boundary, eps {e}" for e in EPS)]
    innocent_values: dict[str, list[tuple[float, str]]] = {s: [] for s in stats}
    copy_rows = []
    made: dict[str, dict[str, list[int]]] = {}
    for name, (family, own) in groups.items():
        log(f"family {name}: boundary probes")
        probes = {}
        for eps in EPS:
            probes[eps] = [
                boundary_probes(
                    m,
                    [r for j, r in enumerate(family) if j != i],
                    data.test_x[order[i * PER_MODEL : (i + 1) * PER_MODEL]],
                    eps=eps,
                    steps=args.steps,
                )
                for i, m in enumerate(family)
            ]
        made[name] = {f"{e:g}": [len(p[0]) for p in probes[e]] for e in EPS}
        said = [answers(m, data.test_x, num_classes=None) for m in family]
        suspects = {**strong, **own, **from_other_families(groups, name)}
        log(f"family {name}: {len(suspects)} innocents, {len(copies[name])} copies")

        def values(
            model: nn.Module, family: list[torch.Tensor] = said, probes: Any = probes
        ) -> list[dict[str, float]]:
            rows = natural_counts(family, answers(model, data.test_x, num_classes=None), data.num_classes)
            for eps in EPS:
                shares = boundary_shares(probes[eps], model)
                for d, row in enumerate(rows):
                    row[f"boundary, eps {eps}"] = mirrored(shares, d)
            return rows

        for label, model in suspects.items():
            for d, row in enumerate(values(model)):
                for s in stats:
                    innocent_values[s].append((row[s], f"{label}, against {name}'s model {d}"))
        for label, model in copies[name].items():
            copy_rows.append({"family": name, "name": label, "values": values(model)[deployed[name]]})
    result = {
        "innocents": {
            s: {**summary([x for x, _ in v]), "top": sorted(v, reverse=True)[:TOP]}
            for s, v in innocent_values.items()
        },
        "copies": copy_rows,
        "boundary_made": made,
        "per_model": PER_MODEL,
        "steps": args.steps,
    }
    finish(args, result, started, render)


if __name__ == "__main__":
    main()
