"""Challenges: fresh, versioned JSON files; anything malformed is refused with a one-line reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backmark.errors import BackmarkError
from backmark.public import load_challenge, new_challenge, save_challenge


def test_a_new_challenge_is_fresh_and_round_trips(tmp_path: Path) -> None:
    one, two = new_challenge(size=20), new_challenge()
    assert len(one.nonce) == 32 and one.nonce != two.nonce and one.digest != two.digest
    assert one.size == 20 and two.size is None
    path = save_challenge(one, tmp_path / "c.json")
    again = load_challenge(path)
    assert again.doc == one.doc and again.digest == one.digest
    with pytest.raises(BackmarkError, match="already exists"):
        save_challenge(two, path)


def test_a_verifier_may_write_its_own_with_extra_fields(tmp_path: Path) -> None:
    doc = {
        "format": "backmark-challenge",
        "version": 1,
        "nonce": "ab" * 16,
        "created": "2026-12-01T00:00:00+00:00",
        "size": 10,
        "verifier": "a court",
    }
    (tmp_path / "c.json").write_text(json.dumps(doc))
    challenge = load_challenge(tmp_path / "c.json")
    assert challenge.doc["verifier"] == "a court"
    changed = dict(doc, verifier="another court")
    (tmp_path / "d.json").write_text(json.dumps(changed))
    assert load_challenge(tmp_path / "d.json").digest != challenge.digest


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not valid JSON"),
        ('{"size": 1' + "0" * 5000 + "}", "cannot be read as JSON"),  # past Python's digit limit
        ("[1, 2]", "not a backmark challenge"),
        ('{"format": "backmark-challenge", "version": 9}', "v9"),
        ('{"format": "backmark-challenge", "version": 1, "nonce": "abcd", "created": "x"}', "at least 16"),
        ('{"format": "backmark-challenge", "version": 1, "nonce": "zz", "created": "x"}', "at least 16"),
        ('{"format": "backmark-challenge", "version": 1, "nonce": "' + "ab" * 16 + '"}', "created"),
        (
            '{"format": "backmark-challenge", "version": 1, "nonce": "' + "ab" * 16 + '", "created": "x", '
            '"size": 0}',
            "size",
        ),
    ],
)
def test_bad_challenges_are_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(BackmarkError) as info:
        load_challenge(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_missing_challenge_is_named(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match=r"challenge .*missing\.json not found"):
        load_challenge(tmp_path / "missing.json")
