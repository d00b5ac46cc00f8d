"""The mark through the real HTTP server (v2 and JSON endpoints), the query log, and verification."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from response_helpers import SHAPE, cnn, images
from torch import nn

from backmark.errors import BackmarkError
from backmark.response import (
    ResponseKey,
    ResponseLog,
    ResponseMark,
    decide_response,
    generate_response_key,
    verify_response,
)
from backmark.serve import create_app, serving
from backmark.targets import ModuleTarget


class Marked:
    """A copy that learned the marked answers perfectly: the served model's answers with the mark."""

    def __init__(self, model: nn.Module, key: ResponseKey) -> None:
        self.model, self.mark = ModuleTarget(model), ResponseMark(key, num_classes=10)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.mark.apply(x, None, self.model.predict(x))[1]


def test_v2_and_json_round_trip_and_log(rkey: ResponseKey, model: nn.Module, tmp_path: Path) -> None:
    log = ResponseLog(tmp_path / "q.db", create=True)
    log.bind(key_id=rkey.key_id, num_classes=10, input_shape=SHAPE)
    mark = ResponseMark(rkey, num_classes=10)
    x = images(200)
    logits = model(x).detach()
    want_logits, want, altered = mark.apply(x, logits, logits.argmax(1))
    assert want_logits is not None and len(altered) > 0
    app = create_app(model, name="m", input_shape=SHAPE, num_classes=10, response=mark, query_log=log)
    pixels = (x * 255).round().to(torch.uint8)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        v2 = client.post(
            "/v2/models/m/infer",
            json={
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "UINT8",
                        "shape": [200, *SHAPE],
                        "data": pixels.flatten().tolist(),
                    }
                ]
            },
        ).json()
        out = {o["name"]: o for o in v2["outputs"]}
        got_logits = torch.tensor(out["logits"]["data"]).reshape(200, 10)
        assert out["label"]["data"] == want.tolist()
        assert torch.equal(got_logits.argmax(1), want)
        assert torch.allclose(got_logits, want_logits, atol=1e-5)
        answer = client.post("/predict/m", json={"images": x[:50].tolist()}).json()
        assert answer["labels"] == want[:50].tolist()  # floats and UINT8: the same MAC
    rows = log.read()
    assert sorted(r.digest for r in rows) == sorted(a.digest for a in altered)  # each image once
    by_digest = {a.digest: a for a in altered}
    for row in rows:
        a = by_digest[row.digest]
        assert row.label == a.label and row.served == a.served != row.label
        assert np.array_equal(row.pixels, a.pixels)
        assert row.caller == "127.0.0.1" and row.time.endswith("+00:00")
    log.close()


def test_log_refuses_another_key(rkey: ResponseKey, tmp_path: Path) -> None:
    log = ResponseLog(tmp_path / "q.db", create=True)
    log.bind(key_id=rkey.key_id, num_classes=10, input_shape=SHAPE)
    with pytest.raises(BackmarkError, match="key_id"):
        log.bind(key_id="0" * 16, num_classes=10, input_shape=SHAPE)
    with pytest.raises(BackmarkError, match="does not exist"):
        ResponseLog(tmp_path / "none.db", create=False)


def _logged(rkey: ResponseKey, model: nn.Module, tmp_path: Path, n: int = 3000) -> ResponseLog:
    log = ResponseLog(tmp_path / "q.db", create=True)
    log.bind(key_id=rkey.key_id, num_classes=10, input_shape=SHAPE)
    x = images(n, seed=5)
    log.record(ResponseMark(rkey, num_classes=10).apply(x, None, ModuleTarget(model).predict(x))[2])
    return log


def test_copy_verified_clean_models_not(rkey: ResponseKey, model: nn.Module, tmp_path: Path) -> None:
    logged = _logged(rkey, model, tmp_path).read()
    assert 100 < len(logged) < 200  # 3000 images at rate 0.05
    copy = verify_response(Marked(model, rkey), rkey, logged, num_classes=10, input_shape=SHAPE)
    assert copy.verified and copy.matches == copy.n and copy.p_value < 1e-100
    served = verify_response(ModuleTarget(model), rkey, logged, num_classes=10, input_shape=SHAPE)
    assert served.matches == 0 and not served.verified  # the unmarked answers never match
    assert served.tested == 0 and served.p_value == 1.0 and served.threshold == 1
    assert copy.tested == copy.n and copy.unconditional_p_value == copy.p_value
    for seed in (1, 2, 3):
        clean = verify_response(ModuleTarget(cnn(seed)), rkey, logged, num_classes=10, input_shape=SHAPE)
        assert not clean.verified and clean.null_rate == Fraction(1, 9)
        assert clean.matches <= clean.tested <= clean.n and clean.p_value > 1e-6
        assert clean.p_value <= clean.unconditional_p_value  # conditioning removes impossible matches
    other = generate_response_key(rate="0.05", secret=b"\x09" * 32)
    with pytest.raises(BackmarkError, match="another key"):
        verify_response(Marked(model, rkey), other, logged, num_classes=10, input_shape=SHAPE)


def test_decision_numbers() -> None:
    from math import comb

    # 5 matches among the 8 answers (of 20 logged) that differ from the served model's: the decision is
    # P[Binomial(8, 1/9) >= 5], computed independently; over all 20 it would be P[Binomial(20, 1/9) >= 5]
    e = decide_response(5, n=20, tested=8, num_classes=10, alpha=0.01, key_id="k")
    want8 = sum(comb(8, i) * (1 / 9) ** i * (8 / 9) ** (8 - i) for i in range(5, 9))
    want20 = sum(comb(20, i) * (1 / 9) ** i * (8 / 9) ** (20 - i) for i in range(5, 21))
    assert e.p_value == pytest.approx(want8, rel=1e-12)
    assert e.unconditional_p_value == pytest.approx(want20, rel=1e-12)
    assert e.to_dict()["null_rate"] == pytest.approx(1 / 9) and e.to_dict()["test"] == "conditional"
    k = e.threshold
    assert decide_response(k, n=20, tested=8, num_classes=10, alpha=0.01, key_id="k").verified
    assert not decide_response(k - 1, n=20, tested=8, num_classes=10, alpha=0.01, key_id="k").verified
    assert decide_response(k - 1, n=20, tested=8, num_classes=10, alpha=0.01, key_id="k").p_value > 0.01
    none = decide_response(0, n=20, tested=0, num_classes=10, alpha=0.01, key_id="k")
    assert none.p_value == 1.0 and not none.verified
    with pytest.raises(BackmarkError, match="matches <= tested"):
        decide_response(9, n=20, tested=8, num_classes=10, alpha=0.01, key_id="k")


def test_conditional_test_is_exact_under_the_null() -> None:
    """Simulated null: a suspect that never saw the altered labels, answering the served label on most
    images. Its false-positive rate at a loose alpha stays at most alpha."""
    gen = torch.Generator().manual_seed(7)
    alpha, n, trials, fp = 0.05, 60, 2000, 0
    for _ in range(trials):
        served = torch.randint(0, 10, (n,), generator=gen)
        j = torch.randint(0, 9, (n,), generator=gen)
        altered = j + (j >= served).long()  # uniform over the 9 classes other than the served one
        agree = torch.rand(n, generator=gen) < 0.7
        suspect = torch.where(agree, served, torch.randint(0, 10, (n,), generator=gen))
        matches, tested = int((suspect == altered).sum()), int((suspect != served).sum())
        fp += decide_response(matches, n=n, tested=tested, num_classes=10, alpha=alpha, key_id="k").verified
    assert fp / trials <= alpha + 3 * (alpha * (1 - alpha) / trials) ** 0.5


def test_combined_claim_is_bonferroni() -> None:
    from backmark.response import combine
    from backmark.verify import Evidence

    alpha = 1e-6
    strong = Evidence.of(30, n=50, num_classes=10, alpha=alpha)  # threshold 18 at alpha, 19 at alpha/2
    edge = Evidence.of(18, n=50, num_classes=10, alpha=alpha)
    null = decide_response(0, n=50, tested=10, num_classes=10, alpha=alpha, key_id="k")
    claim = combine(strong, null, alpha=alpha)
    assert claim.verified and claim.marks == ("trigger",) and claim.trigger_threshold == 19
    assert claim.p_value == pytest.approx(2 * strong.p_value)
    # 18/50 verifies alone at alpha but not at alpha/2: the claim over two marks pays for looking twice
    assert edge.verified and not combine(edge, null, alpha=alpha).verified
    resp = decide_response(12, n=300, tested=20, num_classes=10, alpha=alpha, key_id="k")
    weak = Evidence.of(12, n=100, num_classes=10, alpha=alpha)
    both = combine(weak, resp, alpha=alpha)
    assert both.marks == ("response",) and both.p_value == pytest.approx(2 * resp.p_value)
    assert both.to_dict()["response"]["threshold_at_level"] == both.response_threshold
    doc = both.to_dict()
    assert doc["pieces"] == ["labels", "response"] and doc["evidence"]["response"]["verified"] is True
