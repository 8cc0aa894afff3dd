"""`run_distillation.py` / `cascade-distill`: corpus -> teacher embeddings -> cascade trained by the `Trainer` -> saved
models, results and model cards (and a push to the Hub). The script at the top of the repository is the thin entry
users launch; this is what it runs. See that script's docstring for example calls.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import shutil
import sys
from pathlib import Path

import datasets
import transformers
from transformers import Trainer, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy

from .. import CascadeConfig, CascadeModel
from ..file_utils import (
    atomic_directory,
    atomic_path,
)
from ..head_selection import PCA_START, SELECTION_METRICS, HeadSelectionCallback
from ..hub import prepare_hub_push, push_model_folder, push_sentence_transformers, sentence_transformer_repo_ids
from ..hub_checkpoints import HUB_CHECKPOINT_DIR, HubCheckpointCallback, download_hub_checkpoint, resolve_repo_id
from ..matrix_rows import MatrixRows
from ..modelcard import save_model_card
from ..modelcard_callback import ModelCardCallback, card_step
from ..modeling_cascade import check_cascade_folder
from ..offline import HubUnreachableError, hub_is_reachable
from ..ranking import (
    DIMS_TRADEOFF_FILE,
    EVAL_RESULTS_FILE,
    EvaluationResults,
    evaluate_cascade,
)
from ..resume import (
    RunFingerprintCallback,
    check_checkpoint,
    check_checkpoint_matches,
    check_run_fingerprint,
    checkpoint_step,
    last_complete_checkpoint,
    run_fingerprint,
    whole_run_train_loss,
)
from ..trainer import (
    LEARNING_CURVE_FILE,
    CascadeTrainer,
    EpochLogCallback,
    LossHistory,
    RankingEarlyStoppingCallback,
    embeddings_dataset,
    split_embeddings,
)
from .arguments import (
    CascadeTrainingArguments,
    DataArguments,
    ModelArguments,
    ModelCardArguments,
    resolve_target_dims,
)
from .card_facts import record_run_facts
from .cli_utils import CommandParser, parse_command_line, run_command
from .teacher_embeddings import load_teacher_embeddings


logger = transformers.utils.logging.get_logger(__name__)

ALL_RESULTS_FILE = "all_results.json"
BEST_MODEL_DIR = "best_model"
FINAL_MODEL_DIR = "final_model"
# The config fields a resumed checkpoint must share with this run, each with what sets it.
CONFIG_FLAGS = {
    "input_dim": "the dim of the teacher embeddings",
    "target_dims": "--target_dims",
    "strategy": "--cascade_strategy",
    "head_type": "--head_type",
    "mlp_hidden_dim": "--mlp_hidden_dim",
    "similarity_loss_weight": "--similarity_loss_weight",
    "kl_loss_weight": "--kl_loss_weight",
    "topk_loss_weight": "--topk_loss_weight",
    "kl_temperature": "--kl_temperature",
    "topk_neighbors": "--topk_neighbors",
}
RUN_OUTPUTS = (
    BEST_MODEL_DIR,
    FINAL_MODEL_DIR,
    "learning_curve.png",
    ALL_RESULTS_FILE,
    "train_results.json",
    EVAL_RESULTS_FILE,
    DIMS_TRADEOFF_FILE,
)


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, CascadeTrainingArguments, ModelCardArguments]:
    """Parse the command line (or a single `.json` file of arguments) into the four argument dataclasses."""
    parser = CommandParser((ModelArguments, DataArguments, CascadeTrainingArguments, ModelCardArguments))
    return parse_command_line(parser, argv)


class SameSecondCheckpointsFilter(logging.Filter):
    """Drops transformers' "mtime may not be reliable on this filesystem" warning.

    Before removing old checkpoints, the Trainer sorts them by modification time and, when all were written within one
    second, warns and sorts them by step number instead. A small corpus's epochs take well under a second on any file
    system (the quickstart's do), so the warning would blame the file system for a correct ordering.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("mtime may not be reliable")


def setup_logging(training_args: CascadeTrainingArguments) -> None:
    """One log format on stdout for this package, transformers and datasets.

    The cascade's own progress is logged at INFO on the main process (WARNING on replicas); transformers and datasets
    follow `--log_level` / `--log_level_replica` (warnings only by default, `--log_level info` shows the Trainer's).
    Progress bars show on the main process only.
    """
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    library_level = training_args.get_process_log_level()
    package_level = logging.INFO if training_args.should_log else logging.WARNING
    if training_args.log_level != "passive" and training_args.should_log:
        package_level = library_level
    logging.getLogger("modeling_cascade").setLevel(package_level)
    transformers.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    datasets.utils.logging.set_verbosity(library_level)
    checkpoint_sorting = logging.getLogger("transformers.trainer_utils")
    if not any(isinstance(existing, SameSecondCheckpointsFilter) for existing in checkpoint_sorting.filters):
        checkpoint_sorting.addFilter(SameSecondCheckpointsFilter())
    if not training_args.should_log:  # replicas of a multi-process run: one set of progress bars is enough
        transformers.utils.logging.disable_progress_bar()
        datasets.utils.disable_progress_bars()


def download_hub_resume(training_args: CascadeTrainingArguments) -> None:
    """For `--resume_from_checkpoint last-checkpoint` where no such local folder exists: download the checkpoint the
    run pushed with `--hub_strategy checkpoint` from its repo (`--hub_model_id`, or the output_dir's name under the
    token's account) into `output_dir`, and resume from there, as from a local checkpoint.

    The process that writes `output_dir` downloads (the main one, or each machine's with `--save_on_each_node`) while
    the others wait.

    Raises:
        `ValueError` when no repo is named, or it holds no `last-checkpoint/`; [`HubUnreachableError`] offline.
    """
    if training_args.resume_from_checkpoint != HUB_CHECKPOINT_DIR or os.path.isdir(HUB_CHECKPOINT_DIR):
        return
    if not training_args.hub_model_id and not training_args.push_to_hub:
        raise ValueError(
            f"--resume_from_checkpoint {HUB_CHECKPOINT_DIR}: there is no local folder {HUB_CHECKPOINT_DIR!r}, and no Hub "
            "repo to download it from: name the repo the run pushed its checkpoints to with --hub_model_id, or give a "
            "local checkpoint-N/ folder."
        )
    if not hub_is_reachable():
        raise HubUnreachableError(
            f"--resume_from_checkpoint {HUB_CHECKPOINT_DIR} downloads the checkpoint from the Hugging Face Hub, which "
            "cannot be reached (or HF_HUB_OFFLINE is set): resume from a local checkpoint-N/ folder instead."
        )
    output_dir = training_args.output_dir
    checkpoint = os.path.join(output_dir, HUB_CHECKPOINT_DIR)
    with training_args.main_process_first(local=training_args.save_on_each_node, desc="download last-checkpoint"):
        if training_args.should_save:
            token = training_args.hub_token
            repo_id = resolve_repo_id(training_args.hub_model_id or Path(output_dir).absolute().name, token)
            checkpoint = download_hub_checkpoint(repo_id, output_dir, token, training_args.hub_revision)
    training_args.resume_from_checkpoint = checkpoint


def prepare_output_dir(training_args: CascadeTrainingArguments) -> str | None:
    """Decide how to use `output_dir`: start fresh, resume an unfinished run, or refuse to clobber a finished one.

    Returns:
        The checkpoint to resume from, or `None`.
    """
    output_dir = training_args.output_dir
    if training_args.resume_from_checkpoint:
        check_checkpoint(training_args.resume_from_checkpoint)
    if not os.path.isdir(output_dir):
        return training_args.resume_from_checkpoint
    previous_outputs = [name for name in RUN_OUTPUTS if os.path.exists(os.path.join(output_dir, name))]
    checkpoints = [name for name in os.listdir(output_dir) if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-")]
    if training_args.overwrite_output_dir:
        if training_args.should_save:
            for name in previous_outputs + checkpoints:
                path = os.path.join(output_dir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            if previous_outputs or checkpoints:
                logger.warning(
                    f"--overwrite_output_dir: removed {sorted(previous_outputs + checkpoints)} from {output_dir}."
                )
        return training_args.resume_from_checkpoint
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if FINAL_MODEL_DIR in previous_outputs:
        raise ValueError(
            f"Output directory {output_dir!r} already holds a finished run ({FINAL_MODEL_DIR}/ exists). "
            "Pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    last_checkpoint = last_complete_checkpoint(output_dir)
    if last_checkpoint is not None:
        logger.info(f"Resuming the unfinished run in {output_dir} from {last_checkpoint}.")
    return last_checkpoint


def build_model(
    model_args: ModelArguments, input_dim: int, train_embeddings: MatrixRows, teacher: dict | None = None
) -> CascadeModel:
    """Build the cascade for an `input_dim` teacher and start every head at the PCA of the training rows.

    `teacher` holds the teacher's `CascadeConfig` fields (`teacher_model`, `teacher_revision`, prefixes, pooling,
    max_length), recorded so the cascade can embed new text as its training data was embedded.
    """
    target_dims = resolve_target_dims(model_args.target_dim_list, input_dim)
    config = CascadeConfig(
        **(teacher or {}),
        input_dim=input_dim,
        target_dims=target_dims,
        strategy=model_args.cascade_strategy,
        head_type=model_args.head_type,
        mlp_hidden_dim=model_args.mlp_hidden_dim,
        similarity_loss_weight=model_args.similarity_loss_weight,
        kl_loss_weight=model_args.kl_loss_weight,
        topk_loss_weight=model_args.topk_loss_weight,
        kl_temperature=kl_temperatures(model_args, target_dims),
        topk_neighbors=model_args.topk_neighbors,
    )
    logger.info(f"Training cascade distiller for dimensions: {config.target_dims} ({config.strategy} strategy)")
    model = CascadeModel(config)
    model.init_from_pca(train_embeddings)
    dims = config.target_dims
    sources = [input_dim, *dims[:-1]] if config.strategy == "chained" else [input_dim] * len(dims)
    for source, dim in zip(sources, dims, strict=True):
        logger.info(f"Added distiller: {source} -> {dim}")
    if config.strategy == "nested":
        logger.info(f"Nested heads: dims {config.target_dims} are prefixes of the {config.target_dims[0]}-dim output")
    return model


def kl_temperatures(model_args: ModelArguments, target_dims: list[int]) -> list[float] | None:
    """`--kl_temperature` for the dims kept (one per dim of `target_dims`), or `None` for the per-dim default."""
    by_dim = model_args.kl_temperature_by_dim
    return None if by_dim is None else [by_dim[dim] for dim in target_dims]


def head_selection_callback(
    training_args: CascadeTrainingArguments, config: CascadeConfig
) -> HeadSelectionCallback | None:
    """The per-head selection of `best_model/`, or `None` when it is off (`--per_head_selection false`, a
    `--metric_for_best_model` that not every dim reports, or no evaluations)."""
    metric = (training_args.metric_for_best_model or "").removeprefix("eval_")
    if not training_args.per_head_selection or metric not in SELECTION_METRICS or training_args.eval_strategy == "no":
        return None
    return HeadSelectionCallback(config.target_dims, metric, joint=config.strategy != "direct")


def save_models(
    trainer: Trainer, output_dir: str, selection: HeadSelectionCallback | None = None
) -> CascadeModel | None:
    """Write `final_model/` (the model after the last epoch) and `best_model/` (each head at its own best evaluation
    when `selection` is given, else the best checkpoint's), each with its model card, as safetensors; a kill leaves no
    half-saved folder.

    Returns:
        The best model on the main process, `None` on the others.
    """
    if not trainer.is_world_process_zero():
        return None
    with atomic_directory(os.path.join(output_dir, FINAL_MODEL_DIR)) as folder:
        trainer.model.save_pretrained(folder)
    best_checkpoint = trainer.state.best_model_checkpoint
    best_model = trainer.model
    if selection is not None and selection.weights:
        best_model = copy.deepcopy(trainer.model)
        selection.apply(best_model)
        best_checkpoint = "each head's best evaluation"
        chosen = selection.selection()
        for dim, info in chosen.items():
            source = PCA_START if info["step"] == 0 else f"epoch {info['epoch']:.2f} (step {info['step']})"
            logger.info(f"Head {dim}: {source}, validation {selection.metric} {info['value']:.4f}")
        with card_step("record the head selection in best_model/'s card"):
            best_model.model_card_data = copy.deepcopy(trainer.model.model_card_data)
            best_model.model_card_data.model_step = None
            best_model.model_card_data.head_selection = {"metric": selection.metric, "joint": selection.joint,
                                                         "heads": chosen}  # fmt: skip
    elif best_checkpoint:
        best_model = CascadeModel.from_pretrained(best_checkpoint)
        with card_step("copy the card facts to best_model/"):
            best_model.model_card_data = copy.deepcopy(trainer.model.model_card_data)
            best_model.model_card_data.model_step = trainer.state.best_global_step
    with atomic_directory(os.path.join(output_dir, BEST_MODEL_DIR)) as folder:
        best_model.save_pretrained(folder)
    logger.info(
        f"Saved {FINAL_MODEL_DIR}/ and {BEST_MODEL_DIR}/ (from {best_checkpoint or 'the final epoch'}) to {output_dir}"
    )
    return best_model


def save_model_cards(
    trainer: Trainer,
    best_model: CascadeModel,
    best_results: EvaluationResults,
    train_embeddings: MatrixRows,
    val_embeddings: MatrixRows,
) -> None:
    """Write the model cards of `best_model/` and `final_model/` again, now with the learning curve and each model's
    own per-dim results; a failure is logged as a warning and the models stay as saved."""
    output_dir, state = trainer.args.output_dir, trainer.state
    learning_curve = os.path.join(output_dir, LEARNING_CURVE_FILE)
    final = copy.deepcopy(trainer.model.model_card_data)
    final.model_step = state.global_step
    final.model_id, final.sentence_transformer_repos = None, {}  # final_model/ is neither pushed nor exported
    final.evaluation = None  # set below, from final_model/'s own results
    best = best_model.model_card_data
    with card_step("record the results of best_model/"):
        best.set_evaluation(best_results)
    best_images = [learning_curve, os.path.join(output_dir, DIMS_TRADEOFF_FILE)]
    save_model_card(os.path.join(output_dir, BEST_MODEL_DIR), best, images=best_images)
    final_dir = os.path.join(output_dir, FINAL_MODEL_DIR)
    with card_step("evaluate final_model/ for its card"):
        final_results = best_results
        if best.model_step != state.global_step:
            final_results = evaluate_cascade(trainer.model, train_embeddings, val_embeddings, seed=trainer.args.seed)
        final_results.plot(final_dir)
        final.set_evaluation(final_results)
    save_model_card(final_dir, final, images=[learning_curve])


def run_settings(data_args: DataArguments, training_args: CascadeTrainingArguments) -> dict[str, tuple[object, str]]:
    """The settings that change what a run trains, each with the flag that sets it; recorded in its checkpoints.

    The number of epochs is left out: an unfinished run may be resumed with another `--epochs`, as any Trainer run can.
    """
    scheduler = training_args.lr_scheduler_type
    return {
        "seed": (training_args.seed, "--seed"),
        "val_split": (data_args.val_split, "--val_split"),
        "learning_rate": (training_args.learning_rate, "--learning_rate"),
        "per_device_train_batch_size": (training_args.per_device_train_batch_size, "--train_batch_size"),
        "gradient_accumulation_steps": (training_args.gradient_accumulation_steps, "--gradient_accumulation_steps"),
        "weight_decay": (training_args.weight_decay, "--weight_decay"),
        "lr_scheduler_type": (getattr(scheduler, "value", scheduler), "--lr_scheduler_type"),  # the enum's string
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the whole distillation; returns the metrics written to `all_results.json`."""
    model_args, data_args, training_args, card_args = parse_args(argv)
    setup_logging(training_args)
    if training_args.push_sentence_transformers and model_args.head_type != "linear":
        raise ValueError(
            f"--push_sentence_transformers exports linear heads only (each as a Dense module); --head_type "
            f"{model_args.head_type} has none: drop one of the two."
        )
    if training_args.push_sentence_transformers and data_args.input_file and not model_args.embedding_model:
        raise ValueError(
            "--push_sentence_transformers publishes models that embed texts, so they need the teacher: with "
            "--input_file, name the teacher that made the embeddings with --embedding_model."
        )
    download_hub_resume(training_args)
    checkpoint = prepare_output_dir(training_args)
    if checkpoint is not None:  # refuse a foreign checkpoint, or pickled weights, before the Trainer opens it
        check_cascade_folder(Path(checkpoint))
    hub_target = prepare_hub_push(training_args)  # before any work: a bad token or repo fails now

    embeddings, teacher = load_teacher_embeddings(model_args, data_args, training_args)
    train_embeddings, val_embeddings = split_embeddings(embeddings, data_args.val_split, training_args.seed)
    logger.info(f"Split: {len(train_embeddings)} training rows, {len(val_embeddings)} validation rows")
    training_args.fit_batch_size_to(len(train_embeddings))
    training_args.fit_schedule_to(len(train_embeddings))

    set_seed(training_args.seed)
    model = build_model(model_args, embeddings.shape[1], train_embeddings, teacher)
    settings = run_settings(data_args, training_args)
    fingerprint = run_fingerprint(embeddings, settings)
    if checkpoint is not None:
        config = model.config
        check_checkpoint_matches(
            checkpoint, {name: (getattr(config, name), flag) for name, flag in CONFIG_FLAGS.items()}
        )
        check_run_fingerprint(
            checkpoint, fingerprint["embeddings"], settings, "--input_file, or the corpus and teacher flags"
        )
    hub_repo_id = hub_target.repo_id if hub_target is not None else None
    record_run_facts(model.model_card_data, model_args, data_args, training_args, card_args, hub_repo_id)
    if training_args.push_sentence_transformers:
        model.model_card_data.sentence_transformer_repos = sentence_transformer_repo_ids(hub_repo_id, model.config)
    callbacks = [EpochLogCallback(), ModelCardCallback(), RunFingerprintCallback(fingerprint)]
    selection = head_selection_callback(training_args, model.config)
    if selection is not None:
        if checkpoint is not None:
            selection.restore(checkpoint)
        callbacks.append(selection)
    if training_args.early_stopping_patience:
        early_stopping = RankingEarlyStoppingCallback(
            training_args.early_stopping_patience, training_args.early_stopping_metric
        )
        if checkpoint is not None:
            early_stopping.restore(checkpoint)
        callbacks.append(early_stopping)
    if hub_target is not None and training_args.hub_strategy != HubStrategy.END:
        callbacks.append(HubCheckpointCallback(hub_target, training_args.hub_strategy, training_args.hub_always_push))
    trainer = CascadeTrainer(
        model=model,
        args=training_args,
        train_dataset=embeddings_dataset(train_embeddings),
        eval_dataset=embeddings_dataset(val_embeddings),
        callbacks=callbacks,
    )

    # The PCA start competes in each head's selection: evaluated at step 0 (a resumed run has that evaluation already).
    if selection is not None and checkpoint is None:
        training_args.eval_on_start = True
    logger.info("Starting training...")
    resumed_step = checkpoint_step(checkpoint)
    try:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
    except pickle.UnpicklingError as error:  # the Trainer's torch.load(weights_only=True) refused a checkpoint file
        lines = str(error).splitlines() or [""]
        reason = next((line.strip() for line in lines if "Unsupported global" in line), lines[0])
        raise ValueError(
            f"Checkpoint {checkpoint!r} holds a state file that a Trainer checkpoint never holds ({reason}); it was not "
            "loaded. Resume from your own checkpoint, or pass --overwrite_output_dir to start over."
        ) from None
    best_model = save_models(trainer, training_args.output_dir, selection)
    history = LossHistory.from_log_history(trainer.state.log_history)

    metrics = dict(train_result.metrics)
    metrics["train_loss"] = whole_run_train_loss(trainer.state, metrics["train_loss"], resumed_step)
    if trainer.is_world_process_zero():
        logger.info("Evaluating model...")
        results = evaluate_cascade(best_model, train_embeddings, val_embeddings, seed=training_args.seed)
        logger.info("Training complete!")
        history.log_summary()
        results.log()
        history.plot(training_args.output_dir)
        results.save(training_args.output_dir)
        results.plot(training_args.output_dir)
        metrics.update(history.summary())
        metrics.update(results.flat_metrics())
        if selection is not None:
            metrics.update({f"dim_{dim}_selected_step": info["step"] for dim, info in selection.selection().items()})
        with atomic_path(os.path.join(training_args.output_dir, ALL_RESULTS_FILE)) as temporary:
            temporary.write_text(json.dumps(metrics, indent=4, sort_keys=True) + "\n")  # as Trainer.save_metrics
        save_model_cards(trainer, best_model, results, train_embeddings, val_embeddings)
        if hub_target is not None:
            push_model_folder(os.path.join(training_args.output_dir, BEST_MODEL_DIR), hub_target)
            if training_args.push_sentence_transformers:
                push_sentence_transformers(best_model, hub_target)
    return metrics


def cli() -> None:
    """Console entry point: a user error is one `error: ...` line on stderr and exit status 2."""
    run_command(main)
