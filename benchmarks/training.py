#!/usr/bin/env python
"""Speed of the Trainer path against a bare PyTorch loop: the same cascade, data and number of steps.

    python benchmarks/training.py                          # SciFact all-MiniLM-L6-v2 embeddings, 100 steps
    python benchmarks/training.py --steps 300 --mmap_rows 1000000 --mmap_dim 768
    python benchmarks/training.py --device cuda          # on a GPU (benchmarks/gpu_check.sh runs it so)

Three paths train the same PCA-started cascade (the package defaults: 4 heads here, batches of 1,024, AdamW at
1e-3) for `--steps` steps on the same rows:

  (a) a bare PyTorch loop: a shuffled index per epoch, one NumPy gather per batch, AdamW, nothing else;
  (b) `run_distillation.py` with the package defaults except evaluation and checkpoints
      (`--eval_strategy no --save_strategy no`): the Trainer, its data loader and callbacks;
  (c) `run_distillation.py` with the full defaults: evaluation (loss and ranking metrics) and a checkpoint with its
      model card every epoch.

Each path is timed by its own training time (the Trainer's `train_runtime` for (b) and (c)), run `--repeats` times
back to back in turn, and the median is reported with its ratio to (a). Goal: (b) / (a) <= 1.2. Then the training
path reads a `--mmap_rows` x `--mmap_dim` memory-mapped matrix of synthetic rows (written to a temporary folder) for
`--mmap_steps` steps (`run_distillation.py --memory_map_input true` in a child process) and reports rows per second,
the whole run's seconds and the child's peak resident memory against the matrix's size.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeling_cascade import CascadeConfig, CascadeModel  # noqa: E402
from modeling_cascade.commands import train as train_command  # noqa: E402
from modeling_cascade.file_utils import load_embeddings  # noqa: E402
from modeling_cascade.trainer import split_embeddings  # noqa: E402


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_INPUT = SHARED_DATA / "embeddings" / "scifact_corpus_all-MiniLM-L6-v2.npy"
GOAL = 1.2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_file", default=str(DEFAULT_INPUT), help="Teacher embeddings (.npy).")
    parser.add_argument("--target_dims", default="256,128,64,32")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mmap_rows", type=int, default=1_000_000, help="Rows of the memory-mapped matrix (0: skip).")
    parser.add_argument("--mmap_dim", type=int, default=768)
    parser.add_argument("--mmap_steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="Where all paths train (cuda: the default GPU, as the Trainer picks it).",
    )
    return parser


def bare_loop(train: np.ndarray, target_dims: list[int], steps: int, batch_size: int, seed: int, device: str) -> float:
    """Seconds of `steps` AdamW steps of a PCA-started cascade on shuffled batches of `train`, on `device`."""
    torch.manual_seed(seed)
    model = CascadeModel(CascadeConfig(input_dim=train.shape[1], target_dims=target_dims))
    model.init_from_pca(train)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    start, step = time.perf_counter(), 0
    while step < steps:
        order = rng.permutation(len(train))
        for begin in range(0, len(order) - batch_size + 1, batch_size):
            batch = torch.from_numpy(train[np.sort(order[begin : begin + batch_size])]).to(device)
            loss = model(batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step == steps:
                break
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def device_flags(device: str) -> list[str]:
    """`run_distillation.py` trains on the GPU when there is one; `--use_cpu` keeps a CPU benchmark on the CPU."""
    return ["--use_cpu"] if device == "cpu" else []


def trainer_run(
    input_file: str, target_dims: str, steps: int, batch_size: int, full_defaults: bool, device: str
) -> float:
    """The Trainer's `train_runtime` of a `run_distillation.py` run of `steps` steps."""
    with tempfile.TemporaryDirectory(prefix="training-benchmark-") as workdir:
        argv = [
            "--input_file", input_file, "--output_dir", str(Path(workdir) / "run"), "--target_dims", target_dims,
            "--max_steps", str(steps), "--train_batch_size", str(batch_size), "--report_to", "none",
            "--disable_tqdm", "true", "--log_level", "error", *device_flags(device),
        ]  # fmt: skip
        if not full_defaults:
            argv += ["--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"]
        with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its log dicts; the benchmark a table
            metrics = train_command.main(argv)
    return float(metrics["train_runtime"])


# Runs run_distillation.py and prints the process's peak resident memory (VmHWM, in kB), which starts afresh at exec:
# `getrusage(RUSAGE_CHILDREN)` would also count the pages this process touched writing the matrix before the fork.
PEAK_REPORTER = (
    "import sys, run_distillation; run_distillation.main(sys.argv[1:]); "
    "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')))"
)


def mmap_throughput(rows: int, dim: int, steps: int, batch_size: int, seed: int, device: str) -> dict[str, float]:
    """Train `steps` steps of `run_distillation.py --memory_map_input true` in a child process over a memory-mapped
    synthetic matrix (written by this one): rows per second of training, the whole run's seconds (its PCA start is a
    pass over every row) and the child's peak resident memory."""
    with tempfile.TemporaryDirectory(prefix="training-benchmark-mmap-") as workdir:
        path = Path(workdir) / "rows.npy"
        matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
        rng = np.random.default_rng(seed)
        for begin in range(0, rows, 100_000):
            block = rng.normal(size=(min(100_000, rows - begin), dim)).astype(np.float32)
            matrix[begin : begin + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        matrix.flush()
        del matrix
        output_dir = Path(workdir) / "run"
        command = [
            sys.executable, "-c", PEAK_REPORTER, "--input_file", str(path),
            "--memory_map_input", "true", "--output_dir", str(output_dir), "--target_dims", "256,128,64,32",
            "--max_steps", str(steps), "--train_batch_size", str(batch_size), "--eval_strategy", "no",
            "--save_strategy", "no", "--load_best_model_at_end", "false", "--report_to", "none",
            "--disable_tqdm", "true", *device_flags(device),
        ]  # fmt: skip
        start = time.perf_counter()
        child = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        seconds = time.perf_counter() - start
        metrics = json.loads((output_dir / "all_results.json").read_text())
    return {
        "rows_per_second": steps * batch_size / metrics["train_runtime"],
        "run_seconds": seconds,
        "peak_rss_gib": int(child.stdout.rsplit("VmHWM:", 1)[1].split()[0]) / 2**20,
        "matrix_gib": rows * dim * 4 / 2**30,
    }


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    embeddings = load_embeddings(args.input_file)
    train, _ = split_embeddings(embeddings, 0.1, args.seed)
    target_dims = [int(dim) for dim in args.target_dims.split(",")]
    if args.batch_size > len(train):  # the bare loop takes whole batches only
        parser.error(f"--batch_size {args.batch_size} exceeds the {len(train)} training rows of {args.input_file}.")
    print(
        f"{len(train)} training rows of {args.input_file}, heads {target_dims}, {args.steps} steps of {args.batch_size}"
        f" on {args.device}"
    )
    # Warm up torch's kernels and thread pool first.
    bare_loop(train, target_dims, 5, args.batch_size, args.seed, args.device)
    times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(args.repeats):
        times["a"].append(bare_loop(train, target_dims, args.steps, args.batch_size, args.seed, args.device))
        for path, full_defaults in (("b", False), ("c", True)):
            seconds = trainer_run(
                args.input_file, args.target_dims, args.steps, args.batch_size, full_defaults, args.device
            )
            times[path].append(seconds)
    medians = {path: statistics.median(values) for path, values in times.items()}
    labels = {
        "a": "(a) bare PyTorch loop (AdamW, no evaluation, no checkpoints)",
        "b": "(b) run_distillation.py --eval_strategy no --save_strategy no (Trainer train_runtime)",
        "c": "(c) run_distillation.py defaults (evaluation and checkpoint every epoch)",
    }
    print(f"\n| path | seconds (median of {args.repeats}) | ratio to (a) |\n|---|---:|---:|")
    for path, label in labels.items():
        print(f"| {label} | {medians[path]:.2f} | {medians[path] / medians['a']:.2f} |")
    ratio = medians["b"] / medians["a"]
    print(f"\n(b) / (a) = {ratio:.2f}: goal <= {GOAL} {'met' if ratio <= GOAL else 'NOT met'}")
    if args.mmap_rows:
        result = mmap_throughput(
            args.mmap_rows, args.mmap_dim, args.mmap_steps, args.batch_size, args.seed, args.device
        )
        print(
            f"\nMemory-mapped {args.mmap_rows:,} x {args.mmap_dim} float32 ({result['matrix_gib']:.2f} GiB on disk), "
            f"{args.mmap_steps} steps of {args.batch_size}: {result['rows_per_second']:,.0f} rows/s of training, "
            f"{result['run_seconds']:.0f} s for the whole run, peak resident memory of the run "
            f"{result['peak_rss_gib']:.2f} GiB"
        )
    print(json.dumps({"medians_s": medians, "runs_s": times}))


if __name__ == "__main__":
    main()
