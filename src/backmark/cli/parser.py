"""The command line's arguments: every verb and option, built without importing torch.

Each verb's ``func`` is a ``"module.function"`` name in :mod:`backmark.cli`, imported only when the verb
runs, so ``backmark --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from backmark.cli.evidence import QUERIED_HELP, add_evidence_options, add_registration_options
from backmark.cli.lineage import register as register_lineage
from backmark.constants import (
    CLIENT_ATTEMPTS,
    CLIENT_BACKOFF,
    CLIENT_DEADLINE,
    CLIENT_MAX_WAIT,
    CLIENT_TIMEOUT,
    CONTRAST_DELTA,
    CONTRAST_KINDS,
    CONTRAST_POOLS,
    CONTRAST_PROBES,
    DATASET_FORMS,
    DEFAULT_ALPHA,
    DEFAULT_EPS,
    DEVICES,
    TARGET_FORMS,
    VERIFY_TESTS,
    VERSION,
)


def add_device_option(p: argparse.ArgumentParser) -> None:
    """``--device``: where a verb trains or queries its models."""
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where models train and answer (default auto: cuda, else mps, else cpu)",
    )


def _writes_file(
    p: argparse.ArgumentParser, *, what: str = "file", json_help: str = "print the result as one JSON object"
) -> None:
    """``--force``, ``-q`` and ``--json`` of a verb that writes a file."""
    p.add_argument("--force", action="store_true", help=f"overwrite an existing {what}")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--json", action="store_true", help=json_help)


def _test_option(p: argparse.ArgumentParser, *, what: str = "the trigger mark's decision") -> None:
    p.add_argument(
        "--test",
        choices=VERIFY_TESTS,
        help=f"{what}: either (default: the labels and the label-free tests, each at alpha/2: catches "
        "renamed classes), labels (answers equal to the key labels) or label-free (triggers that share a "
        "key label share an answer); docs/label-free.md",
    )


def _decides(p: argparse.ArgumentParser) -> None:
    """``-q`` and ``--json`` of a verb whose exit status is its decision (0 verified, 1 not)."""
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; only the exit status")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _common(p: argparse.ArgumentParser, *, json_out: bool = False, seed: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result, no progress")
    if json_out:
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed for reproducible runs (default 0)")


def _fresh_seed(p: argparse.ArgumentParser) -> None:
    """``--seed`` of a verb that initialises a model: a fresh seed by default, so that two owners who
    keep the defaults do not start from the same weights (what the lineage test detects)."""
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for a reproducible run (default: a fresh one, printed and recorded in the checkpoint)",
    )


def _training(p: argparse.ArgumentParser, *, epochs: int | None, lr: float | None) -> None:
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset: " + " | ".join(DATASET_FORMS))
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (SGD, Nesterov momentum 0.9)")
    p.add_argument("--batch-size", type=int, default=100, help="clean images per batch (default 100)")
    p.add_argument(
        "--augment", choices=("none", "crop", "flip-crop"), default="none", help="batch augmentation"
    )
    p.add_argument("--train-subset", type=int, metavar="N", help="train on a seeded subset of N images")
    p.add_argument("--test-subset", type=int, metavar="N", help="evaluate on a seeded subset of N images")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    p.add_argument(
        "--siblings",
        type=int,
        metavar="K",
        help="also train K siblings (other seeds), deploy one of the K + 1 at random to --out and keep the "
        "rest in CKPT.siblings/ for `backmark contrast`",
    )
    add_device_option(p)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (recent GPUs; slow on most CPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (costs time up front)")


def _arch_args_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arch-args",
        metavar="JSON",
        help="the architecture's options as a JSON object, e.g. '{\"width\": 64}' (with --arch)",
    )


def _one_of(p: argparse.ArgumentParser, *options: tuple[str, str, str], required: bool = True) -> None:
    """Options of which a verb takes one (or none, unless ``required``), each ``(flag, METAVAR, help)``."""
    group = p.add_mutually_exclusive_group(required=required)
    for flag, metavar, text in options:
        group.add_argument(flag, metavar=metavar, help=text)


_SUSPECT = (
    ("--model", "CKPT", "checkpoint of the suspect model"),
    ("--target", "TARGET", "the suspect model elsewhere: " + " | ".join(TARGET_FORMS)),
)
"""``--model CKPT | --target TARGET``: the suspect of every verb that queries one."""


def _trust_code_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="load a model of your own architecture (MODULE:CALLABLE): imports and runs that code",
    )


def add_target_options(p: argparse.ArgumentParser) -> None:
    """The options of ``verify`` that choose and reach a target other than a checkpoint."""
    p.add_argument("--protocol", choices=("v2", "json"), help="what an http(s) --target speaks")
    p.add_argument("--adapter", metavar="FILE", help="request/answer shapes of a --protocol json API")
    p.add_argument("--output-name", metavar="NAME", help="the v2 output to read when there are several")
    p.add_argument(
        "--decoys", type=int, default=0, metavar="N", help="hide the triggers among N decoy images"
    )
    p.add_argument(
        "--decoy-data",
        metavar="SPEC",
        help="dataset whose test split gives the decoys (default by key shape)",
    )
    p.add_argument("--batch-size", type=int, metavar="N", help="images per request (remote: 64) or run (256)")
    remote = p.add_argument_group("remote targets")
    remote.add_argument(
        "--timeout", type=float, metavar="S", default=CLIENT_TIMEOUT, help="seconds per request (30)"
    )
    remote.add_argument(
        "--attempts", type=int, metavar="N", default=CLIENT_ATTEMPTS, help="tries per request (5)"
    )
    remote.add_argument(
        "--backoff", type=float, metavar="S", default=CLIENT_BACKOFF, help="first retry pause, s (0.5)"
    )
    remote.add_argument(
        "--max-wait", type=float, metavar="S", default=CLIENT_MAX_WAIT, help="longest pause, s (60)"
    )
    remote.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        default=CLIENT_DEADLINE,
        help=f"seconds for the whole verification, retries included ({CLIENT_DEADLINE:g})",
    )
    remote.add_argument("--rate", type=float, metavar="R", help="at most R requests per second")
    remote.add_argument(
        "--auth-env", metavar="VAR", help="environment variable holding the auth header value"
    )
    remote.add_argument(
        "--auth-header", default="Authorization", metavar="NAME", help="auth header name (Authorization)"
    )
    remote.add_argument("--ca-bundle", metavar="PEM", help="trust these certificate authorities instead")
    remote.add_argument("--insecure", action="store_true", help="skip TLS certificate checks (test servers)")


def _register_keys(sub: Any) -> None:
    """Add the ``keycheck`` verb to the CLI's subparsers."""
    p = sub.add_parser(
        "keycheck",
        help="check that a key's triggers and labels are exactly those its seed generates (abstract, noise)",
    )
    p.add_argument("--key", required=True, metavar="KEYDIR", help="key folder or marking key file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; only the exit status")
    p.set_defaults(func="keycheck.keycheck")


def _server_options(p: argparse.ArgumentParser) -> None:
    """What both servers take against hostile traffic (docs/deployment.md)."""
    p.add_argument(
        "--max-connections", type=int, default=2048, help="open connections at once (default 2048)"
    )
    p.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds for a request's headers (default 10)"
    )
    p.add_argument(
        "--body-timeout", type=float, default=60.0, help="seconds for a request's body (default 60)"
    )


def _register_targets(sub: Any) -> None:
    """Add ``export`` and ``serve`` to the CLI's sub-parsers."""
    p = sub.add_parser(
        "export", help="write a checkpoint as ONNX or TorchScript (checked to answer the same)"
    )
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint to export")
    _one_of(
        p,
        ("--onnx", "FILE", "write an ONNX file (opset 17, any batch size)"),
        ("--torchscript", "FILE", "write a TorchScript file (torch.jit.trace)"),
        ("--safetensors", "FILE", "write the weights as safetensors, with the architecture as metadata"),
    )
    _trust_code_option(p)
    _writes_file(p)
    p.set_defaults(func="serving.export")

    p = sub.add_parser("serve", help="serve a checkpoint over the Open Inference Protocol v2 (REST)")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint to serve")
    _trust_code_option(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--name", help="model name in the URLs (default: the checkpoint's file name)")
    p.add_argument("--labels-only", action="store_true", help="answer labels only, no logits (like an API)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument(
        "--response-key", metavar="RKEY", help="alter a keyed fraction of the answers (response-key new)"
    )
    p.add_argument("--query-log", metavar="DB", help="with --response-key: log altered answers (SQLite file)")
    p.add_argument(
        "--auth-env",
        metavar="VAR",
        help="require a bearer token: VAR holds the accepted tokens, separated by commas or spaces",
    )
    p.add_argument("--max-batch", type=int, default=1024, help="images per request (default 1024)")
    p.add_argument(
        "--log-quota",
        type=int,
        default=100_000,
        help="query-log rows one token (or all anonymous callers) may add (default 100000)",
    )
    _server_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print only the serving line")
    p.set_defaults(func="serving.serve")

    p = sub.add_parser("response-key", help="response keys: the secret that marks a server's answers")
    verbs = p.add_subparsers(dest="response_verb", metavar="VERB", required=True)
    new = verbs.add_parser("new", help="write a fresh response key (secret, mode 0600)")
    new.add_argument("--out", required=True, metavar="RKEY", help="response key file to write")
    new.add_argument(
        "--rate", default="0.01", metavar="R", help="fraction of answers to alter, in (0, 0.5] (default 0.01)"
    )
    _writes_file(new)
    new.set_defaults(func="response.new_key")


def _suspect(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--model CKPT | --target TARGET`` and the options that reach a target (``--device`` first, unless
    the verb adds it itself)."""
    if device:
        add_device_option(p)
    _one_of(p, *_SUSPECT)
    add_target_options(p)
    _trust_code_option(p)
    _bare_weights_options(p)


def _bare_weights_options(p: argparse.ArgumentParser) -> None:
    """The architecture of a ``--model`` safetensors file of bare weights (from a hub: no metadata)."""
    p.add_argument(
        "--arch",
        help="with --model FILE.safetensors of bare weights: its architecture, a name from `backmark "
        "models` or MODULE:CALLABLE (input shape and class count are the key's)",
    )
    _arch_args_option(p)
    p.add_argument(
        "--classes",
        type=int,
        metavar="N",
        help="with --arch: the model's class count where it is not the key's (a new head: --test label-free)",
    )


def _proof_files(p: argparse.ArgumentParser) -> None:
    """What a public verification is made of: the owner's verification key, a challenge and its proof."""
    p.add_argument("--vk", required=True, metavar="VK", help="verification key file or key folder")
    p.add_argument("--challenge", required=True, metavar="FILE", help="the challenge the proof answers")
    p.add_argument("--proof", required=True, metavar="FILE", help="the owner's proof that answers it")


def _register_public(sub: Any) -> None:
    """Add ``challenge``, ``prove``, ``check`` and ``trace`` to the CLI's subparsers."""
    p = sub.add_parser("challenge", help="write a fresh random challenge for a public verification")
    p.add_argument("--out", required=True, metavar="FILE", help="challenge file to write")
    p.add_argument(
        "--size", type=int, metavar="L", help="items the owner must open (recommended; see docs/protocol.md)"
    )
    _writes_file(p, json_help="print the challenge as one JSON object")
    p.set_defaults(func="public.challenge")

    p = sub.add_parser("prove", help="answer a challenge: open the items it selects (recorded as spent)")
    p.add_argument("--key", required=True, metavar="KEYDIR", help="key folder or marking key file")
    p.add_argument("--challenge", required=True, metavar="FILE", help="the verifier's challenge")
    p.add_argument("--size", type=int, metavar="L", help="items to open (default: the challenge's size)")
    p.add_argument("--out", required=True, metavar="FILE", help="proof file to write")
    p.add_argument("--identity", metavar="IDDIR", help="sign the proof with your identity (identity new)")
    _writes_file(p, what="proof file")
    p.set_defaults(func="public.prove_cmd")

    p = sub.add_parser(
        "check", help="check a proof and the suspect with the public key (exit 0 verified, 1 not, 2 error)"
    )
    _proof_files(p)
    _suspect(p)
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--keys-held",
        type=int,
        default=1,
        metavar="N",
        help="keys the claimant holds for this model (the p-value is multiplied by N; default 1)",
    )
    p.add_argument(
        "--accept-unverifiable",
        action="store_true",
        help="count triggers that cannot be regenerated from their seeds (folder keys, old keys) as evidence",
    )
    p.add_argument(
        "--previous", nargs="+", metavar="PROOF", help="earlier proofs of this key (no item opened twice)"
    )
    _test_option(p)
    _decides(p)
    p.set_defaults(func="public.check")

    p = sub.add_parser("claim", help="bundle a key, a challenge, its proof and the key's registry receipt")
    _proof_files(p)
    p.add_argument("--receipt", required=True, metavar="FILE", help="the registry's receipt for the key")
    p.add_argument("--out", required=True, metavar="FILE", help="claim file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func="public.claim")

    p = sub.add_parser(
        "dispute", help="settle claims on one suspect: which verifies and was registered first (exit 0 named)"
    )
    p.add_argument("--registry", required=True, metavar="URL", help="the registry the receipts are from")
    p.add_argument("--claims", required=True, nargs="+", metavar="CLAIM", help="claim files (backmark claim)")
    _suspect(p)
    p.add_argument(
        "--published", metavar="DATE", help="the suspect's publication date: later registrations are flagged"
    )
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA:g})"
    )
    _test_option(p)
    _decides(p)
    p.set_defaults(func="public.dispute")

    p = sub.add_parser("trace", help="name the licensee whose key a suspect copy carries")
    p.add_argument("--keys", required=True, nargs="+", metavar="KEYDIR", help="one key folder per licensee")
    p.add_argument("--names", metavar="A,B,...", help="licensee names (default: the key folders' names)")
    _suspect(p)
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"significance level for all keys together (default {DEFAULT_ALPHA:g}; each key: alpha / keys)",
    )
    _test_option(p)
    _decides(p)
    p.set_defaults(func="public.trace")


def _register_attacks(sub: Any) -> None:
    """Add the ``attack`` and ``reproduce`` verbs to the CLI's subparsers."""
    p = sub.add_parser("attack", help="run removal attacks on a marked model and report what survives")
    p.add_argument(
        "--attacks",
        required=True,
        metavar="NAME[,NAME...]",
        help="attacks to run, each NAME[:KEY=VALUE...], values of a sweep separated by '/' "
        "(e.g. ftal:lr=0.01,prune:sparsity=0.5/0.9); 'all': every attack with its defaults; "
        "'list' prints them",
    )
    p.add_argument("--model", metavar="CKPT", help="checkpoint of the marked model")
    p.add_argument("--key", metavar="KEYDIR", help="key folder (marking and verification key)")
    p.add_argument("--data", metavar="SPEC", help="dataset: " + " | ".join(DATASET_FORMS))
    p.add_argument("--out", metavar="DIR", help="folder for report.json, report.md and the figures")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level ({DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--attacker-fraction",
        type=float,
        default=1 / 3,
        help="share of the training set the attacker holds (default 1/3; the split is seeded by --seed)",
    )
    p.add_argument("--train-subset", type=int, metavar="N", help="use a seeded subset of N training images")
    p.add_argument("--test-subset", type=int, metavar="N", help="measure on a seeded subset of N test images")
    p.add_argument(
        "--force", action="store_true", help="replace a previous report in --out (as a whole, at the end)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the split and the attacks (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    p.add_argument("--json", action="store_true", help="print the report's entries as JSON")
    add_device_option(p)
    p.set_defaults(func="attacks.attack")

    p = sub.add_parser("reproduce", help="the paper's experiments and the attack suite, into a results file")
    p.add_argument("--data", default="fashion-mnist", metavar="SPEC", help="dataset (default fashion-mnist)")
    p.add_argument("--out", default="backmark-results", metavar="DIR", help="folder for models and reports")
    p.add_argument(
        "--results", metavar="FILE", help="markdown results file (default DIR/results.md), figures beside it"
    )
    p.add_argument("--fast", action="store_true", help="a small smoke run for CI (about two minutes)")
    p.add_argument("--arch", help="architecture (default cnn below 32x32 inputs, else preact-resnet18)")
    p.add_argument("--width", type=int, help="architecture width option")
    p.add_argument("--epochs", type=int, help="owner's training epochs (default 5)")
    p.add_argument("--finetune-epochs", type=int, help="epochs of the fine-tuning attacks (default 20)")
    p.add_argument(
        "--response-rate",
        type=float,
        metavar="R",
        help="rate of the response-mark study's served key (default 0.02; 0: no response-mark study)",
    )
    p.add_argument(
        "--search",
        choices=("all", "cheap", "none"),
        help="adaptive attackers: the strongest setting within budget of every strength knob (all, the "
        "default), of the inference-time ones (cheap, the --fast default), or none",
    )
    p.add_argument(
        "--kind",
        help="the key's triggers: abstract (default), noise, heldout (real images of the owner's data, left "
        "out of training, each labelled with another class) or blend (averages of two of them)",
    )
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level ({DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--force", action="store_true", help="replace a previous run in --out (as a whole, at the end)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the split, key, training and attacks (default 0)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    add_device_option(p)
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="run the attacks in N processes (same results)"
    )
    p.set_defaults(func="attacks.reproduce")


def _registry_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per request (10)")
    p.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds for the whole call, retries included (60)",
    )


def _register_registry(sub: Any) -> None:
    """Add ``identity``, ``register`` and ``registry`` (serve, lookup, audit) to the CLI's sub-parsers."""
    p = sub.add_parser("identity", help="owner identities (Ed25519 key pairs) that sign keys and receipts")
    verbs = p.add_subparsers(dest="identity_command", required=True, metavar="ACTION")
    q = verbs.add_parser("new", help="make an identity: IDDIR/identity.key (0600) and identity.pub.json")
    q.add_argument("--out", required=True, metavar="IDDIR", help="folder for the two identity files")
    q.add_argument("--force", action="store_true", help="replace an existing identity (both files at once)")
    q.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    q.add_argument("--json", action="store_true", help="print the result as one JSON object")
    q.set_defaults(func="registry.identity_new")
    q = verbs.add_parser("show", help="print an identity's fingerprint (from its folder or public file)")
    q.add_argument("identity", metavar="IDDIR", help="identity folder or identity.pub.json")
    q.add_argument("--json", action="store_true", help="print the public identity as JSON")
    q.set_defaults(func="registry.identity_show")

    p = sub.add_parser("register", help="register a verification key at a registry; save the signed receipt")
    p.add_argument("--registry", required=True, metavar="URL", help="the registry, http(s)://HOST:PORT")
    p.add_argument("--identity", required=True, metavar="IDDIR", help="your identity folder")
    p.add_argument("--vk", required=True, metavar="VK", help="verification key file or key folder")
    _one_of(
        p,
        ("--model", "FILE", "also record this model file's SHA-256"),
        ("--model-digest", "HEX", "also record this model digest"),
        required=False,
    )
    _one_of(
        p,
        (
            "--siblings",
            "RECORD",
            "also record the digest of this sibling record: CKPT (for CKPT.siblings/), the folder, or its "
            "siblings.json",
        ),
        ("--siblings-digest", "HEX", "also record this sibling record digest"),
        required=False,
    )
    p.add_argument(
        "--out", metavar="FILE", help="where to save the receipt (default receipt-VK16-OWNER16.json here)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing receipt file")
    _registry_client_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--json", action="store_true", help="print the receipt as JSON")
    p.set_defaults(func="registry.register")

    p = sub.add_parser("registry", help="the ownership registry: serve, lookup, audit")
    verbs = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    q = verbs.add_parser("serve", help="run the registry's HTTP API")
    q.add_argument(
        "--db", metavar="URL", help="sqlite:///PATH (default: in your data folder) or postgresql://..."
    )
    q.add_argument(
        "--identity",
        metavar="IDDIR",
        help="the server identity that signs receipts (default: made on first use)",
    )
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    q.add_argument("--port", type=int, default=8100, help="port (default 8100; 0: any free port)")
    q.add_argument(
        "--rate", type=float, default=50.0, help="GET requests a second per client address (default 50)"
    )
    q.add_argument(
        "--write-rate", type=float, default=2.0, help="registrations a second per client address (default 2)"
    )
    _server_options(q)
    q.add_argument("-q", "--quiet", action="store_true", help="print only the serving line")
    q.set_defaults(func="registry.serve")

    q = verbs.add_parser(
        "lookup",
        help="every registration of a key (or for a model or a sibling record, or by an owner), in order",
    )
    q.add_argument("--registry", required=True, metavar="URL", help="the registry, http(s)://HOST:PORT")
    _one_of(
        q,
        ("--vk", "VK", "verification key file or key folder"),
        ("--vk-digest", "HEX", "a verification key's digest"),
        ("--model", "FILE", "every key registered for this model file"),
        ("--model-digest", "HEX", "every key registered for this model digest"),
        ("--siblings", "RECORD", "every key registered with this sibling record (CKPT, folder or file)"),
        ("--siblings-digest", "HEX", "every key registered with this sibling record digest"),
        ("--owner", "FINGERPRINT", "every key registered by this identity"),
    )
    _registry_client_options(q)
    q.add_argument("--json", action="store_true", help="print the entries as JSON")
    q.set_defaults(func="registry.lookup")

    q = verbs.add_parser(
        "audit", help="recompute the hash chain and every signature; name the first bad entry (exit 1)"
    )
    _one_of(
        q,
        ("--db", "URL", "audit the database itself"),
        ("--registry", "URL", "audit a registry over HTTP (read-only)"),
    )
    q.add_argument("--server-key", metavar="FILE", help="the registry's public identity, to pin")
    q.add_argument(
        "--receipt",
        action="extend",
        nargs="+",
        metavar="FILE",
        help="receipts whose entries must still be in the log, unchanged (one or more; repeatable)",
    )
    _registry_client_options(q)
    q.add_argument("--json", action="store_true", help="print the report as one JSON object")
    q.set_defaults(func="registry.audit")


def _register_contrast(sub: Any) -> None:
    """Add the ``contrast`` verb (the sibling-contrast test, docs/contrast.md)."""
    p = sub.add_parser(
        "contrast",
        help="test whether a suspect copies the deployed model rather than its siblings (exit 0 derived)",
    )
    p.add_argument("--owner", required=True, metavar="CKPT", help="the deployed model (siblings beside it)")
    p.add_argument("--siblings-dir", metavar="DIR", help="the sibling folder (default CKPT.siblings)")
    _one_of(p, *_SUSPECT)
    add_target_options(p)
    p.add_argument(
        "--data", required=True, metavar="SPEC", help="the task's data: its images give the probes"
    )
    p.add_argument(
        "--pool",
        choices=CONTRAST_POOLS,
        default=CONTRAST_POOLS[0],
        help="the images probes are drawn from: --data's test split (default) or all its images",
    )
    p.add_argument("--queried", metavar="SPEC", help=QUERIED_HELP)
    p.add_argument("--challenge", metavar="FILE", help="the verifier's challenge (default: a fresh one)")
    add_registration_options(p)
    p.add_argument(
        "--probes", type=int, default=CONTRAST_PROBES, metavar="N", help=f"probes ({CONTRAST_PROBES})"
    )
    p.add_argument(
        "--kind",
        choices=CONTRAST_KINDS,
        default=CONTRAST_KINDS[0],
        help=f"probes: pool images, moved by up to a pixel, or mixed (default {CONTRAST_KINDS[0]})",
    )
    p.add_argument(
        "--delta",
        type=float,
        default=CONTRAST_DELTA,
        help=f"margin innocent models are assumed to stay within (default {CONTRAST_DELTA:g})",
    )
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA:g})"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; only the exit status")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_device_option(p)
    p.set_defaults(func="contrast.run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backmark",
        description="Watermark image classifiers by backdooring them, and verify the watermark.",
    )
    parser.add_argument("--version", action="version", version=f"backmark {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="make a marking key and its verification key")
    p.add_argument("--out", required=True, metavar="KEYDIR", help="folder for the two key files")
    p.add_argument("--classes", type=int, required=True, help="number of classes of the model")
    p.add_argument("--shape", required=True, help="model input shape CxHxW, e.g. 1x28x28 or 3x32x32")
    p.add_argument(
        "--size",
        type=int,
        default=100,
        help="number of trigger images (default 100, the paper's); for public verification, where each "
        "check opens some of them, see the power table in docs/protocol.md (e.g. 1000)",
    )
    p.add_argument(
        "--kind",
        default="abstract",
        help="trigger images: abstract (default), noise, folder:DIR, heldout (real images of --data, each "
        "labelled with a class other than its own; embed leaves them out of training) or blend (averages of "
        "two real images of --data, labelled with neither class)",
    )
    p.add_argument(
        "--data",
        metavar="SPEC",
        help="with --kind heldout or blend: the dataset whose training images the triggers are made from: "
        + " | ".join(DATASET_FORMS),
    )
    p.add_argument(
        "--crop",
        choices=("resize", "center-crop"),
        default="resize",
        help="for folder:DIR: resize whole images (default) or cut the central patch (reference code)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing key pair (both files at once)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="derive the key from this number instead of the OS (reproducible, NOT secret: tests only)",
    )
    p.set_defaults(func="commands.keygen")

    p = sub.add_parser("train", help="train a clean (unmarked) model, for baselines")
    _training(p, epochs=5, lr=0.05)
    p.add_argument(
        "--arch",
        default="cnn",
        help="architecture: a name from `backmark models` (default cnn) or MODULE:CALLABLE, your own factory",
    )
    p.add_argument("--width", type=int, help="architecture width option")
    _arch_args_option(p)
    _common(p, json_out=True, seed=False)
    _fresh_seed(p)
    p.set_defaults(func="commands.train")

    p = sub.add_parser("embed", help="embed a key: train from scratch (--arch) or into a model (--from)")
    p.add_argument("--key", required=True, metavar="KEYDIR", help="key folder or marking key file")
    p.add_argument(
        "--arch",
        help="FromScratch: train a fresh model of this architecture (a name or MODULE:CALLABLE); with "
        "--from FILE.safetensors of bare weights (no backmark metadata): that file's architecture",
    )
    p.add_argument(
        "--from",
        dest="from_ckpt",
        metavar="CKPT",
        help="PreTrained: mark this model (checkpoint or safetensors; bare weights with --arch)",
    )
    _training(p, epochs=None, lr=None)
    p.add_argument("--width", type=int, help="architecture width option (with --arch)")
    _arch_args_option(p)
    _trust_code_option(p)
    p.add_argument(
        "--triggers-per-batch",
        type=int,
        help="trigger samples in each batch (default 2 with --arch, 10 with --from)",
    )
    p.add_argument(
        "--finish-rounds",
        type=int,
        metavar="N",
        help="with --arch: at most N rounds of the trigger phase after the epochs, until every trigger "
        "is answered (default 20; 0: none)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="with --arch: train as the paper's reference code (2 triggers per batch, no trigger phase)",
    )
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="exit 0 even if the marked model would not verify (default: exit 1 and say what to change)",
    )
    _common(p, json_out=True, seed=False)
    _fresh_seed(p)
    p.set_defaults(func="commands.embed")

    p = sub.add_parser("verify", help="verify a model against a key (exit 0 verified, 1 not, 2 error)")
    p.add_argument("--key", metavar="KEYDIR", help="key folder or marking key file")
    p.add_argument(
        "--response-key",
        metavar="RKEY",
        help="verify the response mark (with --query-log); with --key too: one claim from both marks",
    )
    p.add_argument("--query-log", metavar="DB", help="the server's query log (with --response-key)")
    _suspect(p, device=False)  # verify's --device comes last in its help
    p.add_argument("--vk", metavar="FILE", help="verification key (default KEYDIR/verification-key.json)")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--eps", type=float, default=DEFAULT_EPS, help=f"paper's rule tolerance (default {DEFAULT_EPS})"
    )
    _test_option(p)
    add_evidence_options(p)
    _decides(p)
    add_device_option(p)
    p.set_defaults(func="commands.verify")

    p = sub.add_parser("demo", help="the whole scheme on Fashion-MNIST, with a report")
    p.add_argument("--out", default="backmark-demo", metavar="DIR", help="output folder")
    p.add_argument("--fast", action="store_true", help="a small run for smoke tests (under a minute)")
    p.add_argument("--data", default="fashion-mnist", metavar="SPEC", help="dataset (default fashion-mnist)")
    p.add_argument("--force", action="store_true", help="replace a previous demo in --out, at the end")
    _common(p)
    add_device_option(p)
    p.set_defaults(func="commands.demo")

    p = sub.add_parser("models", help="list the architectures")
    p.set_defaults(func="commands.models")
    _register_keys(sub)
    _register_targets(sub)
    _register_public(sub)
    _register_attacks(sub)
    _register_registry(sub)
    register_lineage(sub)
    _register_contrast(sub)
    return parser
