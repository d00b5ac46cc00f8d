"""Verification through a real Open Inference Protocol v2 server on 127.0.0.1, against local verification."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey
from backmark.models import load_checkpoint
from backmark.serve import create_app, serving
from backmark.targets import ClientConfig, DecoyTarget, JsonTarget, ModuleTarget, V2Target
from backmark.verify import verify


def test_marked_model_verifies_through_the_server_with_the_local_p_value(
    marked_url: str, checkpoints: tuple[Path, Path], key30: MarkingKey
) -> None:
    vk = key30.verification_key()
    model, _ = load_checkpoint(checkpoints[0])
    local = verify(model, key30, vk)
    target = V2Target(f"{marked_url}/v2/models/marked", config=ClientConfig(batch_size=7))
    remote = verify(target, key30, vk)
    assert local.verified and remote.verified
    assert remote == local  # every field: matches, p-value, threshold, decision
    assert target.output == "label"  # of logits and label, the client asks for the smaller answer
    assert target.client.requests == 2 + 5  # metadata and readiness, then 30 triggers in batches of 7


def test_clean_model_is_not_verified_through_the_server(
    clean_url: str, checkpoints: tuple[Path, Path], key30: MarkingKey
) -> None:
    vk = key30.verification_key()
    model, _ = load_checkpoint(checkpoints[1])
    local = verify(model, key30, vk)
    remote = verify(V2Target(f"{clean_url}/v2/models/clean"), key30, vk)
    assert not remote.verified and remote.evidence.matches < remote.evidence.threshold
    assert remote.evidence == local.evidence


def test_logits_output_and_json_contract_answer_the_same_labels(
    marked_url: str, checkpoints: tuple[Path, Path], small_data: ImageDataset
) -> None:
    images = small_data.test_x[:50].float() / 255.0
    model, _ = load_checkpoint(checkpoints[0])
    expected = ModuleTarget(model).predict(images)
    via_logits = V2Target(f"{marked_url}/v2/models/marked", output="logits").predict(images)
    via_json = JsonTarget(f"{marked_url}/predict/marked", config=ClientConfig(batch_size=16)).predict(images)
    assert torch.equal(via_logits, expected) and torch.equal(via_json, expected)


def test_decoys_through_the_server_count_only_trigger_answers(
    marked_url: str, key30: MarkingKey, small_data: ImageDataset
) -> None:
    vk = key30.verification_key()
    plain = verify(V2Target(f"{marked_url}/v2/models/marked"), key30, vk)
    hidden = DecoyTarget(
        V2Target(f"{marked_url}/v2/models/marked", config=ClientConfig(batch_size=32)),
        small_data.test_x,
        count=120,
        labels=small_data.test_y,
        seed=3,
    )
    result = verify(hidden, key30, vk)
    assert result == plain
    assert hidden.last is not None and hidden.last.queries == 150
    assert hidden.last.decoy_accuracy is not None and hidden.last.decoy_accuracy > 0.6  # a real classifier


def test_any_target_can_be_served_labels_only(key30: MarkingKey, checkpoints: tuple[Path, Path]) -> None:
    """A Target (here a wrapped module, as an evasion attack would be) is served with a label output."""
    vk = key30.verification_key()
    model, info = load_checkpoint(checkpoints[0])
    app = create_app(ModuleTarget(model), name="wrapped", input_shape=info.input_shape, num_classes=10)
    with serving(app) as url:
        meta = httpx.get(f"{url}/v2/models/wrapped").json()
        assert [o["name"] for o in meta["outputs"]] == ["label"]
        assert verify(V2Target(f"{url}/v2/models/wrapped"), key30, vk) == verify(model, key30, vk)
        with pytest.raises(BackmarkError, match="has no output 'logits'; its outputs: label"):
            V2Target(f"{url}/v2/models/wrapped", output="logits")


def test_labels_only_serves_a_module_without_logits(
    checkpoints: tuple[Path, Path], key30: MarkingKey
) -> None:
    model, info = load_checkpoint(checkpoints[1])
    app = create_app(model, name="c", input_shape=info.input_shape, num_classes=10, labels_only=True)
    with serving(app) as url:
        target = V2Target(f"{url}/v2/models/c")
        assert target.output == "label"
        assert verify(target, key30, key30.verification_key()) == verify(
            model, key30, key30.verification_key()
        )
        target.close()


def test_server_endpoints_and_refusals(marked_url: str) -> None:
    assert httpx.get(f"{marked_url}/v2/health/live").status_code == 200
    assert httpx.get(f"{marked_url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{marked_url}/v2/models/marked/ready").status_code == 200
    assert httpx.get(f"{marked_url}/v2").json()["name"] == "backmark"
    meta = httpx.get(f"{marked_url}/v2/models/marked").json()
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    missing = httpx.get(f"{marked_url}/v2/models/other")
    assert missing.status_code == 404 and "marked" in missing.json()["error"]
    infer = f"{marked_url}/v2/models/marked/infer"
    tensor = {"name": "images", "datatype": "FP32", "shape": [2, 1, 28, 28], "data": [0.5] * 784}
    short = httpx.post(infer, json={"inputs": [tensor]})
    assert short.status_code == 400 and "shape" in short.json()["error"]
    assert httpx.post(infer, content=b"{nope").status_code == 400
    good = httpx.post(infer, json={"id": "q1", "inputs": [{**tensor, "shape": [1, 1, 28, 28]}]}).json()
    assert good["id"] == "q1" and [o["name"] for o in good["outputs"]] == ["logits", "label"]
    assert good["outputs"][0]["shape"] == [1, 10] and len(good["outputs"][0]["data"]) == 10
    uint8 = {"name": "images", "datatype": "UINT8", "shape": [1, 1, 28, 28], "data": [[[[128] * 28] * 28]]}
    nested = httpx.post(infer, json={"inputs": [uint8], "outputs": [{"name": "label"}]}).json()
    assert nested["outputs"][0]["shape"] == [1]


def test_client_errors_are_one_line(marked_url: str) -> None:
    with pytest.raises(BackmarkError, match=r"answered 404 Not Found: .*serves 'marked'") as info:
        V2Target(f"{marked_url}/v2/models/nosuch")
    assert "\n" not in str(info.value)
    with pytest.raises(BackmarkError, match="names no model"):
        V2Target(f"{marked_url}/v2/")
    with pytest.raises(BackmarkError, match="credentials"):
        V2Target("http://user:pw@127.0.0.1:1/v2/models/m")
    target = V2Target(f"{marked_url}/v2/models/marked")
    with pytest.raises(BackmarkError, match="fits none of NCHW"):
        target.predict(torch.zeros(2, 3, 32, 32))
