#!/usr/bin/env bash
# GPU check of the bundled trainer, for a CUDA machine (nothing here downloads).
#   bash bench/gpu_check.sh [OUT]          # OUT defaults to out/gpu_check; QUICK=1 for fewer steps
# Runs, on synthetic demo shards with their manifest, ViT-B-32 at 224 px with bf16 autocast:
#   plain      batch 256, torch.compile, one torchrun process
#   accum      the same batch as 4 cached-feature micro-batches (same loss, less memory)
#   large      batch 1024 as 8 micro-batches of 128 (a large contrastive batch on one GPU)
#   siglip     batch 256 with SigLIP's sigmoid loss
# then `wit eval` of the plain run's checkpoint on the demo's labelled folder (written by the plain
# run) with retrieval on its held-out shard, and the loader alone. Ends with a table of samples/s,
# peak GPU memory and model FLOPs utilisation (MFU: the model's training FLOPs per second over the
# GPU's dense bf16 peak; set PEAK_TFLOPS when the GPU is not in the table below).
set -euo pipefail
OUT=${1:-out/gpu_check}
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-$([ "${QUICK:-0}" = 1 ] && echo 30 || echo 80)}
WORKERS=${LOADER_WORKERS:-8}
mkdir -p "$OUT"
[ "$($PY -c 'import torch; print(int(torch.cuda.is_available()))')" = 1 ] \
  || { echo "torch.cuda.is_available() is False: install the CUDA torch wheel"; exit 1; }
$PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'
# 20k demo images at 256 px: enough for the runs below plus a held-out shard.
if [ ! -f "$OUT/shards/manifest.json" ]; then
  $PY - "$OUT/shards" <<'PYEOF'
import sys
from concurrent.futures import ProcessPoolExecutor
from pipeline.demo_world.eval_images import write_shards
from pipeline.download.manifest import write_manifest
out = sys.argv[1]
def part(i):  # one shard of 1000 images per task
    write_shards(out, 1000, per_shard=1000, first_id=i * 1000, first_shard=i)
with ProcessPoolExecutor() as pool:
    list(pool.map(part, range(20)))
print(write_manifest(out)["total_samples"], "samples in", out)
PYEOF
fi
COMMON=(--shards "$OUT/shards/*.tar" --model ViT-B-32 --model-image-size 224 --precision bf16
        --loader-workers "$WORKERS" --steps "$STEPS" --warmup 10 --log-every 10 --save-every 100000
        --no-resume --bpe-vocab-size 8192 --zs-images 480 --retrieval-pairs 500 --templates openai)
run() {  # run NAME [flags...]: one training run under $OUT/NAME
  local name=$1; shift
  echo "=== $name: $*"
  $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m clip_model.main \
    --out "$OUT/$name" "${COMMON[@]}" "$@"
}
run plain --batch-size 256 --compile --extra-eval pipeline.demo_world.eval_images:evaluate_run
run accum --batch-size 256 --accum-steps 4 --compile
run large --batch-size 1024 --accum-steps 8 --compile
run siglip --batch-size 256 --loss siglip --compile
echo "=== wit eval on the demo's labelled folder"
$PY -m clip_model.main eval --out "$OUT/plain" --image-folder "$OUT/plain/eval_images" \
  --templates openai --retrieval-pairs 500
echo "=== loader alone, $WORKERS workers at 224 px"
$PY - "$OUT/shards" "$WORKERS" <<'PYEOF'
import sys, time
from clip_model.data import StreamConfig, list_shards, make_loader
from clip_model.tokenizer import TrainedBPE
tok = TrainedBPE.train(["a red circle", "two blue squares"] * 50, 300, 77)
shards, workers = list_shards(sys.argv[1] + "/*.tar"), int(sys.argv[2])
it = iter(make_loader(StreamConfig(shards, batch_size=256, image_size=224), tok, workers, pin_memory=True))
next(it)
t0 = time.perf_counter()
for _ in range(20):
    next(it)
print(f"loader {workers} workers: {256 * 20 / (time.perf_counter() - t0):.0f} samples/s")
PYEOF
echo "=== summary (samples/s: median of the logged windows after the first)"
$PY - "$OUT" <<'PYEOF'
import csv, json, os, statistics, sys
import torch
out = sys.argv[1]
name = torch.cuda.get_device_name(0)
PEAK = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "4090": 165}
peak = float(os.environ.get("PEAK_TFLOPS") or next((v for k, v in PEAK.items() if k in name), 0))
print(f"GPU {name}; dense bf16 peak {peak or '?'} TFLOP/s")
print(f"{'run':8} {'batch':>6} {'micro':>5} {'loss':>6} {'samples/s':>10} {'peak GB':>8} {'MFU':>6}")
for run in ("plain", "accum", "large", "siglip"):
    m = json.load(open(f"{out}/{run}/train/metrics.json"))
    rows = list(csv.DictReader(open(f"{out}/{run}/train/log.csv")))
    rate = statistics.median(float(r["samples_per_s"]) for r in rows[1:] or rows)
    mem = max(float(r["gpu_mem_gb"]) for r in rows)
    mfu = rate * m["train_gflop_per_sample"] * 1e9 / (peak * 1e12) if peak else float("nan")
    batch = json.load(open(f"{out}/{run}/config.json"))["train"]["batch_size"]
    print(f"{run:8} {batch:>6} {m['accum_steps']:>5} {m['loss']:>6} {rate:>10.0f} {mem:>8.1f} {mfu:>6.1%}")
PYEOF
