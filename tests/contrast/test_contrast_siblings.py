"""Sibling records and the contrast test end to end, on tiny untrained models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from backmark.contrast import contrast, load_siblings, plan_siblings, weights_digest, write_siblings
from backmark.contrast.siblings import RECORD, choice_of, siblings_folder
from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.models import ModelInfo, create_model, save_checkpoint

SHAPE = (1, 28, 28)
ARGS = {"width": 4, "hidden": 8, "mean": [0.3], "std": [0.3]}
INFO = ModelInfo("cnn", ARGS, SHAPE, 10)
SALT = bytes(range(32))


def tiny(seed: int) -> nn.Module:
    """An untrained tiny CNN; its weights doubled so that its answers vary over real images."""
    torch.manual_seed(seed)
    model = create_model("cnn", num_classes=10, input_shape=SHAPE, **ARGS).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    return model


def family(tmp_path: Path, siblings: int = 3) -> tuple[Path, list[nn.Module], int]:
    plan = plan_siblings(siblings=siblings, seed=11, salt=SALT)
    models = [tiny(s) for s in plan.seeds]
    out = tmp_path / "marked.pt"
    record = write_siblings(out, [(m, INFO) for m in models], plan, recipe={"epochs": 1})
    folder = siblings_folder(out)
    assert record.deployed == plan.deployed and record.recipe == {"epochs": 1}
    save_checkpoint(out, models[plan.deployed], INFO)
    assert folder.stat().st_mode & 0o777 == 0o700
    return out, models, plan.deployed


def test_plan_draws_seeds_and_the_deployed_index_from_the_salt() -> None:
    plan = plan_siblings(siblings=4, seed=3, salt=SALT)
    assert plan.seeds[0] == 3 and len(set(plan.seeds)) == 5
    assert plan.deployed == choice_of(SALT, 5)
    fresh = {plan_siblings(siblings=4, seed=3).deployed for _ in range(40)}
    assert len(fresh) > 1  # OS randomness: not always the same model
    with pytest.raises(BackmarkError, match="siblings"):
        plan_siblings(siblings=0, seed=0)


def test_siblings_round_trip_and_the_deployed_model_goes_to_out(tmp_path: Path) -> None:
    out, models, deployed = family(tmp_path)
    sibs = load_siblings(out)
    assert weights_digest(sibs.deployed) == weights_digest(models[deployed])
    assert len(sibs.siblings) == 3
    assert sorted(p.name for p in sibs.folder.iterdir()) == sorted(
        [RECORD] + [f"model-{i}.pt" for i in range(4) if i != deployed]
    )
    doc = json.loads((sibs.folder / RECORD).read_text())
    assert doc["deployed"] == deployed and doc["digest"] == sibs.record.digest


def test_a_changed_record_or_a_swapped_model_is_refused(tmp_path: Path) -> None:
    out, _, deployed = family(tmp_path)
    record = siblings_folder(out) / RECORD
    doc = json.loads(record.read_text())
    doc["deployed"] = (deployed + 1) % 4
    record.write_text(json.dumps(doc))
    with pytest.raises(BackmarkError, match="digest does not match"):
        load_siblings(out)
    doc["digest"] = "0" * 64
    record.write_text("{not json")
    with pytest.raises(BackmarkError, match="unreadable JSON"):
        load_siblings(out)

    out2, _, deployed2 = family(tmp_path / "b")
    sibling = next(i for i in range(4) if i != deployed2)
    save_checkpoint(siblings_folder(out2) / f"model-{sibling}.pt", tiny(999), INFO, force=True)
    with pytest.raises(BackmarkError, match=f"model-{sibling}.pt does not have the weights"):
        load_siblings(out2)
    save_checkpoint(out2, tiny(998), INFO, force=True)
    with pytest.raises(BackmarkError, match="not the deployed model"):
        load_siblings(out2)


def test_missing_record_says_how_to_make_one(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m.pt", tiny(0), INFO)
    with pytest.raises(BackmarkError, match="--siblings K"):
        load_siblings(tmp_path / "m.pt")


def test_contrast_shows_a_copy_and_not_a_sibling(tmp_path: Path, fashion: ImageDataset) -> None:
    out, models, deployed = family(tmp_path)
    sibs = load_siblings(out)
    pool = fashion.test_x[:500]
    nonce = bytes(16) + b"contrast-test-00"
    copy = contrast(models[deployed], sibs, pool=pool, nonce=nonce, probes=2000, delta=0.05)
    assert copy.verified and copy.probe.rate == 1.0 and copy.rank.rank == 1
    assert copy.p_value < 1e-6
    other = models[(deployed + 1) % 4]
    innocent = contrast(other, sibs, pool=pool, nonce=nonce, probes=2000, delta=0.05)
    assert not innocent.verified and innocent.probe.rate < 0.5 and innocent.rank.rank > 1
    with pytest.raises(BackmarkError, match="models take"):
        contrast(other, sibs, pool=pool[:, :, :14], nonce=nonce)
