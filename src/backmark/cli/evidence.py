"""Evidence beside the trigger mark for ``backmark verify``: ``--lineage OWNER`` and ``--contrast OWNER``.

Each adds one piece to the claim (:mod:`backmark.claim`), so every piece is decided at ``alpha / k``.
The options are checked, and the owner's model, its siblings and the probe images loaded, before the
first trigger is sent; the suspect is then asked for its weights (lineage: only a ``--model`` file has
them) and its answers on the probes (contrast: any target).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from backmark.constants import CONTRAST_DELTA, CONTRAST_POOLS, CONTRAST_PROBES
from backmark.errors import BackmarkError

if TYPE_CHECKING:
    import torch

    from backmark.contrast import Siblings
    from backmark.targets import Target
    from backmark.targets.opening import OpenedTarget
    from backmark.verify.decision import Decision, Piece
    from backmark.verify.labelfree import TestedVerification


QUERIED_HELP = (
    "images the deployed model was queried with (your request log, as a dataset such as imagefolder:DIR): "
    "a third contrast count on probes drawn from them, which shows a copy trained on those answers "
    '(docs/contrast.md, "The images the thief queried")'
)


def queried_images(spec: str | None, *, quiet: bool) -> torch.Tensor | None:
    """Every image of the dataset ``spec`` (``--queried``): the images the deployed model was asked."""
    if spec is None:
        return None
    from backmark.contrast import probe_pool
    from backmark.data import load_dataset

    return probe_pool(load_dataset(spec, progress=not quiet), "all")


def add_evidence_options(p: argparse.ArgumentParser) -> None:
    """``verify``'s options for evidence beyond the trigger mark."""
    group = p.add_argument_group("evidence beyond the trigger mark (each adds a piece at alpha / k)")
    group.add_argument(
        "--lineage",
        metavar="OWNER",
        help="white-box: also test whether the --model file's weights descend from the owner's model "
        "OWNER (backmark checkpoint; docs/lineage.md; the exact test)",
    )
    group.add_argument(
        "--contrast",
        metavar="OWNER",
        help="black-box: also run the sibling-contrast test against the deployed model OWNER and its "
        "siblings (OWNER.siblings/, from train/embed --siblings K; docs/contrast.md); needs --data",
    )
    group.add_argument("--data", metavar="SPEC", help="the task's data: its images give the probes")
    group.add_argument(
        "--pool",
        choices=CONTRAST_POOLS,
        help="probe images: --data's test split (default) or all its images",
    )
    group.add_argument("--queried", metavar="SPEC", help=QUERIED_HELP)
    group.add_argument(
        "--probes", type=int, metavar="N", help=f"contrast probes to draw (default {CONTRAST_PROBES})"
    )
    group.add_argument(
        "--delta",
        type=float,
        metavar="D",
        help=f"the contrast test's assumed margin (default {CONTRAST_DELTA:g})",
    )
    add_registration_options(group, VERIFY_REGISTRATION)


# The options that give the sibling record's registry receipt and the registry that signed it: contrast's,
# and verify's (beside its trigger-key options, hence the longer names).
CONTRAST_REGISTRATION = ("--receipt", "--registry")
VERIFY_REGISTRATION = ("--siblings-receipt", "--siblings-registry")


def add_registration_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, flags: tuple[str, str] = CONTRAST_REGISTRATION
) -> None:
    """The sibling record's registry receipt and the registry that signed it (checked by
    :func:`sibling_registration`)."""
    receipt, registry = flags
    p.add_argument(
        receipt,
        metavar="FILE",
        help="the registry receipt of the sibling record (backmark register --siblings), checked before "
        f"the suspect is queried; the report gives its registration time (with {registry})",
    )
    p.add_argument(registry, metavar="URL", help=f"the registry that signed {receipt}, http(s)://HOST:PORT")


def sibling_registration(
    receipt: str | None,
    registry: str | None,
    siblings: Siblings,
    *,
    flags: tuple[str, str] = CONTRAST_REGISTRATION,
) -> dict[str, Any] | None:
    """The registration of ``siblings``' record that the receipt file ``receipt`` shows, checked at the
    registry ``registry``: signed by it, still in its log, and for this very record. None without a
    receipt; a one-line BackmarkError when anything does not hold. ``flags``: the two options' names, for
    the messages."""
    from backmark.contrast.siblings import RECORD

    receipt_flag, registry_flag = flags
    record_digest, record = siblings.record.digest, siblings.folder / RECORD
    if receipt is None:
        if registry is not None:
            raise BackmarkError(
                f"{registry_flag} checks a {receipt_flag}; give the sibling record's receipt too"
            )
        return None
    if registry is None:
        raise BackmarkError(
            f"{receipt_flag} {receipt} needs {registry_flag} URL, the registry that signed it"
        )
    from backmark.infra.json_files import read_json
    from backmark.ledger.client import RegistryClient

    doc = read_json(receipt, "receipt")
    with RegistryClient(registry) as client:
        confirmed = client.confirm(doc, what=f"receipt {receipt}")
    registered = confirmed.get("siblings_digest")
    if registered != record_digest:
        what = f"sibling record {registered[:16]}" if registered else "no sibling record"
        raise BackmarkError(
            f"receipt {receipt} registers {what}, not {record} (digest {record_digest[:16]}); give the "
            "receipt of `backmark register --siblings` for this owner's model"
        )
    return {
        "registered_at": confirmed["timestamp"],
        "registry": registry,
        "server": confirmed["registry"],
        "entry": confirmed["entry"],
        "entry_hash": confirmed["entry_hash"],
        "owner": confirmed["owner"],
        "vk_digest": confirmed["vk_digest"],
    }


class Loaded:
    """What the extra pieces need, loaded; :meth:`pieces` asks the opened suspect."""

    def __init__(self, makers: tuple[Callable[[Target], Piece], ...]) -> None:
        self.makers = makers

    def pieces(self, target: Target) -> list[Piece]:
        return [make(target) for make in self.makers]


@dataclass(frozen=True)
class EvidenceOptions:
    """``--lineage`` and ``--contrast`` as given, checked."""

    lineage: str | None
    contrast: str | None
    model: str | None
    data: str | None
    pool: str | None
    queried: str | None
    probes: int | None
    delta: float | None
    siblings_receipt: str | None
    siblings_registry: str | None
    quiet: bool

    @staticmethod
    def of(args: argparse.Namespace) -> EvidenceOptions:
        """The options from ``verify``'s parsed arguments (each field is the option of its name), checked."""
        options = EvidenceOptions(**{f.name: getattr(args, f.name) for f in fields(EvidenceOptions)})
        options.check()
        return options

    def check(self) -> None:
        if self.lineage is not None and self.model is None:
            raise BackmarkError(
                "--lineage compares weights: give the suspect's file with --model (a served --target "
                "shows only its answers; use --contrast for it)"
            )
        if self.contrast is None:
            given = (
                ("--data", self.data),
                ("--pool", self.pool),
                ("--queried", self.queried),
                ("--probes", self.probes),
                ("--delta", self.delta),
                ("--siblings-receipt", self.siblings_receipt),
                ("--siblings-registry", self.siblings_registry),
            )
            for flag, value in given:
                if value is not None:
                    raise BackmarkError(f"{flag} applies with --contrast OWNER")
            return
        if self.data is None:
            raise BackmarkError("--contrast needs --data SPEC: the task's images give the probes")
        if self.probes is not None and self.probes < 1:
            raise BackmarkError(f"--probes must be at least 1, got {self.probes}")
        if self.delta is not None:
            from backmark.contrast.stats import check_delta

            check_delta(self.delta)

    @property
    def count(self) -> int:
        """How many pieces these options add to the claim."""
        return (self.lineage is not None) + (self.contrast is not None)

    def load(self, level: float) -> Loaded:
        """Load everything the extra pieces need; each piece will be decided at ``level``."""
        makers: list[Callable[[Target], Piece]] = []
        if self.lineage is not None:
            makers.append(self._lineage(self.lineage, level))
        if self.contrast is not None:
            makers.append(self._contrast(self.contrast, level))
        return Loaded(tuple(makers))

    def _lineage(self, owner_path: str, level: float) -> Callable[[Target], Piece]:
        from backmark.claim import lineage_piece
        from backmark.lineage import lineage_test, trace_plan
        from backmark.lineage.load import load_owner, load_suspect

        assert self.model is not None  # checked
        owner, info = load_owner(owner_path)
        suspect = load_suspect(self.model, plan=trace_plan(owner, input_shape=info.input_shape))

        def make(_: Target) -> Piece:
            result = lineage_test(
                owner=owner, suspect=suspect, input_shape=info.input_shape, test="exact", alpha=level
            )
            return lineage_piece(result)

        return make

    def _contrast(self, owner_path: str, level: float) -> Callable[[Target], Piece]:
        from backmark.claim import contrast_piece
        from backmark.contrast import contrast, load_siblings, probe_pool
        from backmark.data import load_dataset
        from backmark.public.challenge import new_challenge

        assert self.data is not None  # checked
        sibs = load_siblings(owner_path)
        registered = sibling_registration(  # before any suspect is asked anything
            self.siblings_receipt, self.siblings_registry, sibs, flags=VERIFY_REGISTRATION
        )
        pool = probe_pool(load_dataset(self.data, progress=not self.quiet), self.pool or CONTRAST_POOLS[0])
        queried = queried_images(self.queried, quiet=self.quiet)
        probes = CONTRAST_PROBES if self.probes is None else self.probes
        delta = CONTRAST_DELTA if self.delta is None else self.delta

        def make(target: Target) -> Piece:
            nonce = new_challenge(purpose="contrast").nonce  # drawn after the suspect is fixed
            result = contrast(
                target, sibs, pool=pool, nonce=nonce, probes=probes, delta=delta, alpha=level, queried=queried
            )
            return contrast_piece(result, siblings_digest=sibs.record.digest, registration=registered)

        return make


_LINE = "  {:15}"


def _evidence_line(piece: Piece, level: float | None) -> str:
    f = piece.figures
    at = "" if level is None else f" at {level:.3g}"
    verdict = ("passes" if piece.verified else "fails") if level is not None else "reported only"
    p = f"p-value {piece.p_value:.3g} (log10 {piece.log10_p:.2f})"
    if piece.name == "labels":
        what = f"{f['matches']}/{f['n']} triggers answered with the key label, threshold {f['threshold']}"
    elif piece.name == "label-free":
        what = f"{f['hits']}/{f['n']} key labels predicted from earlier triggers' answers, threshold "
        what += str(f["threshold"])
    elif piece.name == "lineage":
        what = f"{len(f['layers'])} layers of units matched, exact test"
    elif piece.name == "contrast":
        what = (
            f"{f['sides_deployed']} of {f['sides_deployed'] + f['sides_siblings']} decided probes side "
            f"with the deployed model (rate {f['rate']:.3f}, delta {f['delta']:g}); rank {f['rank']} of "
            f"{f['models']} (exact p {f['rank_p']:.3g})"
        )
        if "registered_at" in f:
            what += f"; sibling record registered {f['registered_at']} (entry {f['registry_entry']})"
    else:
        what = piece.name
    return _LINE.format(piece.name + ":") + f"{what}; {p}{at}: {verdict}"


def print_claim(name: str, tested: TestedVerification, decision: Decision, opened: OpenedTarget) -> None:
    """The text report of ``verify``: the claim, then each piece with its figures and assumption."""
    from backmark.cli.targets import describe_queries

    k = len(decision.pieces)
    passed = ", ".join(decision.passed) or "no piece"
    verdict = "VERIFIED" if decision.verified else "NOT VERIFIED"
    print(f"{verdict}: {name} against key {tested.key_id}: {passed} passed at alpha {decision.alpha:g}")
    print(_LINE.format("claim:") + f"{k} piece(s) of evidence, each at alpha/{k} = {decision.level:.3g}; "
          f"p-value {decision.p_value:.3g} (log10 {decision.log10_p_value:.2f})")  # fmt: skip
    print(_LINE.format("commitments:") + f"all {tested.labels.evidence.n} images and labels open")
    queries = describe_queries(opened)
    if queries:
        print(queries)
    for piece in decision.pieces:
        print(_evidence_line(piece, decision.level))
    for piece in decision.reported:
        print(_evidence_line(piece, None))
    seen: set[str] = set()
    for piece in (*decision.pieces, *decision.reported):
        if piece.assumption and piece.assumption not in seen:
            seen.add(piece.assumption)
            names = [
                p.name for p in (*decision.pieces, *decision.reported) if p.assumption == piece.assumption
            ]
            print(_LINE.format("assumes:") + f"{', '.join(names)}: {piece.assumption}")
    rule = "accepts" if tested.labels.paper_rule_verified else "rejects"
    print(
        _LINE.format("paper's rule:")
        + f"{rule} (at most {tested.labels.eps:g} x n mismatches; reported, never decisive)"
    )


__all__ = [
    "QUERIED_HELP",
    "EvidenceOptions",
    "Loaded",
    "add_evidence_options",
    "print_claim",
    "queried_images",
]
