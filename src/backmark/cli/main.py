"""``backmark`` verbs: keygen, train, embed, verify, demo, models.

Exit status: 0 success (for verify: verified), 1 verify ran but did not verify, 2 error. Every error is
one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backmark import __version__
from backmark.cli import attacks as attacks_cli
from backmark.cli import commands
from backmark.cli import targets as targets_cli
from backmark.data import dataset_specs
from backmark.errors import BackmarkError
from backmark.verify import DEFAULT_ALPHA, DEFAULT_EPS


def _common(p: argparse.ArgumentParser, *, json_out: bool = False, seed: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result, no progress")
    if json_out:
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed for reproducible runs (default 0)")


def _training(p: argparse.ArgumentParser, *, epochs: int | None, lr: float | None) -> None:
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset: " + " | ".join(dataset_specs()))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backmark",
        description="Watermark image classifiers by backdooring them, and verify the watermark.",
    )
    parser.add_argument("--version", action="version", version=f"backmark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="make a marking key and its verification key")
    p.add_argument("--out", required=True, metavar="KEYDIR", help="folder for the two key files")
    p.add_argument("--classes", type=int, required=True, help="number of classes of the model")
    p.add_argument("--shape", required=True, help="model input shape CxHxW, e.g. 1x28x28 or 3x32x32")
    p.add_argument("--size", type=int, default=100, help="number of trigger images (default 100)")
    p.add_argument(
        "--kind", default="abstract", help="trigger images: abstract (default), noise or folder:DIR"
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
    p.set_defaults(func=commands.keygen)

    p = sub.add_parser("train", help="train a clean (unmarked) model, for baselines")
    _training(p, epochs=5, lr=0.05)
    p.add_argument("--arch", default="cnn", help="architecture (see `backmark models`; default cnn)")
    p.add_argument("--width", type=int, help="architecture width option")
    _common(p, json_out=True)
    p.set_defaults(func=commands.train)

    p = sub.add_parser("embed", help="embed a key: train from scratch (--arch) or into a model (--from)")
    p.add_argument("--key", required=True, metavar="KEYDIR", help="key folder or marking key file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help="FromScratch: train a fresh model of this architecture")
    source.add_argument("--from", dest="from_ckpt", metavar="CKPT", help="PreTrained: mark this model")
    _training(p, epochs=None, lr=None)
    p.add_argument("--width", type=int, help="architecture width option (with --arch)")
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
    _common(p, json_out=True)
    p.set_defaults(func=commands.embed)

    p = sub.add_parser("verify", help="verify a model against a key (exit 0 verified, 1 not, 2 error)")
    p.add_argument("--key", required=True, metavar="KEYDIR", help="key folder or marking key file")
    suspect = p.add_mutually_exclusive_group(required=True)
    suspect.add_argument("--model", metavar="CKPT", help="checkpoint of the suspect model")
    suspect.add_argument(
        "--target",
        metavar="TARGET",
        help="the suspect model elsewhere: " + " | ".join(targets_cli.TARGET_FORMS),
    )
    targets_cli.add_target_options(p)
    p.add_argument("--vk", metavar="FILE", help="verification key (default KEYDIR/verification-key.json)")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--eps", type=float, default=DEFAULT_EPS, help=f"paper's rule tolerance (default {DEFAULT_EPS})"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; only the exit status")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=commands.verify)

    p = sub.add_parser("demo", help="the whole scheme on Fashion-MNIST, with a report")
    p.add_argument("--out", default="backmark-demo", metavar="DIR", help="output folder")
    p.add_argument("--fast", action="store_true", help="a small run for smoke tests (under a minute)")
    p.add_argument("--data", default="fashion-mnist", metavar="SPEC", help="dataset (default fashion-mnist)")
    p.add_argument("--force", action="store_true", help="replace a previous demo in --out, at the end")
    _common(p)
    p.set_defaults(func=commands.demo)

    p = sub.add_parser("models", help="list the architectures")
    p.set_defaults(func=commands.models)
    targets_cli.register(sub)
    attacks_cli.register(sub)
    return parser


def _flag(param: str) -> str:
    """The command-line flag of a library parameter: ``finish_rounds`` -> ``--finish-rounds``."""
    return "--" + param.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BackmarkError as exc:
        print(f"backmark: error: {exc.render(_flag)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("backmark: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"backmark: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
