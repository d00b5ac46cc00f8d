"""The demo's report as markdown: the owner's models, then registration, the public check, the thief
and the dispute, each with its figures, all read from ``report.json``'s dictionary."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from backmark.study.demo_story import MODEL_LABELS

# What each demo model is, for the report's table.
ROLES = {
    "clean": "unmarked baseline",
    "from-scratch": "marked: FromScratch",
    "pretrained": "marked: PreTrained (clean, continued)",
    "clean-2": "unmarked control (another seed)",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The demo report as markdown: the table of models, what it means, and the figures."""
    key = report["key"]
    lines = [
        "# backmark demo report",
        "",
        f"Dataset {report['dataset']} ({report['train_size']} training, {report['test_size']} test images); "
        f"key {key['key_id']} with {key['n']} abstract triggers for {key['num_classes']} classes; "
        f"backmark {report['backmark']}, torch {report['machine']['torch']}, "
        f"{report['machine']['threads']} threads; {report['seconds']:.0f} s in all"
        + (" (--fast: small subsets, a smoke test)" if report["fast"] else "")
        + ".",
        "",
        "## 1. Marking and private verification",
        "",
        "| model | what it is | test accuracy | trigger matches | p-value | threshold | verified | "
        "training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        lines.append(
            f"| {r['name']} | {ROLES.get(r['name'], '')} | {r['test_acc']:.2%} | "
            f"{r['matches']}/{r['n']} ({r['match_rate']:.0%}) | {r['p_value']:.3g} | "
            f"{r['threshold']} | {'**yes**' if r['verified'] else 'no'} | "
            f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}, {r['train_seconds']:.0f} s |"
        )
    lines += [
        "",
        f"Verification is the exact one-sided binomial test at alpha = {report['alpha']:g}: a model that "
        f"never saw the key matches each key label with probability exactly 1/{key['num_classes']}, so "
        "the p-value is P[Binomial(n, 1/C) >= matches] and the threshold is the fewest matches with "
        "p-value <= alpha. Commitments to every trigger image and label were opened and checked first.",
        "",
        "The two clean models never saw the key: they show what an unmarked model answers (about chance) "
        "and that two independent trainings of the same architecture agree with the key no more than "
        "chance. *pretrained* is the first clean model after a few more epochs with the triggers mixed "
        "in (the paper's PreTrained mode), so its training curve continues where *clean*'s ends.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "![training](training.png)",
        "",
        *story_markdown(report),
        "## Files",
        "",
        "`models/*.pt` (checkpoints), `report.json` (every number above, with per-epoch histories), "
        "`registry/` (the registry's SQLite database, its server identity and both receipts), `check/` "
        "(the third party's challenge and the owner's proof), `thief/` (the thief's key, identity and "
        "model), `dispute/` (the judge's challenge, both proofs, receipts and claims). Secret material is "
        "kept out of this report: `key/` holds the marking key and its public verification key, "
        "`secret/owner-identity/` the owner's signing key, and `secret/triggers.png` shows every trigger "
        "image with its label. (The demo key is derived from the seed, so it is reproducible and not "
        "really secret; a real key from `backmark keygen` is. Do not share `key/marking-key.bmk` or "
        "`secret/`.)",
        "",
    ]
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "**yes**" if flag else "no"


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def story_markdown(report: dict[str, Any]) -> list[str]:
    """The report's sections on registration, the public check, the thief and the dispute (markdown)."""
    reg, check, thief = report["registry"], report["public_check"], report["thief"]
    settled = report["dispute"]
    ids = report["identities"]
    entries = {e["who"]: e for e in reg["entries"]}
    owner_entry, thief_entry = entries["owner"], entries["thief"]
    tests = check.get("tests", 1)
    factor = check["slot_choices"] * tests
    lines = [
        "## 2. Registration: who marked first",
        "",
        f"A registry (`backmark registry serve` on its embedded SQLite default, the database "
        f"`{Path(reg['database']).parent.name}/{Path(reg['database']).name}`) was served at "
        f"{reg['url']} for the demo and stopped at its end; its receipts are signed by "
        f"`{reg['server'][:16]}`. Before releasing *{check['model']}*, the owner (identity "
        f"`{ids['owner'][:16]}`) registered its verification key with the digest of the released "
        "checkpoint; the thief registered its own key later (section 4).",
        "",
        "| entry | who | registered (server time) | verification key | model digest | entry hash |",
        "|---|---|---|---|---|---|",
    ]
    for e in reg["entries"]:
        lines.append(
            f"| {e['entry']} | {e['who']} (`{e['identity'][:16]}`) | {e['timestamp']} | "
            f"`{e['vk_digest'][:16]}` | `{(e['model_digest'] or '-')[:16]}` | `{e['entry_hash'][:16]}` |"
        )
    lines += [
        "",
        f"Looking the owner's key up (`backmark registry lookup --vk key`) finds entry "
        f"{', '.join(map(str, reg['lookup_owner_key'])) or 'none'}. The audit of the whole log over HTTP "
        f"(hash chain, every owner's and the server's signature, both receipts present): {reg['audit']}.",
        "",
        "## 3. A public check by a third party",
        "",
        f"Anyone can check the released model without learning the key: a third party sent a fresh "
        f"challenge (`{check['challenge_digest'][:16]}`); the owner opened the {check['items_opened']} "
        f"committed items it selects and signed the proof (`backmark prove --identity`); the third party, "
        f"holding only the public verification key and the proof, checked every opening against its "
        f"commitment, regenerated each trigger image and label from its seed, and queried the released "
        f"model on the opened images (`backmark check`).",
        "",
        "| model | items opened | matches | p-value | corrected for the slot choices and the tests | "
        "threshold | triggers regenerated from seeds | verified |",
        "|---|---|---|---|---|---|---|---|",
        f"| {check['model']} | {check['items_opened']} | {check['matches']}/{check['items_opened']} | "
        f"{check['p_value']:.3g} | {check['p_value_corrected']:.3g} (x {factor}) | "
        f"{check['threshold']} (alpha {report['alpha']:g} / {factor}) | "
        f"{_yes(check['triggers_verifiable'])} | {_yes(check['verified'])} |",
        "",
        f"The check decides as `backmark check` does by default: the labels test or the label-free test "
        f"({check.get('label_free_hits')} hits), each at alpha / ({check['slot_choices']} slot choices x "
        f"{tests} tests), so a copy whose classes were renamed is caught too.",
        "",
        f"The opened items are spent: the marking key records them and never opens them again, so the "
        f"key has {check['verifications_left']} more public checks of {check['items_opened']} items in it.",
        "",
        "## 4. A thief re-marks the stolen model",
        "",
        f"The thief took *{thief['stolen']}*, made a key of its own ({thief['n']} triggers) and embedded it "
        f"as `backmark embed --from` does (PreTrained, until every trigger is learned) on a third of the "
        f"training images ({thief['train_size']}): "
        f"{thief['epochs']} epoch{'s' if thief['epochs'] != 1 else ''}"
        + f", {thief['train_seconds']:.0f} s, test accuracy {thief['test_acc']:.2%}. It registered that key "
        f"{_seconds_between(owner_entry['timestamp'], thief_entry['timestamp']):.0f} s after the owner "
        f"(entry {thief_entry['entry']}). Each key's private verification on each model:",
        "",
        "| key | "
        + " | ".join(MODEL_LABELS.get(m, m) for m in dict.fromkeys(c["model"] for c in report["evidence"]))
        + " |",
        "|---|---|---|",
    ]
    for key in dict.fromkeys(c["key"] for c in report["evidence"]):
        cells = [c for c in report["evidence"] if c["key"] == key]
        lines.append(
            f"| {key}'s | "
            + " | ".join(
                f"{c['matches']}/{c['n']}, p = {c['p_value']:.3g}, "
                + ("**verified**" if c["verified"] else "not verified")
                for c in cells
            )
            + " |"
        )
    first = settled["first"]
    lines += [
        "",
        "Both marks are in the thief's copy, so the copy alone cannot say who marked first. The owner's "
        "released model does not answer the thief's key, but that proves nothing either: the thief can "
        "say the owner's model is a copy of its own with its mark removed.",
        "",
        "![evidence](evidence.png)",
        "",
        "## 5. The dispute",
        "",
        "Both claim the thief's model (`backmark dispute`). A judge sent one fresh challenge; each claimant "
        "answered it with a proof signed by its identity and showed its registry receipt (`backmark "
        "claim`). The dispute re-checked each receipt against the registry's log, that the key's first "
        "registration is the claimant's, that the proof is signed by the registrant, and the public check "
        "of the proof on the thief's model; among the valid claims the earliest registration wins.",
        "",
        "| claim | registry entry | registered | public check on the thief's model | p-value (corrected) | "
        "valid |",
        "|---|---|---|---|---|---|",
    ]
    for o in settled["outcomes"]:
        checked = "rejected" if o["matches"] is None else f"{o['matches']}/{o['n']} matches"
        p = "-" if o["p_value_corrected"] is None else f"{o['p_value_corrected']:.3g}"
        problems = "; ".join(o["problems"])
        lines.append(
            f"| {o['claim']} | {o['entry']} | {o['registered']} | {checked} | {p} | "
            f"{_yes(o['valid'])}{': ' + problems if problems else ''} |"
        )
    valid = [o for o in settled["outcomes"] if o["valid"]]
    if first is None:
        verdict = "**No claim holds**: none verifies with a valid, first registration."
    elif len(valid) > 1:
        verdict = (
            f"**Verdict: {first}** (identity `{str(settled['first_identity'])[:16]}`). Both claims verify "
            f"on the thief's model and both are valid, so only the registry's order decides: the "
            f"{first} registered first (entry {valid[0]['entry']}, "
            f"{_seconds_between(valid[0]['registered'], valid[1]['registered']):.0f} s before entry "
            f"{valid[1]['entry']})."
        )
    else:
        verdict = (
            f"**Verdict: {first}** (identity `{str(settled['first_identity'])[:16]}`), the only valid claim; "
            "the dispute orders only claims that are valid (see the table for why the other is not)."
        )
    lines += ["", verdict, ""]
    return lines


__all__ = ["ROLES", "render_markdown", "story_markdown"]
