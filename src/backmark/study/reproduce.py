"""``backmark reproduce``: the paper's experimental design, plus the later literature's attacks, in one run.

On the owner's two thirds of the training data: a clean model, a FromScratch-marked model and a PreTrained
model (the clean one marked by continued training). The full attack suite (the paper's four fine-tuning
attacks at two learning rates, large learning-rate fine-tuning over a sweep, transfer learning, magnitude
pruning over sparsities, fine-pruning, weight quantisation, model extraction into the same and another
architecture, input transformations, evasion, the attacks that know the scheme: overwriting with random
images, embedding the attacker's own key, unlearning reverse-engineered triggers, and the rest of the SoK's
toolbox: weight shifting, strong regularisation, distillation, adversarial training, neural laundering)
then runs on the FromScratch model with the attacker's third, and the four fine-tuning attacks also on
the PreTrained model. Writes the reports and figures into ``out`` and the results, with machine, versions,
seeds and time, into a markdown file.

``out`` is built under a hidden name beside it and put in place whole at the end
(:func:`backmark.atomic.atomic_folder`); a results file outside ``out`` and its figures are each written
atomically, and replaced, since regenerating them (e.g. ``docs/results.md``) is the point.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from backmark.atomic import atomic_folder, copy_file, write_text
from backmark.attacks import (
    FTAL,
    FTLL,
    RTAL,
    RTLL,
    AdvTrain,
    Attack,
    Distill,
    EnsembleAttack,
    Extraction,
    FinePruning,
    InputQuantize,
    Jpeg,
    Launder,
    MagnitudePruning,
    Noise,
    OODDetector,
    Overwrite,
    Regularize,
    Rekey,
    Smooth,
    Transfer,
    Unlearn,
    WeightQuantization,
    WeightShift,
    lr_sweep,
)
from backmark.attacks.overwrite import RandomKind
from backmark.constants import CONTRAST_PROBES
from backmark.contrast import prepare, probe_pool
from backmark.data import load_dataset
from backmark.embed import TrainConfig
from backmark.errors import BackmarkError
from backmark.keys.derive import REAL_PARTS
from backmark.keys.model import null_classes
from backmark.log import Log, say
from backmark.models import save_checkpoint
from backmark.study.attack_report import write_report
from backmark.study.measure import AttackOutcome, Baseline, Trial, innocent_claim
from backmark.study.measure import study_nonce as contrast_nonce
from backmark.study.owner import owner_models
from backmark.study.reproduce_report import ModelRow, render_results
from backmark.study.response_study import ResponseStudy, run_response_study
from backmark.study.response_study import attackers as response_attackers
from backmark.study.search import SEARCHES, Knob, SearchOutcome, search_all
from backmark.study.split import ATTACKER_FRACTION, threat_model_split
from backmark.study.suite import run_attacks
from backmark.training import Augment
from backmark.triggers import get_trigger_kind
from backmark.verify import DEFAULT_ALPHA
from backmark.verify.decision import Decision

# What a run writes into its folder (with the default results file): with --force, a folder holding only
# these is replaced.
OUTPUTS = frozenset(
    {"models", "from-scratch", "pretrained", "response", "results.json", "results.md", "results"}
)
WHAT = "a reproduce run"


@dataclass(frozen=True)
class Settings:
    """What ``reproduce`` runs. The defaults fit Fashion-MNIST on two CPU cores in well under an hour."""

    train_size: int | None = None  # None: the whole training set (before the split)
    test_size: int | None = None
    attacker_fraction: float = ATTACKER_FRACTION
    key_size: int = 100  # the paper's trigger set size
    arch: str | None = None  # None: cnn for inputs under 32 pixels, else preact-resnet18
    width: int | None = None
    epochs: int = 5  # the owner's training of the clean and FromScratch models
    lr: float = 0.05
    triggers_per_batch: int = 2  # FromScratch: trigger samples per batch of 100 (the paper's 2)
    augment: Augment = "none"
    pretrained_epochs: int = 5  # at most; PreTrained stops once every trigger is learned
    finetune_epochs: int = 20  # the paper's 20
    finetune_lrs: tuple[float, ...] = (0.001, 0.01)  # the paper's two rates
    large_lrs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
    large_lr_epochs: int = 5
    transfer_epochs: int = 10
    sparsities: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
    fine_prune_epochs: int = 5
    quant_bits: tuple[int, ...] = (8, 5, 4, 3, 2)
    extraction_epochs: int = 10
    other_arch: tuple[str, int | None] | None = ("preact-resnet18", 8)  # the second student, or None
    ensemble_epochs: int = 5
    overwrite_kinds: tuple[RandomKind, ...] = ("noise", "abstract")  # random images under random labels
    overwrite_epochs: int = 5
    overwrite_lrs: tuple[float, ...] = (0.01, 0.05)  # 0.05 removed the mark in benchmarks/scheme_attacks.py
    overwrite_count: int = 1000  # random images added to the attacker's data
    rekey_triggers: int = 100  # the attacker's own key (the piracy case)
    rekey_epochs: int = 5
    unlearn_steps: int = 60  # search steps per class, Neural-Cleanse masks and confident inputs
    unlearn_epochs: int = 3
    # the rest of the SoK's toolbox, one setting each (benchmarks/sok_attacks.py measures two)
    weight_shift: float = 1.0  # Gaussian noise of this times each layer's weight std, then fine-tuning
    weight_shift_epochs: int = 5
    regularize_decay: float = 0.1  # L2 weight decay of the first phase (200 times the usual 5e-4)
    regularize_epochs: int = 5
    regularize_finetune_epochs: int = 3  # plain fine-tuning afterwards
    distill_epochs: int = 10  # a fresh student on the suspect's soft outputs at temperature 4
    adv_train_eps: float = 0.03  # L-infinity radius of PGD (3 steps), in [0, 1] pixel units
    adv_train_epochs: int = 3
    launder_steps: int = 60  # trigger reconstruction steps, as unlearn's
    launder_epochs: int = 3
    response_rate: float | None = 0.02  # the response mark's rate; None: no response-mark study
    response_queries: int | None = None  # images each extraction attacker sends; None: all it holds
    search: Literal["all", "cheap", "none"] = "all"  # adaptive attackers: study.search.SEARCHES
    kind: str = "abstract"  # the key's trigger kind: a generated one, or heldout/blend (the owner's images)
    lineage: bool = True  # the lineage test of every attacked model's weights (docs/lineage.md)
    siblings: int = 4  # FromScratch siblings for the contrast test (docs/contrast.md); 0: no contrast
    contrast_probes: int = CONTRAST_PROBES  # probes drawn from the test images (no model trained on them)

    @staticmethod
    def fast() -> Settings:
        """A smoke run for CI: small subsets, one or two epochs, a few attack settings."""
        return Settings(
            train_size=4500,
            test_size=1000,
            key_size=50,
            epochs=2,
            triggers_per_batch=10,
            pretrained_epochs=6,
            finetune_epochs=2,
            finetune_lrs=(0.01,),
            large_lrs=(0.01, 0.1),
            large_lr_epochs=1,
            transfer_epochs=1,
            sparsities=(0.5, 0.9),
            fine_prune_epochs=1,
            quant_bits=(5, 2),
            extraction_epochs=2,
            other_arch=None,
            ensemble_epochs=1,
            overwrite_kinds=("abstract",),
            overwrite_epochs=1,
            overwrite_lrs=(0.05,),
            overwrite_count=200,
            rekey_triggers=20,
            rekey_epochs=1,
            unlearn_steps=4,
            unlearn_epochs=1,
            weight_shift_epochs=1,
            regularize_epochs=1,
            regularize_finetune_epochs=1,
            distill_epochs=2,
            adv_train_epochs=1,
            launder_steps=4,
            launder_epochs=1,
            search="cheap",
            siblings=2,
            contrast_probes=5000,
        )


def attack_suite(s: Settings, num_classes: int) -> list[Attack]:
    """Every attack the reproduction runs on the FromScratch model, in report order."""
    fine = [cls(epochs=s.finetune_epochs, lr=lr) for lr in s.finetune_lrs for cls in (FTLL, FTAL, RTLL, RTAL)]
    students: list[Attack] = [Extraction(epochs=s.extraction_epochs)]
    if s.other_arch is not None:
        students.append(Extraction(arch=s.other_arch[0], width=s.other_arch[1], epochs=s.extraction_epochs))
    return [
        *fine,
        *lr_sweep(s.large_lrs, epochs=s.large_lr_epochs),
        Transfer(classes=f"{num_classes // 2}-{num_classes - 1}", epochs=s.transfer_epochs),
        *[MagnitudePruning(sparsity=x) for x in s.sparsities],
        FinePruning(epochs=s.fine_prune_epochs),
        *[WeightQuantization(bits=b) for b in s.quant_bits],
        *students,
        Jpeg(quality=95),
        Jpeg(quality=50),
        Noise(sigma=0.01),
        Noise(sigma=0.1),
        Smooth(sigma=1.0),
        InputQuantize(bits=4),
        OODDetector(quantile=0.99),
        OODDetector(quantile=0.95),
        EnsembleAttack(epochs=s.ensemble_epochs),
        *[
            Overwrite(kind=k, epochs=s.overwrite_epochs, lr=lr, count=s.overwrite_count)
            for lr in s.overwrite_lrs
            for k in s.overwrite_kinds
        ],
        Rekey(triggers=s.rekey_triggers, epochs=s.rekey_epochs),
        Unlearn(steps=s.unlearn_steps, epochs=s.unlearn_epochs),
        WeightShift(shift=s.weight_shift, epochs=s.weight_shift_epochs),
        Regularize(
            decay=s.regularize_decay, epochs=s.regularize_epochs, finetune_epochs=s.regularize_finetune_epochs
        ),
        Distill(epochs=s.distill_epochs),
        AdvTrain(eps=s.adv_train_eps, epochs=s.adv_train_epochs),
        Launder(steps=s.launder_steps, epochs=s.launder_epochs),
    ]


# the attacks that train nothing (they change the weights by rule, or the queries): seconds each
INFERENCE_TIME = ("prune", "quantize", "noise", "smooth", "jpeg", "input-quantize", "ood-detector")


def search_knobs(which: str) -> tuple[Knob, ...]:
    """The knobs the adaptive attackers search: every one, the inference-time ones only, or none."""
    if which == "all":
        return SEARCHES
    if which == "cheap":
        return tuple(k for k in SEARCHES if k.attack in INFERENCE_TIME)
    if which == "none":
        return ()
    raise BackmarkError(f"search must be all, cheap or none, got {which!r}")


def pretrained_suite(s: Settings) -> list[Attack]:
    """The paper's four fine-tuning attacks, for the PreTrained model."""
    return [cls(epochs=s.finetune_epochs, lr=lr) for lr in s.finetune_lrs for cls in (FTLL, FTAL, RTLL, RTAL)]


@dataclass(frozen=True)
class Reproduction:
    """What a reproduce run did and found. ``results.json`` is :meth:`to_dict` (without the attacks,
    which are in each victim's ``report.json``)."""

    command: str
    dataset: str
    arch: str
    owner_size: int
    attacker_size: int
    test_size: int
    seed: int
    alpha: float
    key_id: str
    key_size: int
    num_classes: int
    settings: Settings
    models: tuple[ModelRow, ...]  # the owner's models
    runs: Mapping[str, tuple[Baseline, tuple[AttackOutcome, ...]]]  # read-only: victim -> its attacks
    seconds: float
    response: ResponseStudy | None = None
    searches: tuple[SearchOutcome, ...] = ()  # the adaptive attackers, on the FromScratch model
    # read-only: the owner's unmarked models (clean, controls) as innocent suspects, with every piece
    innocents: Mapping[str, Decision | None] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "dataset": self.dataset,
            "arch": self.arch,
            "owner_size": self.owner_size,
            "attacker_size": self.attacker_size,
            "test_size": self.test_size,
            "seed": self.seed,
            "alpha": self.alpha,
            "key_id": self.key_id,
            "key_size": self.key_size,
            "num_classes": self.num_classes,
            "null_classes": null_classes(self.settings.kind, self.num_classes),  # chance is 1/this
            "settings": asdict(self.settings),
            "models": [r.to_dict() for r in self.models],
            "seconds": self.seconds,
            "response": None if self.response is None else self.response.to_dict(),
            "searches": [f.to_dict() for f in self.searches],
            "innocents": {k: None if v is None else v.to_dict() for k, v in self.innocents.items()},
        }


def reproduce(
    out: Path,
    *,
    data_spec: str = "fashion-mnist",
    settings: Settings | None = None,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    results: Path | None = None,
    command: str = "backmark reproduce",
    force: bool = False,
    log: Log | None = None,
    device: str = "auto",
    workers: int = 1,
) -> Reproduction:
    """Run the whole experiment into ``out``; write the results to ``results`` (default out/results.md).

    ``out`` gets the whole run or stays as it was; ``force`` replaces a previous run's folder there.
    The owner's models train, and are attacked, on ``device`` (default auto: cuda, else mps, else cpu).
    ``workers`` > 1 runs the attacks in that many processes, with the results of a serial run.
    """
    if workers < 1:
        raise BackmarkError(f"{{workers}} must be at least 1, got {workers}", params=["workers"])
    settings = settings or Settings()
    kind = get_trigger_kind(settings.kind)  # an unknown kind is a one-line error
    if kind.generate is None and settings.kind not in REAL_PARTS:
        raise BackmarkError(
            f"reproduce makes its own key: give a generated kind or one made of the dataset's images "
            f"(abstract, noise, heldout, blend), not {settings.kind!r}"
        )
    results = results or out / "results.md"
    _check_results_beside(results, out)
    inside = _inside(results, out)
    owned = set(OUTPUTS)
    if inside is not None:  # the results file and its figures folder are part of the run's folder
        owned |= {inside.parts[0], inside.with_suffix("").parts[0]}
    with atomic_folder(out, force=force, owned=owned.__contains__, what=WHAT) as build:
        run = _experiment(
            build,
            data_spec=data_spec,
            settings=settings,
            seed=seed,
            alpha=alpha,
            command=command,
            log=log,
            device=device,
            workers=workers,
        )
        write_results(build, results if inside is None else build / inside, run)
    say(log, f"done in {run.seconds:.0f} s; results: {results}")
    return run


def _check_results_beside(results: Path, out: Path) -> None:
    """Refuse, before any work, a results file whose figures folder (``docs/results.md`` ->
    ``docs/results/``) or which itself is the run's folder: the run would end by refusing its own folder."""
    where = os.path.realpath(out)
    if os.path.realpath(results) == where:
        raise BackmarkError(
            f"the results file {results} is the run's folder {out}; give a file name such as {out}.md"
        )
    figures = results.parent / results.stem
    if os.path.realpath(figures) == where:
        raise BackmarkError(
            f"the results file {results} puts its figures in {figures}/, which is the run's folder (--out); "
            "choose another results name or another --out folder"
        )


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` relative to ``folder`` if it lies inside it, else None."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return None if rel == os.curdir or rel.startswith(os.pardir) else Path(rel)


def _experiment(
    out: Path,
    *,
    data_spec: str,
    settings: Settings,
    seed: int,
    alpha: float,
    command: str,
    log: Log | None,
    device: str,
    workers: int,
) -> Reproduction:
    """Train, attack and write the checkpoints and reports into ``out`` (the folder being built)."""
    start = time.perf_counter()
    data = load_dataset(data_spec, progress=log is not None)
    if settings.train_size or settings.test_size:
        data = data.subset(train=settings.train_size, test=settings.test_size, seed=seed)
    arch = settings.arch or ("cnn" if min(data.input_shape[1:]) < 32 else "preact-resnet18")
    split = threat_model_split(data, attacker_fraction=settings.attacker_fraction, seed=seed)
    test = (data.test_x, data.test_y)
    say(
        log,
        f"{data.name}: owner {len(split.owner.train_x)}, attacker {len(split.attacker.train_x)}, "
        f"test {len(data.test_x)}",
    )
    owner = owner_models(
        split.owner,
        key_size=settings.key_size,
        purpose="reproduce",
        config=TrainConfig(
            epochs=settings.epochs,
            lr=settings.lr,
            triggers_per_batch=settings.triggers_per_batch,
            augment=settings.augment,
            seed=seed,
        ),
        pretrained_epochs=settings.pretrained_epochs,
        arch=arch,
        arch_args=None if settings.width is None else {"width": settings.width},
        siblings=settings.siblings,
        alpha=alpha,
        log=log,
        device=device,
        kind=settings.kind,
    )
    mk = owner.key
    vk = mk.verification_key()
    rows = []
    for m in owner.models:
        save_checkpoint(out / "models" / f"{m.name}.pt", m.trained.model, m.trained.info)
        r = m.trained.result
        rows.append(ModelRow(m.name, r.test_acc, m.verification.evidence, len(r.history), r.seconds))

    runs: dict[str, tuple[Baseline, tuple[AttackOutcome, ...]]] = {}
    suites = {
        victim: [replace(a, seed=seed) for a in attacks]
        for victim, attacks in (
            ("from-scratch", attack_suite(settings, data.num_classes)),
            ("pretrained", pretrained_suite(settings)),
        )
    }
    prepared = None
    if owner.siblings:
        # the verifier's pool: natural images no model of the owner's trained on (docs/contrast.md, "Pool
        # and draws": the owner's training images dilute the test)
        pool = probe_pool(split.owner)
        # and the images a thief queries the deployed model with, as the owner's request log holds them:
        # the attacker's images (docs/contrast.md, "The images the thief queried")
        queried = split.attacker.train_x
        say(
            log,
            f"contrast probes: {settings.contrast_probes} drawn from the {len(pool)} test images and "
            f"{settings.contrast_probes} from the {len(queried)} images the attacker queries with",
        )
        prepared = prepare(
            owner["from-scratch"].trained.model,
            [m.trained.model for m in owner.siblings],
            pool=pool,
            nonce=contrast_nonce(seed),
            num_classes=data.num_classes,
            probes=settings.contrast_probes,
            queried=queried,
        )
    trials = {
        victim: Trial(
            owner[victim].trained.model,
            mk,
            vk,
            split.attacker_data,
            test,
            alpha=alpha,
            lineage=settings.lineage,
            contrast=prepared if victim == "from-scratch" else None,  # its siblings, not PreTrained's
        )
        for victim in suites
    }
    innocents = tuple(
        (m.name, innocent_claim(trials["from-scratch"], m.trained.model))
        for m in owner.models
        if not m.marked and (settings.lineage or prepared is not None)
    )
    for victim, attacks in suites.items():
        say(log, f"attacking the {victim} model: {len(attacks)} attacks")
        trial = trials[victim]
        baseline, outcomes = run_attacks(trial, attacks, log=log, workers=workers)
        runs[victim] = (baseline, tuple(outcomes))
        write_report(
            out / victim,
            baseline,
            outcomes,
            alpha=alpha,
            chance=1 / vk.null_classes,
            model=f"{victim} ({arch})",
            key_id=vk.key_id,
            data=f"{data.name}, attacker {len(split.attacker.train_x)} images, test {len(data.test_x)}",
            seed=seed,
        )
    searches: tuple[SearchOutcome, ...] = ()
    knobs = search_knobs(settings.search)
    if knobs:
        say(log, f"adaptive attackers on the from-scratch model: {len(knobs)} knobs searched")
        baseline, done = runs["from-scratch"]
        found = search_all(
            trials["from-scratch"],
            [replace(k, fixed=MappingProxyType({**k.fixed, "seed": seed})) for k in knobs],
            baseline=baseline,
            log=log,
            known=dict(zip(suites["from-scratch"], done, strict=True)),  # what the suite ran is not run again
        )
        searches = tuple(found)
    response = None
    if settings.response_rate is not None:
        response = run_response_study(
            out / "response",
            out / "models" / "from-scratch.pt",
            owner["from-scratch"].trained.model,
            owner["clean"].trained.model,
            mk,
            vk,
            split.attacker_data,
            test,
            rate=settings.response_rate,
            queries=settings.response_queries,
            who=response_attackers(settings.extraction_epochs, settings.other_arch),
            alpha=alpha,
            seed=seed,
            log=log,
            trial=trials["from-scratch"],
        )
    return Reproduction(
        command=command,
        dataset=data.name,
        arch=arch,
        owner_size=len(split.owner.train_x),
        attacker_size=len(split.attacker.train_x),
        test_size=len(data.test_x),
        seed=seed,
        alpha=alpha,
        key_id=vk.key_id,
        key_size=mk.n,
        num_classes=mk.num_classes,
        settings=settings,
        models=tuple(rows),
        runs=MappingProxyType(runs),
        seconds=time.perf_counter() - start,
        response=response,
        searches=searches,
        innocents=MappingProxyType(dict(innocents)),
    )


def write_results(out: Path, results: Path, run: Reproduction) -> None:
    """``results`` (markdown) with the reports' figures beside it, and ``out/results.json``.

    Each file is written atomically and replaced: regenerating ``docs/results.md`` is the point.
    """
    figures = results.parent / results.stem  # docs/results.md -> docs/results/*.png
    summary = run.to_dict()
    for victim in run.runs:
        for png in sorted((out / victim).glob("*.png")):
            copy_file(png, figures / f"{victim}-{png.name}", force=True)
    write_text(results, render_results(summary, run.models, run.runs, figures_dir=figures.name), force=True)
    write_text(out / "results.json", json.dumps(summary, indent=1) + "\n", force=True)
