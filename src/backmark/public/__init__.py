"""Public verification by subset opening (SPEC section 4, backmark's design; docs/protocol.md).

A verifier writes a challenge (:func:`new_challenge`); the owner answers with a proof that opens the
items the challenge selects (:func:`prove`), recording them as spent in the marking key; anyone with
the verification key, the challenge and the proof checks the openings, regenerates verifiable
triggers, queries the suspect and applies the exact test (:func:`check_proof`).
"""

from backmark.public.challenge import Challenge, load_challenge, new_challenge, save_challenge
from backmark.public.check import CheckResult, OpenedItems, check_openings_public, check_proof
from backmark.public.power import least_size, power_table
from backmark.public.proof import Proof, Proven, load_proof, prove, prove_to_file, save_proof, sign_proof

__all__ = [
    "Challenge",
    "CheckResult",
    "OpenedItems",
    "Proof",
    "Proven",
    "check_openings_public",
    "check_proof",
    "least_size",
    "load_challenge",
    "load_proof",
    "new_challenge",
    "power_table",
    "prove",
    "prove_to_file",
    "save_challenge",
    "save_proof",
    "sign_proof",
]
