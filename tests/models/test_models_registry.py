"""Every registered architecture builds, answers (B, classes) logits on pixels, and has the stated size."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.models import Normalize, create_model, get_model, list_models, register_model

NAMES = [spec.name for spec in list_models()]
# smaller variants of known models, to keep CPU tests fast; a new model is tested at its defaults
SMALL: dict[str, dict[str, int]] = {"cnn": {"width": 8, "hidden": 16}, "preact-resnet18": {"width": 8}}


def hinted_shape(name: str, channels: int) -> tuple[int, int, int]:
    spec = get_model(name)
    match = re.search(r"(\d+)x(\d+)", spec.input_hint)
    assert match, f"input hint {spec.input_hint!r} of {name} names no HxW size"
    return (channels, int(match.group(1)), int(match.group(2)))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_registry_lists_the_known_models() -> None:
    assert {"cnn", "preact-resnet18"} <= set(NAMES)
    assert sorted(NAMES) == NAMES
    for spec in list_models():
        assert spec.description and spec.input_hint and callable(spec.factory)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("channels", "num_classes", "small"), [(3, 10, False), (1, 7, True), (3, 3, True)])
def test_every_model_answers_logits_on_its_hinted_input(
    name: str, channels: int, num_classes: int, small: bool
) -> None:
    shape = hinted_shape(name, channels)
    torch.manual_seed(0)
    options = SMALL.get(name, {}) if small else {}
    model = create_model(name, num_classes=num_classes, input_shape=shape, **options)
    model.eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, num_classes) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert not torch.equal(logits[0], logits[1])  # the output depends on the input
    # the model normalises inputs itself: its statistics are part of the state dict
    normalizers = [m for m in model.modules() if isinstance(m, Normalize)]
    assert len(normalizers) == 1
    assert any(k.endswith("mean") for k in model.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_every_model_trains_one_step(name: str) -> None:
    shape = hinted_shape(name, 3)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, input_shape=shape, **SMALL.get(name, {}))
    model.train()
    x, y = torch.rand(2, *shape), torch.tensor([0, 1])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def preact_resnet18_parameters(channels: int, width: int, num_classes: int) -> int:
    """Parameter count of a pre-activation ResNet-18, from its layer list (He et al. 2016)."""
    total = channels * width * 9  # stem conv, no bias
    cin = width
    for stage in range(4):
        cout = width * 2**stage
        for block in range(2):
            block_in = cin if block == 0 else cout
            total += 2 * block_in + block_in * cout * 9 + 2 * cout + cout * cout * 9  # bn, conv, bn, conv
            if block == 0 and (stage > 0 or cin != cout):
                total += block_in * cout  # 1x1 shortcut
        cin = cout
    return total + 2 * cin + cin * num_classes + num_classes  # final bn, fc


def test_preact_resnet18_has_the_reference_size() -> None:
    model = create_model("preact-resnet18", num_classes=10, input_shape=(3, 32, 32))
    n = count(model)
    assert n == preact_resnet18_parameters(3, 64, 10)
    assert round(n / 1e6, 2) == 11.17
    assert model.conv1.out_channels == 64 and model.fc.in_features == 512  # type: ignore[union-attr]


@pytest.mark.parametrize("width", [4, 16, 32])
def test_preact_resnet18_width_option(width: int) -> None:
    model = create_model("preact-resnet18", num_classes=100, input_shape=(1, 32, 32), width=width)
    assert count(model) == preact_resnet18_parameters(1, width, 100)
    assert model.fc.in_features == 8 * width and model.fc.out_features == 100  # type: ignore[union-attr]


@pytest.mark.parametrize(("channels", "width", "hidden", "num_classes"), [(1, 32, 128, 10), (3, 8, 16, 7)])
def test_cnn_size(channels: int, width: int, hidden: int, num_classes: int) -> None:
    model = create_model(
        "cnn", num_classes=num_classes, input_shape=(channels, 28, 28), width=width, hidden=hidden
    )
    expected = (
        channels * width * 25 + 2 * width  # conv 5x5 (no bias), batch norm
        + width * 2 * width * 25 + 4 * width
        + 2 * width * 16 * hidden + hidden  # hidden fully connected layer on 4x4 features
        + hidden * num_classes + num_classes
    )  # fmt: skip
    assert count(model) == expected
    if (channels, width, hidden, num_classes) == (1, 32, 128, 10):
        assert 180_000 < count(model) < 190_000  # "about 185k"


def test_cnn_accepts_inputs_down_to_20_pixels() -> None:
    model = create_model("cnn", num_classes=10, input_shape=(1, 20, 20)).eval()
    assert model(torch.rand(2, 1, 20, 20)).shape == (2, 10)


def test_normalize_uses_given_statistics() -> None:
    model = create_model("cnn", num_classes=10, input_shape=(3, 28, 28), mean=(0.1, 0.2, 0.3), std=(1, 2, 4))
    norm = next(m for m in model.modules() if isinstance(m, Normalize))
    x = torch.ones(1, 3, 2, 2)
    expected = torch.tensor([0.9, 0.4, 0.175]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(norm(x), expected)


def test_unknown_architecture_lists_the_valid_names() -> None:
    with pytest.raises(BackmarkError) as info:
        create_model("resnet-50", num_classes=10, input_shape=(3, 32, 32))
    message = str(info.value)
    assert "resnet-50" in message and all(name in message for name in NAMES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean": (0.5, 0.5)},  # two values for three channels
        {"std": (0.5,)},
    ],
)
def test_bad_statistics_are_backmark_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(BackmarkError, match=r"^mean and std need 3 values each") as info:
        create_model("cnn", num_classes=10, input_shape=(3, 28, 28), **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_every_model_lists_its_options_and_refuses_others(name: str) -> None:
    spec = get_model(name)
    assert not {"in_channels", "num_classes", "mean", "std"} & set(spec.options)
    shape = hinted_shape(name, 1)
    with pytest.raises(BackmarkError) as info:
        create_model(name, num_classes=10, input_shape=shape, depth=3)
    message = str(info.value)
    assert "\n" not in message and "'depth'" in message and name in message
    assert all(option in message for option in spec.options)


@pytest.mark.parametrize("name", NAMES)
def test_every_model_takes_each_default_as_given(name: str) -> None:
    spec = get_model(name)
    shape = hinted_shape(name, 1)
    torch.manual_seed(0)
    implicit = create_model(name, num_classes=10, input_shape=shape)
    torch.manual_seed(0)
    explicit = create_model(name, num_classes=10, input_shape=shape, **spec.options)
    assert implicit.state_dict().keys() == explicit.state_dict().keys()
    assert all(torch.equal(v, explicit.state_dict()[k]) for k, v in implicit.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_every_model_checks_option_types(name: str) -> None:
    spec = get_model(name)
    typed = {k: v for k, v in spec.options.items() if v is not None}
    if not typed:
        pytest.skip(f"{name} has no option with a typed default")
    key = sorted(typed)[0]
    with pytest.raises(BackmarkError, match=rf"^option {key} of architecture {name} must be a"):
        create_model(name, num_classes=10, input_shape=hinted_shape(name, 1), **{key: "8"})


def test_cnn_options_come_from_its_signature() -> None:
    spec = get_model("cnn")
    assert dict(spec.options) == {"width": 32, "hidden": 128, "dropout": 0.25}
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28), dropout=0)  # an int for a float
    assert model.head[1].p == 0  # type: ignore[index]


def test_a_factory_without_a_checkable_signature_is_refused() -> None:
    def loose(**kwargs: object) -> nn.Module:
        return nn.Identity()

    with pytest.raises(TypeError, match="must take only keyword arguments"):
        register_model("loose", description="kwargs only", input_hint="28x28")(loose)
    assert "loose" not in [s.name for s in list_models()]


def test_a_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_model("cnn", description="again", input_hint="28x28")(lambda **kw: nn.Identity())
    assert [s.name for s in list_models()] == NAMES
