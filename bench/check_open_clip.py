"""Dev-only check against open_clip 3.3.0: our CLIP BPE tokenizes exactly like open_clip's
``SimpleTokenizer`` (with the vocabulary file its wheel ships), our 80 prompt templates are
open_clip's, and an open_clip ViT state_dict loads into our model with ``strict=True`` and gives
the same image and text features.

    python -m bench.check_open_clip --setup     # build .venv-bench once (local wheels only)
    python -m bench.check_open_clip             # compare on captions of out/demo/selection

open_clip pulls in torchvision (and a CUDA torch if left alone), which the project does not depend
on, so it lives in its own virtualenv ``.venv-bench``: torch pinned to the CPU wheel by a
constraint, open_clip without its dependencies plus the pure-Python ones it imports, and a small
torchvision stand-in holding only the names open_clip imports at import time (its image
transforms are never called here). The comparison runs in that venv's Python; our side runs in
this one, and the two exchange token ids and features through files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_VENV = os.path.join(ROOT, ".venv-bench")
TORCH_PIN = "torch==2.13.0+cpu"
OPEN_CLIP = "open-clip-torch==3.3.0"
OPEN_CLIP_DEPS = ("regex", "ftfy", "tqdm", "huggingface-hub", "safetensors", "numpy", "pillow")

# open_clip imports these names from torchvision at import time (transform.py, utils.py).
TORCHVISION_STUB = {
    "__init__.py": '"""Import-time stand-in for torchvision (see bench/check_open_clip.py)."""\n'
    '__version__ = "0.0.0+stub"\nfrom . import ops, transforms  # noqa: F401\n',
    "ops/__init__.py": "from . import misc  # noqa: F401\n",
    "ops/misc.py": "import torch\n\n\nclass FrozenBatchNorm2d(torch.nn.Module):\n"
    '    """Not used by ViT models."""\n',
    "transforms/__init__.py": "import enum\n\nfrom . import functional  # noqa: F401\n\n\n"
    "class InterpolationMode(enum.Enum):\n    NEAREST = 'nearest'\n    BILINEAR = 'bilinear'\n"
    "    BICUBIC = 'bicubic'\n\n\n"
    + "".join(
        f"class {name}:\n    def __init__(self, *a, **k):\n"
        f"        raise NotImplementedError('torchvision stub: {name}')\n\n\n"
        for name in (
            "Normalize",
            "Compose",
            "RandomResizedCrop",
            "ToTensor",
            "Resize",
            "CenterCrop",
            "ColorJitter",
            "Grayscale",
        )
    ),
    "transforms/functional.py": '"""Nothing here is called by the check."""\n',
}


def _bench_python() -> str:
    return os.path.join(BENCH_VENV, "bin", "python")


def setup() -> None:
    """Create .venv-bench: CPU torch (pinned), open_clip without deps, its light deps, the stub."""
    if not os.path.exists(_bench_python()):
        subprocess.run([sys.executable, "-m", "venv", BENCH_VENV], check=True)
    pip = [_bench_python(), "-m", "pip", "install", "-q"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(TORCH_PIN + "\n")
    try:
        subprocess.run([*pip, "-c", f.name, TORCH_PIN, *OPEN_CLIP_DEPS], check=True)
        subprocess.run([*pip, "-c", f.name, "--no-deps", OPEN_CLIP], check=True)
    finally:
        os.unlink(f.name)
    site = subprocess.run(
        [_bench_python(), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for rel, text in TORCHVISION_STUB.items():
        path = os.path.join(site, "torchvision", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as out:
            out.write(text)
    subprocess.run([_bench_python(), "-c", "import open_clip; print(open_clip.__version__)"])


# Runs in .venv-bench: open_clip's side of every comparison, saved with torch.save.
THEIRS = r"""
import json, sys, torch, open_clip
from open_clip.tokenizer import SimpleTokenizer, default_bpe
captions_path, out_path = sys.argv[1], sys.argv[2]
captions = json.load(open(captions_path))
tok = SimpleTokenizer()
result = {"ids": tok(captions, context_length=77), "vocab": default_bpe(),
          "templates": [t("{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES],  # lambdas there
          "version": open_clip.__version__}
torch.manual_seed(0)
images = torch.randn(4, 3, 224, 224)
texts = tok(["a photo of a cat.", "two red circles on a blue background", "", captions[0]])
for name in ("ViT-B-32", "ViT-B-32-quickgelu"):
    model = open_clip.create_model(name, pretrained=None).eval()  # random weights, no download
    with torch.no_grad():
        result[name] = {"state": model.state_dict(), "images": images, "texts": texts,
                        "image": model.encode_image(images, normalize=True),
                        "text": model.encode_text(texts, normalize=True)}
torch.save(result, out_path)
"""

HARD_CASES = [
    "Caf\u00e9 &amp; cr\u00e8me br\u00fbl\u00e9e at   the  Mus\u00e9e d&#39;Orsay",
    "\u6771\u4eac\u30bf\u30ef\u30fc at night \U0001f303 with 3,000 lights",
    "it's a dog's life: they're here, we've seen it, I'm sure, you'll see, he'd go",
    "<start_of_text> literal special tokens <end_of_text> in a caption",
    "UPPER lower MiXeD 12345 6.7 #hashtag @user http://example.com/a_b?c=d",
    "\u00c6sir and \u0152uvre, na\u00efve fa\u00e7ade, \u00dftra\u00dfe, \u0130stanbul",
    "tab\tand\nnewline\u00a0nbsp\u2003em-space and zero\u200bwidth",
    "word " * 100,  # truncated at 77 tokens, end token kept
    "",
]


def read_captions(pattern: str, limit: int) -> list[str]:
    """Up to ``limit`` captions from the ``caption`` column of Parquet files, plus hard cases."""
    import glob

    import pyarrow.parquet as pq

    caps: list[str] = []
    for path in sorted(glob.glob(pattern)):
        col = pq.read_table(path, columns=["caption"]).column("caption").to_pylist()
        caps.extend(c for c in col if c)
        if len(caps) >= limit:
            break
    return HARD_CASES + caps[:limit]


def compare(captions: list[str]) -> dict:
    """Run open_clip's side in the bench venv, ours here; returns what differs."""
    import torch

    from clip_model import pretrained
    from clip_model.model import CLIP
    from clip_model.tokenizer import ClipBPE
    from clip_model.zero_shot import IMAGENET_TEMPLATES

    with tempfile.TemporaryDirectory() as tmp:
        cap_path, out_path = os.path.join(tmp, "captions.json"), os.path.join(tmp, "theirs.pt")
        with open(cap_path, "w") as f:
            json.dump(captions, f)
        subprocess.run([_bench_python(), "-c", THEIRS, cap_path, out_path], check=True)
        theirs = torch.load(out_path, weights_only=True)
    ours = ClipBPE(theirs["vocab"], 77)  # the vocabulary file inside open_clip's wheel
    ids = ours(captions)
    differ = [i for i in range(len(captions)) if not torch.equal(ids[i], theirs["ids"][i])]
    report = {
        "open_clip": theirs["version"],
        "captions": len(captions),
        "token_rows_differing": len(differ),
        "examples": [captions[i] for i in differ[:3]],
        "templates_equal": tuple(theirs["templates"]) == IMAGENET_TEMPLATES,
    }
    for name, quick_gelu in (("ViT-B-32", False), ("ViT-B-32-quickgelu", True)):
        t = theirs[name]
        cfg = pretrained.config_from_state_dict(t["state"], quick_gelu=quick_gelu)
        model = CLIP(cfg).eval()
        model.load_state_dict(t["state"], strict=True)
        with torch.no_grad():
            image = model.encode_image(t["images"], normalize=True)
            text = model.encode_text(ours(["a photo of a cat.", "two red circles on a blue "
                                           "background", "", captions[0]]), normalize=True)  # fmt: skip
        report[name] = {
            "strict_load": True,
            "image_max_abs_diff": float((image - t["image"]).abs().max()),
            "text_max_abs_diff": float((text - t["text"]).abs().max()),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    """Compare with open_clip; exit 1 when a token or a feature differs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setup", action="store_true", help="build .venv-bench and exit")
    p.add_argument(
        "--captions",
        default="out/demo/selection/part-*.parquet",
        help="Parquet files with a caption column (default: the demo selection)",
    )
    p.add_argument("--limit", type=int, default=5000)
    args = p.parse_args(argv)
    if args.setup:
        setup()
        return 0
    if not os.path.exists(_bench_python()):
        print("no .venv-bench: run `python -m bench.check_open_clip --setup` first")
        return 2
    captions = read_captions(args.captions, args.limit)
    if len(captions) == len(HARD_CASES):
        print(f"no captions at {args.captions!r}: run `make shards` first or pass --captions")
        return 2
    report = compare(captions)
    print(json.dumps(report, indent=2))
    worst = max(report[m][k] for m in ("ViT-B-32", "ViT-B-32-quickgelu")
                for k in ("image_max_abs_diff", "text_max_abs_diff"))  # fmt: skip
    ok = not report["token_rows_differing"] and report["templates_equal"] and worst < 1e-4
    print("same tokens, templates and features as open_clip" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
