"""``backmark attack`` as a library call: load a checkpoint, a key and data, split, attack, report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from backmark.atomic import check_folder
from backmark.attacks import Attack
from backmark.data import load_dataset
from backmark.errors import BackmarkError
from backmark.keys import load_key_pair
from backmark.log import Log, say
from backmark.models import load_checkpoint
from backmark.study.attack_report import WHAT, AttackReport, report_file, write_report
from backmark.study.measure import Trial
from backmark.study.split import ATTACKER_FRACTION, threat_model_split
from backmark.study.suite import run_attacks
from backmark.training import resolve_device
from backmark.verify import DEFAULT_ALPHA


def attack_checkpoint(
    model_path: str | Path,
    key_path: str | Path,
    data_spec: str,
    attacks: Sequence[Attack],
    out: str | Path,
    *,
    alpha: float = DEFAULT_ALPHA,
    attacker_fraction: float = ATTACKER_FRACTION,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    force: bool = False,
    log: Log | None = None,
    device: str = "auto",
) -> AttackReport:
    """Run ``attacks`` on the checkpoint at ``model_path`` and write a report into ``out``.

    ``out`` gets the whole report or stays as it was; ``force`` replaces a previous report there.

    The attacker's data is its share of ``data_spec``'s training set under the seeded threat-model split
    (``attacker_fraction``, ``seed``); test accuracy is measured on the whole test set. The model must fit
    both the key and the data (class count and input shape), or a one-line BackmarkError says how not.
    The model is attacked and measured on ``device`` (default auto: cuda, else mps, else cpu).
    """
    out = Path(out)
    check_folder(out, force=force, owned=report_file, what=WHAT)  # before the work, not only after it
    start = time.perf_counter()
    mk, vk = load_key_pair(key_path)
    model, info = load_checkpoint(model_path)
    model.to(resolve_device(device))
    if info.num_classes != mk.num_classes or info.input_shape != mk.input_shape:
        raise BackmarkError(
            f"{model_path} is a {info.num_classes}-class model for {info.input_shape} inputs but the key is "
            f"for {mk.num_classes} classes of {mk.input_shape}; attack a model marked with this key"
        )
    data = load_dataset(data_spec, progress=log is not None)
    if train_subset or test_subset:
        data = data.subset(train=train_subset, test=test_subset, seed=seed)
    if data.num_classes != info.num_classes or data.input_shape != info.input_shape:
        raise BackmarkError(
            f"{data.name} has {data.num_classes} classes of {data.input_shape} but the model is for "
            f"{info.num_classes} classes of {info.input_shape}; give the dataset the model was trained on"
        )
    split = threat_model_split(data, attacker_fraction=attacker_fraction, seed=seed)
    say(
        log,
        f"{len(attacks)} attack(s) on {model_path}; attacker data: {len(split.attacker.train_x)} of "
        f"{len(data.train_x)} training images (seed {seed}); {len(data.test_x)} test images",
    )
    trial = Trial(model, mk, vk, split.attacker_data, (data.test_x, data.test_y), alpha=alpha)
    baseline, outcomes = run_attacks(trial, attacks, log=log)
    return write_report(
        out,
        baseline,
        outcomes,
        alpha=alpha,
        chance=1 / mk.null_classes,
        force=force,
        model=str(model_path),
        key_id=vk.key_id,
        data=f"{data.name}, attacker {len(split.attacker.train_x)} images, test {len(data.test_x)}",
        attacker_fraction=attacker_fraction,
        seed=seed,
        seconds=time.perf_counter() - start,
    )
