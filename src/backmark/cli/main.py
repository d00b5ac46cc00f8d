"""``backmark`` verbs: keygen, train, embed, verify, demo, models.

Exit status: 0 success (for verify: verified), 1 verify ran but did not verify, 2 error. Every error is
one line on stderr, without a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from backmark.cli.parser import build_parser
from backmark.errors import BackmarkError

# Library parameters whose command-line flag is not ``--`` + the name with '-' for '_'.
FLAGS = {"num_classes": "--classes", "output": "--output-name", "info": "--arch"}


def flag(param: str) -> str:
    """The command-line flag of a library parameter named in an error message."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, _, name = args.func.rpartition(".")
    try:
        func = getattr(importlib.import_module(f"backmark.cli.{module}"), name)  # heavy imports start here
        code: int = func(args)
    except BackmarkError as exc:
        print(f"backmark: error: {exc.render(flag)}", file=sys.stderr)
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
