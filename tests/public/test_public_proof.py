"""prove: the challenge's slot is opened, recorded as spent before the proof exists, never opened twice."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import seed_of

from backmark.errors import BackmarkError
from backmark.keys import generate_key, load_key_pair, load_marking_key, save_key_pair
from backmark.public import load_proof, new_challenge, prove, save_proof
from backmark.public.selection import slot_indices


def test_a_proof_opens_the_challenges_slot_and_records_it(key_dir: Path) -> None:
    challenge = new_challenge(size=10)
    made = prove(key_dir, challenge)
    mk, vk = load_key_pair(key_dir)
    proof = made.proof
    assert proof.indices == slot_indices(vk.digest, vk.n, 10, proof.slot)
    assert not made.reissued and made.slots == 6 and made.slots_left == 5 and made.spent == 10
    assert [s.indices for s in mk.spent] == [proof.indices]
    assert mk.spent[0].challenge == challenge.digest
    for o in proof.openings:
        assert (o.image == mk.images[o.index]).all() and o.label == mk.labels[o.index]
    assert proof.spent_before == ()


def test_the_same_challenge_gets_the_same_items_and_another_gets_new_ones(key_dir: Path) -> None:
    challenge = new_challenge(size=10)
    first = prove(key_dir, challenge)
    again = prove(key_dir, challenge)
    assert again.reissued and again.proof.indices == first.proof.indices
    assert len(load_marking_key(key_dir).spent) == 1
    other = prove(key_dir, new_challenge(size=10))
    assert not set(other.proof.indices) & set(first.proof.indices)
    assert set(other.proof.spent_before) == set(first.proof.indices)
    open_size = new_challenge()
    prove(key_dir, open_size, 10)
    with pytest.raises(BackmarkError, match="answered before with 10 items"):
        prove(key_dir, open_size, 5)


def test_the_key_refuses_when_no_slot_is_left_and_says_how_many_are(key_dir: Path) -> None:
    for _ in range(3):
        prove(key_dir, new_challenge(size=20))
    with pytest.raises(BackmarkError) as info:
        prove(key_dir, new_challenge(size=20))
    message = str(info.value)
    assert "60 of 60 items spent" in message and "0 of 3 verifications of 20 items left" in message


def test_sizes_are_checked(key_dir: Path) -> None:
    with pytest.raises(BackmarkError, match="does not fix a size"):
        prove(key_dir, new_challenge())
    with pytest.raises(BackmarkError, match="asks for 10 items but"):
        prove(key_dir, new_challenge(size=10), 12)
    with pytest.raises(BackmarkError, match=r"must lie in 1\.\.60"):
        prove(key_dir, new_challenge(), 61)
    assert prove(key_dir, new_challenge(), 12).proof.size == 12


def test_a_crash_after_recording_the_spend_opens_nothing_twice(key_dir: Path, crasher: object) -> None:
    challenge = new_challenge(size=10)

    def prove_and_save() -> None:
        save_proof(prove(key_dir, challenge).proof, key_dir.parent / "proof.json")

    crasher.kill_after(prove_and_save, "spend-recorded")  # type: ignore[attr-defined]
    assert not (key_dir.parent / "proof.json").exists()
    spent = load_marking_key(key_dir).spent
    assert len(spent) == 1  # recorded before the proof was written
    # the proof is made again for the same challenge: the same items, no second spend
    again = prove(key_dir, challenge)
    assert again.reissued and again.proof.indices == spent[0].indices
    # and another challenge never gets them
    other = prove(key_dir, new_challenge(size=10))
    assert not set(other.proof.indices) & set(spent[0].indices)


def test_a_crash_while_recording_keeps_the_old_record(key_dir: Path, crasher: object) -> None:
    prove(key_dir, new_challenge(size=10))
    crasher.kill_after(lambda: prove(key_dir, new_challenge(size=10)), "file-written")  # type: ignore[attr-defined]
    mk = load_marking_key(key_dir)  # intact: the old record, one spend
    assert len(mk.spent) == 1


def test_concurrent_provers_never_share_an_item(key_dir: Path) -> None:
    results: list[tuple[int, ...]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(prove(key_dir, new_challenge(size=10)).proof.indices)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 5
    opened = [i for r in results for i in r]
    assert len(opened) == len(set(opened)) == 50
    assert len(load_marking_key(key_dir).spent) == 5


def test_proofs_round_trip_and_a_key_without_seeds_gives_none(tmp_path: Path) -> None:
    import dataclasses

    mk = generate_key(num_classes=10, input_shape=(1, 8, 8), size=20, kind="noise", seed=seed_of("old"))
    old = dataclasses.replace(mk, derivation=None, seed_openings=())
    save_key_pair(old, tmp_path / "old")
    made = prove(tmp_path / "old", new_challenge(size=5))
    path = save_proof(made.proof, tmp_path / "p.json")
    proof = load_proof(path)
    assert proof.doc == made.proof.doc and proof.doc["derivation"] is None
    assert all(o.seed is None for o in proof.openings)
    assert json.loads(path.read_text())["format"] == "backmark-proof"
