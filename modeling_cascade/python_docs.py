"""The built-in corpus: the running Python's standard library documentation, as rows in the Common Corpus schema.

Every Python installation carries its own documentation: the language reference topics that `help()` shows
(`pydoc_data.topics`) and the docstrings of the standard library's modules, classes and functions. Turned into one
document per topic, module, class and function, that is a real English corpus of several thousand documents, with
answers to questions such as "How do I parse JSON?", that needs no download. It is what `--dataset_name python-docs`
selects and what the pipeline falls back to when Common Corpus cannot be reached.

Python sources are read with `ast` (no module is imported, so no import side effects); the few core modules written
in C (`builtins`, `sys`, `math`, `itertools`, the `os` functions, ...) are read by introspection. The rows depend only on
the Python version, and the built dataset is cached by `datasets` under a fingerprint of that version and this file.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import inspect
import os
import pydoc_data.topics
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

import datasets
from transformers.utils import logging


logger = logging.get_logger(__name__)

COLLECTION = "OpenSource"
OPEN_TYPE = "Open Source"
LICENSE = "PSF-2.0"
CREATOR = "Python Software Foundation"
LANGUAGE = "en"
LANGUAGE_TYPE = "Spoken"
TOKENS_PER_WORD = 1.3
MIN_DOCSTRING_WORDS = 4

# Standard-library folders that hold no public documentation (tests, tools, vendored wheels, codec tables).
SKIPPED_PACKAGES = frozenset(
    {"test", "tests", "idlelib", "turtledemo", "lib2to3", "ensurepip", "encodings", "pydoc_data", "site-packages"}
)
# Core modules written in C (no Python source to parse), read by introspection; `posix` holds the `os` functions.
C_MODULES = {
    "builtins": "builtins",
    "sys": "sys",
    "math": "math",
    "cmath": "cmath",
    "itertools": "itertools",
    "time": "time",
    "gc": "gc",
    "errno": "errno",
    "marshal": "marshal",
    "atexit": "atexit",
    "faulthandler": "faulthandler",
    "array": "array",
    "binascii": "binascii",
    "select": "select",
    "mmap": "mmap",
    "zlib": "zlib",
    "unicodedata": "unicodedata",
    "posix": "os",
}
FEATURES = datasets.Features(
    {
        "identifier": datasets.Value("string"),
        "collection": datasets.Value("string"),
        "open_type": datasets.Value("string"),
        "license": datasets.Value("string"),
        "date": datasets.Value("string"),
        "title": datasets.Value("string"),
        "creator": datasets.Value("string"),
        "language": datasets.Value("string"),
        "language_type": datasets.Value("string"),
        "word_count": datasets.Value("int64"),
        "token_count": datasets.Value("int64"),
        "text": datasets.Value("string"),
    }
)


def python_version() -> str:
    """`major.minor.micro` of the running Python: the version the corpus documents."""
    return ".".join(str(part) for part in sys.version_info[:3])


def _release_year() -> str:
    """The latest year in the interpreter's copyright lines ("Copyright (c) 2001-2023 ..."): fixed for a version."""
    years = re.findall(r"\b(?:19|20)\d\d\b", sys.copyright)
    return max(years, default="")


def _row(kind: str, title: str, text: str) -> dict[str, object]:
    words = len(text.split())
    return {
        "identifier": f"python-docs/{python_version()}/{kind}/{title}",
        "collection": COLLECTION,
        "open_type": OPEN_TYPE,
        "license": LICENSE,
        "date": _release_year(),
        "title": title,
        "creator": CREATOR,
        "language": LANGUAGE,
        "language_type": LANGUAGE_TYPE,
        "word_count": words,
        "token_count": round(words * TOKENS_PER_WORD),
        "text": text,
    }


def _useful(docstring: str | None) -> bool:
    return bool(docstring) and len(docstring.split()) >= MIN_DOCSTRING_WORDS


def _topic_rows() -> Iterator[dict[str, object]]:
    """One row per language-reference topic of `help()` ("for", "with", "typesseq", ...)."""
    for name in sorted(pydoc_data.topics.topics):
        text = pydoc_data.topics.topics[name].strip()
        if _useful(text):
            yield _row("topic", name, text)


def _source_modules(stdlib: Path) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every public standard-library module with Python source, in sorted order."""
    for directory, subdirectories, files in os.walk(stdlib):
        relative = Path(directory).relative_to(stdlib)
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if not name.startswith(("_", ".")) and name not in SKIPPED_PACKAGES and "-" not in name
        )
        if relative.parts and not (Path(directory) / "__init__.py").is_file():
            subdirectories[:] = []
            continue
        for name in sorted(files):
            if not name.endswith(".py") or (name.startswith("_") and name != "__init__.py"):
                continue
            parts = list(relative.parts) if name == "__init__.py" else [*relative.parts, name[:-3]]
            if parts and "-" not in parts[-1]:
                yield ".".join(parts), Path(directory) / name


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> str:
    """The source signature, without the `self` / `cls` of a (non-static) method."""
    arguments = copy.copy(node.args)
    is_static = any(
        isinstance(decorator, ast.Name) and decorator.id == "staticmethod" for decorator in node.decorator_list
    )
    if is_method and not is_static:
        if arguments.posonlyargs:
            arguments.posonlyargs = arguments.posonlyargs[1:]
        else:
            arguments.args = arguments.args[1:]
        positional = len(arguments.posonlyargs) + len(arguments.args)
        arguments.defaults = arguments.defaults[max(len(arguments.defaults) - positional, 0) :]
    return f"({ast.unparse(arguments)})"


def _definitions(body: list[ast.stmt]) -> Iterator[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    """Class and function definitions of a module or class body, including those under `if` / `try` blocks."""
    for statement in body:
        if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield statement
        elif isinstance(statement, ast.If):
            yield from _definitions(statement.body)
            yield from _definitions(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from _definitions(block)


def _source_rows(module_name: str, path: Path) -> Iterator[dict[str, object]]:
    """Rows for a module's own docstring and its public classes, functions and methods."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as error:
        logger.debug(f"Skipping {path}: {error}")
        return
    docstring = ast.get_docstring(tree)
    if _useful(docstring):
        yield _row("module", module_name, f"Module {module_name}\n\n{docstring}")

    def walk(body: list[ast.stmt], prefix: str, in_class: bool) -> Iterator[dict[str, object]]:
        for node in _definitions(body):
            if node.name.startswith("_"):
                continue
            name = f"{prefix}.{node.name}"
            docstring = ast.get_docstring(node)
            if isinstance(node, ast.ClassDef):
                bases = ", ".join(ast.unparse(base) for base in node.bases)
                if _useful(docstring):
                    yield _row("class", name, f"class {name}({bases})\n\n{docstring}")
                yield from walk(node.body, name, in_class=True)
            elif _useful(docstring):
                yield _row("function", name, f"{name}{_signature(node, in_class)}\n\n{docstring}")

    yield from walk(tree.body, module_name, in_class=False)


def _introspected_signature(obj: object, is_method: bool) -> str:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parameters = list(signature.parameters.values())
    if is_method and parameters and parameters[0].name in ("self", "cls", "type"):
        signature = signature.replace(parameters=parameters[1:])
    return str(signature)


def _c_module_rows(module_name: str, public_name: str) -> Iterator[dict[str, object]]:
    """Rows for a C-implemented module's public functions and classes (with their own methods)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return
    if public_name == module_name and _useful(module.__doc__):
        yield _row("module", public_name, f"Module {public_name}\n\n{inspect.cleandoc(module.__doc__)}")
    for name in sorted(vars(module)):
        # `sys` keeps the interpreter's own hooks as `__displayhook__` etc. while tools (pytest, IPython) replace the
        # public ones at run time: read the originals so that the rows do not depend on who is running.
        obj = vars(module).get(f"__{name}__", vars(module)[name])
        if name.startswith("_") or getattr(obj, "__module__", module_name) not in (module_name, public_name):
            continue
        qualified = name if public_name == "builtins" else f"{public_name}.{name}"
        if inspect.isclass(obj):
            if _useful(obj.__doc__):
                yield _row("class", qualified, f"class {qualified}\n\n{inspect.cleandoc(obj.__doc__)}")
            for method_name in sorted(vars(obj)):
                method = vars(obj)[method_name]
                if method_name.startswith("_") or not inspect.isroutine(method) or not _useful(method.__doc__):
                    continue
                method_qualified = f"{qualified}.{method_name}"
                text = (
                    f"{method_qualified}{_introspected_signature(method, True)}\n\n{inspect.cleandoc(method.__doc__)}"
                )
                yield _row("function", method_qualified, text)
        elif inspect.isroutine(obj) and _useful(obj.__doc__):
            text = f"{qualified}{_introspected_signature(obj, False)}\n\n{inspect.cleandoc(obj.__doc__)}"
            yield _row("function", qualified, text)


def python_docs_rows() -> Iterator[dict[str, object]]:
    """Every document of the corpus, in a fixed order: topics, then C modules, then Python modules by name.

    An identifier seen twice (e.g. a function defined in both branches of an `if`) keeps its first definition.
    """
    stdlib = Path(sysconfig.get_path("stdlib"))
    seen: set[str] = set()
    sources = [_topic_rows()]
    sources += [_c_module_rows(name, public) for name, public in C_MODULES.items()]
    sources += [_source_rows(name, path) for name, path in _source_modules(stdlib)]
    for rows in sources:
        for row in rows:
            if row["identifier"] not in seen:
                seen.add(row["identifier"])
                yield row


def python_docs_fingerprint() -> str:
    """Fingerprint of the corpus: changes with the Python version and with this file (the code that builds the rows)."""
    digest = hashlib.sha256(sys.version.encode())
    digest.update(Path(__file__).read_bytes())
    return f"python-docs-{digest.hexdigest()[:16]}"


def python_docs_dataset() -> datasets.Dataset:
    """All rows of the python-docs corpus (see `modeling_cascade.data.python_docs_corpus`, which samples them), built
    once and cached by `datasets` under the corpus fingerprint."""
    return datasets.Dataset.from_generator(python_docs_rows, features=FEATURES, fingerprint=python_docs_fingerprint())
