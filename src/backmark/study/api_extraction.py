"""The attacker's side of the response mark: copy a model through its real HTTP API, several ways.

Used by ``backmark reproduce`` and ``benchmarks/response_mark.py`` to measure whether a copy extracted
from a server that alters a keyed fraction of its answers inherits the response mark. The server is
``backmark serve CKPT --response-key RKEY --query-log DB`` in its own process (one torch thread); the
attacker queries it over HTTP with UINT8 v2 requests, each image once unless the attacker votes.

Attackers (:class:`Attacker`), each from the attacker's own unlabelled images plus, where said, a small
hand-labelled set:

- ``top1``: train a fresh model on the top-1 labels (cross-entropy), SGD one-cycle as the attack suite;
- ``smooth`` / ``mixup``: the same with label smoothing 0.1 / mixup (Beta(0.2, 0.2)), which soften label
  noise;
- ``distill``: train on the served logits at a temperature (KL divergence, Hinton et al.);
- ``early-stop``: fewer epochs, before the copy fits the noise;
- ``vote``: ask about the image and ``votes - 1`` shifted copies of it, keep the majority answer (each copy
  has other pixels, hence its own keyed decision, so alterations rarely win a vote);
- ``agree``: hand-label ``labelled`` images, train a second model on them, and keep only the answers it
  agrees with;
- ``finetune``: after ``top1``, fine-tune every layer on the hand-labelled images at a constant lr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks.distill import distillation_loss
from backmark.errors import BackmarkError
from backmark.models import create_model
from backmark.models.normalization import channel_stats
from backmark.training.batches import Batch
from backmark.training.loop import Loss, cross_entropy, run_epochs
from backmark.training.schedule import Schedule

BATCH = 500  # images per request
BATCH_SIZE = 100  # images per training step


@dataclass(frozen=True)
class Attacker:
    """How the attacker queries and trains its copy (see the module docstring for each ``how``)."""

    name: str
    how: str = "top1"  # top1 | smooth | mixup | distill | vote | agree | finetune
    arch: str = "cnn"
    width: int | None = None
    epochs: int = 10
    lr: float = 0.05
    temperature: float = 4.0  # distill
    votes: int = 5  # vote: the image and votes - 1 shifted copies
    labelled: int = 2000  # agree, finetune: hand-labelled images
    finetune_epochs: int = 5
    finetune_lr: float = 0.01

    def __post_init__(self) -> None:
        if self.how not in HOWS:
            raise BackmarkError(f"unknown attacker {self.how!r}; choose from {', '.join(HOWS)}")

    @property
    def soft(self) -> bool:
        return self.how == "distill"


HOWS = ("top1", "smooth", "mixup", "distill", "vote", "agree", "finetune")


@contextmanager
def serving_process(ckpt: Path, rkey: Path | None, db: Path | None, *, timeout: float = 120) -> Iterator[str]:
    """``backmark serve CKPT [--response-key RKEY --query-log DB]`` in a subprocess; yields the v2 URL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "backmark", "serve", str(ckpt), "--port", "0", "--name", "m", "-q"]
    if rkey is not None and db is not None:
        argv += ["--response-key", str(rkey), "--query-log", str(db)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints "serving m at URL ..." once it listens
        if not line.startswith("serving"):
            proc.kill()
            err = proc.stderr.read() if proc.stderr else ""
            raise BackmarkError(f"backmark serve did not start: {(line + err).strip()[:300]}")
        yield line.split()[3]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def query(
    url: str, images: torch.Tensor, *, logits: bool = False, timeout: float = 120
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(top-1 labels, logits or None) for uint8 (N, C, H, W) ``images``, ``BATCH`` per v2 request."""
    labels, scores = [], []
    outputs = [{"name": "label"}] + ([{"name": "logits"}] if logits else [])
    with httpx.Client(timeout=timeout) as client:
        for start in range(0, len(images), BATCH):
            chunk = images[start : start + BATCH]
            body = {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "UINT8",
                        "shape": list(chunk.shape),
                        "data": chunk.flatten().tolist(),
                    }
                ],
                "outputs": outputs,
            }
            reply = client.post(f"{url}/infer", json=body)
            if reply.status_code != 200:
                raise BackmarkError(f"the server answered {reply.status_code}: {reply.text[:200]}")
            got = {o["name"]: o for o in reply.json()["outputs"]}
            labels.append(torch.tensor(got["label"]["data"], dtype=torch.int64))
            if logits:
                o = got["logits"]
                scores.append(torch.tensor(o["data"], dtype=torch.float32).reshape(o["shape"]))
    return torch.cat(labels), (torch.cat(scores) if logits else None)


def shifted(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Each uint8 image moved by a random whole-pixel shift of at most ``max_shift`` (zero fill), never 0."""
    n, _, h, w = images.shape
    out = torch.zeros_like(images)
    for i in range(n):
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[i, :, yd, xd] = images[i, :, ys, xs]
    return out


def voted_labels(url: str, images: torch.Tensor, votes: int, seed: int) -> torch.Tensor:
    """The majority of the answers to ``images`` and ``votes - 1`` shifted copies (ties: the first)."""
    gen = torch.Generator().manual_seed(seed)
    answers = [query(url, images)[0]]
    for _ in range(votes - 1):
        answers.append(query(url, shifted(images, gen))[0])
    stack = torch.stack(answers, dim=1)  # (N, votes)
    counts = F.one_hot(stack, int(stack.max()) + 1).sum(dim=1)  # (N, classes)
    best = counts.max(dim=1).values
    first_best = (counts.gather(1, stack) == best[:, None]).float().argmax(dim=1)
    return stack.gather(1, first_best[:, None]).squeeze(1)


LOSSES = ("ce", "smooth", "mixup", "distill")


class _Shuffled:
    """The batches of one pass over uint8 ``images``: a fresh order from the seeded generator at every pass,
    float [0, 1] pixels, and targets as the loss takes them. Random draws, in order: the pass's order, then
    per batch mixup's weight (torch's global generator) and its pairing.
    """

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, loss: str, temperature: float, seed: int
    ) -> None:
        self.images, self.targets, self.loss, self.temperature = images, targets, loss, temperature
        self.gen = torch.Generator().manual_seed(seed)
        self.beta = torch.distributions.Beta(torch.tensor(0.2), torch.tensor(0.2))

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(len(self.images), generator=self.gen)
        for start in range(0, len(self.images), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            x, t = self.images[idx].float().div_(255.0), self.targets[idx]
            if self.loss == "distill":  # the served logits, softened: probabilities (B, K)
                yield Batch(x, F.softmax(t / self.temperature, dim=1), len(idx))
            elif self.loss == "mixup":  # mixed images; targets (B, 3): both labels and the weight
                lam = float(self.beta.sample())
                perm = torch.randperm(len(idx), generator=self.gen)
                pair = torch.stack([t.float(), t[perm].float(), torch.full((len(idx),), lam)], dim=1)
                yield Batch(lam * x + (1 - lam) * x[perm], pair, len(idx))
            else:
                yield Batch(x, t, len(idx))


def _mixup_loss(logits: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """Mixup's loss from :class:`_Shuffled`'s targets: ``lam CE(y) + (1 - lam) CE(y')``."""
    lam = pair[0, 2]
    a, b = pair[:, 0].long(), pair[:, 1].long()
    return lam * F.cross_entropy(logits, a) + (1 - lam) * F.cross_entropy(logits, b)


def _smoothed(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=0.1)


def train(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    schedule: Schedule = "onecycle",
    loss: str = "ce",
    temperature: float = 4.0,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` on uint8 ``images`` with int64 labels or, for ``loss="distill"``, logits ``targets``.

    The one trainer's loop (:func:`backmark.training.loop.run_epochs`: SGD, the schedule, the step) over
    batches of 100 in the default memory layout. ``loss``: ce, smooth (label smoothing 0.1), mixup
    (Beta(0.2, 0.2)) or distill (:func:`backmark.attacks.distill.distillation_loss` on the logits softened
    at ``temperature``).
    """
    if loss not in LOSSES:
        raise BackmarkError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    losses: dict[str, Loss] = {"ce": cross_entropy, "smooth": _smoothed, "mixup": _mixup_loss}
    losses["distill"] = distillation_loss(temperature)
    batches = _Shuffled(images, targets, loss, temperature, seed)
    run_epochs(
        model, batches, -(-len(images) // BATCH_SIZE), epochs=epochs, lr=lr, schedule=schedule,
        memory_format=torch.contiguous_format, loss=losses[loss],
    )  # fmt: skip
    return model.eval()


def fresh_model(attacker: Attacker, images: torch.Tensor, num_classes: int, seed: int) -> nn.Module:
    """A new model of the attacker's architecture, normalised with its images' channel statistics."""
    mean, std = channel_stats(images)
    torch.manual_seed(seed)
    args = {} if attacker.width is None else {"width": attacker.width}
    shape = tuple(images.shape[1:])
    return create_model(
        attacker.arch,
        num_classes=num_classes,
        input_shape=shape,
        mean=mean,
        std=std,
        **args,
    )


def extract(
    url: str,
    attacker: Attacker,
    images: torch.Tensor,
    true_labels: torch.Tensor,
    *,
    num_classes: int,
    seed: int = 0,
) -> tuple[nn.Module, int]:
    """The attacker's copy of the model served at ``url`` and how many queries it sent.

    ``images`` (uint8) are the attacker's; ``true_labels`` are used only for the hand-labelled images of
    ``agree`` and ``finetune`` (the first ``attacker.labelled`` of them).
    """
    how = attacker.how
    sent = len(images)
    if how == "vote":
        labels, scores = voted_labels(url, images, attacker.votes, seed), None
        sent *= attacker.votes
    else:
        labels, scores = query(url, images, logits=attacker.soft)
    keep = torch.ones(len(images), dtype=torch.bool)
    if how == "agree":
        hand = images[: attacker.labelled]
        judge = train(
            fresh_model(attacker, hand, num_classes, seed + 1), hand, true_labels[: attacker.labelled],
            epochs=10, lr=attacker.lr, seed=seed + 1,
        )  # fmt: skip
        with torch.inference_mode():
            opinion = torch.cat(
                [judge(images[i : i + 500].float() / 255).argmax(1) for i in range(0, len(images), 500)]
            )
        keep = opinion == labels
    model = fresh_model(attacker, images, num_classes, seed)
    loss = {"smooth": "smooth", "mixup": "mixup", "distill": "distill"}.get(how, "ce")
    assert scores is not None or loss != "distill"
    train(
        model, images[keep], (scores if loss == "distill" else labels)[keep],  # type: ignore[index]
        epochs=attacker.epochs, lr=attacker.lr, loss=loss, temperature=attacker.temperature, seed=seed,
    )  # fmt: skip
    if how == "finetune":
        n = attacker.labelled
        train(
            model, images[:n], true_labels[:n], epochs=attacker.finetune_epochs, lr=attacker.finetune_lr,
            schedule="constant", seed=seed + 2,
        )  # fmt: skip
    return model, sent
