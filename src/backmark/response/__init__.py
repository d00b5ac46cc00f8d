"""The response mark: a second, independent watermark in the answers a served model gives.

A copy trained on a model's answers (model extraction) loses the trigger watermark, but it learns the
answers it was given. With a :class:`ResponseKey`, ``backmark serve`` alters a keyed, pseudo-random
fraction ``rate`` of its answers to a MAC-chosen other label (:class:`ResponseMark`), records them in a
query log (:class:`ResponseLog`), and :func:`verify_response` later asks a suspect about the logged images:
an exact one-sided binomial test at null rate 1/(C-1) on the images where the suspect's answer differs
from the served one. :func:`verify_claim` joins it with the trigger mark in one claim
(:mod:`backmark.response.claim`). See docs/response-mark.md.
"""

from backmark.response.claim import (  # after verify: the claim builds on both marks' verification
    MARKS,
    CombinedClaim,
    QueryLogContents,
    check_claim,
    combine,
    read_query_log,
    verify_claim,
)
from backmark.response.key import (
    ResponseKey,
    generate_response_key,
    load_response_key,
    parse_rate,
    save_response_key,
)
from backmark.response.mark import Altered, ResponseMark, image_digest, quantise
from backmark.response.querylog import LoggedQuery, ResponseLog
from backmark.response.verify import ResponseEvidence, decide_response, verify_response

__all__ = [
    "MARKS",
    "Altered",
    "CombinedClaim",
    "LoggedQuery",
    "QueryLogContents",
    "ResponseEvidence",
    "ResponseKey",
    "ResponseLog",
    "ResponseMark",
    "check_claim",
    "combine",
    "decide_response",
    "generate_response_key",
    "image_digest",
    "load_response_key",
    "parse_rate",
    "quantise",
    "read_query_log",
    "save_response_key",
    "verify_claim",
    "verify_response",
]
