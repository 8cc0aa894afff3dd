"""`python -m modeling_cascade.evaluate`: the `cascade-evaluate` command (see `modeling_cascade/commands/evaluate.py`)."""

from .commands.evaluate import cli


if __name__ == "__main__":
    cli()
