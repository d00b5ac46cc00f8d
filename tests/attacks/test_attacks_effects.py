"""One test per registered attack: it does what it says on a small model (tiny CNN, synthetic data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from attack_helpers import changed, quick, tiny_cnn
from torch import nn

from backmark.attacks import (
    AttackData,
    Distill,
    Ensemble,
    Extraction,
    FinePruning,
    Launder,
    MagnitudePruning,
    Overwrite,
    Regularize,
    Rekey,
    TransformedModel,
    Unlearn,
    WeightQuantization,
    _fit,
    adv_train,
    attack_names,
    create_attack,
)
from backmark.attacks._fit import BatchMap, fit, head_inputs
from backmark.attacks._jpeg import JpegCompression
from backmark.attacks.adv_train import pgd
from backmark.attacks.distill import distillation_loss, soft_targets
from backmark.attacks.launder import reset_neurons
from backmark.attacks.overwrite import random_images
from backmark.attacks.pruning import prunable
from backmark.attacks.unlearn import anomaly_index
from backmark.attacks.weight_shift import keep_shift_loss
from backmark.errors import BackmarkError
from backmark.models.resnet import PreActResNet18
from backmark.training import Batch, accuracy, cross_entropy, key_tensors

Check = Callable[[nn.Module, AttackData], None]
EFFECTS: dict[str, Check] = {}
X = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(4))


def effect(name: str) -> Callable[[Check], Check]:
    def wrap(check: Check) -> Check:
        EFFECTS[name] = check
        return check

    return wrap


def fc_only(before: nn.Module, after: nn.Module) -> None:
    assert changed(before, after) == {"fc.weight", "fc.bias"}


@effect("ftll")
def _ftll(model: nn.Module, data: AttackData) -> None:
    fc_only(model, quick("ftll", lr=0.05)(model, data))


@effect("rtll")
def _rtll(model: nn.Module, data: AttackData) -> None:
    out = quick("rtll", lr=1e-6)(model, data)
    fc_only(model, out)
    # re-initialised, not fine-tuned: at a negligible lr the layer is far from the original one
    assert (out.fc.weight - model.fc.weight).abs().mean() > 0.05  # type: ignore[operator]


@effect("ftal")
def _ftal(model: nn.Module, data: AttackData) -> None:
    out = quick("ftal", lr=0.01)(model, data)
    diff = changed(model, out)
    assert {"features.0.weight", "fc.weight", "features.1.running_mean"} <= diff
    assert "normalize.mean" not in diff  # preprocessing is not a weight


@effect("rtal")
def _rtal(model: nn.Module, data: AttackData) -> None:
    out = quick("rtal", lr=1e-6)(model, data)
    assert "features.0.weight" in changed(model, out)
    conv_step = (out.features[0].weight - model.features[0].weight).abs().max()  # type: ignore[index]
    assert conv_step < 1e-3  # a negligible lr barely moves the body ...
    assert (out.fc.weight - model.fc.weight).abs().mean() > 0.05  # type: ignore[operator]  # ... the head is new


@effect("ft-large-lr")
def _large_lr(model: nn.Module, data: AttackData) -> None:
    def moved(lr: float) -> float:
        out = quick("ft-large-lr", lr=lr, schedule="constant")(model, data)
        return float(
            sum((a - b).detach().norm() for a, b in zip(out.parameters(), model.parameters(), strict=True))
        )

    assert moved(0.1) > 5 * moved(0.001)


@effect("transfer")
def _transfer(model: nn.Module, data: AttackData) -> None:
    attack = quick("transfer", classes="5-9", lr=0.05)
    images, labels = attack.task(data.images, data.labels)
    assert set(labels.tolist()) <= set(range(5)) and len(images) == int((data.labels >= 5).sum())
    out = attack(model, data)
    assert out.fc.out_features == 5  # type: ignore[union-attr]
    assert "features.0.weight" in changed(model, _body(out, model))
    frozen = quick("transfer", classes="0,2,4", freeze=True)(model, data)
    assert frozen.fc.out_features == 3 and changed(model, _body(frozen, model)) == set()  # type: ignore[union-attr]
    with pytest.raises(BackmarkError, match="classes 5-12 do not exist"):
        quick("transfer", classes="5-12")(model, data)


def _body(out: nn.Module, like: nn.Module) -> nn.Module:
    """``out`` with ``like``'s output layer, so that state dicts line up for comparison."""
    copy = tiny_cnn()
    state = {k: v for k, v in out.state_dict().items() if not k.startswith("fc.")}
    copy.load_state_dict({**state, "fc.weight": like.fc.weight, "fc.bias": like.fc.bias})  # type: ignore[dict-item]
    return copy


@effect("prune")
def _prune(model: nn.Module, data: AttackData) -> None:
    for sparsity in (0.3, 0.8):
        out = MagnitudePruning(sparsity=sparsity)(model, data)
        for before, after in zip(prunable(model), prunable(out), strict=True):
            zeros = int((after == 0).sum())
            assert zeros == round(sparsity * after.numel())
            kept = after != 0  # the largest weights are kept as they were
            assert torch.equal(after[kept], before[kept])
            assert before[~kept].abs().max() <= before[kept].abs().min()
        assert torch.equal(out.fc.bias, model.fc.bias)  # type: ignore[arg-type]
    glob = MagnitudePruning(sparsity=0.5, scope="global")(model, data)
    total = sum(w.numel() for w in prunable(glob))
    assert sum(int((w == 0).sum()) for w in prunable(glob)) == round(0.5 * total)


@effect("fine-prune")
def _fine_prune(model: nn.Module, data: AttackData) -> None:
    activity = head_inputs(model, model.fc, data.images).mean(dim=0)  # type: ignore[arg-type]
    out = FinePruning(fraction=0.5, epochs=1, lr=0.05)(model, data)
    dead = (out.fc.weight == 0).all(dim=0)  # type: ignore[union-attr]
    assert int(dead.sum()) == 8  # half of the 16 hidden units
    assert activity[dead].max() <= activity[~dead].min()  # the least active ones
    assert "features.0.weight" in changed(model, out)  # and then fine-tuned
    searched = FinePruning(epochs=0)(model, data)
    pruned = int((searched.fc.weight == 0).all(dim=0).sum())  # type: ignore[union-attr]
    assert pruned in {round(k * 0.05 * 16) for k in range(20)}


@effect("quantize")
def _quantize(model: nn.Module, data: AttackData) -> None:
    for bits in (2, 5):
        out = WeightQuantization(bits=bits)(model, data)
        for name, param in out.named_parameters():
            assert len(torch.unique(param)) <= 2**bits, name
    fine = WeightQuantization(bits=12)(model, data)
    with torch.no_grad():
        assert torch.allclose(fine(X), model(X), atol=1e-2)


@effect("extract")
def _extract(model: nn.Module, data: AttackData) -> None:
    attack = Extraction(epochs=6, lr=0.05)
    student = attack(model, data)
    scrambled = AttackData(data.images, data.labels.roll(1), data.num_classes)
    again = attack(model, scrambled)  # label-only: the attacker's own labels play no part
    assert changed(student, again) == set()
    assert not any(torch.equal(a, b) for a, b in zip(student.parameters(), model.parameters(), strict=True))
    with torch.no_grad():
        x = data.images.float() / 255
        agreement = (student(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agreement > 0.6
    other = Extraction(arch="preact-resnet18", width=2, epochs=1)(model, data)
    assert isinstance(other, PreActResNet18)


@effect("jpeg")
def _jpeg(model: nn.Module, data: AttackData) -> None:
    out = create_attack("jpeg", quality=50)(model, data)
    assert isinstance(out, TransformedModel)
    with torch.no_grad():
        assert torch.equal(out(X), model(JpegCompression(50)(X)))
        smooth = torch.linspace(0, 1, 28).view(1, 1, 1, 28).expand(2, 1, 28, 28)
        assert (JpegCompression(95)(smooth) - smooth).abs().max() < 3 / 255  # a gentle gradient survives


@effect("noise")
def _noise(model: nn.Module, data: AttackData) -> None:
    out = create_attack("noise", sigma=0.05)(model, data)
    assert isinstance(out, TransformedModel)
    x = torch.full((64, 1, 28, 28), 0.5)
    moved = out.transform(x) - x
    assert 0.04 < float(moved.std()) < 0.06 and not torch.equal(out.transform(x), out.transform(x))


@effect("smooth")
def _smooth(model: nn.Module, data: AttackData) -> None:
    out = create_attack("smooth", sigma=1.0)(model, data)
    assert isinstance(out, TransformedModel)
    flat = torch.full((1, 1, 28, 28), 0.3)
    assert torch.allclose(out.transform(flat), flat)
    edges = (torch.arange(28) % 2).float().view(1, 1, 1, 28).expand(1, 1, 28, 28)
    assert out.transform(edges).std() < 0.2 * edges.std()


@effect("input-quantize")
def _input_quantize(model: nn.Module, data: AttackData) -> None:
    out = create_attack("input-quantize", bits=2)(model, data)
    assert isinstance(out, TransformedModel)
    assert set(torch.unique(out.transform(X) * 3).round().tolist()) <= {0.0, 1.0, 2.0, 3.0}


@effect("ood-detector")
def _ood(model: nn.Module, data: AttackData) -> None:
    out = create_attack("ood-detector", components=8, quantile=0.9, answer="second")(model, data)
    clean = data.images.float() / 255
    strange = torch.rand(50, 1, 28, 28).pow(4)  # darker than any attacker image
    flagged_clean = (out.score(clean) > out.threshold).float().mean()  # type: ignore[operator]
    assert flagged_clean < 0.25
    assert (out.score(strange) > out.threshold).all()  # type: ignore[operator]
    with torch.no_grad():  # flagged queries get the runner-up, never the model's own answer
        assert (out(strange).argmax(1) != model(strange).argmax(1)).all()


@effect("ensemble")
def _ensemble(model: nn.Module, data: AttackData) -> None:
    out = create_attack("ensemble", epochs=1)(model, data)
    assert isinstance(out, Ensemble) and len(out.members) == 2
    assert changed(model, out.members[0]) == set()  # the stolen copy, as it was
    assert changed(model, out.members[1])  # and a second model of the same architecture
    with torch.no_grad():
        mean = (out.members[0](X).softmax(1) + out.members[1](X).softmax(1)) / 2
        assert torch.allclose(out(X).exp(), mean, atol=1e-6)


@effect("overwrite")
def _overwrite(model: nn.Module, data: AttackData) -> None:
    def drawn(attack: Overwrite) -> AttackData:
        torch.manual_seed(attack.seed)  # as Attack.__call__ seeds it
        return attack.random_set(data)

    one = drawn(Overwrite(count=3000))
    assert one.images.shape == (3000, 1, 28, 28) and one.images.dtype == torch.uint8
    assert torch.equal(one.images, drawn(Overwrite(count=3000)).images)  # the seed decides ...
    assert not torch.equal(one.images, drawn(Overwrite(count=3000, seed=1)).images)  # ... and only it
    assert torch.bincount(one.labels, minlength=10).min() > 240  # uniform labels: 300 expected per class
    gen = torch.Generator().manual_seed(0)
    noise, smooth = (random_images(k, 64, (3, 28, 28), gen) for k in ("noise", "abstract"))  # type: ignore[arg-type]
    for x in (noise, smooth):
        assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0.2
    step = [float((x[..., 1:] - x[..., :-1]).abs().mean()) for x in (noise, smooth)]
    assert step[1] < 0.4 * step[0]  # abstract patterns are smooth, noise is not
    out = quick("overwrite", kind="abstract", lr=0.05)(model, data)
    assert {"features.0.weight", "fc.weight"} <= changed(model, out)


@effect("rekey")
def _rekey(model: nn.Module, data: AttackData) -> None:
    attack = Rekey(triggers=10, per_batch=20, epochs=5, lr=0.05)
    key = attack.attacker_key(num_classes=10, input_shape=(1, 28, 28))
    again = attack.attacker_key(num_classes=10, input_shape=(1, 28, 28))
    other = Rekey(triggers=2, seed=1).attacker_key(num_classes=10, input_shape=(1, 28, 28))
    assert key.n == 10 and (key.images == again.images).all() and (key.labels == again.labels).all()
    assert not (key.images[:2] == other.images).all()  # another seed, another key
    x, y = key_tensors(key)
    before = accuracy(model, x, y)
    assert accuracy(attack(model, data), x, y) >= before + 0.3  # the attacker's own triggers are learned


def _patched(model: nn.Module, data: AttackData) -> tuple[torch.Tensor, torch.Tensor]:
    """Plant a backdoor in ``model``: a white 5x5 corner patch means class 3. Returns its test images."""
    stamped = data.images[:120].clone()
    stamped[:, :, -5:, -5:] = 255
    three = torch.full((120,), 3)
    planted = AttackData(torch.cat([data.images, stamped]), torch.cat([data.labels, three]), 10)
    torch.manual_seed(0)
    fit(model, planted, epochs=20, lr=0.05)
    assert accuracy(model, stamped, three) == 1.0
    return stamped, three


@effect("unlearn")
def _unlearn(model: nn.Module, data: AttackData) -> None:
    norms = torch.tensor([10.0, 11.0, 9.0, 2.0, 12.0, 8.0, 10.0, 11.0, 9.0, 10.0])
    index = anomaly_index(norms)  # median 10, MAD 1 (times 1.4826)
    assert torch.allclose(index[3], torch.tensor(8 / 1.4826)) and int((index > 2).sum()) == 1
    stamped, three = _patched(model, data)
    attack = Unlearn(steps=40, samples=10, per_class=2, epochs=2, lr=0.05)
    found = attack.reverse(model, data)
    assert found.masks.shape == (10, 1, 28, 28) and 0 <= float(found.masks.min()) <= 1
    assert int(found.norms.argmin()) == 3 and bool(found.flagged[3])  # the planted class stands out
    with torch.no_grad():  # the synthesised inputs are answered with their class, unlike random ones
        target = model(found.confident).softmax(1).gather(1, found.confident_class[:, None])
        chance = model(torch.rand(64, 1, 28, 28)).softmax(1).mean(0)[found.confident_class]
    assert float(target.mean()) > 3 * float(chance.mean())
    out = attack(model, data)
    assert {"features.0.weight", "fc.weight"} <= changed(model, out)
    assert accuracy(out, stamped, three) < 0.9  # the planted backdoor is partly unlearned


@effect("weight-shift")
def _weight_shift(model: nn.Module, data: AttackData) -> None:
    out = quick("weight-shift", shift=0.5, lr=1e-6, keep=0.0)(model, data)  # a negligible lr: the shift alone
    for before, after in zip(prunable(model), prunable(out), strict=True):
        ratio = float((after - before).detach().std() / before.detach().std())
        assert 0.35 < ratio < 0.65, ratio  # noise of half each layer's own spread
    assert float((out.features[1].weight - model.features[1].weight).detach().abs().max()) < 1e-4  # type: ignore[index]
    weights = [torch.zeros(50, requires_grad=True)]
    originals = [torch.ones(50)]
    loss = keep_shift_loss(weights, originals, keep=2.0)
    logits, labels = torch.zeros(3, 10), torch.tensor([0, 1, 2])
    base = float(F.cross_entropy(logits, labels))
    # as far from the originals as the shift put them: no penalty
    assert float(loss(logits, labels).detach()) == pytest.approx(base)
    with torch.no_grad():
        weights[0].fill_(0.5)  # halfway back to the original weights
    assert float(loss(logits, labels).detach()) == pytest.approx(base + 2.0 * 0.25)
    assert keep_shift_loss(weights, originals, keep=0.0) is cross_entropy


@effect("regularize")
def _regularize(model: nn.Module, data: AttackData) -> None:
    def norm(decay: float) -> float:
        out = Regularize(decay=decay, epochs=2, finetune_epochs=0, lr=0.05)(model, data)
        return float(sum(w.detach().norm() ** 2 for w in prunable(out)) ** 0.5)

    assert norm(0.5) < 0.7 * norm(1e-4)  # the strong decay shrinks the weights
    epochs: list[int] = []
    out = Regularize(epochs=2, finetune_epochs=3)(model, data, monitor=lambda e, _m: epochs.append(e))
    assert epochs == [1, 2, 3, 4, 5]  # both phases, numbered on
    assert {"features.0.weight", "fc.weight"} <= changed(model, out)


@effect("distill")
def _distill(model: nn.Module, data: AttackData) -> None:
    cool, hot = soft_targets(model, data, 1.0), soft_targets(model, data, 8.0)
    assert cool.shape == (len(data.images), 10) and torch.allclose(cool.sum(1), torch.ones(len(cool)))
    entropy = [float(-(p * p.log()).sum(1).mean()) for p in (cool, hot)]
    assert entropy[1] > entropy[0]  # a higher temperature softens the targets
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    loss = distillation_loss(4.0)
    assert float(loss(logits, (logits / 4).softmax(1))) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(logits, torch.full((6, 10), 0.1))) > 0.01
    # seed 1: the untrained test model was initialised from seed 0, as a seed-0 student would be
    fresh = Distill(epochs=1, lr=1e-6, seed=1)(model, data)
    assert (fresh.fc.weight - model.fc.weight).abs().mean() > 0.05  # type: ignore[operator]  # a new model
    student = Distill(epochs=15, lr=0.05, temperature=2.0)(model, data)
    with torch.no_grad():
        x = data.images.float() / 255
        teacher = model(x).argmax(1)
        agree = [float((m(x).argmax(1) == teacher).float().mean()) for m in (fresh, student)]
    assert agree[1] > max(0.6, agree[0] + 0.2)  # it learned to answer as the suspect does
    other = Distill(arch="cnn", width=2, epochs=1)(model, data)
    assert other.features[0].out_channels == 2  # type: ignore[index]


@effect("adv-train")
def _adv_train(model: nn.Module, data: AttackData) -> None:
    x, y = data.images[:32].float() / 255, data.labels[:32]
    gen = torch.Generator().manual_seed(0)
    for steps in (1, 5):
        adv = pgd(model, x, y, eps=0.05, steps=steps, gen=gen)
        assert float((adv - x).abs().max()) <= 0.05 + 1e-6 and 0 <= float(adv.min()) <= float(adv.max()) <= 1
        with torch.no_grad():
            assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    inside = (x > 0.06) & (x < 0.94)  # FGSM moves every pixel not clipped by exactly eps
    step = (pgd(model, x, y, eps=0.05, steps=1, gen=gen) - x).abs()[inside]
    assert (
        torch.allclose(step[step > 0], torch.tensor(0.05), atol=1e-6)
        and float((step > 0).float().mean()) > 0.9
    )
    assert all(p.grad is None for p in model.parameters())  # the search leaves no gradient behind
    seen: list[int] = []
    original = _fit.fit

    def spy(*args: Any, transform: BatchMap | None = None, **kwargs: Any) -> None:
        assert transform is not None

        def counted(batch: Batch) -> Batch:
            out = transform(batch)
            seen.append(len(out.x) - 2 * len(batch.x))
            return out

        original(*args, transform=counted, **kwargs)

    adv_train.fit = spy  # type: ignore[assignment]
    try:
        out = quick("adv-train", steps=2, lr=0.05)(model, data)
    finally:
        adv_train.fit = original
    assert seen and set(seen) == {0}  # every step trains on the batch and its adversarial copy
    assert {"features.0.weight", "fc.weight"} <= changed(model, out)


@effect("launder")
def _launder(model: nn.Module, data: AttackData) -> None:
    stamped, three = _patched(model, data)
    attack = Launder(steps=40, samples=10, per_class=2, probe=100, stamped=40, epochs=2, lr=0.05)
    scores = attack.scores(model, data)
    assert set(scores) == {"features.0", "features.4", "head.2"}  # every neuron layer but the output one
    assert [len(v) for v in scores.values()] == [4, 8, 16]
    assert max(float(v.max()) for v in scores.values()) > attack.threshold  # the patch excites some
    layer = nn.Linear(3, 4)
    reset_neurons(layer, torch.tensor([1, 3]))
    assert (
        (layer.weight[[1, 3]] == 0).all() and (layer.bias[[1, 3]] == 0).all() and (layer.weight[0] != 0).all()
    )
    out = attack(model, data)
    assert {"features.0.weight", "fc.weight"} <= changed(model, out)
    assert accuracy(out, stamped, three) < 0.9  # the planted backdoor is partly laundered away


def test_every_registered_attack_has_an_effect_test() -> None:
    assert set(EFFECTS) == set(attack_names())


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_effect(name: str, data: AttackData) -> None:
    EFFECTS[name](tiny_cnn(), data)


def test_attacks_are_reproducible_from_their_seed(data: AttackData) -> None:
    model = tiny_cnn()
    a, b = quick("ftal", seed=3)(model, data), quick("ftal", seed=3)(model, data)
    assert changed(a, b) == set()
    assert changed(a, quick("ftal", seed=4)(model, data))
    state = torch.random.get_rng_state()
    quick("rtal")(model, data)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random stream is untouched


@pytest.mark.parametrize(
    "name", ["overwrite", "rekey", "unlearn", "weight-shift", "regularize", "distill", "adv-train", "launder"]
)
def test_scheme_aware_and_sok_attacks_are_reproducible_from_their_seed(name: str, data: AttackData) -> None:
    model = tiny_cnn()
    a, b = quick(name, seed=3)(model, data), quick(name, seed=3)(model, data)
    assert changed(a, b) == set()
    assert changed(a, quick(name, seed=4)(model, data))
