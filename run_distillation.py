#!/usr/bin/env python
"""Distil a text-embedding model into a dimensional cascade with the Hugging Face Trainer.

Train from pre-generated teacher embeddings (rows x dim, `.npy`):

    python run_distillation.py --input_file data/embeddings/common_corpus_sample.npy \
        --output_dir models/distillation --target_dims 768,512,256,128,64,32 --cascade_strategy direct

The same command runs on one or many devices through Accelerate:

    accelerate launch --config_file accelerate_config.yaml run_distillation.py --input_file ... --output_dir ...

Every `TrainingArguments` flag works (`--learning_rate`, `--bf16`, `--resume_from_checkpoint`, ...); `--epochs` and
`--train_batch_size` are aliases of `--num_train_epochs` and `--per_device_train_batch_size`. A single `.json`
argument is read as a file holding all arguments.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

import datasets
import numpy as np
import transformers
from transformers import HfArgumentParser, Trainer, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from modeling_cascade import CascadeConfig, CascadeModel
from modeling_cascade.arguments import (
    CascadeTrainingArguments,
    DataArguments,
    ModelArguments,
    resolve_target_dims,
)
from modeling_cascade.evaluation import evaluate_cascade, log_results
from modeling_cascade.file_utils import load_embeddings
from modeling_cascade.trainer import EpochLogCallback, LossHistory, embeddings_dataset


logger = transformers.utils.logging.get_logger("modeling_cascade.run_distillation")

BEST_MODEL_DIR = "best_model"
FINAL_MODEL_DIR = "final_model"
RUN_OUTPUTS = (BEST_MODEL_DIR, FINAL_MODEL_DIR, "learning_curve.png", "all_results.json", "train_results.json")


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, CascadeTrainingArguments]:
    """Parse the command line (or a single `.json` file of arguments) into the three argument dataclasses."""
    parser = HfArgumentParser((ModelArguments, DataArguments, CascadeTrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args: CascadeTrainingArguments) -> None:
    """One log format on stdout for this package, transformers and datasets.

    The cascade's own progress is logged at INFO on the main process (WARNING on replicas); transformers and datasets
    follow `--log_level` / `--log_level_replica` (warnings only by default, `--log_level info` shows the Trainer's).
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


def prepare_output_dir(training_args: CascadeTrainingArguments) -> str | None:
    """Decide how to use `output_dir`: start fresh, resume an unfinished run, or refuse to clobber a finished one.

    Returns:
        The checkpoint to resume from, or `None`.
    """
    output_dir = training_args.output_dir
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
                logger.warning(f"--overwrite_output_dir: removed {sorted(previous_outputs + checkpoints)} from {output_dir}.")
        return training_args.resume_from_checkpoint
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if FINAL_MODEL_DIR in previous_outputs:
        raise ValueError(
            f"Output directory {output_dir!r} already holds a finished run ({FINAL_MODEL_DIR}/ exists). "
            "Pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    last_checkpoint = get_last_checkpoint(output_dir)
    if last_checkpoint is not None:
        logger.info(f"Resuming the unfinished run in {output_dir} from {last_checkpoint}.")
    return last_checkpoint


def load_teacher_embeddings(data_args: DataArguments) -> np.ndarray:
    """The teacher embeddings to distil: the `--input_file` matrix."""
    if data_args.input_file is None:
        raise ValueError("No embeddings to train on: pass --input_file path/to/embeddings.npy (rows x dim).")
    embeddings = load_embeddings(data_args.input_file)
    logger.info(f"Loaded embeddings: {embeddings.shape} from {data_args.input_file}")
    return embeddings


def split_embeddings(
    embeddings: np.ndarray, val_split: float, seed: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle once with `seed` and hold out `val_split` of the rows for validation.

    Raises:
        `ValueError` when either part is too small: validation needs two rows, training one full batch.
    """
    order = np.random.default_rng(seed).permutation(len(embeddings))
    val_size = int(round(len(embeddings) * val_split))
    train_size = len(embeddings) - val_size
    if val_size < 2 or train_size < batch_size:
        raise ValueError(
            f"{len(embeddings)} rows are too few for --val_split {val_split} and --train_batch_size {batch_size}: "
            f"that leaves {train_size} training rows (need at least one batch of {batch_size}) and {val_size} "
            "validation rows (need at least 2). Use more rows or a smaller --train_batch_size."
        )
    return embeddings[np.sort(order[val_size:])], embeddings[np.sort(order[:val_size])]


def build_model(model_args: ModelArguments, input_dim: int, train_embeddings: np.ndarray) -> CascadeModel:
    """Build the cascade for an `input_dim` teacher and start every head at the PCA of the training rows."""
    target_dims = resolve_target_dims(model_args.target_dim_list, input_dim)
    config = CascadeConfig(
        input_dim=input_dim,
        target_dims=target_dims,
        strategy=model_args.cascade_strategy,
        head_type=model_args.head_type,
        mlp_hidden_dim=model_args.mlp_hidden_dim,
        similarity_loss_weight=model_args.similarity_loss_weight,
        kl_loss_weight=model_args.kl_loss_weight,
        topk_loss_weight=model_args.topk_loss_weight,
        kl_temperature=model_args.kl_temperature,
        topk_neighbors=model_args.topk_neighbors,
    )
    logger.info(f"Training cascade distiller for dimensions: {config.target_dims} ({config.strategy} strategy)")
    model = CascadeModel(config)
    model.init_from_pca(train_embeddings)
    dims = config.target_dims
    sources = [input_dim, *dims[:-1]] if config.strategy == "chained" else [input_dim] * len(dims)
    for source, dim in zip(sources, dims):
        logger.info(f"Added distiller: {source} -> {dim}")
    if config.strategy == "nested":
        logger.info(f"Nested heads: dims {config.target_dims} are prefixes of the {config.target_dims[0]}-dim output")
    return model


def save_models(trainer: Trainer, output_dir: str) -> None:
    """Write `final_model/` (the model after the last epoch) and `best_model/` (lowest val_loss) with safetensors."""
    if not trainer.is_world_process_zero():
        return
    trainer.model.save_pretrained(os.path.join(output_dir, FINAL_MODEL_DIR))
    best_checkpoint = trainer.state.best_model_checkpoint
    best_model = CascadeModel.from_pretrained(best_checkpoint) if best_checkpoint else trainer.model
    best_model.save_pretrained(os.path.join(output_dir, BEST_MODEL_DIR))
    logger.info(f"Saved {FINAL_MODEL_DIR}/ and {BEST_MODEL_DIR}/ (from {best_checkpoint or 'the final epoch'}) to {output_dir}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the whole distillation; returns the metrics written to `all_results.json`."""
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    checkpoint = prepare_output_dir(training_args)

    embeddings = load_teacher_embeddings(data_args)
    train_embeddings, val_embeddings = split_embeddings(
        embeddings, data_args.val_split, training_args.seed, training_args.per_device_train_batch_size
    )
    logger.info(f"Split: {len(train_embeddings)} training rows, {len(val_embeddings)} validation rows")

    set_seed(training_args.seed)
    model = build_model(model_args, embeddings.shape[1], train_embeddings)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=embeddings_dataset(train_embeddings),
        eval_dataset=embeddings_dataset(val_embeddings),
        callbacks=[EpochLogCallback()],
    )

    logger.info("Starting training...")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    save_models(trainer, training_args.output_dir)
    history = LossHistory.from_log_history(trainer.state.log_history)

    metrics = dict(train_result.metrics)
    if trainer.is_world_process_zero():
        logger.info("Evaluating model...")
        best_model = CascadeModel.from_pretrained(os.path.join(training_args.output_dir, BEST_MODEL_DIR))
        results = evaluate_cascade(best_model, val_embeddings, seed=training_args.seed)
        logger.info("Training complete!")
        history.log_summary()
        log_results(results)
        history.plot(training_args.output_dir)
        metrics.update(history.summary())
        for dim, dim_metrics in results.items():
            metrics.update({f"dim_{dim}_{name}": value for name, value in dim_metrics.items()})
        trainer.save_metrics("all", metrics, combined=False)
    return metrics


if __name__ == "__main__":
    main()
