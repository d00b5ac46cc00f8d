"""The one exception type that backmark raises for problems a user can fix.

The CLI prints the error on one line and exits with status 2; the Python API lets it propagate.
Messages say what is wrong and what to do about it, in the words of whoever called: a message that names
a parameter writes it as a ``{field}`` and lists it in ``params``; ``str(error)`` names the Python
parameter (``epochs must be at least 1, got 0``) and the CLI names its flag (``--epochs must be ...``)
through :meth:`BackmarkError.render`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# How the library's own messages write a parameter when it is not just its name.
_LIBRARY_WORDS = {"force": "force=True"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BackmarkError(Exception):
    """A user-facing error: bad input, a missing or corrupt file, a tampered key.

    ``BackmarkError("{epochs} must be at least 1, got 0", params=["epochs"])``: each name in ``params``
    appears in ``message`` as ``{name}``; nothing else in the message is interpreted.
    """

    def __init__(self, message: str, *, params: Iterable[str] = ()) -> None:
        self.template = message
        self.params = tuple(params)
        super().__init__(self.render(lambda name: _LIBRARY_WORDS.get(name, name)))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with every parameter written as ``name(parameter)`` (e.g. a CLI flag)."""
        text = self.template
        for param in self.params:
            text = text.replace("{" + param + "}", name(param))
        return text


def first_line(error: BaseException | str, *, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (or of a text), for one-line errors.

    Terminal colour codes are removed; a line longer than ``limit`` is cut at a word and ends in
    `` ...``; an exception with no message gives its type's name.
    """
    text = _ANSI.sub("", str(error)).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    line = text.splitlines()[0].strip()
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " ..."
    return line
