"""Trainer end to end on CPU: main([...]) smoke run, exact resume, DDP (gloo, 2 processes)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import socket

import pytest
import torch

from clip_model import distributed
from clip_model.config import TrainConfig
from clip_model.demo_shards import write_shards
from clip_model.loss import clip_loss
from clip_model.main import main
from clip_model.model import CLIP
from clip_model.presets import preset
from clip_model.tokenizer import TrainedBPE
from clip_model.train import CHECKPOINT, fit, load_checkpoint, lr_factor, no_decay

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip_shards")
    return write_shards(str(d), samples=96, per_shard=24, short_side=48)


SMALL = ["--model-image-size", "32", "--context-length", "12", "--bpe-vocab-size", "300", "--torch-threads", "1",
         "--no-zs-ensemble", "--bpe-captions", "200"]  # fmt: skip


def test_main_trains_evaluates_and_writes_metrics(tmp_path, shards):
    out = tmp_path / "out"
    argv = ["--out", str(out), "--shards", os.path.dirname(shards[0]) + "/*.tar", "--steps", "3",
            "--batch-size", "8", "--warmup", "1", "--loader-workers", "1", "--log-every", "1",
            "--save-every", "2", "--zs-images", "24", "--retrieval-pairs", "16", *SMALL]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    for key in (
        "zero_shot_top1",
        "zero_shot_top5",
        "chance",
        "recall_at_1",
        "recall_at_5",
        "steps",
        "samples_per_s",
    ):
        assert key in metrics, key
    # headline: colour+shape; with no query list every one of the 12 x 8 combinations is a class
    assert metrics["steps"] == 3 and metrics["chance"] == pytest.approx(1 / 96)
    assert metrics["zero_shot_task"].startswith("colour_shape/demo")
    assert metrics["zero_shot_top1"] == metrics["zero_shot"]["colour_shape/demo"]["top1"]
    assert metrics["zero_shot"]["background/demo"]["chance_top1"] == pytest.approx(1 / 12)
    assert metrics["heldout_shards"] == 1 and metrics["retrieval"]["pairs"] == 16
    ckpt = torch.load(out / "train" / CHECKPOINT, weights_only=True)  # only tensors and plain data
    assert ckpt["step"] == 3 and ckpt["data"]["samples_seen"] == 24
    assert set(ckpt["data"]["positions"]["0"]) == {"0"}
    rows = list(csv.DictReader((out / "train" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and float(rows[0]["samples_per_s"]) > 0
    assert any((out / "train" / "tensorboard").iterdir())
    assert main([*argv, "--steps", "4"]) == 0  # resumes from step 3
    assert json.loads((out / "train" / "metrics.json").read_text())["steps"] == 4


def test_no_shards_is_a_config_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--steps", "1"]) == 2
    assert "train.shards" in capsys.readouterr().err


def test_schedule_and_weight_decay_groups():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(9, 10, 100) == pytest.approx(
        1.0
    )
    assert lr_factor(55, 10, 100) == pytest.approx(0.5) and lr_factor(
        100, 10, 100
    ) == pytest.approx(0.0)
    model = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=300))
    decayed = {n for n, p in model.named_parameters() if not no_decay(n, p)}
    assert (
        "visual.transformer.resblocks.0.attn.in_proj_weight" in decayed and "visual.proj" in decayed
    )
    for name in (
        "logit_scale",
        "token_embedding.weight",
        "positional_embedding",
        "visual.class_embedding",
        "ln_final.weight",
        "visual.conv1.weight" if False else "transformer.resblocks.0.mlp.c_fc.bias",
    ):
        assert name not in decayed, name


def _setup(shards, tmp, **kw):
    train = TrainConfig(steps=5, batch_size=8, warmup=2, loader_workers=2, log_every=1, save_every=100,
                        shuffle_buffer=8, **kw)  # fmt: skip
    from clip_model.data import captions

    tok = TrainedBPE.train(captions(shards, 200), 300, 12)
    torch.manual_seed(0)
    model = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=tok.vocab_size))
    return train, tok, model


def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(tmp_path, shards):
    env = distributed.DistEnv()
    train, tok, model = _setup(shards, tmp_path)
    full_model = model
    full = fit(model, tok, shards, train, env, str(tmp_path / "a"), seed=1)
    train, tok2, model = _setup(shards, tmp_path)
    fit(
        model, tok2, shards, train, env, str(tmp_path / "b"), seed=1, stop_at=3
    )  # odd: rotates workers
    ckpt = load_checkpoint(str(tmp_path / "b" / CHECKPOINT))
    assert ckpt["step"] == 3
    _, _, fresh = _setup(shards, tmp_path)
    resumed = fit(fresh, tok2, shards, train, env, str(tmp_path / "b"), seed=1, resume=ckpt)
    assert [s for s, _ in resumed.losses] == [4, 5]
    assert [v for _, v in resumed.losses] == pytest.approx(
        [v for _, v in full.losses[3:]], abs=1e-5
    )
    for a, b in zip(full_model.state_dict().values(), fresh.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, shards: list[str]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    env = distributed.init("cpu")
    try:
        torch.manual_seed(0)
        model = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=300))
        images, texts = torch.randn(8, 3, 32, 32), torch.randint(1, 299, (8, 12))
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model)  # CPU + gloo: no device_ids
        local = slice(rank * 4, rank * 4 + 4)
        loss = clip_loss(*ddp(images[local], texts[local]))
        loss.backward()
        avg = torch.tensor(loss.item())
        torch.distributed.all_reduce(avg)
        torch.manual_seed(0)
        ref = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=300))
        ref_loss = clip_loss(*ref(images, texts), gather=False)
        ref_loss.backward()
        grad_err = max(
            (p.grad - q.grad).abs().max().item()
            for p, q in zip(model.parameters(), ref.parameters())
        )
        tok = TrainedBPE.train(["a red circle", "two blue squares"] * 50, 300, 12)
        train = TrainConfig(
            steps=2, batch_size=8, warmup=1, loader_workers=0, log_every=1, shuffle_buffer=4
        )
        torch.manual_seed(0)
        m2 = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=tok.vocab_size))
        result = fit(m2, tok, shards, dataclasses.replace(train), env, out, seed=0)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"loss": avg.item() / world, "ref": ref_loss.item(), "grad_err": grad_err,
                       "steps": result.step}, f)  # fmt: skip
        distributed.barrier(env)  # as main.run does: no rank leaves while another still works
    finally:
        distributed.cleanup()
    distributed.exit_rank(0)  # as a torchrun rank of clip_model.main ends


def test_ddp_two_processes_on_cpu_gloo_match_the_global_batch(tmp_path, shards):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), shards), nprocs=2, join=True)
    for rank in range(2):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["loss"] == pytest.approx(
            r["ref"], abs=1e-5
        )  # local losses average to the global one
        assert r["grad_err"] < 1e-5  # DDP gradients equal the single-process global-batch gradients
        assert r["steps"] == 2
    ckpt = load_checkpoint(str(tmp_path / CHECKPOINT))
    assert set(ckpt["data"]["positions"]) == {"0", "1"} and ckpt["data"]["world"] == 2
