"""One function per verb: turn parsed arguments into library calls and print the outcome."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from backmark.atomic import check_file
from backmark.constants import DEFAULT_ALPHA, DEFAULT_VERIFY_TEST, VerifyTest
from backmark.data import ImageDataset, load_dataset
from backmark.embed import (
    PRETRAINED_CONFIG,
    REFERENCE_CONFIG,
    TrainConfig,
    Trained,
    embed_from_scratch,
    embed_pretrained,
    train_clean,
)
from backmark.errors import BackmarkError
from backmark.keys import (
    MarkingKey,
    generate_key,
    load_key_pair,
    load_marking_key,
    resolve_key_paths,
    save_key_pair,
)
from backmark.keys.derive import REAL_PARTS
from backmark.keys.keygen import image_pool
from backmark.log import print_json
from backmark.models import ModelInfo, list_models, load_checkpoint, save_checkpoint, save_safetensors
from backmark.verify import check_decision
from backmark.verify.labelfree import verify_tests
from backmark.verify.stats import check_eps


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"1x28x28"`` -> (1, 28, 28)."""
    parts = text.lower().split("x")
    try:
        c, h, w = (int(p) for p in parts)
    except ValueError:
        raise BackmarkError(f"--shape must look like CxHxW, e.g. 1x28x28 or 3x32x32; got {text!r}") from None
    return c, h, w


def keygen(args: argparse.Namespace) -> int:
    shape = parse_shape(args.shape)
    pool = None
    if args.data is not None:
        if args.kind not in REAL_PARTS:
            raise BackmarkError(f"--data applies with --kind heldout or blend, not with --kind {args.kind}")
        data = load_dataset(args.data, progress=not args.quiet)
        pool = image_pool(data, num_classes=args.classes, input_shape=shape)
    mk = generate_key(
        num_classes=args.classes,
        input_shape=shape,
        size=args.size,
        kind=args.kind,
        crop=args.crop,
        seed=args.seed,
        pool=pool,
        pool_name="" if args.data is None else f"{args.data} (training split)",
    )
    mk_path, vk_path = save_key_pair(mk, args.out, force=args.force)
    vk = mk.verification_key()
    from backmark.public.power import power_table

    # the public check's size at full trigger accuracy and at 50%, under the null 1/(C - excluded)
    rows = power_table(ns=(mk.n,), num_classes=mk.null_classes, alphas=(DEFAULT_ALPHA,), rates=(1.0, 0.5))
    public = {
        name: None if row.size is None else {"size": row.size, "checks": row.checks}
        for name, row in zip(("intact", "weakened_to_50"), rows, strict=True)
    }
    summary = {
        "key_id": vk.key_id,
        "digest": vk.digest,
        "n": mk.n,
        "num_classes": mk.num_classes,
        "input_shape": list(mk.input_shape),
        "kind": mk.kind,
        "marking_key": str(mk_path),
        "verification_key": str(vk_path),
        "public_checks": public,
    }
    if args.json:
        print_json(summary)
    elif not args.quiet:
        print(f"key {vk.key_id}: {mk.n} {mk.kind} triggers for {mk.num_classes} classes")
        print(f"  marking key (secret, mode 0600): {mk_path}")
        print(f"  verification key (public):       {vk_path}")
        print(f"  register this digest, with a timestamp, before you release a marked model: {vk.digest}")
        intact, weak = public["intact"], public["weakened_to_50"]
        if intact is not None:
            line = f"  public checks (`backmark check`, alpha {DEFAULT_ALPHA:g}): {intact['checks']} checks"
            line += f" of {intact['size']} items"
            if weak is not None:
                line += f", or {weak['checks']} of {weak['size']} to catch a mark weakened to 50%"
            else:
                line += "; too few items to catch a mark weakened to 50% (see docs/protocol.md)"
            print(line)
    return 0


def _load_data(args: argparse.Namespace) -> ImageDataset:
    data = load_dataset(args.data, progress=not args.quiet)
    if args.train_subset or args.test_subset:
        data = data.subset(train=args.train_subset, test=args.test_subset, seed=args.seed)
    return data


def _fresh_seed(args: argparse.Namespace) -> int:
    """``--seed``, or a fresh seed drawn from the OS (the same on every torchrun process: rank 0's)."""
    if args.seed is None:
        from backmark.training import resolve_device, world
        from backmark.training.distributed import all_sum

        drawn = secrets.randbelow(2**31) if world().main else 0  # exact in a float64 sum
        args.seed = int(all_sum([float(drawn)], resolve_device(args.device))[0])
        args.seed_drawn = True  # said with the result (an error stays one line)
    seed: int = args.seed
    return seed


def _config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """``base`` with every option the user gave on the command line."""
    given = getattr(args, "triggers_per_batch", None)
    rounds = getattr(args, "finish_rounds", None)
    return replace(
        base,
        epochs=args.epochs if args.epochs is not None else base.epochs,
        batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else base.lr,
        triggers_per_batch=given if given is not None else base.triggers_per_batch,
        finish_rounds=rounds if rounds is not None else base.finish_rounds,
        augment=args.augment,
        seed=0 if args.seed is None else args.seed,  # a fresh seed is drawn when the processes start
        bf16=args.bf16,
        compile=args.compile,
    )


def _finish(args: argparse.Namespace, trained: Trained, key: MarkingKey | None = None) -> int:
    """Save the checkpoint and report; with ``key``, verify the mark as a suspect would be verified."""
    if str(args.out).endswith(".safetensors"):
        path = save_safetensors(args.out, trained.model, trained.info, force=args.force)
    else:
        path = save_checkpoint(args.out, trained.model, trained.info, force=args.force)
    meta = trained.info.meta
    summary: dict[str, Any] = {
        "checkpoint": str(path),
        "mode": meta["mode"],
        "test_acc": meta["test_acc"],
        "trigger_acc": meta["trigger_acc"],
        "epochs_run": meta["epochs_run"],
        "seconds": round(meta["seconds"], 2),
        "seed": meta["config"]["seed"],  # recorded in the checkpoint's meta.config.seed
    }
    check = None
    verified = True
    if key is not None:  # as `verify` decides by default: the labels or the label-free test, at alpha/2
        tested = verify_tests(trained.model, key, key.verification_key(), test=DEFAULT_VERIFY_TEST)
        check, verified = tested.labels.evidence, tested.verified
        summary["verified"] = verified
        summary["matches"] = check.matches
        summary["threshold"] = check.threshold
        summary["p_value"] = check.p_value
    if args.json:
        print_json(summary)
    elif not args.quiet:
        trig = "" if meta["trigger_acc"] is None else f", trigger accuracy {meta['trigger_acc']:.1%}"
        print(f"{path}: test accuracy {meta['test_acc']:.2%}{trig} ({meta['seconds']:.0f} s)")
        if getattr(args, "seed_drawn", False):
            print(f"  seed {summary['seed']} (drawn fresh; --seed {summary['seed']} repeats this run)")
        if check is not None and verified:
            print(
                f"  the mark verifies: {check.matches}/{check.n} triggers answered "
                f"(threshold {check.threshold} at alpha/2 = {check.alpha:g}, p = {check.p_value:.3g})"
            )
    if check is not None and not verified:
        print(
            f"backmark: warning: the mark would NOT verify: {check.matches}/{check.n} triggers answered, "
            f"{check.threshold} needed at alpha {check.alpha:g}; train longer (--epochs, --finish-rounds), "
            "raise --triggers-per-batch, or mark a trained model with --from",
            file=sys.stderr,
        )
        return 0 if args.allow_unverified else 1
    return 0


def _check_out(args: argparse.Namespace) -> None:
    check_file(args.out, force=args.force)  # before training, not only when saving
    if args.siblings is not None:
        from backmark.contrast.siblings import check_siblings_folder

        check_siblings_folder(args.out, force=args.force)


def _fit_family(
    args: argparse.Namespace, config: TrainConfig, fit: Callable[[TrainConfig], Trained], mode: str
) -> Trained:
    """One model, or with ``--siblings K`` K + 1 of one recipe and the deployed one of them."""
    if args.siblings is None:
        return fit(config)
    from backmark.cli.contrast import train_family
    from backmark.training.distributed import launched

    if launched():  # each rank would draw its own deployed model
        raise BackmarkError("--siblings trains in one process; run it without torchrun")

    return train_family(args, config, fit, mode=mode)


def _arch_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--arch-args`` JSON, with ``--width`` on top."""
    from backmark.cli.targets import parse_arch_args

    given = parse_arch_args(args.arch_args)
    return given if args.width is None else {**given, "width": args.width}


def train(args: argparse.Namespace) -> int:
    from backmark.cli.launch import processes

    _check_out(args)
    config = _config(args, TrainConfig())
    with processes(args) as main:  # one process, or torchrun's: rank 0 alone prints and writes
        config = replace(config, seed=_fresh_seed(args))
        data = _load_data(args)

        def fit(config: TrainConfig) -> Trained:
            return train_clean(
                data,
                arch=args.arch,
                arch_args=_arch_args(args),
                config=config,
                progress=not args.quiet,
                device=args.device,
            )

        trained = _fit_family(args, config, fit, "clean")
        return _finish(args, trained) if main else 0


def embed(args: argparse.Namespace) -> int:
    if args.arch is None and args.from_ckpt is None:
        raise BackmarkError("embed needs --arch ARCH (FromScratch) or --from CKPT (PreTrained)")
    _check_out(args)
    if args.from_ckpt:
        given = {"--finish-rounds": args.finish_rounds, "--reference": args.reference}
        if args.arch is None:  # with --arch, these describe the architecture of --from's bare weights
            given.update({"--width": args.width, "--arch-args": args.arch_args})
        for flag, value in given.items():
            if value not in (None, False):
                raise BackmarkError(f"{flag} applies to --arch (FromScratch), not to --from")
        config = _config(args, PRETRAINED_CONFIG)
    else:
        config = _config(args, REFERENCE_CONFIG if args.reference else TrainConfig())
    # the config was checked when built, before the key and the data are read
    key = load_marking_key(resolve_key_paths(args.key, need_vk=False)[0])
    from backmark.cli.launch import processes

    with processes(args) as main:  # one process, or torchrun's: rank 0 alone prints and writes
        config = replace(config, seed=_fresh_seed(args))
        data = _load_data(args)
        progress, device = not args.quiet, args.device
        if args.from_ckpt:
            bare = None  # --from FILE.safetensors --arch ARCH: bare weights, shaped as the key says
            if args.arch is not None:
                bare = ModelInfo(args.arch, _arch_args(args), key.input_shape, key.num_classes)
            model, info = load_checkpoint(args.from_ckpt, allow_code=args.trust_code, info=bare)

            def fit(config: TrainConfig) -> Trained:
                return embed_pretrained(
                    model, info, data, key, config=config, progress=progress, device=device
                )
        else:

            def fit(config: TrainConfig) -> Trained:
                return embed_from_scratch(
                    data, key, arch=args.arch, arch_args=_arch_args(args), config=config,
                    progress=progress, device=device,
                )  # fmt: skip

        mode = "pretrained" if args.from_ckpt else "from-scratch"
        trained = _fit_family(args, config, fit, mode)  # every process trains; rank 0 alone reports
        return _finish(args, trained, key) if main else 0


def verify(args: argparse.Namespace) -> int:
    """Every argument, the key pair and the target are checked before the first trigger is sent."""
    from backmark.claim import trigger_claim
    from backmark.cli.evidence import EvidenceOptions, print_claim
    from backmark.cli.targets import client_config, open_suspect
    from backmark.verify.decision import TEST_PIECES, piece_level

    if args.response_key is not None:
        if args.test is not None or args.lineage or args.contrast:
            raise BackmarkError(
                "--test, --lineage and --contrast apply to the trigger mark (--key), not with --response-key"
            )
        from backmark.cli.response import verify_response_mark

        return verify_response_mark(args)
    if args.query_log is not None:
        raise BackmarkError("--query-log applies with --response-key, not with --key")
    if args.key is None:
        raise BackmarkError("verify needs --key KEYDIR, --response-key RKEY, or both")
    test: VerifyTest = args.test or DEFAULT_VERIFY_TEST
    evidence = EvidenceOptions.of(args)  # --lineage and --contrast, checked before any file is read
    pieces = TEST_PIECES[test] + evidence.count  # the trigger tests, then --lineage and --contrast
    level = piece_level(args.alpha, pieces)  # the one check of alpha
    check_eps(args.eps)
    client = client_config(args)
    mk, vk = load_key_pair(args.key, args.vk)  # both files intact, every commitment opens
    check_decision(
        n=mk.n, num_classes=mk.num_classes, alpha=args.alpha, eps=args.eps, null_classes=mk.null_classes,
        pieces=pieces,
    )  # fmt: skip
    loaded = evidence.load(level)  # the owner's model and siblings, the probe images: before any query
    # --model CKPT or --target TARGET, among --decoys; the label-free test takes any class count
    with open_suspect(args, mk, client, any_classes=test != "labels") as opened:
        tested = verify_tests(opened.target, mk, vk, test=test, alpha=args.alpha, eps=args.eps)
        extra = loaded.pieces(opened.target)
    decision = trigger_claim(tested, extra=extra)
    name = args.model if args.model is not None else str(opened.spec)
    if args.json:
        log = opened.queries
        report = {"model" if args.model is not None else "target": name}
        record = tested.to_dict(decision)
        print_json({**record, **report, "queries": log.to_dict() if log else None, "vk_digest": vk.digest})
    elif not args.quiet:
        print_claim(name, tested, decision, opened)
    return 0 if decision.verified else 1


def demo(args: argparse.Namespace) -> int:
    from backmark.study.demo import run_demo  # matplotlib is imported only for the demo

    report = run_demo(
        Path(args.out),
        fast=args.fast,
        seed=args.seed,
        data_spec=args.data,
        progress=not args.quiet,
        force=args.force,
        device=args.device,
    )
    print(f"demo finished in {report.seconds:.0f} s; report: {Path(args.out) / 'report.md'}")
    return 0


def models(args: argparse.Namespace) -> int:
    for spec in list_models():
        print(f"{spec.name:18} {spec.description} (inputs {spec.input_hint})")
    print(f"{'MODULE:CALLABLE':18} your own factory, called with num_classes, input_shape and --arch-args")
    return 0
