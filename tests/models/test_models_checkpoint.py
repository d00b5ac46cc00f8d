"""Checkpoints: exact round trips, plain weights_only files, and one-line errors for every bad file."""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.models import ModelInfo, build, create_model, list_models, load_checkpoint, save_checkpoint

SMALL: dict[str, dict[str, Any]] = {"cnn": {"width": 4, "hidden": 8}, "preact-resnet18": {"width": 4}}
SHAPES = {"cnn": (1, 28, 28), "preact-resnet18": (3, 32, 32)}


def info_for(name: str, meta: dict[str, Any] | None = None) -> ModelInfo:
    return ModelInfo(name, SMALL.get(name, {}), SHAPES.get(name, (3, 32, 32)), 10, meta or {})


def trained_a_little(info: ModelInfo) -> nn.Module:
    """A model whose weights and batch-norm statistics all moved away from their initial values."""
    torch.manual_seed(1)
    model = build(info)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value))
            else:
                value.add_(3)  # num_batches_tracked
    return model.eval()


def load_error(path: Path) -> str:
    with pytest.raises(BackmarkError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module, ModelInfo]:
    info = info_for("cnn", {"accuracy": 0.91, "key_id": "abcd", "epochs": [1, 2]})
    model = trained_a_little(info)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model, info)
    return path, model, info


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_round_trip_gives_identical_outputs(tmp_path: Path, name: str) -> None:
    info = info_for(name, {"note": name})
    model = trained_a_little(info)
    path = save_checkpoint(tmp_path / "m.pt", model, info)
    loaded, loaded_info = load_checkpoint(path)
    assert loaded_info == info
    assert not loaded.training and type(loaded) is type(model)
    x = torch.rand(2, *info.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_loads_with_plain_torch_weights_only(saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    path, model, _ = saved
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(payload, dict)
    assert payload["format"] == "backmark-checkpoint" and payload["version"] == 1
    assert payload["arch"] == "cnn" and payload["input_shape"] == [1, 28, 28]
    assert payload["num_classes"] == 10
    assert set(payload["state_dict"]) == set(model.state_dict())

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, str | int | float | torch.Tensor)

    assert plain(payload)


def test_holds_no_pickled_module(saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    path = saved[0]
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        assert len(pickles) == 1
        data = archive.read(pickles[0])
    names: list[str] = []
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(str(arg))
        if opcode.name == "GLOBAL":
            names.append(str(arg).replace(" ", "."))
        if opcode.name == "STACK_GLOBAL":
            names.append(".".join(strings[-2:]))
    assert names, "a torch checkpoint rebuilds its tensors through globals"
    for name in names:
        assert name.startswith(("torch._utils", "torch.", "collections.OrderedDict")), name
        assert "backmark" not in name and "torch.nn" not in name, name


def test_a_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save({"format": "backmark-checkpoint", "model": nn.Linear(2, 2)}, path)
    message = load_error(path)
    assert "holds pickled Python objects" in message and "\x1b" not in message  # no terminal colours
    assert message.endswith("save the weights with backmark.models.save_checkpoint")  # not cut off


def test_the_marking_key_is_not_in_a_checkpoint(saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    payload = torch.load(saved[0], weights_only=True)
    assert not {"labels", "images", "marking_key", "openings"} & set(payload)


def test_save_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    info = info_for("cnn")
    path = save_checkpoint(tmp_path / "m.pt", build(info), info)
    before = path.read_bytes()
    with pytest.raises(BackmarkError, match="already exists; pass force=True"):
        save_checkpoint(path, build(info), info)  # like every other writer: no overwrite by default
    assert path.read_bytes() == before
    other = trained_a_little(info)
    save_checkpoint(path, other, info, force=True)
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in other.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left


def test_records_are_not_named_after_a_temporary_file(saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    with zipfile.ZipFile(saved[0]) as archive:
        prefixes = {name.split("/", 1)[0] for name in archive.namelist()}
    assert prefixes == {"archive"}


def test_save_errors_name_the_given_path(tmp_path: Path) -> None:
    info = info_for("cnn")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackmarkError, match=r"file is a file, not a folder; choose another path") as err:
        save_checkpoint(tmp_path / "file" / "m.pt", build(info), info)
    assert str(tmp_path / "file" / "m.pt") in str(err.value) and "exists" not in str(err.value)
    with pytest.raises(BackmarkError, match=r"is a folder; give the name of a file") as err:
        save_checkpoint(tmp_path, build(info), info, force=True)
    with pytest.raises(BackmarkError, match=r"^cannot write /proc/m\.pt: [^;]+; .*choose") as err:
        save_checkpoint("/proc/m.pt", build(info), info)
    assert "tmp" not in str(err.value)


def test_every_flipped_byte_is_refused_or_harmless(
    tmp_path: Path, saved: tuple[Path, nn.Module, ModelInfo]
) -> None:
    """A changed byte never loads as different weights (torch.load alone skips the zip CRCs)."""
    raw = saved[0].read_bytes()
    reference = saved[1].state_dict()
    path = tmp_path / "flipped.pt"
    refused = 0
    directory = raw.find(b"PK\x01\x02")  # the zip central directory, which no CRC covers
    positions = list(range(0, directory, 199)) + list(range(directory, len(raw), 5))
    for pos in positions:
        data = bytearray(raw)
        data[pos] ^= 0x10 if pos % 2 else 0x08  # 0x10 is the folder attribute, 0x08 turns stored to deflate
        path.write_bytes(data)
        try:
            model, _ = load_checkpoint(path)
        except BackmarkError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        # only bytes torch and zip never read (alignment padding, comments) may change unnoticed
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in reference.items()), pos
    assert refused > 0.5 * len(positions)


def test_a_changed_weight_is_refused(tmp_path: Path, saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    raw = bytearray(saved[0].read_bytes())
    with zipfile.ZipFile(saved[0]) as archive:
        record = max(archive.infolist(), key=lambda i: i.file_size)  # the largest tensor
        assert record.compress_type == zipfile.ZIP_STORED
    name_length = int.from_bytes(raw[record.header_offset + 26 : record.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[record.header_offset + 28 : record.header_offset + 30], "little")
    start = record.header_offset + 30 + name_length + extra_length
    raw[start + record.file_size // 2] ^= 0x01
    path = tmp_path / "changed.pt"
    path.write_bytes(bytes(raw))
    message = load_error(path)
    assert f"is corrupt: its record data/{record.filename.rsplit('/', 1)[1]} fails" in message
    assert "restore the file" in message


def test_truncated_files(tmp_path: Path, saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    raw = saved[0].read_bytes()
    path = tmp_path / "short.pt"
    for cut in (0, 1, 10, 100, len(raw) // 2, len(raw) - 22, len(raw) - 1):
        path.write_bytes(raw[:cut])
        load_error(path)


def test_files_that_are_not_checkpoints(tmp_path: Path, saved: tuple[Path, nn.Module, ModelInfo]) -> None:
    path = tmp_path / "other.pt"
    path.write_text("just some text\n")
    assert "not a readable backmark checkpoint" in load_error(path)
    torch.save(torch.zeros(3), path)
    assert "not a backmark checkpoint" in load_error(path)
    torch.save(saved[1].state_dict(), path)  # a bare state dict
    assert "not a backmark checkpoint" in load_error(path)
    payload = torch.load(saved[0], weights_only=True)
    torch.save({**payload, "version": 2}, path)
    assert "version 2" in load_error(path)
    for missing in ("arch", "input_shape", "state_dict", "meta"):
        torch.save({k: v for k, v in payload.items() if k != missing}, path)
        assert "damaged or does not fit" in load_error(path), missing
    torch.save({**payload, "arch_args": "{not json"}, path)
    assert "damaged" in load_error(path)
    assert "not found" in load_error(tmp_path / "missing.pt")
    assert "not found" in load_error(tmp_path)  # a folder


def test_state_of_another_architecture_is_refused(
    tmp_path: Path, saved: tuple[Path, nn.Module, ModelInfo]
) -> None:
    payload = torch.load(saved[0], weights_only=True)
    path = tmp_path / "wrong.pt"
    cases = [
        {"arch": "preact-resnet18", "input_shape": [3, 32, 32], "arch_args": '{"width": 4}'},  # other arch
        {"arch_args": '{"width": 8, "hidden": 8}'},  # other width
        {"num_classes": 7},  # other output layer
        {"input_shape": [3, 28, 28]},  # other input channels
    ]
    for change in cases:
        torch.save({**payload, **change}, path)
        assert "does not fit its architecture" in load_error(path), change
    torch.save(
        {**payload, "arch": "preact-resnet18", "input_shape": [3, 32, 32], "arch_args": '{"hidden": 8}'}, path
    )
    assert "architecture preact-resnet18 has no option 'hidden'; its options: width" in load_error(path)
    torch.save({**payload, "arch": "vgg"}, path)
    assert "unknown architecture 'vgg'" in load_error(path)


def test_create_model_and_build_agree() -> None:
    info = info_for("cnn")
    torch.manual_seed(3)
    a = build(info)
    torch.manual_seed(3)
    b = create_model("cnn", num_classes=10, input_shape=(1, 28, 28), width=4, hidden=8)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    ("offset", "mask", "what"),
    [(38, 0x10, "folder attribute"), (10, 0x08, "stored -> deflate"), (8, 0x01, "encrypted flag")],
)
def test_central_directory_damage_is_refused(
    tmp_path: Path, saved: tuple[Path, nn.Module, ModelInfo], offset: int, mask: int, what: str
) -> None:
    """Damage to the zip's central directory, which no CRC covers and torch.load reads without a check.

    The folder attribute in particular makes torch return uninitialised memory as the tensor.
    """
    raw = saved[0].read_bytes()
    path = tmp_path / "dir.pt"
    entries = [i for i in range(len(raw)) if raw.startswith(b"PK\x01\x02", i)]
    names = [raw[i + 46 : i + 46 + int.from_bytes(raw[i + 28 : i + 30], "little")] for i in entries]
    tensors = [e for e, name in zip(entries, names, strict=True) if b"/data/" in name]
    assert len(tensors) == len(saved[1].state_dict())
    for entry in tensors[:3] + tensors[-2:]:
        data = bytearray(raw)
        data[entry + offset] ^= mask
        path.write_bytes(bytes(data))
        load_error(path)
