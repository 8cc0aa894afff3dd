"""Publishing a trained cascade on the Hugging Face Hub: its best model folder, with its card, code and images.

`--push_to_hub` would make the `Trainer` create the repo and upload `output_dir` after every checkpoint (the latest
epoch's weights, a pickled `training_args.bin`, its own generic card). A cascade run instead pushes `best_model/` at
the end, as `save_pretrained` and the card writer left it (`config.json`, `model.safetensors`, the code that loads it
with `trust_remote_code=True`, `README.md`, the images the card links), and, with `--hub_strategy every_save`,
`checkpoint` or `all_checkpoints`, its checkpoints during training (`hub_checkpoints.HubCheckpointCallback`).
[`prepare_hub_push`] checks the Hub and creates the repo before training, so a wrong token or repo name fails in
seconds rather than after the run, and switches the Trainer's own pushes off; [`push_model_folder`] uploads the folder
at the end with `huggingface_hub`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi
from huggingface_hub import constants as hub_constants
from transformers import TrainingArguments
from transformers.trainer_utils import HubStrategy
from transformers.utils import logging

from .offline import HubUnreachableError, hub_is_reachable, is_offline


logger = logging.get_logger(__name__)

# Left out of a push: hidden files, such as what an interrupted atomic write leaves (`.README.md.*.tmp`).
HIDDEN_FILES = [".*"]


@dataclass
class HubTarget:
    """Where a run publishes its best model.

    Args:
        repo_id (`str`): The model repo, `owner/name` once created.
        token (`str`, *optional*): Token with write access (`--hub_token`); the saved login or `HF_TOKEN` when `None`.
        private (`bool`, *optional*): Create the repo private (`--hub_private_repo`); ignored if it exists.
        revision (`str`, *optional*): Branch to push to (`--hub_revision`); the default branch when `None`.

    Example:

    >>> target = HubTarget(repo_id="user/my-cascade")
    >>> target.url
    'https://huggingface.co/user/my-cascade'
    """

    repo_id: str
    token: str | None = None
    private: bool | None = None
    revision: str | None = None

    @property
    def url(self) -> str:
        """The repo's page on the Hub endpoint in use."""
        return f"{hub_constants.ENDPOINT}/{self.repo_id}"


def prepare_hub_push(training_args: TrainingArguments) -> HubTarget | None:
    """For `--push_to_hub`: check that the Hub can be reached, create the repo, and turn the Trainer's pushes off.

    The repo is `--hub_model_id`, or the output_dir's name under the token's account (as the Trainer names it). Only
    the main process creates it. Afterwards `training_args.push_to_hub` is `False`, so the Trainer neither pushes
    checkpoints nor writes its own card; [`push_model_folder`] pushes the best model at the end (and
    `HubCheckpointCallback` the checkpoints, as `--hub_strategy` says).

    Args:
        training_args (`TrainingArguments`): The run's arguments (changed in place as described).

    Returns:
        The [`HubTarget`], or `None` without `--push_to_hub`.

    Raises:
        [`HubUnreachableError`] when offline mode is on or the Hub cannot be reached: nothing is trained.
    """
    if not training_args.push_to_hub:
        return None
    if is_offline() or not hub_is_reachable():
        raise HubUnreachableError(
            f"--push_to_hub needs the Hugging Face Hub ({hub_constants.ENDPOINT}), which cannot be reached "
            f"{'(HF_HUB_OFFLINE is set)' if is_offline() else ''}. Nothing was trained: run without --push_to_hub and "
            "upload the best model later with `hf upload <repo_id> <output_dir>/best_model`."
        )
    target = HubTarget(
        repo_id=training_args.hub_model_id or Path(training_args.output_dir).absolute().name,
        token=training_args.hub_token,
        private=training_args.hub_private_repo,
        revision=training_args.hub_revision,
    )
    if training_args.should_save:
        api = HfApi(token=target.token)
        target.repo_id = api.create_repo(target.repo_id, private=target.private, exist_ok=True).repo_id
        if target.revision:  # the upload goes to this branch: make it now rather than fail after training
            api.create_branch(target.repo_id, branch=target.revision, exist_ok=True)
        strategy = HubStrategy(training_args.hub_strategy)
        pushed = "" if strategy == HubStrategy.END else f" (and each checkpoint: --hub_strategy {strategy.value})"
        logger.info(
            f"Hub repo {target.url} is ready: best_model/ and its card are pushed there after training{pushed}"
        )
    training_args.push_to_hub = False
    return target


def push_model_folder(
    folder: str | Path, target: HubTarget, commit_message: str = "Upload cascade", create_pr: bool = False
) -> CommitInfo:
    """Upload the files of a saved model folder (hidden ones left out) to the repo in one commit.

    Args:
        folder (`str` or `Path`): The folder (e.g. `output_dir/best_model`).
        target (`HubTarget`): The repo, token and branch.
        commit_message (`str`, defaults to `"Upload cascade"`): The commit's title.
        create_pr (`bool`, defaults to `False`): Open a pull request instead of committing to the branch.

    Raises:
        `FileNotFoundError` for a folder without `config.json`; `RuntimeError` naming the repo, the folder and how to
        push it later when the upload fails (auth, network); the local folder is untouched either way.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no saved model (no config.json): nothing to push.")
    api = HfApi(token=target.token)
    try:
        commit = api.upload_folder(
            repo_id=target.repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=target.revision,
            create_pr=create_pr,
            ignore_patterns=HIDDEN_FILES,
        )
    except Exception as error:
        raise RuntimeError(
            f"Pushing {folder} to {target.url} failed ({type(error).__name__}: {error}). The model and its card are "
            f"saved in {folder}: push them later with `hf upload {target.repo_id} {folder}`."
        ) from error
    logger.info(f"Pushed {folder} to {target.url} ({commit.oid})")
    return commit


def publish_folder(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload cascade",
) -> CommitInfo:
    """Create the repo (and the `revision` branch) if needed, then [`push_model_folder`]: what `CascadeModel.push_to_hub`
    and [`push_sentence_transformers`] do for each repo they publish to."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    target = HubTarget(repo_id=repo_id, token=token, private=private, revision=revision)
    if revision:
        api.create_branch(target.repo_id, branch=revision, exist_ok=True)
    return push_model_folder(folder, target, commit_message=commit_message, create_pr=create_pr)


def sentence_transformer_repo_ids(repo_id: str, config) -> dict[int, str]:
    """Where [`push_sentence_transformers`] publishes each dim: `<repo_id>-<dim>d`, one repo per dim, since
    `SentenceTransformer(repo_id)` and the tools built on it (vector stores, RAG frameworks, MTEB) take a repo id and
    rarely a revision, and a repo of its own gives each dim its own card and Hub listing. A `nested` cascade is one
    model (its widest dim; `truncate_dim` picks a stage), so it has one repo."""
    dims = config.target_dims[:1] if config.strategy == "nested" else config.target_dims
    return {dim: f"{repo_id}-{dim}d" for dim in dims}


def push_sentence_transformers(cascade, target: HubTarget) -> dict[int, str]:
    """Publish every dim of `cascade` as a plain sentence-transformers model beside the cascade's repo (see
    [`sentence_transformer_repo_ids`]), each with its card; returns dim -> repo id.

    Args:
        cascade (`CascadeModel`): A cascade with linear heads whose config names its teacher.
        target (`HubTarget`): The cascade's repo (`owner/name`), token, privacy and branch.
    """
    import tempfile

    from .sentence_transformer_export import check_exportable, save_sentence_transformer
    from .teacher import Teacher

    check_exportable(cascade)
    teacher = Teacher.from_config(cascade.config, device="cpu")
    pushed = {}
    for dim, repo_id in sentence_transformer_repo_ids(target.repo_id, cascade.config).items():
        with tempfile.TemporaryDirectory(prefix="sentence-transformer-") as workdir:
            folder = save_sentence_transformer(
                cascade, Path(workdir) / "model", dim, repo_id=repo_id, cascade_repo_id=target.repo_id, teacher=teacher
            )
            publish_folder(
                folder, repo_id, target.token, target.private, target.revision,
                commit_message=f"Upload the {dim}-dim sentence-transformers model",
            )  # fmt: skip
        pushed[dim] = repo_id
    return pushed


__all__ = [
    "HubTarget",
    "prepare_hub_push",
    "publish_folder",
    "push_model_folder",
    "push_sentence_transformers",
    "sentence_transformer_repo_ids",
]
