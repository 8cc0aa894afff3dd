"""Checkpoints on the Hugging Face Hub for long runs: push each checkpoint as the `Trainer` saves it, and resume a run on
a new machine from the repo's `last-checkpoint/`.

The `Trainer`'s own `--push_to_hub` pushing (`_push_from_checkpoint`) would also upload a pickled `training_args.bin`
(it writes one into `output_dir` for each push) and skip a save while the previous push runs. [`HubCheckpointCallback`]
pushes instead, with `--hub_strategy` meaning what it means to the `Trainer`: `every_save` puts the checkpoint's model
(with its card) at the repo's root, `checkpoint` also puts the whole checkpoint in `last-checkpoint/`, and
`all_checkpoints` in a `checkpoint-N/` folder per save. A checkpoint is pushed without `training_args.bin`, which the
`Trainer` never reads back; the `Trainer` reloads the optimizer, scheduler, scaler and RNG states it holds with
`torch.load(weights_only=True)`. [`download_hub_checkpoint`] fetches `last-checkpoint/` (and the best checkpoint when it
is an older one) into `output_dir`, from where the run resumes exactly as from a local checkpoint.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from concurrent.futures import Future
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import tqdm as hub_tqdm
from tqdm.auto import tqdm as auto_tqdm
from tqdm.std import tqdm as std_tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy
from transformers.utils import logging

from .file_utils import atomic_path
from .head_selection import SELECTED_HEADS_FILE
from .hub import HubTarget
from .resume import is_complete_checkpoint


logger = logging.get_logger(__name__)

# Where `--hub_strategy checkpoint` keeps the newest checkpoint in the repo (the Trainer's name), and the value of
# `--resume_from_checkpoint` that resumes from it.
HUB_CHECKPOINT_DIR = "last-checkpoint"
# Where the best checkpoint's model goes beside it when it is an older one, so a resumed run still has best_model/.
HUB_BEST_CHECKPOINT_DIR = "best-checkpoint"
# The files of a saved cascade: weights as safetensors, its config, card and remote code.
MODEL_FILES = ("config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "*.py")
CARD_FILE = "README.md"
# What resuming needs besides the model: the Trainer's state, the tensors-only states it loads with
# `torch.load(weights_only=True)`, and the heads chosen so far (safetensors). Anything else, `training_args.bin` (a
# pickle of the arguments) above all, stays local.
RESUME_FILES = (
    TRAINER_STATE_NAME, OPTIMIZER_NAME, SCHEDULER_NAME, SCALER_NAME, "rng_state.pth", "rng_state_*.pth",
    SELECTED_HEADS_FILE,
)  # fmt: skip


def files_matching(folder: str | os.PathLike, patterns: tuple[str, ...]) -> list[str]:
    """The names of the plain files directly in `folder` that match one of `patterns` (hidden files never do)."""
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".") and any(fnmatch.fnmatch(entry.name, p) for p in patterns)
    )


class HubCheckpointCallback(TrainerCallback):
    """Push every checkpoint the `Trainer` saves to the Hub, in the background, as `--hub_strategy` says.

    Each save is one commit: the checkpoint's model files and card at the repo's root (every strategy), plus for
    `checkpoint` the whole checkpoint in `last-checkpoint/` (and the best checkpoint's model in `best-checkpoint/` when
    it is an older one), for `all_checkpoints` in `checkpoint-N/`. Nothing pickled is pushed except the optimizer,
    scheduler, scaler and RNG states the Trainer needs to resume (tensors only, loaded back with `weights_only=True`).
    The files are hard-linked into a staging folder first, so training goes on (and may delete the checkpoint) while
    they upload. Like the Trainer, a save is skipped while the previous push still runs, unless `--hub_always_push`.
    A failed push is logged as a warning and training goes on; `on_train_end` waits for the pushes still running.
    Only the main process pushes.

    Args:
        target (`HubTarget`): The repo (created already, e.g. by `prepare_hub_push`), token and branch.
        strategy (`HubStrategy` or `str`): `every_save`, `checkpoint` or `all_checkpoints`.
        always_push (`bool`, defaults to `False`): Queue a push even while the previous one runs.

    Example:

    >>> from modeling_cascade.hub import HubTarget
    >>> callback = HubCheckpointCallback(HubTarget("user/my-cascade"), "checkpoint")
    >>> callback.strategy.value
    'checkpoint'
    """

    def __init__(self, target: HubTarget, strategy: HubStrategy | str, always_push: bool = False) -> None:
        self.target = target
        self.strategy = HubStrategy(strategy)
        if self.strategy == HubStrategy.END:
            raise ValueError("HubCheckpointCallback pushes checkpoints: --hub_strategy end pushes none.")
        self.always_push = always_push
        self.api = HfApi(token=target.token)  # one client: its pushes run one after another, in order
        self.pushes: list[Future] = []
        share_progress_bar_lock()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        if self.pushes and not self.pushes[-1].done() and not self.always_push:
            logger.info(f"Not pushing the checkpoint of step {state.global_step}: the previous push is still running.")
            return
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        staging = Path(tempfile.mkdtemp(prefix=".hub-push-", dir=args.output_dir))
        try:
            operations = self._stage(checkpoint, state, staging)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            logger.warning(f"Could not push {checkpoint} to {self.target.url} ({type(error).__name__}: {error}).")
            return
        message = f"Training in progress, step {state.global_step}"
        self.pushes.append(self.api.run_as_future(self._push, checkpoint, operations, message, staging))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self.wait()

    def wait(self) -> None:
        """Wait until every push started so far has finished (or failed, with its warning)."""
        if not all(push.done() for push in self.pushes):
            logger.info(f"Waiting for the checkpoint pushes to {self.target.url} to finish...")
        for push in self.pushes:
            push.result()  # waits; `_push` logs a failure rather than raising it
        self.pushes = []

    def _stage(self, checkpoint: str, state: TrainerState, staging: Path) -> list[CommitOperationAdd]:
        """Hard-link (or copy) the files to push into `staging`; the commit's operations, repo path -> staged file."""
        files = {
            name: os.path.join(checkpoint, name) for name in files_matching(checkpoint, (*MODEL_FILES, CARD_FILE))
        }
        if self.strategy != HubStrategy.EVERY_SAVE:
            folder = HUB_CHECKPOINT_DIR if self.strategy == HubStrategy.CHECKPOINT else os.path.basename(checkpoint)
            for name in files_matching(checkpoint, (*MODEL_FILES, CARD_FILE, *RESUME_FILES)):
                files[f"{folder}/{name}"] = os.path.join(checkpoint, name)
        best = state.best_model_checkpoint
        older_best = state.best_global_step and state.best_global_step != state.global_step
        if self.strategy == HubStrategy.CHECKPOINT and older_best and best and os.path.isdir(best):
            for name in files_matching(best, (*MODEL_FILES, CARD_FILE, TRAINER_STATE_NAME)):
                files[f"{HUB_BEST_CHECKPOINT_DIR}/{name}"] = os.path.join(best, name)
        operations = []
        for path_in_repo, source in files.items():
            staged = staging / path_in_repo
            staged.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, staged)
            except OSError:  # another file system, or no hard links
                shutil.copyfile(source, staged)
            operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(staged)))
        return operations

    def _push(self, checkpoint: str, operations: list[CommitOperationAdd], message: str, staging: Path) -> None:
        """One commit of the staged files (in the client's background thread); a failure is logged, never raised."""
        try:
            commit = self.api.create_commit(
                repo_id=self.target.repo_id,
                operations=operations,
                commit_message=message,
                revision=self.target.revision,
            )
        except Exception as error:
            logger.warning(
                f"Pushing {checkpoint} to {self.target.url} failed ({type(error).__name__}: {error}); training goes on "
                "and the next checkpoint is pushed as usual."
            )
        else:
            logger.info(f"Pushed {checkpoint} to {self.target.url} ({commit.oid})")
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def share_progress_bar_lock() -> None:
    """Make the upload bars of background pushes take the same lock as the Trainer's progress bar.

    All tqdm bars share one registry of instances, each class guarding it with its own lock; `huggingface_hub` gives
    its bar class a lock of its own (and tqdm's plain and `tqdm.auto` classes may each hold one), so an upload bar
    created in a push thread while the Trainer's bar writes a log line could change the registry under the writer's
    iteration ("Set changed size during iteration", which ended a run). With one lock for all three classes, creating
    a bar and writing a line take turns.
    """
    lock = auto_tqdm.get_lock()
    std_tqdm.set_lock(lock)  # plain tqdm bars (and the classes that inherit its lock) too
    hub_tqdm.set_lock(lock)


def resolve_repo_id(repo_id: str, token: str | None = None) -> str:
    """`owner/name` for `repo_id`; a bare name is under the token's account, as the Trainer names its repo."""
    if "/" in repo_id:
        return repo_id
    return f"{HfApi(token=token).whoami()['name']}/{repo_id}"


def download_hub_checkpoint(
    repo_id: str, output_dir: str | os.PathLike, token: str | None = None, revision: str | None = None
) -> str:
    """Download the repo's `last-checkpoint/` into `output_dir` for a run to resume from, on any machine.

    With `snapshot_download(allow_patterns=...)` into `output_dir`, so downloading again only fetches what changed on
    the Hub. When the checkpoint's best model is an older checkpoint, its `best-checkpoint/` comes too, and the
    checkpoint's `trainer_state.json` is pointed at the local copies (it names the folders of the machine that saved
    it), so the run still ends with the right `best_model/`.

    Args:
        repo_id (`str`): The model repo (`owner/name`).
        output_dir (`str` or `os.PathLike`): The run's output_dir; `last-checkpoint/` is created in it.
        token (`str`, *optional*): Token that can read the repo; the saved login or `HF_TOKEN` when `None`.
        revision (`str`, *optional*): The branch the run pushed to; the default branch when `None`.

    Returns:
        The local checkpoint folder, `output_dir/last-checkpoint`.

    Raises:
        `ValueError` naming the repo when it cannot be read, has no such branch, or holds no complete
        `last-checkpoint/`.
    """
    api = HfApi(token=token)
    where = f"{hub_constants.ENDPOINT}/{repo_id}" + (f" (branch {revision!r})" if revision else "")
    flag = f"--resume_from_checkpoint {HUB_CHECKPOINT_DIR}"
    try:
        info = api.model_info(repo_id, revision=revision)
    except RevisionNotFoundError:
        raise ValueError(f"{flag}: the Hub repo {repo_id!r} has no branch {revision!r} (--hub_revision).") from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"{flag}: the Hub repo {repo_id!r} does not exist or this token cannot read it ({where}). Check "
            "--hub_model_id and --hub_token, or resume from a local checkpoint-N/ folder."
        ) from None
    files = {sibling.rfilename for sibling in info.siblings or []}
    if f"{HUB_CHECKPOINT_DIR}/{TRAINER_STATE_NAME}" not in files:
        raise ValueError(
            f"{flag}: the Hub repo {repo_id!r} holds no {HUB_CHECKPOINT_DIR}/{TRAINER_STATE_NAME} ({where}), so there "
            f"is no checkpoint to resume from. A run pushes one with --push_to_hub --hub_strategy checkpoint; start "
            "without --resume_from_checkpoint, or name a local checkpoint-N/ folder."
        )
    snapshot_download(
        repo_id,
        revision=info.sha,  # the commit just listed: last-checkpoint/ and best-checkpoint/ of one and the same push
        allow_patterns=[f"{HUB_CHECKPOINT_DIR}/*", f"{HUB_BEST_CHECKPOINT_DIR}/*"],
        local_dir=output_dir,
        token=token,
    )
    checkpoint = os.path.join(output_dir, HUB_CHECKPOINT_DIR)
    _point_at_local_best(checkpoint, os.path.join(output_dir, HUB_BEST_CHECKPOINT_DIR), repo_id)
    logger.info(f"Downloaded {HUB_CHECKPOINT_DIR}/ of {where} (commit {info.sha}) to {checkpoint}")
    return checkpoint


def _point_at_local_best(checkpoint: str, best: str, repo_id: str) -> None:
    """Set the downloaded checkpoint's `best_model_checkpoint` to the local folder holding that step's weights."""
    state_file = os.path.join(checkpoint, TRAINER_STATE_NAME)
    state = json.loads(Path(state_file).read_text(encoding="utf-8"))
    best_step = state.get("best_global_step")
    if not state.get("best_model_checkpoint") or not best_step:
        return
    if best_step != state.get("global_step"):
        saved = "no checkpoint"
        if is_complete_checkpoint(best):
            saved_step = TrainerState.load_from_json(os.path.join(best, TRAINER_STATE_NAME)).global_step
            saved = f"step {saved_step}"
        if saved != f"step {best_step}":
            raise ValueError(
                f"The best model of {HUB_CHECKPOINT_DIR}/ in the Hub repo {repo_id!r} is step {best_step}, but the "
                f"repo's {HUB_BEST_CHECKPOINT_DIR}/ holds {saved}: the resumed run could not end with its best_model/. "
                "Resume from a local checkpoint-N/ folder."
            )
        checkpoint = best
    state["best_model_checkpoint"] = checkpoint
    with atomic_path(state_file) as temporary:
        temporary.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")


__all__ = ["HUB_CHECKPOINT_DIR", "HubCheckpointCallback", "download_hub_checkpoint", "resolve_repo_id"]
