"""The attacks that know the scheme (issue 12), measured on a FromScratch model trained as reproduce does.

A seeded subset of Fashion-MNIST's training set is split as in the standard benchmark (the attacker holds
a third); the owner marks a CNN on its two thirds with a derived key of 100 abstract triggers, exactly as
``backmark reproduce`` trains its FromScratch model (TrainConfig: one-cycle lr 0.05, 2 triggers per batch of
100, then the trigger phase). Each attack then runs with the attacker's third: overwriting with random noise
and with random smooth patterns under uniformly random labels, embedding the attacker's own key (rekey), and
unlearning reverse-engineered triggers (unlearn). For every attacked model: test accuracy before and after,
the owner's trigger matches, p-value and decision (:func:`backmark.verify.verify`); for rekey also the
attacker's own key, on the attacked model and, as a control, on the marked model before the attack; for
unlearn what its search flagged.

    PYTHONPATH=src .venv/bin/python benchmarks/scheme_attacks.py                 # docs/scheme-attacks.json
    PYTHONPATH=src .venv/bin/python benchmarks/scheme_attacks.py --train 3000 --epochs 1 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import torch
from _study import (
    KEY_SIZE,
    attack_row,
    evidence,
    marked_owner,
    run_record,
    study_data,
    study_options,
    study_sizes,
    write_result,
)

from backmark.attacks import Attack, AttackData, Overwrite, Rekey, Unlearn
from backmark.verify import DEFAULT_ALPHA, verify


def attacks(seed: int) -> list[Attack]:
    """The scheme-aware attacks at the reproduction's full settings (study.reproduce.Settings), and
    overwriting at a five times larger rate."""
    return [
        *[
            Overwrite(kind=kind, epochs=5, lr=lr, count=1000, seed=seed)
            for lr in (0.01, 0.05)
            for kind in ("noise", "abstract")
        ],
        Rekey(triggers=100, epochs=5, seed=seed),
        Unlearn(steps=60, epochs=3, seed=seed),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_options(parser)
    parser.add_argument("--out", type=Path, default=Path("docs/scheme-attacks.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data, split = study_data(args)
    attacker: AttackData = split.attacker_data
    owner = marked_owner(args, data, split, purpose="scheme-attacks")

    rows = []
    for attack in attacks(args.seed):
        row, attacked = attack_row(attack, owner, attacker, data)
        if isinstance(attack, Rekey):
            theirs = attack.attacker_key(num_classes=data.num_classes, input_shape=data.input_shape)
            their_vk = theirs.verification_key()
            row["attacker_key_after"] = evidence(verify(attacked, theirs, their_vk).evidence)
            row["attacker_key_before"] = evidence(verify(owner.model, theirs, their_vk).evidence)
        if isinstance(attack, Unlearn):
            found = attack.reverse(owner.model, attacker)
            row["mask_norms"] = [round(float(v), 1) for v in found.norms]
            row["anomaly_index"] = [round(float(v), 2) for v in found.anomaly]
            row["flagged"] = found.flagged.nonzero().flatten().tolist()
        rows.append(row)
        extra = ""
        if "attacker_key_after" in row:
            extra = f", attacker's key {row['attacker_key_after']['matches']}/{attack.params()['triggers']}"
        e = row["owner"]
        print(
            f"{row['attack']}: test acc {row['test_acc_after']:.2%} ({-row['acc_drop_points']:+.2f} points), "
            f"owner {e['matches']}/{e['n']} p={e['p_value']:.3g} verified={e['verified']}{extra} "
            f"({row['seconds']:.0f} s)",
            flush=True,
        )

    result = {
        **study_sizes(data, split),
        "key_size": KEY_SIZE,
        "alpha": DEFAULT_ALPHA,
        "owner_config": asdict(owner.config),
        "marked": owner.record(),
        "rows": rows,
        **run_record("scheme_attacks.py", args, start, files=("out",)),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
