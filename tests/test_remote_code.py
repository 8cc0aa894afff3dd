"""A saved cascade carries its own code: it loads with `trust_remote_code=True` where this package is absent, and
`encode()` embeds text with the teacher named in its config, from either copy of the code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.teacher import Teacher


REPO_ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["How do I parse JSON?", "json.loads turns a JSON document into Python objects.", "Sorting a list in place"]
CODE_FILES = [
    "configuration_cascade.py",
    "losses.py",
    "matrix_rows.py",
    "modeling_cascade.py",
    "pca.py",
    "teacher_encoder.py",
    "text_encoding.py",
]

# Runs in a fresh interpreter: hides this package (the editable install's finder, the repository on sys.path, and a
# finder that refuses the name, for a regular install), checks that it is gone, then loads the folder as a user would.
FRESH_INTERPRETER = textwrap.dedent(
    """
    import json, os, sys

    repository, folder, output = sys.argv[1:4]
    sys.meta_path[:] = [finder for finder in sys.meta_path if "__editable__" not in getattr(finder, "__module__", "")]
    sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != repository]


    class HidePackage:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_cascade", "run_distillation"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, HidePackage())
    try:
        import modeling_cascade  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        sys.exit("modeling_cascade is importable: the test would not show anything")

    import numpy as np
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = torch.from_numpy(np.load(f"{output}/inputs.npy"))
    with torch.no_grad():
        outputs = model(inputs).cascade_embeddings
    np.save(f"{output}/forward_8.npy", outputs[0].numpy())
    np.save(f"{output}/forward_4.npy", outputs[1].numpy())
    texts = json.loads(open(f"{output}/texts.json").read())
    np.save(f"{output}/queries.npy", model.encode(texts, dim=4))
    np.save(f"{output}/documents.npy", model.encode(texts, prompt="document"))
    print(type(model).__module__)
    """
)


@pytest.fixture(scope="module")
def cascade_folder(tiny_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cascade (32 -> 8, 4) over the tiny teacher, with non-trivial weights and distinct prefixes, saved."""
    config = CascadeConfig(
        input_dim=32,
        target_dims=[8, 4],
        strategy="chained",
        head_type="mlp",
        teacher_model=str(tiny_teacher_dir),
        query_prefix="query: ",
        document_prefix="passage: ",
        teacher_pooling="mean",
        teacher_max_length=64,
    )
    torch.manual_seed(0)
    model = CascadeModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    folder = tmp_path_factory.mktemp("cascade") / "tiny-cascade"
    model.save_pretrained(folder)
    return folder


def test_saved_folder_carries_its_code(cascade_folder):
    assert sorted(path.name for path in cascade_folder.glob("*.py")) == CODE_FILES
    config = json.loads((cascade_folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_cascade.CascadeConfig",
        "AutoModel": "modeling_cascade.CascadeModel",
    }


def test_with_the_package_it_loads_without_trust_remote_code(cascade_folder):
    model = AutoModel.from_pretrained(cascade_folder)
    assert type(model) is CascadeModel


def test_fresh_interpreter_without_the_package_loads_it_with_trust_remote_code(cascade_folder, tmp_path):
    inputs = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "inputs.npy", inputs.numpy())
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", FRESH_INTERPRETER, str(REPO_ROOT.resolve()), str(cascade_folder), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1].startswith("transformers_modules.")  # the folder's own copy of the code ran

    model = CascadeModel.from_pretrained(cascade_folder).eval()
    with torch.no_grad():
        expected = model(inputs).cascade_embeddings
    np.testing.assert_array_equal(np.load(tmp_path / "forward_8.npy"), expected[0].numpy())
    np.testing.assert_array_equal(np.load(tmp_path / "forward_4.npy"), expected[1].numpy())
    np.testing.assert_allclose(np.load(tmp_path / "queries.npy"), model.encode(TEXTS, dim=4), atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "documents.npy"), model.encode(TEXTS, prompt="document"), atol=1e-6)


def test_encode_embeds_with_the_teacher_in_the_config(cascade_folder, tiny_teacher_dir):
    model = CascadeModel.from_pretrained(cascade_folder)
    queries = model.encode(TEXTS, dim=4)
    assert queries.shape == (3, 4) and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-6)
    documents = model.encode(TEXTS, prompt="document")
    assert documents.shape == (3, 8)  # the largest dim by default

    teacher = Teacher(str(tiny_teacher_dir), pooling="mean", max_length=64, device="cpu")
    np.testing.assert_allclose(queries, model.project(teacher.encode(TEXTS, prefix="query: "), dim=4), atol=1e-6)
    np.testing.assert_allclose(documents, model.project(teacher.encode(TEXTS, prefix="passage: "), dim=8), atol=1e-6)
    assert not np.allclose(model.encode(TEXTS, dim=8), documents)  # queries and documents get their own prefixes

    loaded = model._teacher_cache["model"]
    model.encode("one more text")
    assert model._teacher_cache["model"] is loaded  # loaded once
    assert loaded.max_seq_length == 64
    assert not any("teacher" in name for name in model.state_dict())  # and never part of the cascade's weights


def test_encode_errors_name_the_problem(cascade_folder, tmp_path):
    model = CascadeModel.from_pretrained(cascade_folder)
    with pytest.raises(ValueError, match=r"prompt must be one of \('query', 'document'\), got 'passage'"):
        model.encode(TEXTS, prompt="passage")
    with pytest.raises(ValueError, match=r"dim 5 is not one of this cascade's target_dims \[8, 4\]"):
        model.encode(TEXTS, dim=5)

    without_teacher = CascadeModel(CascadeConfig(input_dim=32, target_dims=[8]))
    with pytest.raises(ValueError, match="config names no teacher.*call project\\(embeddings, dim\\)"):
        without_teacher.encode(TEXTS)

    wrong_size = CascadeModel(CascadeConfig(input_dim=64, target_dims=[8], teacher_model=model.config.teacher_model))
    with pytest.raises(ValueError, match="makes 32-dim embeddings, but this cascade reads 64-dim ones"):
        wrong_size.encode(TEXTS)
