"""`python -m modeling_cascade.search`: the `cascade-search` command (see `modeling_cascade/commands/search.py`).

`CascadeIndex` and `SearchResult` live in `modeling_cascade.index` (and `from modeling_cascade import CascadeIndex`);
they are also importable from here, where earlier versions defined them.
"""

from .commands.search import cli
from .index import CascadeIndex, SearchResult


__all__ = ["CascadeIndex", "SearchResult", "cli"]

if __name__ == "__main__":
    cli()
