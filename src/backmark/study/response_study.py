"""``reproduce``'s response-mark study: the FromScratch model served with a response key, then extracted.

The owner's FromScratch checkpoint is served by ``backmark serve --response-key --query-log`` in its own
process. Each attacker of ``backmark.study.api_extraction`` copies it through HTTP from the attacker's
images; every copy is then judged three ways: the trigger mark (the exact test on the key's triggers), the
response mark (the exact conditional test on the query log) and the one claim from both (the labels,
label-free and response tests each at alpha/3, verified if any holds:
:func:`backmark.response.verify_claim`), and, where the study has them, the claim from every piece
(lineage and contrast too). Two controls never learned the marked answers: the owner's clean model, and
a clean copy extracted from the same model served without the response key. The served accuracy with
and without the key is what legitimate users pay.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backmark.attacks.base import AttackData
from backmark.infra.seeds import key_seed
from backmark.keys import MarkingKey, VerificationKey
from backmark.log import Log, say
from backmark.response import (
    CombinedClaim,
    QueryLogContents,
    ResponseLog,
    generate_response_key,
    save_response_key,
    verify_claim,
)
from backmark.study.api_extraction import Attacker, extract, query, serving_process
from backmark.study.measure import Trial, full_claim
from backmark.targets import ModuleTarget
from backmark.verify.decision import Decision


@dataclass(frozen=True)
class ResponseRow:
    """One judged model: its accuracy, queries sent, and the combined claim (both marks inside)."""

    name: str
    what: str
    test_acc: float
    sent: int
    claim: CombinedClaim
    seconds: float
    every: Decision | None = None  # with the lineage and contrast tests too, where the study has them

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "test_acc": self.test_acc,
            "sent": self.sent,
            "seconds": self.seconds,
            **self.claim.to_dict(),
            "every_piece": None if self.every is None else self.every.to_dict(),
        }


@dataclass(frozen=True)
class ResponseStudy:
    rate: float
    response_key_id: str
    queries: int
    epochs: int
    served_acc_without_key: float
    served_acc_with_key: float
    logged: int
    rows: tuple[ResponseRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "response_key_id": self.response_key_id,
            "queries": self.queries,
            "epochs": self.epochs,
            "served_acc_without_key": self.served_acc_without_key,
            "served_acc_with_key": self.served_acc_with_key,
            "logged": self.logged,
            "rows": [r.to_dict() for r in self.rows],
        }


def attackers(epochs: int, other_arch: tuple[str, int | None] | None) -> list[Attacker]:
    """The extractions ``reproduce`` runs: top-1 labels, the served logits, votes, another architecture."""
    out = [
        Attacker("top-1 labels", epochs=epochs),
        Attacker("distillation (T=4) from the served logits", how="distill", epochs=epochs),
        Attacker("majority vote over 5 shifted queries", how="vote", epochs=epochs),
    ]
    if other_arch is not None:
        arch, width = other_arch
        out.append(Attacker(f"top-1 labels into {arch}", arch=arch, width=width, epochs=epochs))
    return out


def _accuracy(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    answers = ModuleTarget(model).predict(test[0].float() / 255.0)
    return float((answers == test[1]).float().mean())


def run_response_study(
    folder: Path,
    checkpoint: Path,
    served: nn.Module,
    clean: nn.Module,
    mk: MarkingKey,
    vk: VerificationKey,
    attacker_data: AttackData,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    rate: float,
    queries: int | None,
    who: Sequence[Attacker],
    alpha: float,
    seed: int,
    log: Log | None,
    trial: Trial | None = None,
) -> ResponseStudy:
    """Serve ``checkpoint`` (the model ``served``) with a seed-derived response key; extract, judge.

    ``trial``: the served model's trial (its lineage and contrast settings): every copy is then also
    judged by the claim from every piece of evidence (:func:`backmark.study.measure.full_claim`)."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = key_seed("backmark reproduce response key ", seed)
    key = generate_response_key(rate=str(rate), secret=secret)  # reproducible, hence not secret
    rkey = save_response_key(key, folder / "response-key.bmrk", force=True)
    n = len(attacker_data.images) if queries is None else min(queries, len(attacker_data.images))
    images, truth = attacker_data.images[:n], attacker_data.labels[:n]
    c = attacker_data.num_classes
    with serving_process(checkpoint, rkey, folder / "users.db") as url:
        with_key = float((query(url, test[0])[0] == test[1]).float().mean())
    say(log, f"response mark: rate {rate:g}, served accuracy {with_key:.2%} with the key; {n} queries each")

    def judge(name: str, what: str, model: nn.Module, sent: int, seconds: float) -> ResponseRow:
        shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
        tested, claim = verify_claim(
            model, mk, vk, key, QueryLogContents(c, shape, tuple(logged)), alpha=alpha
        )
        trig, resp = claim.trigger, claim.response
        every = None
        if trial is not None:
            every = full_claim(trial, model, tested, changes_task=False, response=resp)
        row = ResponseRow(name, what, _accuracy(model, test), sent, claim, round(seconds, 1), every)
        say(
            log,
            f"  {name}: {row.test_acc:.2%}, trigger {trig.matches}/{trig.n}, response "
            f"{resp.matches}/{resp.tested} (p {resp.p_value:.2g}); claim "
            + ("verified" if claim.verified else "not verified"),
        )
        return row

    db = folder / "attacker.db"  # one deployment: every attacker's queries go into the one log
    copies = []
    for a in who:
        t = time.perf_counter()
        torch.manual_seed(seed)
        with serving_process(checkpoint, rkey, db) as url:
            copy, sent = extract(url, a, images, truth, num_classes=c, seed=seed)
        copies.append((a, copy, sent, time.perf_counter() - t))
    t = time.perf_counter()
    with serving_process(checkpoint, None, None) as url:
        clean_copy, sent = extract(url, who[0], images, truth, num_classes=c, seed=seed)
    clean_copy_s = time.perf_counter() - t
    querylog = ResponseLog(db, create=False)
    try:
        logged = querylog.read()
    finally:
        querylog.close()
    rows = [judge(a.name, "extracted", copy, sent, s) for a, copy, sent, s in copies]
    rows.append(judge("top-1 labels, unmarked server", "clean copy", clean_copy, sent, clean_copy_s))
    rows.append(judge("the owner's clean model", "clean model", clean, 0, 0.0))
    rows.append(judge("the served model itself", "served", served, 0, 0.0))
    return ResponseStudy(
        rate=rate,
        response_key_id=key.key_id,
        queries=n,
        epochs=max((a.epochs for a in who), default=0),
        served_acc_without_key=_accuracy(served, test),
        served_acc_with_key=with_key,
        logged=len(logged),
        rows=tuple(rows),
    )


def _p(p: float) -> str:
    return f"{p:.2g}"


def render_response(study: dict[str, Any], *, alpha: float) -> list[str]:
    """The results section (markdown lines) from :meth:`ResponseStudy.to_dict`."""
    rows = study["rows"]
    every = any(r.get("every_piece") for r in rows)
    extracted = [r for r in rows if r["what"] == "extracted"]
    kept = [r for r in extracted if r["verified"]]
    lines = [
        "## The response mark: extraction through the serving API",
        "",
        f"The FromScratch model is served by `backmark serve --response-key --query-log` (rate "
        f"{study['rate']:g}, key {study['response_key_id']}, in its own process); each attacker copies it "
        f"over HTTP from the first {study['queries']} of its images, querying each once (the vote queries "
        "each five times, shifted), and trains a fresh model "
        f"{study.get('epochs', 10)} epochs as the attack suite's extraction. "
        f"All copies share one query log ({study['logged']} altered answers logged). Each model is judged by "
        "the trigger mark, the response mark (the exact conditional test at null rate 1/(C-1), "
        "docs/response-mark.md) and one claim from both marks: the labels, label-free and response tests "
        f"each at alpha/3 = {alpha / 3:.3g}, verified if any holds (Bonferroni: valid whatever the "
        "dependence). Where the study trained siblings, the last columns add the lineage and contrast "
        "tests to the same claim (each of 5 pieces at alpha/5; docs/claim.md).",
        "",
        f"- Cost to legitimate users: served test accuracy {study['served_acc_without_key']:.2%} without the "
        f"key, {study['served_acc_with_key']:.2%} with it "
        f"({100 * (study['served_acc_with_key'] - study['served_acc_without_key']):+.2f} points).",
        f"- The claim held against {len(kept)} of {len(extracted)} extractions"
        + (": " + ", ".join(r["name"] for r in kept) if kept else "")
        + "; "
        + (
            "not against: " + ", ".join(r["name"] for r in extracted if not r["verified"])
            if len(kept) < len(extracted)
            else "every extraction measured here"
        )
        + ".",
        "",
        "| model | what | test accuracy | queries | trigger mark | response mark (matches / differing, of "
        "logged) | response p | claim p | claim |"
        + (" lineage p | contrast p | every piece |" if every else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if every else ""),
    ]
    for r in rows:
        t, s = r["trigger"], r["response"]
        marks = " + ".join(r["marks_verified"]) or "none"
        line = (
            f"| {r['name']} | {r['what']} | {r['test_acc']:.2%} | {r['sent']} | {t['matches']}/{t['n']} "
            f"| {s['matches']}/{s['tested']} of {s['n']} | {_p(s['p_value'])} | {_p(r['p_value'])} "
            f"| {'**verified**' if r['verified'] else 'not verified'} ({marks}) |"
        )
        if every:
            full = r.get("every_piece") or {}
            ev = full.get("evidence", {})
            cells = [_p(ev[k]["p_value"]) if k in ev else "n/a" for k in ("lineage", "contrast")]
            passed = " + ".join(full.get("passed", [])) or "none"
            verdict = "**shown**" if full.get("verified") else "not shown"
            line += f" {cells[0]} | {cells[1]} | {verdict} ({passed}) |"
        lines.append(line)
    lines += [
        "",
        "Where the claim fails, the copy generalised over the altered answers instead of fitting them, or "
        "the attacker's votes outvoted them (each shifted copy of an image has its own keyed decision). "
        "docs/response-mark.md has the broader measurement (rates, query counts, ten attackers, clean "
        "models of ten seeds).",
        "",
    ]
    return lines
