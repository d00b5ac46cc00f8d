"""The front door: ``import backmark as bm`` stays cheap, and its names are keyword-only and work."""

from __future__ import annotations

import inspect
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest

import backmark as bm
from backmark.errors import BackmarkError
from backmark.keys import generate_key


def test_import_backmark_does_not_import_torch() -> None:
    code = "import sys, backmark, backmark.cli.parser; print('torch' in sys.modules, len(backmark.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", str(len(bm.__all__))]


def test_every_name_resolves_and_functions_take_keywords_only() -> None:
    for name in bm.__all__:
        value = getattr(bm, name)
        if inspect.isfunction(value):
            params = list(inspect.signature(value).parameters.values())
            if name.startswith("load_"):  # load_key(path), load_model(path), load_dataset(spec)
                params = params[1:]
            assert {p.kind for p in params} <= {inspect.Parameter.KEYWORD_ONLY}, name
    assert set(bm.__all__) <= set(dir(bm))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bm.nothing  # noqa: B018


def test_the_subpackages_do_not_shadow_the_functions() -> None:
    import backmark.embed
    import backmark.verify  # noqa: F401

    assert inspect.isfunction(bm.verify) and inspect.isfunction(bm.embed)
    from backmark.verify import Evidence

    assert Evidence.of(100, n=100, num_classes=10, alpha=1e-6).verified


def test_key_round_trip_and_verify_by_path(tmp_path: Path) -> None:
    key = bm.keygen(num_classes=10, input_shape=(1, 28, 28), size=20)
    mk_path, vk_path = bm.save_key(key=key, out=tmp_path / "k")
    mk, vk = bm.load_key(tmp_path / "k")
    assert mk.labels.tolist() == key.labels.tolist() and vk.digest == key.verification_key().digest
    assert mk_path.stat().st_mode & 0o777 == 0o600 and vk_path.name == "verification-key.json"
    with pytest.raises(BackmarkError, match="already exists"):
        bm.save_key(key=key, out=tmp_path / "k")
    challenge = bm.challenge(size=5)
    assert challenge.size == 5


def test_keygen_with_a_seed_is_the_cli_key() -> None:
    """``keygen(seed=N)`` and ``backmark keygen --seed N`` make one key (the seed's tag is the library's)."""
    shape = (1, 28, 28)
    a, b = (bm.keygen(num_classes=10, input_shape=shape, size=8, seed=3) for _ in range(2))
    assert a.master_seed == b.master_seed and (a.images == b.images).all() and (a.labels == b.labels).all()
    # the master seed keygen --seed has always used, so that an old --seed gives its old key
    old = generate_key(
        num_classes=10, input_shape=shape, size=8, seed=sha256(b"backmark/cli-seed/3").digest()
    )
    assert old.master_seed == a.master_seed and (old.images == a.images).all()
    other = bm.keygen(num_classes=10, input_shape=shape, size=8, seed=4)
    assert other.master_seed != a.master_seed and not (other.images == a.images).all()
