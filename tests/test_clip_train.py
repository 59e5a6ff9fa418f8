"""Trainer end to end on CPU: main([...]) smoke run and `wit eval`, exact resume, cached-feature
accumulation and SigLIP against the full batch, DDP (gloo, 2 processes), checkpoints on a URL."""

from __future__ import annotations

import csv
import json
import os
import socket

import pytest
import torch

from clip_model import distributed
from clip_model.data import captions
from clip_model.loss import clip_loss, siglip_loss
from clip_model.main import main
from clip_model.model import CLIP
from clip_model.options import FitOptions
from clip_model.presets import preset
from clip_model.tokenizer import TrainedBPE
from clip_model.train import CHECKPOINT, backward, fit, load_checkpoint, lr_factor, no_decay
from pipeline.demo_world.eval_images import write_shards
from pipeline.download.manifest import write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip_shards")
    paths = write_shards(str(d), samples=96, per_shard=24, short_side=48)
    write_manifest(str(d))
    return paths


SMALL = ["--model-image-size", "32", "--context-length", "12", "--bpe-vocab-size", "300", "--torch-threads", "1",
         "--templates", "simple", "--bpe-captions", "200", "--eval-workers", "0"]  # fmt: skip


def _argv(out, shards, *extra) -> list[str]:
    return ["--out", str(out), "--shards", os.path.dirname(shards[0]) + "/*.tar", "--steps", "3",
            "--batch-size", "8", "--warmup", "1", "--loader-workers", "1", "--log-every", "1",
            "--save-every", "2", "--zs-images", "24", "--retrieval-pairs", "16", "--extra-eval", "pipeline.demo_world.eval_images:evaluate_run",
            *SMALL, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shards):
    out = tmp_path_factory.mktemp("train_out")
    threads = torch.get_num_threads()
    assert main(_argv(out, shards)) == 0
    torch.set_num_threads(threads)
    return out


def test_main_trains_evaluates_and_writes_metrics(trained):
    out = trained
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    # headline: the demo's held-out colour+shape folder; with no query list all 12 x 8 classes
    assert metrics["headline_task"].startswith("zero-shot top-1, demo")
    assert metrics["headline"] == metrics["zero_shot_top1"]
    assert metrics["zero_shot_top1"] == metrics["demo"]["colour_shape/demo"]["top1"]
    assert metrics["chance"] == pytest.approx(1 / 96) and metrics["steps"] == 3
    assert metrics["demo"]["background/demo"]["chance_top1"] == pytest.approx(1 / 12)
    assert metrics["demo"]["colour_shape/demo"]["images"] == 24
    assert len(os.listdir(out / "eval_images")) == 97  # 96 class folders and the meta file
    # retrieval on the held-out shard, both directions, R@1/5/10
    assert metrics["heldout_shards"] == 1 and metrics["retrieval"]["pairs"] == 16
    assert {"image_to_text_r10", "text_to_image_r10", "recall_at_10"} <= set(metrics["retrieval"])
    # the manifest: 3 training shards of 24 samples
    assert metrics["epoch_samples"] == 72 and metrics["epochs"] == pytest.approx(24 / 72)
    ckpt = torch.load(out / "train" / CHECKPOINT, weights_only=True)  # only tensors and plain data
    assert ckpt["step"] == 3 and ckpt["data"]["samples_seen"] == 24
    assert set(ckpt["data"]["positions"]["0"]) == {"0"}
    assert ckpt["config"]["heldout_shards"][0].endswith("00003.tar")
    rows = list(csv.DictReader((out / "train" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and float(rows[0]["samples_per_s"]) > 0
    assert any((out / "train" / "tensorboard").iterdir())


def test_wit_eval_scores_a_checkpoint_on_an_image_folder(trained, capsys):
    out = trained
    folder = str(out / "eval_images")
    argv = ["eval", "--out", str(out), "--image-folder", folder,
            "--templates", "simple", "--eval-workers", "0", "--retrieval-pairs", "16"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"[eval] {folder}: zero-shot top-1 " in err and " top-5 " in err
    assert "[eval] retrieval over 16 pairs" in err  # the run's held-out shard, from the checkpoint
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    folder_result = metrics["image_folder"]
    assert folder_result["images"] == 24 and folder_result["classes"] == 96
    assert metrics["headline"] == folder_result["top1"]
    per_class = folder_result["per_class"]
    assert sum(v["images"] for v in per_class.values()) == 24
    # the same weights score the same images alike through the demo's path and the generic one
    train_metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert folder_result["top1"] == train_metrics["demo"]["colour_shape/single"]["top1"]
    # the run's training settings in config.json are not overwritten by the eval's defaults
    assert json.loads((out / "config.json").read_text())["train"]["batch_size"] == 8


def test_resuming_main_continues_the_run(trained, shards):
    assert main([*_argv(trained, shards), "--steps", "4"]) == 0  # resumes from step 3
    assert json.loads((trained / "train" / "metrics.json").read_text())["steps"] == 4


@pytest.mark.parametrize(
    "extra,key",
    [
        ([], "train.shards"),
        (["--shards", "/nonexistent/*.tar"], "train.shards"),
        (["--image-folder", "/nonexistent"], "eval.image_folder"),
        (["--templates", "/nonexistent.txt"], "eval.templates"),
        (["--batch-size", "10", "--accum-steps", "4"], "train.accum_steps"),
    ],
)
def test_bad_settings_fail_before_any_work_naming_the_flag(tmp_path, capsys, shards, extra, key):
    argv = ["--out", str(tmp_path), "--steps", "1", *extra]
    if key != "train.shards":
        argv += ["--shards", os.path.dirname(shards[0]) + "/*.tar"]
    assert main(argv) == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / "train").exists()


def test_epochs_need_a_manifest(tmp_path, capsys):
    paths = write_shards(str(tmp_path / "s"), samples=8, per_shard=4, short_side=32)
    argv = ["--out", str(tmp_path), "--shards", ",".join(paths), "--epochs", "1"]
    assert main(argv) == 2 and "train.epochs" in capsys.readouterr().err


def test_the_held_out_shard_is_a_full_one_when_the_manifest_shows_a_small_remainder(tmp_path):
    from clip_model.config import TrainConfig
    from clip_model.main import find_shards
    from pipeline.config import RunConfig

    paths = write_shards(str(tmp_path / "shards"), samples=4 * 6 + 2, per_shard=6, short_side=32)
    train = TrainConfig(holdout_shards=1)
    assert find_shards(RunConfig(out=str(tmp_path)), train)[1] == [paths[-1]]  # no manifest
    write_manifest(str(tmp_path / "shards"))  # the last shard holds 2 samples, the others 6
    kept, heldout = find_shards(RunConfig(out=str(tmp_path)), train)
    assert heldout == [paths[3]] and kept == [*paths[:3], paths[4]]


def test_schedule_and_weight_decay_groups():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0)
    model = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=300))
    decayed = {n for n, p in model.named_parameters() if not no_decay(n, p)}
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in decayed
    assert "visual.proj" in decayed
    for name in (
        "logit_scale",
        "token_embedding.weight",
        "positional_embedding",
        "visual.class_embedding",
        "ln_final.weight",
        "transformer.resblocks.0.mlp.c_fc.bias",
    ):
        assert name not in decayed, name


def _model(siglip: bool = False, vocab: int = 300) -> CLIP:
    torch.manual_seed(0)
    bias = {"init_logit_bias": -10.0} if siglip else {}
    return CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=vocab, **bias))


def _batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n, 3, 32, 32, generator=g)
    texts = torch.randint(1, 299, (n, 12), generator=g)
    texts[:, 7] = 299  # end-of-text: the largest id
    return images, texts


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_cached_feature_accumulation_equals_the_full_batch(loss):
    images, texts = _batch()
    results = {}
    for accum in (1, 4):
        model = _model(siglip=loss == "siglip")
        opts = FitOptions(batch_size=8, accum_steps=accum, loss=loss, precision="fp32")
        value = backward(model, model, images, texts, opts, "cpu")
        results[accum] = float(value.detach()), _grads(model)
    assert results[4][0] == pytest.approx(results[1][0], abs=1e-6)
    for name, full in results[1][1].items():
        assert torch.allclose(results[4][1][name], full, atol=1e-5), name
    assert results[4][1]["logit_scale"].abs() > 0


def _setup(shards, **kw):
    train = FitOptions(steps=5, batch_size=8, warmup=2, loader_workers=2, log_every=1,
                       save_every=100, shuffle_buffer=8, **kw)  # fmt: skip
    tok = TrainedBPE.train(captions(shards, 200), 300, 12)
    return train, tok, _model(vocab=tok.vocab_size)


def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(tmp_path, shards):
    env = distributed.DistEnv()
    train, tok, model = _setup(shards)
    full_model = model
    full = fit(model, tok, shards, train, env, str(tmp_path / "a"), seed=1)
    train, tok2, model = _setup(shards)
    fit(model, tok2, shards, train, env, str(tmp_path / "b"), seed=1, stop_at=3)  # odd: rotates
    ckpt = load_checkpoint(str(tmp_path / "b" / CHECKPOINT))
    assert ckpt["step"] == 3
    _, _, fresh = _setup(shards)
    resumed = fit(fresh, tok2, shards, train, env, str(tmp_path / "b"), seed=1, resume=ckpt)
    assert [s for s, _ in resumed.losses] == [4, 5]
    expected = [v for _, v in full.losses[3:]]
    assert [v for _, v in resumed.losses] == pytest.approx(expected, abs=1e-5)
    for a, b in zip(full_model.state_dict().values(), fresh.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)


def test_shards_and_checkpoints_behind_a_url_use_one_filesystem_layer(shards):
    import fsspec

    mem = fsspec.filesystem("memory")
    for path in shards[:2]:
        with open(path, "rb") as f:
            mem.pipe(f"/clip_train_test/shards/{os.path.basename(path)}", f.read())
    urls = sorted(mem.glob("/clip_train_test/shards/*.tar"))
    urls = [f"memory://{u}" for u in urls]
    train, tok, model = _setup(shards, accum_steps=2)
    train = FitOptions(**{**train.__dict__, "loader_workers": 0, "steps": 2})
    run_dir = "memory://clip_train_test/run"
    result = fit(model, tok, urls, train, distributed.DistEnv(), run_dir, seed=0)
    assert result.step == 2 and result.data.counts.get("shards_opened", 0) >= 1
    ckpt = load_checkpoint(f"{run_dir}/{CHECKPOINT}")
    assert ckpt["step"] == 2 and mem.exists("/clip_train_test/run/log.csv")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_grads(rank: int, world: int, siglip: bool, accum: int) -> tuple[float, float]:
    """(global loss, max gradient error) of DDP on local halves vs one process on the batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    images, texts = _batch()
    model = _model(siglip)
    local = slice(rank * 4, rank * 4 + 4)
    opts = FitOptions(batch_size=8, accum_steps=accum, loss="siglip" if siglip else "clip")
    loss = backward(DDP(model), model, images[local], texts[local], opts, "cpu")  # gloo: no ids
    avg = loss.detach().clone()
    torch.distributed.all_reduce(avg)
    ref = _model(siglip)
    fn = siglip_loss if siglip else clip_loss
    ref_loss = fn(*ref(images, texts), gather=False)
    ref_loss.backward()
    err = max(
        (p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters())
    )
    return abs(avg.item() / world - ref_loss.item()), err


def _ddp_worker(rank: int, world: int, port: int, out: str, shards: list[str]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    env = distributed.init("cpu")
    try:
        checks = {
            f"{'siglip' if siglip else 'clip'}x{accum}": _ddp_grads(rank, world, siglip, accum)
            for siglip, accum in ((False, 1), (False, 2), (True, 2))
        }
        tok = TrainedBPE.train(["a red circle", "two blue squares"] * 50, 300, 12)
        train = FitOptions(
            steps=2, batch_size=8, warmup=1, loader_workers=0, log_every=1, shuffle_buffer=4
        )
        result = fit(_model(vocab=tok.vocab_size), tok, shards, train, env, out, seed=0)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"checks": checks, "steps": result.step}, f)
        distributed.barrier(env)  # as main.run does: no rank leaves while another still works
    finally:
        distributed.cleanup()
    distributed.exit_rank(0)  # as a torchrun rank of clip_model.main ends


def test_ddp_two_processes_on_cpu_gloo_match_the_global_batch(tmp_path, shards):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), shards), nprocs=2, join=True)
    for rank in range(2):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # local losses average to the global one; DDP gradients equal the global batch's, for
        # CLIP's loss, with cached-feature accumulation, and for SigLIP's loss
        for name, (loss_err, grad_err) in r["checks"].items():
            assert loss_err < 1e-5 and grad_err < 1e-5, name
        assert r["steps"] == 2
    ckpt = load_checkpoint(str(tmp_path / CHECKPOINT))
    assert set(ckpt["data"]["positions"]) == {"0", "1"} and ckpt["data"]["world"] == 2
