"""Checkpoints on the Hub for long runs (`--hub_strategy`), and resuming on a new machine from the repo's
`last-checkpoint/`, against the local stand-in for the Hub of `test_hub.py` (the real Hub is never contacted)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import test_hub
import torch
from huggingface_hub import ModelCard
from safetensors.numpy import load_file
from test_hub import REPO_ID, TOKEN, train
from test_resume import comparable

from modeling_cascade.hub_checkpoints import HubCheckpointCallback, download_hub_checkpoint


pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

fake_hub = test_hub.fake_hub  # the local Hub, a fixture
PUSH = ["--push_to_hub", "--hub_model_id", REPO_ID, "--hub_token", TOKEN, "--hub_always_push"]
# What a checkpoint needs to resume: the model with its card, the Trainer's state, and the tensors-only states.
RESUME_FILES = {"config.json", "model.safetensors", "README.md", "trainer_state.json", "optimizer.pt", "scheduler.pt"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")


class MachineTakenAway(Exception):
    """Stands for the machine going away in the middle of a run."""


def pushed_step(files: dict[str, bytes], folder: str = "last-checkpoint") -> int:
    return json.loads(files[f"{folder}/trainer_state.json"])["global_step"]


def test_hub_strategy_checkpoint_pushes_each_checkpoint_with_its_card(tmp_path, embeddings_file, fake_hub):
    out = train(tmp_path, embeddings_file, *PUSH, "--hub_strategy", "checkpoint")  # 2 epochs of 5 steps
    assert not fake_hub.unexpected
    summaries = [commit["summary"] for commit in fake_hub.commits]
    assert summaries == ["Training in progress, step 5", "Training in progress, step 10", "Upload cascade"]

    files = fake_hub.files
    checkpoint = {name.split("/", 1)[1] for name in files if name.startswith("last-checkpoint/")}
    assert RESUME_FILES | {"rng_state.pth", "modeling_cascade.py"} <= checkpoint
    assert pushed_step(files) == 10
    for name in checkpoint:  # the newest checkpoint, byte for byte
        assert files[f"last-checkpoint/{name}"] == (out / "checkpoint-10" / name).read_bytes(), name
    assert not [name for name in files if name.endswith("training_args.bin")]
    pickled = {name for name in files if name.endswith(PICKLE_SUFFIXES)}
    assert pickled == {"last-checkpoint/optimizer.pt", "last-checkpoint/scheduler.pt", "last-checkpoint/rng_state.pth"}
    card = ModelCard(files["last-checkpoint/README.md"].decode())
    assert card.data.library_name == "transformers" and "A **dimensional cascade**" in card.text
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card.text
    # the repo's root ends with best_model/, pushed after training
    for name in (out / "best_model").iterdir():
        assert files[name.name] == name.read_bytes(), name.name
    assert not list(out.glob(".hub-push-*")), "the staging folders are removed once pushed"


@pytest.mark.parametrize("strategy", ["every_save", "all_checkpoints"])
def test_hub_strategy_every_save_pushes_the_model_at_each_save(tmp_path, embeddings_file, fake_hub, strategy):
    out = train(tmp_path, embeddings_file, *PUSH, "--hub_strategy", strategy)
    assert not fake_hub.unexpected
    summaries = [commit["summary"] for commit in fake_hub.commits]
    assert summaries == ["Training in progress, step 5", "Training in progress, step 10", "Upload cascade"]
    files = fake_hub.files
    assert not [name for name in files if name.endswith("training_args.bin")]
    folders = {name.split("/")[0] for name in files if "/" in name}
    if strategy == "every_save":  # the model and its card at the root, no checkpoint folder, nothing pickled
        assert not folders and not [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    else:
        assert folders == {"checkpoint-5", "checkpoint-10"}
        assert {name.split("/", 1)[1] for name in files if name.startswith("checkpoint-5/")} >= RESUME_FILES
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert files["model.safetensors"] == (out / "best_model" / "model.safetensors").read_bytes()


def test_default_hub_strategy_pushes_only_the_best_model(tmp_path, embeddings_file, fake_hub):
    train(tmp_path, embeddings_file, *PUSH)
    assert [commit["summary"] for commit in fake_hub.commits] == ["Upload cascade"]


@pytest.mark.slow  # three short runs each
@pytest.mark.parametrize(
    "selection",
    [
        pytest.param(["--per_head_selection", "false", "--metric_for_best_model", "loss", "--greater_is_better", "true"],
                     id="best-checkpoint"),
        pytest.param([], id="per-head-selection"),
    ],
)  # fmt: skip
def test_resume_from_the_hub_on_a_new_machine_ends_as_an_uninterrupted_run(
    tmp_path, embeddings_file, fake_hub, monkeypatch, selection
):
    """Run B pushes its checkpoints and its machine goes away after step 15 of 20; its output_dir is gone. Resumed on a
    "new machine" from the repo's last-checkpoint/, it ends with the weights and results of run A, never stopped.

    best-checkpoint: `--greater_is_better` makes the first epoch the best (the highest eval_loss), so the best model is
    an older checkpoint than the one resumed from, and comes from the repo's best-checkpoint/. per-head-selection (the
    default): the heads chosen so far travel in last-checkpoint/selected_heads.safetensors.
    """
    monkeypatch.chdir(tmp_path)
    argv = ["--epochs", "4", *selection]
    reference = train(tmp_path / "a", embeddings_file, *argv)

    push_on_save = HubCheckpointCallback.on_save

    def push_then_stop(self, args, state, control, **kwargs):
        push_on_save(self, args, state, control, **kwargs)
        if state.global_step == 15:
            self.wait()  # the push of step 15 made it to the Hub before the machine went away
            raise MachineTakenAway

    with monkeypatch.context() as patch, pytest.raises(MachineTakenAway):
        patch.setattr(HubCheckpointCallback, "on_save", push_then_stop)
        train(tmp_path / "b", embeddings_file, *argv, *PUSH, "--hub_strategy", "checkpoint")
    assert pushed_step(fake_hub.files) == 15
    if selection:
        assert pushed_step(fake_hub.files, "best-checkpoint") == 5
    else:
        assert "last-checkpoint/selected_heads.safetensors" in fake_hub.files
    shutil.rmtree(tmp_path / "b")

    loads = []
    torch_load = torch.load

    def recording_load(file, *args, **kwargs):
        loads.append((str(file), kwargs.get("weights_only")))
        return torch_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    resumed = train(
        tmp_path / "b", embeddings_file, *argv, *PUSH, "--hub_strategy", "checkpoint",
        "--resume_from_checkpoint", "last-checkpoint",
    )  # fmt: skip
    assert not fake_hub.unexpected
    # the Trainer read the optimizer, scheduler and RNG states back with weights_only=True, and nothing else pickled
    assert {file.rsplit("/", 1)[1] for file, _ in loads} == {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    assert all(weights_only is True for _, weights_only in loads)
    assert pushed_step(fake_hub.files) == 20  # the resumed run went on pushing

    expected = json.loads((reference / "all_results.json").read_text())
    results = json.loads((resumed / "all_results.json").read_text())
    assert comparable(results) == pytest.approx(comparable(expected), rel=1e-4, abs=1e-7)
    for model in ("final_model", "best_model"):
        weights = load_file(resumed / model / "model.safetensors")
        reference_weights = load_file(reference / model / "model.safetensors")
        assert weights.keys() == reference_weights.keys()
        for name in weights:
            np.testing.assert_allclose(weights[name], reference_weights[name], atol=1e-5)
    assert not np.allclose(load_file(reference / "best_model" / "model.safetensors")["heads.0.projection.weight"],
                           load_file(reference / "final_model" / "model.safetensors")["heads.0.projection.weight"])  # fmt: skip


def test_hub_resume_checks_the_run_fingerprint(tmp_path, embeddings_file, fake_hub, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(tmp_path / "pushed", embeddings_file, *PUSH, "--hub_strategy", "checkpoint")
    resume = [*PUSH, "--resume_from_checkpoint", "last-checkpoint"]
    with pytest.raises(ValueError) as error:
        train(tmp_path / "other", embeddings_file, *resume, "--seed", "7")
    checkpoint = tmp_path / "other" / "out" / "last-checkpoint"
    assert str(error.value) == (
        f"Checkpoint {str(checkpoint)!r} belongs to another run: it was trained with seed 42, but this run uses 7 "
        "(--seed). Pass --overwrite_output_dir to start over, or choose another --output_dir."
    )
    with pytest.raises(ValueError, match="belongs to another run: its config.json has target_dims"):
        train(tmp_path / "other", embeddings_file, *resume, "--target_dims", "32,8")


def test_downloading_last_checkpoint_twice_changes_nothing(tmp_path, embeddings_file, fake_hub):
    # the validation loss falls every epoch here, so the best checkpoint is the last one
    train(
        tmp_path / "pushed", embeddings_file, *PUSH, "--hub_strategy", "checkpoint", "--metric_for_best_model", "loss"
    )
    checkpoint = download_hub_checkpoint(REPO_ID, tmp_path / "new", token=TOKEN)
    first = {path.name: path.read_bytes() for path in (tmp_path / "new" / "last-checkpoint").iterdir()}
    downloads = len(fake_hub.downloads)
    assert download_hub_checkpoint(REPO_ID, tmp_path / "new", token=TOKEN) == checkpoint
    again = {path.name: path.read_bytes() for path in (tmp_path / "new" / "last-checkpoint").iterdir()}
    assert again == first
    assert len(fake_hub.downloads) - downloads <= 1, "only the re-pointed trainer_state.json is fetched again"
    state = json.loads(first["trainer_state.json"])
    assert state["best_model_checkpoint"] == checkpoint  # the best is the newest here: this very folder


def test_hub_resume_without_a_checkpoint_in_the_repo_says_so(tmp_path, embeddings_file, fake_hub, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resume = ["--resume_from_checkpoint", "last-checkpoint"]
    with pytest.raises(ValueError, match=rf"the Hub repo '{REPO_ID}' holds no last-checkpoint/trainer_state.json .*"
                       "--push_to_hub --hub_strategy checkpoint"):  # fmt: skip
        train(tmp_path, embeddings_file, *PUSH, *resume)
    with pytest.raises(
        ValueError, match="the Hub repo 'cascade-user/missing' does not exist or this token cannot read"
    ):
        train(tmp_path, embeddings_file, "--hub_model_id", "cascade-user/missing", *resume)
    with pytest.raises(ValueError, match="no local folder 'last-checkpoint', and no Hub repo .* --hub_model_id"):
        train(tmp_path, embeddings_file, *resume)
    assert not (tmp_path / "out" / "final_model").exists()


def test_push_progress_bars_wait_while_the_training_bar_writes():
    """A push thread's upload bar is not created while the Trainer's bar writes a line (one lock for both), so
    the bars' shared registry never changes under the writer's iteration."""
    import threading

    from huggingface_hub.utils import tqdm as hub_tqdm
    from tqdm.auto import tqdm as auto_tqdm

    from modeling_cascade.hub import HubTarget

    HubCheckpointCallback(HubTarget(REPO_ID, token=TOKEN), "checkpoint")
    created = threading.Event()

    def upload_bar() -> None:
        with hub_tqdm(total=1, disable=True):
            created.set()

    with auto_tqdm.external_write_mode():  # what `training_bar.write(...)` holds while it writes
        thread = threading.Thread(target=upload_bar)
        thread.start()
        assert not created.wait(timeout=0.5), "the upload bar was created while the training bar wrote"
    assert created.wait(timeout=10)
    thread.join()
