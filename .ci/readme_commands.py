"""Print the README's command that follows `<!-- ci:NAME -->`, so CI runs exactly what users copy.

Usage: python3 .ci/readme_commands.py NAME   (NAME: setup-and-run or test)
"""

import sys
from pathlib import Path


def readme_command(name: str, readme: Path) -> str:
    """The fenced block right after the `<!-- ci:NAME -->` marker, its lines as written."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    marker = f"<!-- ci:{name} -->"
    if lines.count(marker) != 1:
        raise SystemExit(f"error: {readme} must hold the marker {marker!r} exactly once.")
    start = lines.index(marker) + 1
    if not lines[start].startswith("```"):
        raise SystemExit(f"error: {readme}, line {start + 1}: a fenced code block must follow {marker!r}.")
    end = next(row for row in range(start + 1, len(lines)) if lines[row].startswith("```"))
    return "\n".join(lines[start + 1 : end]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(readme_command(sys.argv[1], Path(__file__).resolve().parents[1] / "README.md"))
