"""The parser is built without torch, and every verb it names exists."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from backmark import constants
from backmark.cli.parser import build_parser
from backmark.data import dataset_specs
from backmark.targets import ClientConfig
from backmark.targets.opening import LOCAL_BATCH_SIZE


def test_help_and_version_import_no_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from backmark.cli.main import main\n"
        "for argv in (['--version'], ['--help'], ['verify', '--help'], ['attack', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'httpx', 'matplotlib') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_every_verb_resolves_to_a_function() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"keygen", "train", "embed", "verify", "demo", "attack", "export", "serve"}
    verbs = list(sub.choices.items())
    while verbs:
        name, verb = verbs.pop()
        nested = [a for a in verb._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:  # a verb with actions of its own (identity new, registry serve ...)
            verbs += [(f"{name} {action}", p) for action, p in nested[0].choices.items()]
            continue
        module, _, func = verb.get_default("func").rpartition(".")
        assert callable(getattr(importlib.import_module(f"backmark.cli.{module}"), func)), name


def test_constants_match_the_library() -> None:
    assert sorted(constants.DATASET_FORMS) == sorted(dataset_specs())
    defaults = ClientConfig()
    assert (defaults.timeout, defaults.attempts, defaults.backoff, defaults.max_wait) == (
        constants.CLIENT_TIMEOUT,
        constants.CLIENT_ATTEMPTS,
        constants.CLIENT_BACKOFF,
        constants.CLIENT_MAX_WAIT,
    )
    assert defaults.deadline == constants.CLIENT_DEADLINE and defaults.batch_size == constants.REMOTE_BATCH
    assert LOCAL_BATCH_SIZE == constants.LOCAL_BATCH
