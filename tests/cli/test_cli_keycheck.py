"""``backmark keycheck``: a key made by keygen regenerates; an altered or folder key is an error (exit 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cli_helpers import run
from PIL import Image

from backmark.keys import MK_NAME, load_marking_key, save_marking_key


def keygen(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> Path:
    argv = ["keygen", "--out", str(out), "--classes", "10", "--shape", "1x12x12", "--size", "8", "-q"]
    assert run(capsys, *argv, *extra)[0] == 0
    return out


@pytest.mark.parametrize("kind", ["abstract", "noise"])
def test_a_generated_key_regenerates(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(capsys, tmp_path / "key", "--kind", kind)
    code, out, err = run(capsys, "keycheck", "--key", str(key))
    assert (code, err) == (0, "")
    assert f"all 8 {kind} trigger images and their labels are the ones its master seed generates" in out
    assert run(capsys, "keycheck", "--key", str(key / MK_NAME), "-q") == (0, "", "")


def test_a_changed_pixel_exits_2_naming_the_trigger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = keygen(capsys, tmp_path / "key")
    mk = load_marking_key(key / MK_NAME)
    images = mk.images.copy()
    images[5, 0, 3, 3] = 255 - images[5, 0, 3, 3]
    save_marking_key(dataclasses.replace(mk, images=images), key / MK_NAME, force=True)
    code, out, err = run(capsys, "keycheck", "--key", str(key))
    assert code == 2 and out == ""
    assert err.startswith("backmark: error: trigger image 5 is not the one the key's seed generates")
    assert err.count("\n") == 1


def test_a_folder_key_cannot_be_regenerated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(8):
        Image.new("L", (16, 16), 30 * i).save(pics / f"{i}.png")
    key = keygen(capsys, tmp_path / "key", "--kind", f"folder:{pics}")
    code, out, err = run(capsys, "keycheck", "--key", str(key))
    assert code == 2 and out == ""
    assert "cannot be regenerated: its trigger kind folder holds images read from files" in err


def test_a_missing_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keycheck", "--key", str(tmp_path / "none"))
    assert code == 2 and "not found" in err
