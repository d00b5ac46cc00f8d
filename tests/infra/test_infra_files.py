"""The generic infrastructure: canonical JSON, versioned JSON files, seeds from integers."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from backmark.errors import BackmarkError
from backmark.infra.canonical_json import canonical_digest, canonical_json
from backmark.infra.json_files import check_versioned, read_file, read_json
from backmark.infra.seeds import key_seed


def test_canonical_json_is_sorted_compact_and_ascii() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == b'{"a":[1,"\\u00e9"],"b":1}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})
    assert canonical_digest({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


def test_read_json_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match=r"proof .* not found"):
        read_json(tmp_path / "missing.json", "proof")
    with pytest.raises(BackmarkError, match="is a folder"):
        read_file(tmp_path, "proof")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(BackmarkError, match="not valid JSON"):
        read_json(bad, "proof")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(BackmarkError, match="nested too deeply"):
        read_json(deep, "proof")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"x": 1}))
    assert read_json(good, "proof") == {"x": 1}


def test_check_versioned_refuses_another_format_or_version() -> None:
    check_versioned(
        {"format": "backmark-x", "version": 2}, "x.json", format="backmark-x", version=2, noun="x"
    )
    with pytest.raises(
        BackmarkError, match=re.escape('x.json is not a backmark x (no "format": "backmark-x")')
    ):
        check_versioned({"format": "y"}, "x.json", format="backmark-x", version=2, noun="x")
    with pytest.raises(BackmarkError, match="make one"):
        check_versioned([], "x.json", format="backmark-x", version=2, noun="x", hint="make one")
    with pytest.raises(BackmarkError, match=re.escape("x.json is x v1; this backmark reads v2")):
        check_versioned(
            {"format": "backmark-x", "version": 1}, "x.json", format="backmark-x", version=2, noun="x"
        )


def test_key_seed_is_the_tagged_hash_of_the_integer() -> None:
    assert key_seed("backmark/cli-seed/", 7) == hashlib.sha256(b"backmark/cli-seed/7").digest()
    assert key_seed("a/", 1) != key_seed("b/", 1)
