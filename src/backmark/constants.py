"""Defaults and names that the command line shows before it imports anything heavy (torch, numpy).

``backmark --help`` and ``--version`` build the whole argument parser; everything its help texts need
lives here, and the library modules take their defaults from here too, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Literal

# The package's version (pyproject.toml's; ``backmark.__version__`` is this value), here so that modules
# low in the layering name it without importing the package's root, which imports them.
VERSION = "0.1.0"

# 1e-6: a false claim against an unmarked model succeeds with probability at most one in a million, which
# leaves room for a key being checked against many suspect models (a family of 1000 checks still has a
# false-positive rate of at most 1e-3). With n = 100 and C = 10 it asks for 28 matches; a marked model
# answers 100.
DEFAULT_ALPHA = 1e-6
# The paper's rule: at most eps * n triggers answered wrongly. Reported beside the test, never decisive.
DEFAULT_EPS = 0.1
# verify --test: which decision (backmark.verify.labelfree; docs/label-free.md). The default, either,
# catches a stolen copy with renamed classes (the cheapest evasion of the labels test) at alpha/2 each.
VerifyTest = Literal["labels", "label-free", "either"]
VERIFY_TESTS: tuple[VerifyTest, ...] = ("labels", "label-free", "either")
DEFAULT_VERIFY_TEST: VerifyTest = "either"

# The dataset spec forms that backmark.data.load_dataset accepts (its registry; checked by the tests).
DATASET_FORMS = (
    "fashion-mnist",
    "fashion-mnist:DIR",
    "mnist",
    "mnist:DIR",
    "cifar10:DIR",
    "cifar100:DIR",
    "imagefolder:DIR",
    "imagefolder:DIR@HxW",
)

# The target strings that backmark.targets.parse_target accepts.
TARGET_FORMS = (
    "ckpt:PATH",
    "onnx:PATH",
    "torchscript:PATH",
    "http(s)://HOST[:PORT]/v2/models/NAME with --protocol v2",
    "http(s)://URL with --protocol json",
)

# A remote target's client (backmark.targets.ClientConfig), in seconds where a time.
CLIENT_TIMEOUT = 30.0  # one request, from sending to the last byte of the answer
CLIENT_ATTEMPTS = 5  # tries per request, the first included
CLIENT_BACKOFF = 0.5  # pause before the first retry; doubles after each further failure
CLIENT_MAX_WAIT = 60.0  # the longest pause accepted, Retry-After included
CLIENT_DEADLINE = 120.0  # the whole verification, retries included
REMOTE_BATCH = 64  # images per request to a remote target
LOCAL_BATCH = 256  # images per run of a local model

# Where models train and are queried (backmark.training.resolve_device); auto: cuda, else mps, else cpu.
DEVICES = ("auto", "cpu", "cuda", "mps")

# The sibling-contrast test (backmark.contrast, docs/contrast.md): the margin of its probe-level null
# (models made without the deployed model side with it on at most 1/2 + delta of the probes where it and
# its siblings differ), chosen by the rule "largest innocent rate - 1/2 + 0.02, rounded up" from 1,200
# independent-model/deployed-model pairs (every model of four families taken in turn as the deployed one,
# against the family's own innocents, better models and every model of the other families; largest 0.601;
# docs/contrast.md, "Every choice of the deployed model"), with no suspect measured. It was 0.05, then
# 0.08, then 0.11, each from fewer innocents or fewer choices of the deployed model.
CONTRAST_DELTA = 0.13
# The margin of the same test on scores (backmark.contrast.score_test: does the suspect's centred
# log-probability vector point closer to the deployed model's than to the sibling's?), by the same rule from
# the same 1,200 pairs (largest 0.655; docs/contrast.md, "Scores"; docs/contrast-scores.json), with no
# suspect measured. It was 0.17 when scores were compared by squared distance, which let an unconfident
# innocent side with the least confident of the owner's models.
CONTRAST_SCORE_DELTA = 0.18
# Probes drawn with replacement from the pool of natural images (docs/contrast.md, "Pool and draws"); an
# image drawn twice is asked once, so the suspect's queries are the distinct images (all 10,000 of
# Fashion-MNIST's test images for 100,000 draws).
CONTRAST_PROBES = 100000
# The probe pool: the test split (images the owner's models never trained on; the default) or all images.
CONTRAST_POOLS = ("test", "all")
# The probe kinds (backmark.contrast.probes); the first is the default.
CONTRAST_KINDS = ("natural", "shifted", "cutmix", "mixup")
