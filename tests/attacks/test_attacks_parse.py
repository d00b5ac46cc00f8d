"""The command line's attack strings: NAME[:KEY=VALUE...], comma lists and '/' sweeps."""

from __future__ import annotations

import pytest

from backmark.attacks import FTAL, Extraction, FinePruning, MagnitudePruning, Transfer, parse_attacks
from backmark.errors import BackmarkError


def test_options_are_read_with_their_field_types() -> None:
    attacks = parse_attacks(
        "ftal:lr=0.01:epochs=3, transfer:freeze=yes:classes=0-4 ,extract:width=8:arch=cnn"
    )
    assert attacks == [
        FTAL(lr=0.01, epochs=3),
        Transfer(freeze=True, classes="0-4"),
        Extraction(width=8, arch="cnn"),
    ]
    assert isinstance(attacks[0].epochs, int)  # type: ignore[attr-defined]
    assert parse_attacks("fine-prune:fraction=none:max-drop=0.1") == [
        FinePruning(fraction=None, max_drop=0.1)
    ]


def test_a_slash_gives_one_attack_per_value() -> None:
    assert parse_attacks("prune:sparsity=0.2/0.5/0.9") == [
        MagnitudePruning(sparsity=s) for s in (0.2, 0.5, 0.9)
    ]
    assert len(parse_attacks("ftal:lr=0.1/0.01:epochs=1/2")) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no attack given; choose from"),
        ("ftal:lr", "write KEY=VALUE with KEY one of: seed, epochs, lr"),
        ("ftal:epochs=two", "ftal option epochs must be a int; got 'two'"),
        ("ood-detector:answer=maybe", "must be one of random, second"),
        ("prune:sparsity=1.5", "sparsity must lie in"),
    ],
)
def test_bad_strings_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(BackmarkError, match=message) as err:
        parse_attacks(text)
    assert "\n" not in str(err.value)


def test_labels_show_the_main_options_and_every_changed_one() -> None:
    assert FTAL().describe() == "ftal (epochs=20, lr=0.001)"
    assert MagnitudePruning(scope="global", seed=3).describe() == "prune (sparsity=0.5, scope=global)"
    assert Extraction(arch="cnn", width=8).describe() == "extract (arch=cnn, epochs=10, width=8)"
