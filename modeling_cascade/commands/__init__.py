"""The command-line layer: what turns argv into library calls and reports user errors as one `error:` line."""

from .cli_utils import CommandParser, UsageError, parse_command_line, run_command, run_reporting_command, split_list


__all__ = ["CommandParser", "UsageError", "parse_command_line", "run_command", "run_reporting_command", "split_list"]
