"""The response mark measured (issue 11): does a copy extracted through the real HTTP server inherit it?

The owner trains a CNN on two thirds of Fashion-MNIST's training set and serves it with ``backmark serve
CKPT --response-key RKEY --query-log DB`` in a separate process (one server and one log per run). The
attacker (this process) holds the other third, sends the first Q of its images as UINT8 v2 requests and
trains a copy (``backmark.study.api_extraction``: top-1 labels, label smoothing, mixup, distillation from
the served logits, early stopping, majority votes over shifted copies, an agreement filter, fine-tuning
afterwards, another architecture). The owner verifies each copy against the query log (the exact test at
null rate 1/(C-1) on the answers that differ from the served ones). Also verified against every log:
clean models trained independently on the attacker's third with its true labels (10 seeds), a clean copy
extracted from the same model served WITHOUT the response key, and the served model itself.

    PYTHONPATH=src .venv/bin/python benchmarks/response_mark.py                  # docs/response-mark.json
    PYTHONPATH=src .venv/bin/python benchmarks/response_mark.py --quick --out /tmp/r   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backmark.data import ImageDataset, load_dataset
from backmark.embed import TrainConfig, train_clean
from backmark.models import save_checkpoint
from backmark.response import ResponseLog, generate_response_key, save_response_key, verify_response
from backmark.study.api_extraction import Attacker, extract, query, serving_process
from backmark.targets import ModuleTarget

ATTACKERS = (
    Attacker("top1"),
    Attacker("top1, 30 epochs", epochs=30),
    Attacker("early stop, 3 epochs", epochs=3),
    Attacker("label smoothing 0.1", how="smooth"),
    Attacker("mixup 0.2", how="mixup"),
    Attacker("distill T=4", how="distill"),
    Attacker("vote over 5 shifted", how="vote"),
    Attacker("agree with own model", how="agree"),
    Attacker("finetune 5 ep on 2k labelled", how="finetune"),
    Attacker("other arch (preact-resnet18 w8)", arch="preact-resnet18", width=8),
)
FIELDS = ("matches", "n", "tested", "match_rate", "p_value", "threshold", "verified", "unconditional_p_value")


def accuracy(model: nn.Module, data: ImageDataset) -> float:
    answers = ModuleTarget(model).predict(data.test_x.float() / 255.0)
    return float((answers == data.test_y).float().mean())


def evidence(model: nn.Module, key: Any, logged: list[Any]) -> dict[str, Any]:
    e = verify_response(ModuleTarget(model), key, logged, num_classes=10, input_shape=(1, 28, 28))
    return {k: e.to_dict()[k] for k in FIELDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.01,0.02,0.05")
    parser.add_argument("--queries", default="1000,5000,20000", help="attacker queries, top-1 attacker")
    parser.add_argument(
        "--adaptive", default="0.02:5000,0.05:5000", help="RATE:Q settings for every attacker"
    )
    parser.add_argument("--epochs", type=int, default=10, help="extraction epochs")
    parser.add_argument("--owner-epochs", type=int, default=2, help="epochs of the served and clean models")
    parser.add_argument("--clean-seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke run: one rate, small query counts")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.queries, args.adaptive, args.clean_seeds = "0.05", "1000", "0.05:1000", 2
    torch.set_num_threads(2)
    torch.manual_seed(0)
    started = time.perf_counter()
    data = load_dataset("fashion-mnist", progress=False)
    perm = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    third = len(perm) // 3
    attacker_idx, owner_idx = perm[:third], perm[third:]

    def part(idx: torch.Tensor, name: str) -> ImageDataset:
        return replace(data, name=name, train_x=data.train_x[idx], train_y=data.train_y[idx])

    owner, attacker = part(owner_idx, "owner"), part(attacker_idx, "attacker")
    t = time.perf_counter()
    served = train_clean(owner, config=TrainConfig(epochs=args.owner_epochs, seed=0), progress=False)
    cleans = [
        train_clean(attacker, config=TrainConfig(epochs=args.owner_epochs, seed=s), progress=False).model
        for s in range(1, args.clean_seeds + 1)
    ]
    print(f"served and {len(cleans)} clean models in {time.perf_counter() - t:.0f} s", flush=True)
    result: dict[str, Any] = {
        "config": {**vars(args), "attacker_images": third, "owner_images": len(owner_idx)},
        "attackers": [asdict(a) for a in ATTACKERS],
        "served_test_acc_without_key": accuracy(served.model, data),
        "clean_test_acc": [accuracy(m, data) for m in cleans],
        "served_test_acc_with_key": {},
        "runs": [],
    }
    plan: list[tuple[str, int, Attacker]] = [
        (r, int(q), ATTACKERS[0]) for r in args.rates.split(",") for q in args.queries.split(",")
    ]
    for setting in args.adaptive.split(","):
        r, q = setting.split(":")
        plan += [(r, int(q), a) for a in ATTACKERS if (r, int(q), a) not in plan]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "served.pt", served.model, served.info)
        clean_copies: dict[int, nn.Module] = {}
        for q in sorted({q for _, q, _ in plan}):  # copies from the same model served without the key
            with serving_process(ckpt, None, None) as url:
                clean_copies[q], _ = extract(url, ATTACKERS[0], attacker.train_x[:q], attacker.train_y[:q],
                                             num_classes=10, seed=2)  # fmt: skip
        keys = {}
        for rate in dict.fromkeys(r for r, _, _ in plan):
            keys[rate] = generate_response_key(rate=rate)
            rkey = save_response_key(keys[rate], Path(tmp) / f"r{rate}.bmrk")
            with serving_process(ckpt, rkey, Path(tmp) / f"eval{rate}.db") as url:
                acc = float((query(url, data.test_x)[0] == data.test_y).float().mean())
            result["served_test_acc_with_key"][rate] = acc
            print(f"rate {rate}: served accuracy with the key {acc:.2%}", flush=True)
        for i, (rate, q, who) in enumerate(plan):
            key = keys[rate]
            rkey, db = Path(tmp) / f"r{rate}.bmrk", Path(tmp) / f"q{i}.db"
            images, truth = attacker.train_x[:q], attacker.train_y[:q]
            t = time.perf_counter()
            with serving_process(ckpt, rkey, db) as url:
                copy, sent = extract(url, who, images, truth, num_classes=10, seed=2)
            seconds = time.perf_counter() - t
            log = ResponseLog(db, create=False)
            logged = log.read()
            log.close()
            clean = [evidence(m, key, logged) for m in cleans]
            row: dict[str, Any] = {
                "rate": float(key.rate),
                "queries": q,
                "attacker": who.name,
                "sent": sent,
                "altered_logged": len(logged),
                "copy_test_acc": accuracy(copy, data),
                "seconds": round(seconds, 1),
                "copy": evidence(copy, key, logged),
                "clean_copy": evidence(clean_copies[q], key, logged),
                "served": evidence(served.model, key, logged),
                "clean_models": {
                    "verified": sum(c["verified"] for c in clean),
                    "min_p_value": min(c["p_value"] for c in clean),
                    "match_rates": [round(c["match_rate"], 4) for c in clean],
                    "matches_tested": [(c["matches"], c["tested"]) for c in clean],
                },
            }
            result["runs"].append(row)
            c = row["copy"]
            print(
                f"r={rate} q={q} {who.name}: acc {row['copy_test_acc']:.2%}, {c['matches']}/{c['tested']} "
                f"of {c['n']}, p={c['p_value']:.2g} {'VERIFIED' if c['verified'] else 'not verified'} "
                f"({seconds:.0f} s)",
                flush=True,
            )
            write(result, args.out)  # after every run, so a cut-short measurement keeps what it has
    result["environment"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started),
    }
    print(f"wrote {write(result, args.out)} in {result['environment']['seconds']} s")


def write(result: dict[str, Any], folder: str) -> Path:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "response-mark.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


if __name__ == "__main__":
    main()
