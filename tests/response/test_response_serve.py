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
    assert served.disagreements == 0 and served.conditional_p_value == 1.0
    assert copy.disagreements == copy.n and copy.conditional_p_value == copy.p_value
    for seed in (1, 2, 3):
        clean = verify_response(ModuleTarget(cnn(seed)), rkey, logged, num_classes=10, input_shape=SHAPE)
        assert not clean.verified and clean.null_rate == Fraction(1, 9)
        assert clean.disagreements is not None and clean.conditional_p_value is not None
        assert clean.matches <= clean.disagreements <= clean.n and clean.conditional_p_value > 1e-6
    other = generate_response_key(rate="0.05", secret=b"\x09" * 32)
    with pytest.raises(BackmarkError, match="another key"):
        verify_response(Marked(model, rkey), other, logged, num_classes=10, input_shape=SHAPE)


def test_decision_numbers() -> None:
    e = decide_response(5, n=20, num_classes=10, alpha=0.01, key_id="k")
    # P[Binomial(20, 1/9) >= 5] computed independently
    from math import comb

    want = sum(comb(20, i) * (1 / 9) ** i * (8 / 9) ** (20 - i) for i in range(5, 21))
    assert abs(e.p_value - want) < 1e-12
    assert e.to_dict()["null_rate"] == pytest.approx(1 / 9)
    k = e.threshold
    assert decide_response(k, n=20, num_classes=10, alpha=0.01, key_id="k").p_value <= 0.01
    assert decide_response(k - 1, n=20, num_classes=10, alpha=0.01, key_id="k").p_value > 0.01
    # conditioned on the 8 answers that differ from the served model's: P[Binomial(8, 1/9) >= 5]
    c = decide_response(5, n=20, num_classes=10, alpha=0.01, key_id="k", disagreements=8)
    want8 = sum(comb(8, i) * (1 / 9) ** i * (8 / 9) ** (8 - i) for i in range(5, 9))
    assert c.conditional_p_value == pytest.approx(want8, rel=1e-12) and c.p_value == e.p_value
