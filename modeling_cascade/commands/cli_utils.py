"""What every command shares: argparse-style one-line errors and one list syntax.

A user error (a bad flag value, a missing or malformed file, an unreachable Hub) is reported as `error: <message>` on
stderr with exit status 2, as argparse reports a bad flag; the message names the value, file, row or flag at fault.
An exception that is not a user error (a bug, here or in a library) keeps its traceback.

Lists on the command line: every list flag takes comma-separated values (`--target_dims 256,128,64,32`); flags that
take texts also take several space-separated values, each one text kept whole (commas included). In a
comma-separated value, `\\,` is a literal comma.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn, TypeVar

from transformers import HfArgumentParser


PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Errors of these types are the ones the library raises for bad input (see STYLE.md: a ValueError naming the value);
# they are user errors when raised by this package's own code or while the command line is parsed.
USER_ERROR_TYPES = (ValueError, OSError, ImportError)
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
        values = [part.replace("\\,", ",") for part in _UNESCAPED_COMMA.split(values[0])]
    return [value.strip() for value in values if value.strip()]


def _raised_by(error: BaseException, root: Path) -> bool:
    """Whether the innermost frame of `error`'s traceback is in a file under the folder `root`."""
    traceback: TracebackType | None = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    filename = Path(traceback.tb_frame.f_code.co_filename).resolve()
    return root in filename.parents


def is_user_error(error: BaseException) -> bool:
    """A `ValueError`, `OSError` or `ImportError` raised by this package's own code, or a usage error."""
    if isinstance(error, UsageError):
        return True
    return isinstance(error, USER_ERROR_TYPES) and _raised_by(error, PACKAGE_DIR)


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
