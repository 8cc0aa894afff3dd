"""Resuming killed runs: `kill -9` during embedding and during training, then the same command again.

The kills are real (`SIGKILL` to a `python run_distillation.py` subprocess) and deterministic in what they leave: the
test waits for a finished shard file or checkpoint to appear, kills at once, and then checks what was left before it
reruns. Nothing in the script knows it is being tested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from transformers import TrainerState

import run_distillation
from modeling_cascade.data import load_corpus
from modeling_cascade.file_utils import load_embeddings
from modeling_cascade.resume import (
    check_checkpoint,
    checkpoint_step,
    is_complete_checkpoint,
    last_complete_checkpoint,
    whole_run_train_loss,
)
from modeling_cascade.teacher import Teacher


REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO_ROOT / "run_distillation.py")
TIMING_METRICS = {"train_runtime", "train_samples_per_second", "train_steps_per_second"}


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_to_end(argv: list[str], log: Path, timeout: float = 240) -> str:
    """Run the script in a subprocess to the end; return its output (stdout and stderr)."""
    with open(log, "w") as handle:
        result = subprocess.run(
            [sys.executable, SCRIPT, *argv], cwd=REPO_ROOT, env=subprocess_env(), stdout=handle,
            stderr=subprocess.STDOUT, timeout=timeout,
        )  # fmt: skip
    output = log.read_text()
    assert result.returncode == 0, output[-3000:]
    return output


def kill_when(argv: list[str], log: Path, ready: Callable[[], bool], timeout: float = 240) -> str:
    """Start the script, `kill -9` it as soon as `ready()` holds, and return what it printed until then."""
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, SCRIPT, *argv], cwd=REPO_ROOT, env=subprocess_env(), stdout=handle,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert process.poll() is None, f"the run ended (status {process.returncode}) before the kill"
                assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return log.read_text()


def comparable(results: dict) -> dict:
    return {key: value for key, value in results.items() if key not in TIMING_METRICS}


@pytest.mark.slow
def test_kill_during_embedding_keeps_finished_shards(common_corpus_sample, tiny_teacher_dir, tmp_path):
    cache = tmp_path / "cache"
    saved = tmp_path / "embeddings.npy"
    argv = [
        "--dataset_name", str(common_corpus_sample), "--num_samples", "400",
        "--embedding_model", str(tiny_teacher_dir), "--max_length", "256", "--device", "cpu",
        "--embedding_shard_size", "20", "--save_embeddings", str(saved),
        "--target_dims", "16,8", "--epochs", "1", "--train_batch_size", "32",
        "--output_dir", str(tmp_path / "out"), "--cache_dir", str(cache),
    ]  # fmt: skip

    def shard_files() -> dict[str, tuple[int, int]]:
        files = cache.glob("modeling_cascade_embeddings/embeddings-*/shard-*-of-00020.arrow")
        return {file.name: (file.stat().st_ino, file.stat().st_mtime_ns) for file in files}

    killed = kill_when(argv, tmp_path / "killed.log", lambda: bool(shard_files()))
    assert "Embedding 400 documents in 20 shard(s) on 1 process(es)" in killed
    finished = shard_files()
    assert 1 <= len(finished) < 20, f"{len(finished)} of 20 shards were finished at the kill"
    assert not saved.exists() and not (tmp_path / "out" / "final_model").exists()

    output = run_to_end(argv, tmp_path / "rerun.log")
    assert f"Resuming teacher embeddings: {len(finished)} of 20 shards are cached" in output
    embedded = {int(number) for number in re.findall(r"Generating embeddings \(shard (\d+)/20\): 100%", output)}
    assert embedded == set(range(1, 21)) - {int(name[6:11]) + 1 for name in finished}  # only the unfinished ones
    assert {name: shard_files()[name] for name in finished} == finished  # the finished files were not rewritten
    assert len(shard_files()) == 20
    assert "Generated embeddings: (400, 32)" in output

    # the pieced-together matrix is the one a single uninterrupted encode gives, in corpus order
    corpus = load_corpus(str(common_corpus_sample), num_samples=400, seed=42, cache_dir=str(cache))
    teacher = Teacher(str(tiny_teacher_dir), max_length=256, device="cpu")
    np.testing.assert_allclose(load_embeddings(saved), teacher.encode(corpus["text"]), atol=1e-5)


@pytest.mark.slow
def test_kill_during_training_resumes_to_the_same_result(scifact_embeddings, tmp_path):
    rows = tmp_path / "scifact.npy"
    np.save(rows, scifact_embeddings[:1500])  # 1,350 training rows: 22 steps per epoch
    argv = ["--input_file", str(rows), "--target_dims", "128,32", "--epochs", "6", "--train_batch_size", "64"]
    steps_per_epoch = 22

    run_distillation.main([*argv, "--output_dir", str(tmp_path / "uninterrupted")])
    reference = json.loads((tmp_path / "uninterrupted" / "all_results.json").read_text())

    killed = tmp_path / "killed"
    first = killed / f"checkpoint-{steps_per_epoch}"
    kill_when([*argv, "--output_dir", str(killed)], tmp_path / "killed.log", lambda: is_complete_checkpoint(first))
    checkpoint = last_complete_checkpoint(killed)
    step = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json")).global_step
    assert steps_per_epoch <= step < 6 * steps_per_epoch and not (killed / "final_model").exists()
    explicit = tmp_path / "explicit"
    shutil.copytree(killed, explicit)

    # the same command again: it finds the newest complete checkpoint itself
    output = run_to_end([*argv, "--output_dir", str(killed)], tmp_path / "resumed.log")
    assert f"Resuming the unfinished run in {killed} from {checkpoint}" in output
    # or name the checkpoint
    run_distillation.main(
        [*argv, "--output_dir", str(explicit), "--resume_from_checkpoint", str(explicit / Path(checkpoint).name)]
    )

    for output_dir in (killed, explicit):
        results = json.loads((output_dir / "all_results.json").read_text())
        assert comparable(results) == pytest.approx(comparable(reference), rel=1e-4, abs=1e-7), output_dir
        for model in ("final_model", "best_model"):
            weights = load_file(output_dir / model / "model.safetensors")
            expected = load_file(tmp_path / "uninterrupted" / model / "model.safetensors")
            assert weights.keys() == expected.keys()
            for name in weights:
                np.testing.assert_allclose(weights[name], expected[name], atol=1e-5)


def make_checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"")
    if complete:
        TrainerState(global_step=step).save_to_json(str(path / "trainer_state.json"))
    return path


def test_incomplete_checkpoints_are_skipped(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path) is None
    make_checkpoint(tmp_path, 5)
    complete = make_checkpoint(tmp_path, 10)
    incomplete = make_checkpoint(tmp_path, 15, complete=False)  # killed while the Trainer was writing it
    (tmp_path / "checkpoint-notes").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(complete)
    cut_short = make_checkpoint(tmp_path, 20, complete=False)
    (cut_short / "trainer_state.json").write_text('{"global_step": 2')  # killed while writing the file itself
    assert last_complete_checkpoint(tmp_path) == str(complete)
    assert f"Skipping {incomplete}: it has no readable trainer_state.json" in caplog.text
    assert f"Skipping {cut_short}: it has no readable trainer_state.json" in caplog.text
    assert check_checkpoint(str(complete)) == str(complete)
    with pytest.raises(
        ValueError, match=r"checkpoint-15' is incomplete .* the newest complete one is .*checkpoint-10"
    ):
        check_checkpoint(str(incomplete))
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint .*checkpoint-99' is not a folder"):
        check_checkpoint(str(tmp_path / "checkpoint-99"))


def test_script_refuses_an_incomplete_checkpoint(tmp_path, embeddings_file):
    incomplete = make_checkpoint(tmp_path / "out", 9, complete=False)
    with pytest.raises(ValueError, match="is incomplete"):
        run_distillation.main(
            ["--input_file", str(embeddings_file), "--output_dir", str(tmp_path / "out"),
             "--resume_from_checkpoint", str(incomplete)]
        )  # fmt: skip


def test_whole_run_train_loss(tmp_path):
    """Steps 1-20 logged 0.5 and 0.3 (10 steps each) before the resume at 20; this call ran 10 steps at 0.1."""
    assert checkpoint_step(None) == 0
    assert checkpoint_step(str(make_checkpoint(tmp_path, 20))) == 20
    state = TrainerState(global_step=30)
    state.log_history = [
        {"loss": 0.5, "step": 10, "epoch": 1.0},
        {"eval_loss": 0.45, "step": 10, "epoch": 1.0},
        {"loss": 0.3, "step": 20, "epoch": 2.0},
        {"loss": 0.1, "step": 30, "epoch": 3.0},
    ]
    assert whole_run_train_loss(state, 0.1, 20) == pytest.approx((0.5 * 10 + 0.3 * 10 + 0.1 * 10) / 30)
    assert whole_run_train_loss(state, 0.1, 0) == 0.1  # not resumed: the Trainer's value is the whole run's
    state.log_history = [{"loss": 0.5, "step": 10}, {"loss": 0.1, "step": 30}]  # nothing logged at step 20
    assert whole_run_train_loss(state, 0.1, 20) == 0.1
