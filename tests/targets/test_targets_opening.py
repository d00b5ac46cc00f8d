"""open_for_verify: every argument checked before anything is opened; decoys wrapped; the target closed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.export import export_model
from backmark.keys import generate_key
from backmark.models import create_model
from backmark.targets import (
    DecoyTarget,
    OnnxTarget,
    OpenedTarget,
    TargetSpec,
    open_for_verify,
)
from backmark.verify import verify

SHAPE = (1, 28, 28)


def _decoys(count: int = 40) -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (count, *SHAPE), dtype=torch.uint8, generator=gen)
    y = torch.arange(count, dtype=torch.int64) % 10
    return ImageDataset("noise", x, y, x, y, tuple(str(i) for i in range(10)))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("opening") / "m.onnx"
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, input_shape=SHAPE)
    export_model(model, path, format="onnx", input_shape=SHAPE)
    return path


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"decoys": -3}, "decoys must not be negative, got -3"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"decoy_data": "fashion-mnist"}, "decoy_data applies with decoys N"),
        ({"decoys": 41, "decoy_data": _decoys()}, "asked for 41 decoys but the decoy data has only 40"),
        ({"output": "label"}, "output applies to protocol v2 targets only"),
        ({"protocol": "v2"}, "protocol applies to http(s) targets"),
    ],
)
def test_bad_arguments_are_refused_before_the_target_is_opened(
    kwargs: dict[str, object], needle: str, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.onnx"  # opening it would fail with another message
    with pytest.raises(BackmarkError) as info:
        open_for_verify(f"onnx:{missing}", input_shape=SHAPE, num_classes=10, **kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_decoys_wrap_the_opened_target_and_report_what_was_sent(onnx_file: Path) -> None:
    mk = generate_key(num_classes=10, input_shape=SHAPE, size=20, seed=b"\x07" * 32)
    plain = open_for_verify(TargetSpec("onnx", str(onnx_file)), input_shape=SHAPE, num_classes=10)
    assert isinstance(plain.target, OnnxTarget) and plain.decoys is None and plain.queries is None
    expected = verify(plain.target, mk, mk.verification_key())
    with open_for_verify(
        f"onnx:{onnx_file}", input_shape=SHAPE, num_classes=10, decoys=30, decoy_data=_decoys(), decoy_seed=1
    ) as opened:
        assert isinstance(opened.target, DecoyTarget) and opened.decoys is opened.target
        assert str(opened.spec) == f"onnx:{onnx_file}"
        assert verify(opened.target, mk, mk.verification_key()) == expected  # only trigger answers count
        assert opened.queries is not None and (opened.queries.images, opened.queries.decoys) == (20, 30)


def test_decoy_data_of_another_shape_is_refused(onnx_file: Path) -> None:
    small = ImageDataset(
        "small", *(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)) * 2, ("a",)
    )
    with pytest.raises(BackmarkError, match="decoy data small has 1x8x8 images but the key has 1x28x28"):
        open_for_verify(f"onnx:{onnx_file}", input_shape=SHAPE, num_classes=10, decoys=2, decoy_data=small)


def test_closing_reaches_the_wrapped_target() -> None:
    closed: list[str] = []

    class Remote:
        def predict(self, images: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(images), dtype=torch.int64)

        def close(self) -> None:
            closed.append("closed")

    inner = Remote()
    wrapper = DecoyTarget(inner, _decoys().test_x, count=3)
    with OpenedTarget(target=wrapper, spec=TargetSpec("json", "http://x/"), decoys=wrapper):
        pass
    with OpenedTarget(target=inner, spec=TargetSpec("json", "http://x/")):
        pass
    assert closed == ["closed", "closed"]
