"""Command-line arguments of `run_distillation.py`, as dataclasses for `HfArgumentParser`.

`--epochs` and `--train_batch_size` are aliases of the Trainer's `--num_train_epochs` and
`--per_device_train_batch_size` (the names our users know from the guide); every other `TrainingArguments` flag works
as usual, with defaults suited to training small heads: evaluate and save each epoch and keep the best, on a schedule
that fits the corpus size (see [`modeling_cascade.schedule`]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from transformers.utils import logging

from ..configuration_cascade import HEAD_TYPES, STRATEGIES
from ..data import COLLECTIONS, COMMON_CORPUS, DEFAULT_SHUFFLE_BUFFER_SIZE, PYTHON_DOCS
from ..embeddings import SHARD_SIZE
from ..schedule import DEFAULT_EPOCHS, EPOCH_SCHEDULE_ROWS, step_schedule
from ..teacher import DEFAULT_TEACHER, OFFLINE_TEACHER
from .cli_utils import split_list


logger = logging.get_logger(__name__)

DEFAULT_TARGET_DIMS = "768,512,256,128,64,32"
DEFAULT_TRAIN_BATCH_SIZE = 1024
# Evaluations without a better --early_stopping_metric before a run on the step schedule stops.
DEFAULT_EARLY_STOPPING_PATIENCE = 10


def parse_target_dims(text: str) -> list[int]:
    """Parse `--target_dims` ("512,256,128") into a list of distinct positive ints, largest first.

    Raises:
        `ValueError` naming the offending entry.
    """
    entries = split_list(str(text))
    if not entries:
        raise ValueError("--target_dims is empty: give comma-separated dims, e.g. --target_dims 256,128,64,32.")
    dims = []
    for entry in entries:
        try:
            dim = int(entry)
        except ValueError:
            raise ValueError(
                f"--target_dims entry {entry!r} is not an integer (got --target_dims {text!r})."
            ) from None
        if dim <= 0:
            raise ValueError(f"--target_dims entry {dim} must be a positive integer (got --target_dims {text!r}).")
        if dim in dims:
            raise ValueError(f"--target_dims lists {dim} twice (got --target_dims {text!r}).")
        dims.append(dim)
    return sorted(dims, reverse=True)


def parse_kl_temperature(text: str, target_dims: str) -> dict[int, float] | None:
    """Parse `--kl_temperature` into a temperature per `--target_dims` entry, or `None` for `auto`.

    Raises:
        `ValueError` naming the offending entry, or the count mismatch with `--target_dims`.
    """
    if str(text).strip().lower() == "auto":
        return None
    entries = split_list(str(text))
    temperatures = []
    for entry in entries:
        try:
            temperature = float(entry)
        except ValueError:
            raise ValueError(
                f"--kl_temperature entry {entry!r} is not a number (got --kl_temperature {text!r}); give a number, "
                "comma-separated numbers (one per --target_dims entry) or auto."
            ) from None
        if not temperature > 0:
            raise ValueError(f"--kl_temperature entry {entry!r} must be > 0 (got --kl_temperature {text!r}).")
        temperatures.append(temperature)
    dims = [int(entry) for entry in split_list(str(target_dims))]  # --target_dims order, checked by parse_target_dims
    if len(temperatures) == 1:
        return dict.fromkeys(dims, temperatures[0])
    if len(temperatures) != len(dims):
        raise ValueError(
            f"--kl_temperature {text!r} gives {len(temperatures)} temperatures for the {len(dims)} dims of "
            f"--target_dims {target_dims!r}: give one temperature, or one per target dim."
        )
    return dict(zip(dims, temperatures, strict=True))


def resolve_target_dims(dims: list[int], input_dim: int) -> list[int]:
    """Drop dims that are not smaller than the teacher's `input_dim` (with a warning); error if none is left."""
    dropped = [dim for dim in dims if dim >= input_dim]
    kept = [dim for dim in dims if dim < input_dim]
    if dropped:
        logger.warning(
            f"Dropping target dims {dropped}: they are not smaller than the {input_dim}-dim teacher embeddings."
        )
    if not kept:
        raise ValueError(
            f"No target dim is smaller than the teacher's {input_dim} dims (--target_dims {dims}); "
            f"choose dims below {input_dim}, e.g. {input_dim // 2},{input_dim // 4}."
        )
    return kept


@dataclass
class ModelArguments:
    """What cascade to build (target dims, strategy, heads, losses) and the teacher it distils."""

    target_dims: str = field(
        default=DEFAULT_TARGET_DIMS,
        metadata={
            "help": "Comma-separated output dims; dims not below the teacher's size are dropped with a warning."
        },
    )
    cascade_strategy: str = field(
        default="direct",
        metadata={"help": f"How heads are laid out: one of {', '.join(STRATEGIES)}.", "choices": list(STRATEGIES)},
    )
    head_type: str = field(default="linear", metadata={"help": "Head architecture.", "choices": list(HEAD_TYPES)})
    mlp_hidden_dim: int | None = field(
        default=None, metadata={"help": "Hidden size of MLP heads (default: the teacher's dim)."}
    )
    similarity_loss_weight: float = field(
        default=0.0, metadata={"help": "Weight of the MSE between batch cosine-similarity matrices."}
    )
    kl_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the KL term between softmax(similarity / kl_temperature) rows."}
    )
    topk_loss_weight: float = field(
        default=0.0, metadata={"help": "Weight of the MSE on each row's teacher top-k neighbours."}
    )
    kl_temperature: str = field(
        default="auto",
        metadata={
            "help": "Temperature of the KL term: one for every dim (0.05), one per --target_dims entry in the same "
            "order (0.1,0.1,0.05,0.05), or auto (0.1 for dims >= 128, 0.05 below)."
        },
    )
    topk_neighbors: int = field(default=10, metadata={"help": "Neighbours per row in the top-k term."})
    embedding_model: str | None = field(
        default=None,
        metadata={
            "help": f"Teacher: a sentence-transformers or transformers model (Hub id or local folder) or a packaged "
            f"teacher ({OFFLINE_TEACHER}). Default {DEFAULT_TEACHER}; without Hub access, {OFFLINE_TEACHER} when "
            "installed."
        },
    )
    embedding_model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the teacher."})
    embedding_dim: int | None = field(
        default=None, metadata={"help": "Expected teacher output size; checked against the real one."}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Teacher token limit (longer documents are truncated); default: the model's."}
    )
    batch_size: int = field(default=32, metadata={"help": "Documents per teacher forward pass when embedding."})
    pooling: str | None = field(
        default=None,
        metadata={
            "help": "Teacher pooling; default: the model's own (mean for a plain model).",
            "choices": ["mean", "cls"],
        },
    )
    query_prefix: str | None = field(
        default=None,
        metadata={"help": "Prepended to queries (recorded for search); default: the teacher's own query prompt."},
    )
    document_prefix: str | None = field(
        default=None,
        metadata={"help": "Prepended to every document before embedding; default: the teacher's document prompt."},
    )
    device: str = field(
        default="auto",
        metadata={"help": "Teacher device: auto (this process's Trainer device), cuda, cuda:N, mps or cpu."},
    )

    def __post_init__(self) -> None:
        self.target_dim_list = parse_target_dims(self.target_dims)
        self.kl_temperature_by_dim = parse_kl_temperature(self.kl_temperature, self.target_dims)
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"--embedding_dim must be a positive integer, got {self.embedding_dim}.")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"--max_length must be a positive integer, got {self.max_length}.")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be a positive integer, got {self.batch_size}.")


@dataclass
class DataArguments:
    """Where the teacher embeddings come from (a corpus to embed, or a `.npy` file) and how they are split."""

    input_file: str | None = field(
        default=None,
        metadata={"help": "Pre-generated teacher embeddings (.npy, rows x dim): skips the corpus and the teacher."},
    )
    memory_map_input: bool | None = field(
        default=None,
        metadata={
            "help": "Read --input_file, or the cached embeddings of a corpus (assembled into one .npy in the cache), a "
            "batch of rows at a time instead of loading them into RAM (default: above 1 GiB), so a matrix larger than "
            "RAM trains."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": f"Corpus: a Hub dataset id, a local .jsonl/.parquet/.csv/.txt file or folder of them, or "
            f"{PYTHON_DOCS} (the built-in Python documentation corpus). Default {COMMON_CORPUS} (streamed); without "
            f"Hub access, {PYTHON_DOCS}."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of a Hub dataset."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Revision of a Hub dataset."})
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    text_column: str = field(default="text", metadata={"help": "Column holding the documents."})
    collection: str | None = field(
        default=None, metadata={"help": "Keep one Common Corpus collection.", "choices": list(COLLECTIONS)}
    )
    languages: str | None = field(
        default=None, metadata={"help": "Keep these comma-separated language codes, e.g. en,fr (column 'language')."}
    )
    min_token_count: int = field(
        default=0, metadata={"help": "Keep documents with at least this many tokens (column 'token_count')."}
    )
    num_samples: int = field(
        default=10_000, metadata={"help": "Documents to embed, drawn with --seed from those that pass the filters."}
    )
    shuffle_buffer_size: int = field(
        default=DEFAULT_SHUFFLE_BUFFER_SIZE,
        metadata={
            "help": "The --num_samples documents are drawn from the first num_samples + shuffle_buffer_size "
            "documents that pass the filters (a streamed corpus is read no further)."
        },
    )
    save_embeddings: str | None = field(
        default=None, metadata={"help": "Also write the teacher embeddings to this .npy file (rows x dim)."}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where filtered corpora and teacher embeddings are cached (default: the datasets cache)."},
    )
    embedding_shard_size: int = field(
        default=SHARD_SIZE,
        metadata={
            "help": "Most documents per cached shard of teacher embeddings: a killed run keeps its finished shards, "
            "and the processes of a multi-process run embed different shards."
        },
    )
    val_split: float = field(
        default=0.1, metadata={"help": "Share of rows held out for validation (val_loss and the final evaluation)."}
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.val_split < 1.0:
            raise ValueError(f"--val_split must be between 0 and 1 (exclusive), got {self.val_split}.")
        if self.num_samples < 1:
            raise ValueError(f"--num_samples must be a positive integer, got {self.num_samples}.")
        if self.shuffle_buffer_size < 0:
            raise ValueError(f"--shuffle_buffer_size must be >= 0, got {self.shuffle_buffer_size}.")
        if self.min_token_count < 0:
            raise ValueError(f"--min_token_count must be >= 0, got {self.min_token_count}.")
        if self.embedding_shard_size < 1:
            raise ValueError(f"--embedding_shard_size must be a positive integer, got {self.embedding_shard_size}.")
        if self.save_embeddings is not None and not self.save_embeddings.endswith(".npy"):
            raise ValueError(f"--save_embeddings must name a .npy file, got {self.save_embeddings!r}.")
        self.language_list = tuple(split_list(self.languages))
        if self.languages is not None and not self.language_list:
            raise ValueError(f"--languages {self.languages!r} names no language; give codes such as en,fr.")


def _accelerator_available() -> bool:
    """Whether torch sees a GPU or another accelerator (CUDA, MPS, XPU, ...)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()


@dataclass
class CascadeTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults for cascade heads and the guide's `--epochs` / `--train_batch_size`."""

    output_dir: str | None = field(
        default="models/common_corpus", metadata={"help": "Where checkpoints, models, plots and results go."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over in an output_dir that holds a finished run (its models and checkpoints go)."},
    )
    num_train_epochs: float | None = field(
        default=None,
        metadata={
            "help": f"Number of training epochs (default {DEFAULT_EPOCHS} up to {EPOCH_SCHEDULE_ROWS:,} training rows; "
            "past that, a budget of steps that grows with the square root of the rows: see docs/training.md).",
            "aliases": ["--epochs"],
        },
    )
    per_device_train_batch_size: int | None = field(
        default=None,
        metadata={
            "help": f"Training batch size per device; the losses compare all pairs within a batch (default "
            f"{DEFAULT_TRAIN_BATCH_SIZE}, or all training rows when there are fewer).",
            "aliases": ["--train_batch_size"],
        },
    )
    per_device_eval_batch_size: int | None = field(
        default=None, metadata={"help": "Validation batch size per device (default: the training batch size)."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to compute val_loss."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to write a checkpoint."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log train_loss."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept, the best and the newest among them (older ones are deleted)."}
    )
    metric_for_best_model: str | None = field(
        default="overlap@10",
        metadata={
            "help": "Validation metric that selects best_model/: a ranking metric every dim reports (overlap@10, "
            "full_ranking_ndcg@10) takes each head from its own best evaluation, its PCA start included (see "
            "--per_head_selection); loss, or one dim's metric (dim_64_overlap@10), picks one checkpoint for all heads."
        },
    )
    per_head_selection: bool = field(
        default=True,
        metadata={
            "help": "Take each head of best_model/ from the evaluation (the PCA start included) with its best "
            "--metric_for_best_model; chained and nested heads, which depend on each other, move together. False: "
            "best_model/ is the best checkpoint by the mean over the dims."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without a better --early_stopping_metric; 0: never (default "
            f"{DEFAULT_EARLY_STOPPING_PATIENCE} on the step schedule of a corpus past {EPOCH_SCHEDULE_ROWS:,} "
            "training rows, 0 otherwise)."
        },
    )
    early_stopping_metric: str = field(
        default="overlap@10",
        metadata={
            "help": "Metric that early stopping watches: a ranking metric averaged over the dims (overlap@10, "
            "full_ranking_ndcg@10), one dim's (dim_64_overlap@10), or loss."
        },
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP: look for parameters without gradients (none: every head takes part in every step)."},
    )
    hub_strategy: str = field(
        default="end",
        metadata={
            "help": "With --push_to_hub, what is pushed when: end (best_model/ after training), every_save (also each "
            "checkpoint's model at the repo's root), checkpoint (every_save plus the whole checkpoint in "
            "last-checkpoint/, which --resume_from_checkpoint last-checkpoint resumes from on any machine) or "
            "all_checkpoints (every_save plus each checkpoint in its own checkpoint-N/).",
            "choices": ["end", "every_save", "checkpoint", "all_checkpoints"],
        },
    )
    push_sentence_transformers: bool = field(
        default=False,
        metadata={
            "help": "With --push_to_hub: also publish each dim as a plain sentence-transformers model, in the repo "
            "<hub_model_id>-<dim>d (one repo for a nested cascade); linear heads only."
        },
    )

    def __post_init__(self) -> None:
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False
        if not _accelerator_available():
            # Say so to the Trainer: --bf16 then runs on the CPU, and processes started by torchrun / accelerate launch
            # join one gloo group instead of each training alone.
            self.use_cpu = True
        # Whether the schedule is ours to choose (see fit_schedule_to): neither --epochs nor --max_steps was given.
        self.schedule_is_default = self.num_train_epochs is None and self.max_steps <= 0
        if self.num_train_epochs is None:
            self.num_train_epochs = float(DEFAULT_EPOCHS)
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise ValueError(f"--early_stopping_patience must be 0 (off) or more, got {self.early_stopping_patience}.")
        # Whether the batch size is ours to choose: the default is capped to the training rows of a small corpus.
        self.train_batch_size_is_default = self.per_device_train_batch_size is None
        if self.train_batch_size_is_default:
            self.per_device_train_batch_size = DEFAULT_TRAIN_BATCH_SIZE
        if self.per_device_train_batch_size < 1:
            raise ValueError(f"--train_batch_size must be a positive integer, got {self.per_device_train_batch_size}.")
        if self.per_device_eval_batch_size is None:
            self.per_device_eval_batch_size = self.per_device_train_batch_size
        if self.load_best_model_at_end:
            raise ValueError(
                "--load_best_model_at_end would make final_model/ a copy of best_model/: a run saves both "
                "(best_model/ by --metric_for_best_model) without it."
            )
        if self.push_sentence_transformers and not self.push_to_hub:
            raise ValueError("--push_sentence_transformers publishes beside the cascade: add --push_to_hub.")
        super().__post_init__()

    def fit_batch_size_to(self, train_rows: int) -> None:
        """Cap the default training batch to `train_rows`, so a small corpus trains without a flag.

        Raises:
            `ValueError` when `--train_batch_size` was given and is larger than `train_rows`.
        """
        batch_size = self.per_device_train_batch_size
        if train_rows >= batch_size:
            return
        if not self.train_batch_size_is_default:
            raise ValueError(
                f"--train_batch_size {batch_size} is larger than the {train_rows} training rows: use more rows or a "
                f"--train_batch_size of at most {train_rows}."
            )
        logger.info(
            f"Training batch size: {train_rows} (all the training rows; the default {DEFAULT_TRAIN_BATCH_SIZE} is more "
            "than there are)."
        )
        if self.per_device_eval_batch_size == batch_size:
            self.per_device_eval_batch_size = train_rows
        self.per_device_train_batch_size = train_rows

    def fit_schedule_to(self, train_rows: int) -> None:
        """Put a run with the default schedule on a corpus of more than 50,000 `train_rows` on the step schedule of
        [`modeling_cascade.schedule.step_schedule`]: `max_steps` for its budget of rows seen, evaluation, checkpoint
        and log line every `interval` steps instead of every epoch (unless set otherwise), and early stopping after
        10 evaluations without progress (unless `--early_stopping_patience` says otherwise).

        Call after [`fit_batch_size_to`]; it changes nothing when `--epochs` or `--max_steps` was given.
        """
        rows_per_step = self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps
        schedule = step_schedule(train_rows, rows_per_step) if self.schedule_is_default else None
        if schedule is None:
            if self.early_stopping_patience is None:
                self.early_stopping_patience = 0
            return
        self.max_steps = schedule.max_steps
        if self.eval_strategy == IntervalStrategy.EPOCH:
            self.eval_strategy, self.eval_steps = IntervalStrategy.STEPS, schedule.interval
        if self.save_strategy == SaveStrategy.EPOCH:
            self.save_strategy, self.save_steps = SaveStrategy.STEPS, schedule.interval
        if self.logging_strategy == IntervalStrategy.EPOCH:
            self.logging_strategy, self.logging_steps = IntervalStrategy.STEPS, schedule.interval
        if self.early_stopping_patience is None:
            self.early_stopping_patience = DEFAULT_EARLY_STOPPING_PATIENCE
        stopping = (
            f", stopping early after {self.early_stopping_patience} evaluations without a better "
            f"{self.early_stopping_metric}"
            if self.early_stopping_patience
            else ""
        )
        logger.info(
            f"Training schedule: {schedule.max_steps:,} steps of {rows_per_step:,} rows "
            f"({schedule.max_steps * rows_per_step / train_rows:.1f} epochs of {train_rows:,} training rows), "
            f"evaluation and checkpoint every {schedule.interval:,} step{'s' if schedule.interval > 1 else ''}{stopping} (the default past "
            f"{EPOCH_SCHEDULE_ROWS:,} training rows; --epochs or --max_steps sets another)."
        )


@dataclass
class ModelCardArguments:
    """What a model card says that the run cannot know: its title, license, language and extra tags."""

    card_model_name: str | None = field(
        default=None,
        metadata={"help": "Title of the model card; default: the --hub_model_id repo name, else the output_dir name."},
    )
    card_license: str | None = field(
        default=None, metadata={"help": "License of the model, as a Hub license id (e.g. apache-2.0, mit)."}
    )
    card_language: str | None = field(
        default=None,
        metadata={"help": "Comma-separated language codes for the card; default: --languages (en for python-docs)."},
    )
    card_tags: str | None = field(default=None, metadata={"help": "Extra comma-separated tags for the card."})
