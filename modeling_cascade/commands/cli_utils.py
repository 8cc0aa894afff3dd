"""What every command shares: argparse-style one-line errors and one list syntax.

A user error (a bad flag value, a missing or malformed file, an unreachable Hub) is reported as `error: <message>` on
stderr with exit status 2, as argparse reports a bad flag; the message names the value, file, row or flag at fault.
An exception that is not a user error (a bug, here or in a library) keeps its traceback.

Lists on the command line: every list flag takes comma-separated values (`--target_dims 256,128,64,32`); flags that
take texts also take several space-separated values, each one text kept whole (commas included). In a
comma-separated value, `\\,` is a literal comma.
"""

from __future__ import annotations

import linecache
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from transformers import HfArgumentParser


PACKAGE_DIR = Path(__file__).resolve().parent.parent
# The library refuses bad input with a `ValueError` (or `ImportError` for a missing extra) that names the value: a
# user error when one of this package's own `raise` statements raised it, or while the command line is parsed. An
# `OSError` (a missing or unreadable file, an unreachable Hub) is the user's wherever it was raised on our behalf.
CHECK_ERROR_TYPES = (ValueError, ImportError)
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")

ReturnType = TypeVar("ReturnType")


class UsageError(ValueError):
    """The command line itself is wrong (unknown flag, a value of the wrong type)."""


class CommandParser(HfArgumentParser):
    """`HfArgumentParser` whose errors are one line (`error: ...`) instead of the usage of every Trainer flag."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def parse_command_line(parser: HfArgumentParser, argv: Sequence[str] | None = None) -> tuple:
    """Parse argv (or a single `.json` file of arguments) into the parser's dataclasses.

    Any `ValueError` raised while parsing (a check in an arguments dataclass, in our code or in `TrainingArguments`)
    is the user's: it becomes a `UsageError`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            return parser.parse_json_file(json_file=str(Path(argv[0]).resolve()))
        return parser.parse_args_into_dataclasses(args=argv)
    except UsageError:
        raise
    except (ValueError, OSError) as error:  # a failed check, or an unreadable .json file of arguments
        raise UsageError(str(error)) from None


def split_list(values: str | Sequence[str] | None) -> list[str]:
    """One list syntax for every command: comma-separated, or several values given space-separated.

    A single value is split at its commas (`"a,b"` -> `["a", "b"]`; `\\,` keeps a comma); several values are taken
    as they are, one entry each, so a text holding a comma can be passed whole. Entries are stripped and blank
    entries dropped.

    Args:
        values (`str`, `Sequence[str]` or `None`): What the flag received.

    Returns:
        `list[str]`: The entries, in order (empty for `None`).
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if len(values) == 1:
        values = _UNESCAPED_COMMA.split(values[0])
    return [value.replace("\\,", ",").strip() for value in values if value.strip()]


def _frames(error: BaseException) -> list[tuple[Path, int]]:
    """(file, line) of each frame of `error`'s traceback, outermost first."""
    frames, traceback = [], error.__traceback__
    while traceback is not None:
        frames.append((Path(traceback.tb_frame.f_code.co_filename).resolve(), traceback.tb_lineno))
        traceback = traceback.tb_next
    return frames


def is_user_error(error: BaseException) -> bool:
    """A usage error; a `ValueError` or `ImportError` raised by one of this package's own `raise` statements (a check
    that names the bad value); or an `OSError` raised while this package's code ran. Anything else is a bug, and keeps
    its traceback."""
    if isinstance(error, UsageError):
        return True
    frames = _frames(error)
    if not frames:
        return False
    if isinstance(error, OSError):
        return any(PACKAGE_DIR in filename.parents for filename, _ in frames)
    filename, line = frames[-1]
    own_raise = PACKAGE_DIR in filename.parents and linecache.getline(str(filename), line).lstrip().startswith("raise")
    return isinstance(error, CHECK_ERROR_TYPES) and own_raise


def exit_with_error(message: object) -> NoReturn:
    """Print `error: <message>` on one line of stderr and exit with status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def run_reporting_command(main: Callable[[], ReturnType]) -> ReturnType:
    """[`run_command`] for a command whose stdout is its report: this package's progress is logged on stderr."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(message)s", stream=sys.stderr)
    logging.getLogger("modeling_cascade").setLevel(logging.INFO)
    return run_command(main)


def run_command(main: Callable[[], ReturnType]) -> ReturnType:
    """Run a command's `main` (argv already bound), reporting user errors as one `error:` line with exit status 2."""
    try:
        return main()
    except Exception as error:
        if not is_user_error(error):
            raise
        exit_with_error(error)
