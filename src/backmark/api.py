"""The front door, ``import backmark as bm``: the names a user needs, in the words of the command line.

Every function takes keyword arguments only and accepts a file path wherever the command line takes one
(a key folder, a checkpoint, a challenge or proof file), or the object itself. Everything else stays in
its subpackage (:mod:`backmark.keys`, :mod:`backmark.embed`, :mod:`backmark.verify`, :mod:`backmark.public`,
:mod:`backmark.ledger`, :mod:`backmark.attacks`, ...).

>>> import backmark as bm
>>> key = bm.keygen(num_classes=10, input_shape=(1, 28, 28), size=20)
>>> key.n, key.num_classes, key.input_shape
(20, 10, (1, 28, 28))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_VERIFY_TEST, VerifyTest
from backmark.data import ImageDataset, load_dataset
from backmark.embed import TrainConfig, Trained, embed_from_scratch, embed_pretrained, train_clean
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, VerificationKey, generate_key, load_key_pair, save_key_pair
from backmark.keys.files import load_verification_key
from backmark.models import ModelInfo, load_checkpoint, save_checkpoint, save_safetensors
from backmark.public import Challenge, CheckResult, Proof, Proven, check_proof, load_challenge, load_proof
from backmark.public import new_challenge as _new_challenge
from backmark.public import prove as _prove
from backmark.targets import Target
from backmark.training import Device
from backmark.verify.labelfree import TestedVerification, verify_tests

PathLike = str | Path


def keygen(
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    size: int = 100,
    kind: str = "abstract",
    seed: int | None = None,
) -> MarkingKey:
    """A fresh marking key: ``size`` triggers for a ``num_classes``-way model on ``input_shape`` inputs
    (``backmark keygen``); its public half is ``key.verification_key()``. Save it with :func:`save_key`.
    ``seed`` (``keygen --seed``) makes the same key every time, for tests and demos: not a secret one."""
    return generate_key(num_classes=num_classes, input_shape=input_shape, size=size, kind=kind, seed=seed)


def save_key(*, key: MarkingKey, out: PathLike, force: bool = False) -> tuple[Path, Path]:
    """Write ``out/marking-key.bmk`` (secret, mode 0600) and ``out/verification-key.json`` (public)."""
    return save_key_pair(key, out, force=force)


def load_key(path: PathLike, *, vk: PathLike | None = None) -> tuple[MarkingKey, VerificationKey]:
    """The key pair in the folder (or marking key file) ``path``, every commitment checked to open."""
    return load_key_pair(path, vk)


def _key_pair(
    key: MarkingKey | PathLike, vk: VerificationKey | PathLike | None
) -> tuple[MarkingKey, VerificationKey]:
    if isinstance(key, MarkingKey):
        if vk is None:
            return key, key.verification_key()
        return key, vk if isinstance(vk, VerificationKey) else load_verification_key(vk)
    if isinstance(vk, VerificationKey):
        mk, _ = load_key_pair(key)
        return mk, vk
    return load_key_pair(key, vk)


def _data(data: ImageDataset | str) -> ImageDataset:
    return load_dataset(data) if isinstance(data, str) else data


def load_model(path: PathLike, *, allow_code: bool = False) -> tuple[nn.Module, ModelInfo]:
    """The model of a backmark checkpoint or safetensors file, in eval mode, and what the file records.

    A model of your own architecture (``MODULE:CALLABLE``) is rebuilt by importing your code, which
    runs it: only with ``allow_code=True``.
    """
    return load_checkpoint(path, allow_code=allow_code)


def save_model(*, model: nn.Module, info: ModelInfo, out: PathLike, force: bool = False) -> Path:
    """Write ``model`` and ``info`` to ``out``: safetensors if it ends in ``.safetensors``, else a
    backmark checkpoint. Never over an existing file unless ``force``. The key is never written."""
    if str(out).endswith(".safetensors"):
        return save_safetensors(out, model, info, force=force)
    return save_checkpoint(out, model, info, force=force)


def train(
    *,
    data: ImageDataset | str,
    arch: str = "cnn",
    arch_args: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    device: Device = "auto",
    progress: bool = True,
) -> Trained:
    """A clean (unmarked) model, for baselines (``backmark train``). ``data`` is a dataset or its spec
    (``"fashion-mnist"``); ``arch`` a registered architecture or your ``"MODULE:CALLABLE"`` factory."""
    return train_clean(
        _data(data), arch=arch, arch_args=arch_args, config=config, progress=progress, device=device
    )


def embed(
    *,
    key: MarkingKey | PathLike,
    data: ImageDataset | str,
    arch: str = "cnn",
    arch_args: dict[str, Any] | None = None,
    pretrained: PathLike | tuple[nn.Module, ModelInfo] | None = None,
    allow_code: bool = False,
    config: TrainConfig | None = None,
    device: Device = "auto",
    progress: bool = True,
) -> Trained:
    """Mark with the built-in trainer (``backmark embed``): FromScratch, a fresh ``arch`` trained with
    the triggers and then the trigger phase; or PreTrained, continuing ``pretrained`` (a checkpoint path,
    or a model and its info) until every trigger is learned. The result's ``model`` and ``info`` go to
    :func:`save_model`. For your own training loop use :class:`~backmark.embed.marker.Marker`."""
    mk = key if isinstance(key, MarkingKey) else _key_pair(key, None)[0]
    dataset = _data(data)
    if pretrained is None:
        return embed_from_scratch(
            dataset, mk, arch=arch, arch_args=arch_args, config=config, progress=progress, device=device
        )
    if arch_args is not None:
        raise BackmarkError("arch_args applies to a fresh model (FromScratch), not to pretrained=")
    model, info = (
        load_checkpoint(pretrained, allow_code=allow_code)
        if isinstance(pretrained, str | Path)
        else pretrained
    )
    return embed_pretrained(model, info, dataset, mk, config=config, progress=progress, device=device)


def _suspect(model: nn.Module | Target | PathLike, allow_code: bool) -> nn.Module | Target:
    return load_checkpoint(model, allow_code=allow_code)[0] if isinstance(model, str | Path) else model


def verify(
    *,
    model: nn.Module | Target | PathLike,
    key: MarkingKey | PathLike,
    vk: VerificationKey | PathLike | None = None,
    alpha: float = DEFAULT_ALPHA,
    eps: float = DEFAULT_EPS,
    test: VerifyTest = DEFAULT_VERIFY_TEST,
    allow_code: bool = False,
) -> TestedVerification:
    """The paper's Verify (``backmark verify``): open every commitment, query ``model`` on the triggers
    (labels only) and decide by the exact tests at ``alpha``: by default the labels test or the label-free
    test (renamed classes), each at ``alpha / 2``. ``model`` is any ``nn.Module`` (float [0, 1] pixels in,
    logits out), a :class:`~backmark.targets.Target`, or a model file. The result's ``verified`` is the
    claim, ``evidence`` the labels test's figures, ``label_free`` the other test's, ``decision`` both."""
    mk, public = _key_pair(key, vk)
    return verify_tests(_suspect(model, allow_code), mk, public, test=test, alpha=alpha, eps=eps)


def challenge(*, size: int | None = None) -> Challenge:
    """A fresh random challenge for a public check (``backmark challenge``); ``size`` items to open."""
    return _new_challenge(size)


def prove(*, key: PathLike, challenge: Challenge | PathLike, size: int | None = None) -> Proven:
    """The owner's answer (``backmark prove``): open the items ``challenge`` selects from the key folder
    ``key``, recorded there as spent before the proof is returned."""
    return _prove(key, challenge if isinstance(challenge, Challenge) else load_challenge(challenge), size)


def check(
    *,
    model: nn.Module | Target | PathLike,
    vk: VerificationKey | PathLike,
    challenge: Challenge | PathLike,
    proof: Proof | PathLike,
    alpha: float = DEFAULT_ALPHA,
    keys_held: int = 1,
    accept_unverifiable: bool = False,
    allow_code: bool = False,
) -> CheckResult:
    """The public check (``backmark check``): anyone with the verification key checks the proof's
    openings, queries ``model`` on the opened items and applies the exact test."""
    public = vk if isinstance(vk, VerificationKey) else load_verification_key(_vk_file(vk))
    return check_proof(
        _suspect(model, allow_code),
        public,
        challenge if isinstance(challenge, Challenge) else load_challenge(challenge),
        proof if isinstance(proof, Proof) else load_proof(proof),
        alpha=alpha,
        keys_held=keys_held,
        accept_unverifiable=accept_unverifiable,
    )


def _vk_file(path: PathLike) -> Path:
    from backmark.keys import VK_NAME

    path = Path(path)
    return path / VK_NAME if path.is_dir() else path


def register(
    *,
    registry: str,
    identity: Any,
    vk: VerificationKey | PathLike,
    model_digest: str | None = None,
    siblings_digest: str | None = None,
) -> dict[str, Any]:
    """Register ``vk`` at the registry at URL ``registry`` (``backmark register``), signed by
    ``identity`` (an :class:`~backmark.identity.Identity` or its folder), with a model's digest and a
    sibling record's (``SiblingRecord.digest``) if given; returns the checked receipt."""
    from backmark.identity import Identity, load_identity
    from backmark.ledger.client import register as _register

    who = identity if isinstance(identity, Identity) else load_identity(identity)
    return _register(registry, who, vk, model_digest=model_digest, siblings_digest=siblings_digest)
