"""Attacks in worker processes give the outcomes of a serial run, bit for bit (times aside)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backmark.attacks import FTAL, FTLL, Extraction, FinePruning, MagnitudePruning, Noise, OODDetector
from backmark.cli.main import main
from backmark.embed import Trained
from backmark.keys import MarkingKey
from backmark.study import ThreatSplit, Trial, run_attacks
from backmark.study.parallel import core_shares


@pytest.mark.timeout(300)
def test_two_workers_give_the_serial_outcomes(marked: Trained, key: MarkingKey, split: ThreatSplit) -> None:
    attacks = [
        FTAL(epochs=1, lr=0.01),
        MagnitudePruning(sparsity=0.9),
        FinePruning(epochs=1),
        FTLL(epochs=2, lr=0.01, seed=3),
        Noise(sigma=0.1),  # random at query time: seeded by the attack, not by what ran before
        Extraction(epochs=1),
        OODDetector(),
    ]
    test = (split.owner.test_x[:300], split.owner.test_y[:300])
    attacker = split.attacker_data
    vk = key.verification_key()
    trial = Trial(marked.model, key, vk, attacker, test)
    serial = run_attacks(trial, attacks)
    parallel = run_attacks(trial, attacks, workers=2)
    assert serial[0] == parallel[0]
    assert [o.label for o in parallel[1]] == [a.describe() for a in attacks]  # in the attacks' order
    for a, b in zip(serial[1], parallel[1], strict=True):
        assert replace(a, seconds=0.0) == replace(b, seconds=0.0)  # histories and evidence included


def test_cores_are_dealt_out_and_every_worker_gets_one() -> None:
    shares = core_shares(2)
    assert len(shares) == 2 and all(shares)
    assert len(core_shares(64)) == 64 and all(core_shares(64))


def test_workers_must_be_at_least_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--workers", "0", "--out", str(tmp_path / "run")]) == 2
    assert "error: --workers must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
