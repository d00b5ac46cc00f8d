"""HTTPS: certificates are verified by default; a private CA or --insecure are explicit choices."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.serve import create_app, serving
from backmark.targets import ClientConfig, ModuleTarget, V2Target


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", *ec, *names, *files], check=True, capture_output=True, timeout=60
    )
    return str(cert), str(key)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


@pytest.fixture(scope="module")
def https_url(tls_files: tuple[str, str], model: nn.Module) -> Iterator[str]:
    app = create_app(model, name="m", input_shape=(1, 2, 2), num_classes=3)
    with serving(app, tls=tls_files) as url:
        assert url.startswith("https://127.0.0.1:")
        yield f"{url}/v2/models/m"


def test_an_unknown_certificate_is_refused_by_default(https_url: str) -> None:
    with pytest.raises(BackmarkError, match=r"cannot connect to .*CERTIFICATE_VERIFY_FAILED") as info:
        V2Target(https_url)
    assert "\n" not in str(info.value)


def test_a_private_ca_or_insecure_mode_is_accepted(
    https_url: str, tls_files: tuple[str, str], model: nn.Module
) -> None:
    images = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    expected = ModuleTarget(model).predict(images)
    trusted = V2Target(https_url, config=ClientConfig(ca_bundle=tls_files[0]))
    assert torch.equal(trusted.predict(images), expected)
    insecure = V2Target(https_url, config=ClientConfig(verify_tls=False))
    assert torch.equal(insecure.predict(images), expected)
    with pytest.raises(BackmarkError, match="cannot read CA bundle"):
        V2Target(https_url, config=ClientConfig(ca_bundle=str(Path(tls_files[0]).with_name("none.pem"))))


def test_a_bad_certificate_file_is_one_line(tls_files: tuple[str, str], model: nn.Module) -> None:
    app = create_app(model, name="m", input_shape=(1, 2, 2), num_classes=3)
    with pytest.raises(BackmarkError, match="cannot use TLS certificate"):
        serving(app, tls=(tls_files[1], tls_files[1] + ".missing")).__enter__()
