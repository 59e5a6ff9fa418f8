#!/usr/bin/env bash
# GPU check of the bundled trainer, for a person with a CUDA machine (nothing here downloads).
#   bash bench/gpu_check.sh [OUT]          # OUT defaults to out/gpu_check
# 1) ViT-B-32, bf16 autocast, batch 256, torch.compile, one DDP process (torchrun), 4 loader workers,
#    on synthetic demo shards; prints samples/s and peak GPU memory from the trainer's log.
# 2) loader throughput alone (what the GPU would be fed), to compare with (1).
set -euo pipefail
OUT=${1:-out/gpu_check}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
python_has_cuda=$($PY -c 'import torch; print(int(torch.cuda.is_available()))')
[ "$python_has_cuda" = 1 ] || { echo "torch.cuda.is_available() is False: install the CUDA torch wheel"; exit 1; }
$PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'
# 20k demo images at 256 px (about 2 minutes on 8 cores): enough for 60+ steps of batch 256 plus a held-out shard.
[ -f "$OUT/shards/00019.tar" ] || $PY -c "from clip_model.demo_shards import write_shards; write_shards('$OUT/shards', 20000)"
$PY -m torch.distributed.run --standalone --nproc_per_node 1 -m clip_model.main --out "$OUT" \
  --model ViT-B-32 --model-image-size 224 --batch-size 256 --precision bf16 --compile \
  --loader-workers 4 --steps 60 --warmup 10 --log-every 10 --save-every 1000 --no-resume \
  --zs-images 480 --retrieval-pairs 500 --bpe-vocab-size 8192
echo "--- trainer log (samples/s, peak GPU memory) ---"
cat "$OUT/train/log.csv"
echo "--- the same without torch.compile ---"
$PY -m torch.distributed.run --standalone --nproc_per_node 1 -m clip_model.main --out "$OUT/nocompile" \
  --shards "$OUT/shards/*.tar" --model ViT-B-32 --model-image-size 224 --batch-size 256 --precision bf16 \
  --loader-workers 4 --steps 30 --warmup 5 --log-every 10 --save-every 1000 --no-resume \
  --zs-images 96 --retrieval-pairs 100 --bpe-vocab-size 8192
cat "$OUT/nocompile/train/log.csv"
echo "--- loader alone: 4 and 8 workers at 224 px ---"
$PY - "$OUT/shards" <<'PYEOF'
import sys, time
from clip_model.data import StreamConfig, list_shards, make_loader
from clip_model.tokenizer import TrainedBPE
tok = TrainedBPE.train(["a red circle", "two blue squares"] * 50, 300, 77)
shards = list_shards(sys.argv[1] + "/*.tar")
for workers in (4, 8):
    it = iter(make_loader(StreamConfig(shards, batch_size=256, image_size=224), tok, workers, pin_memory=True))
    next(it)
    t0 = time.perf_counter()
    for _ in range(20):
        next(it)
    print(f"loader {workers} workers: {256 * 20 / (time.perf_counter() - t0):.0f} samples/s")
PYEOF
