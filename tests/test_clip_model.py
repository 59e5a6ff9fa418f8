"""CLIP model, losses, tokenizers and weights from elsewhere: values, gradients, clamp, OpenAI
layout, FLOPs, truncation, the CLIP BPE on a hand-made vocabulary, loading external state_dicts."""

from __future__ import annotations

import math

import pytest
import torch

from clip_model import pretrained
from clip_model.loss import clip_loss, siglip_loss
from clip_model.model import CLIP, forward_flops, num_params
from clip_model.presets import preset
from clip_model.tokenizer import ClipBPE, TrainedBPE, from_json

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white")
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "heart")


def small_model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=300))


def test_loss_equals_hand_computed_value():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    scale = torch.tensor(2.0)

    # logits_per_image = 2 * [[0.6, 0.0], [0.8, 1.0]]; per text = its transpose.
    def ce(row, i):
        return -row[i] + math.log(sum(math.exp(v) for v in row))

    li = [[1.2, 0.0], [1.6, 2.0]]
    lt = [[1.2, 1.6], [0.0, 2.0]]
    expected = ((ce(li[0], 0) + ce(li[1], 1)) / 2 + (ce(lt[0], 0) + ce(lt[1], 1)) / 2) / 2
    assert clip_loss(image, text, scale).item() == pytest.approx(expected, abs=1e-6)


def test_loss_is_symmetric_and_lowest_for_matching_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    s = torch.tensor(10.0)
    assert clip_loss(a, b, s).item() == pytest.approx(clip_loss(b, a, s).item(), abs=1e-6)
    assert clip_loss(a, a, s) < clip_loss(a, b, s)


def test_gradients_reach_both_towers_and_the_temperature():
    model = small_model()
    images, texts = torch.randn(4, 3, 32, 32), torch.randint(1, 299, (4, 12))
    clip_loss(*model(images, texts)).backward()
    for name in (
        "visual.conv1.weight",
        "visual.proj",
        "token_embedding.weight",
        "text_projection",
        "logit_scale",
        "transformer.resblocks.0.attn.in_proj_weight",
        "visual.transformer.resblocks.0.mlp.c_fc.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_logit_scale_init_and_clamp():
    model = small_model()
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    model.clamp_logit_scale()
    assert model.logit_scale.exp().item() == pytest.approx(100.0, rel=1e-5)


def test_text_feature_is_taken_at_the_end_token():
    model = small_model().eval()
    a = torch.tensor([[298, 5, 6, 299, 0, 0, 0, 0, 0, 0, 0, 0]])
    b = a.clone()
    b[0, 5] = 7  # after EOT: the causal mask hides it from the EOT position
    assert torch.allclose(model.encode_text(a), model.encode_text(b), atol=1e-6)
    c = a.clone()
    c[0, 1] = 9  # before EOT: changes the feature
    assert not torch.allclose(model.encode_text(a), model.encode_text(c), atol=1e-4)


def openai_vit_b32_layout() -> dict[str, tuple[int, ...]]:
    """The published OpenAI ViT-B/32 state_dict: names and shapes."""
    layout = {
        "visual.class_embedding": (768,),
        "visual.positional_embedding": (50, 768),
        "visual.proj": (768, 512),
        "visual.conv1.weight": (768, 3, 32, 32),
        "visual.ln_pre.weight": (768,), "visual.ln_pre.bias": (768,),
        "visual.ln_post.weight": (768,), "visual.ln_post.bias": (768,),
        "token_embedding.weight": (49408, 512),
        "positional_embedding": (77, 512),
        "ln_final.weight": (512,), "ln_final.bias": (512,),
        "text_projection": (512, 512),
        "logit_scale": (),
    }  # fmt: skip
    for prefix, w in (("visual.transformer", 768), ("transformer", 512)):
        for i in range(12):
            p = f"{prefix}.resblocks.{i}"
            layout.update({
                f"{p}.attn.in_proj_weight": (3 * w, w), f"{p}.attn.in_proj_bias": (3 * w,),
                f"{p}.attn.out_proj.weight": (w, w), f"{p}.attn.out_proj.bias": (w,),
                f"{p}.ln_1.weight": (w,), f"{p}.ln_1.bias": (w,),
                f"{p}.mlp.c_fc.weight": (4 * w, w), f"{p}.mlp.c_fc.bias": (4 * w,),
                f"{p}.mlp.c_proj.weight": (w, 4 * w), f"{p}.mlp.c_proj.bias": (w,),
                f"{p}.ln_2.weight": (w,), f"{p}.ln_2.bias": (w,),
            })  # fmt: skip
    return layout


def test_vit_b32_state_dict_matches_the_openai_layout_and_loads_strictly():
    with torch.device("meta"):  # shapes only: no 600 MB of weights
        model = CLIP(preset("ViT-B-32"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = openai_vit_b32_layout()
    assert ours == expected
    assert num_params(model) == 151_277_313  # OpenAI's ViT-B/32
    state = {k: torch.empty(shape, device="meta") for k, shape in expected.items()}
    missing, unexpected = model.load_state_dict(state, strict=True, assign=True)
    assert not missing and not unexpected


@pytest.fixture(scope="module")
def bpe() -> TrainedBPE:
    caps = [
        f"{n} {c} {s}s on a {b} background"
        for n in ("two", "three")
        for c in COLOURS
        for s in SHAPES
        for b in ("red", "blue")
    ]
    return TrainedBPE.train(caps * 3, vocab_size=400, context_length=8)


def test_trained_bpe_keeps_the_end_token_when_truncating(bpe):
    ids = bpe(
        [
            "two red circles",
            "three purple diamonds on a yellow background with many more words here",
        ]
    )
    assert ids.shape == (2, 8)
    assert bpe.eot_id == bpe.vocab_size - 1 == int(ids.max())
    short, long = ids.tolist()
    assert short[0] == bpe.sot_id and bpe.eot_id in short and short[-1] == 0
    assert long[0] == bpe.sot_id and long[-1] == bpe.eot_id  # truncated, EOT kept
    assert bpe.decode(short).strip() == "two red circles"


def test_tokenizer_survives_a_json_round_trip(bpe):
    again = from_json(bpe.to_json())
    text = ["a cyan ring on the left", "Two BROWN hearts"]
    assert torch.equal(again(text), bpe(text))


def test_clip_bpe_missing_vocabulary_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="bpe_simple_vocab_16e6"):
        ClipBPE(str(tmp_path / "bpe_simple_vocab_16e6.txt.gz"))


def test_siglip_loss_equals_hand_computed_value():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.6, 0.8], [0.0, 1.0]])

    # logits = 2 * image @ text.T - 1 = [[0.2, -1.0], [0.6, 1.0]]; +1 on the diagonal, -1 elsewhere
    def logsig(x):
        return -math.log(1 + math.exp(-x))

    expected = -(logsig(0.2) + logsig(1.0) + logsig(1.0) + logsig(-0.6)) / 2
    loss = siglip_loss(image, text, torch.tensor(2.0), torch.tensor(-1.0))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_a_siglip_model_returns_its_bias_and_learns_it():
    torch.manual_seed(0)
    cfg = preset("tiny", image_size=32, context_length=12, vocab_size=300, init_logit_bias=-10.0)
    model = CLIP(cfg)
    out = model(torch.randn(4, 3, 32, 32), torch.randint(1, 299, (4, 12)))
    assert len(out) == 4 and out[3].item() == pytest.approx(-10.0)
    siglip_loss(*out).backward()
    assert model.logit_bias.grad is not None and model.logit_bias.grad.abs() > 0
    assert len(small_model()(torch.randn(1, 3, 32, 32), torch.randint(1, 299, (1, 12)))) == 3


def test_forward_flops_match_torch_flop_counter():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = small_model()
    flops = forward_flops(model.cfg)
    for tower, run in (
        ("image", lambda: model.encode_image(torch.randn(2, 3, 32, 32))),
        ("text", lambda: model.encode_text(torch.randint(1, 299, (2, 12)))),
    ):
        # the math kernel is made of matmuls the counter sees (CPU's fused kernel it does not count)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            run()
        assert counter.get_total_flops() == 2 * flops[tower], tower


def tiny_clip_vocab(path) -> str:
    """A CLIP BPE vocabulary file in OpenAI's format with four merges."""
    import gzip

    lines = ["#version: 0.2", "h e", "l l", "he ll", "hell o</w>"]
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    return str(path)


def test_clip_bpe_on_a_hand_made_vocabulary(tmp_path):
    tok = ClipBPE(tiny_clip_vocab(tmp_path / "vocab.txt.gz"), context_length=10)
    # 256 byte symbols, 256 word-final ones, 4 merges, then <start_of_text> and <end_of_text>
    assert tok.vocab_size == 518 and (tok.sot_id, tok.eot_id) == (516, 517)
    # printable ASCII maps to ids from '!' (33) on; 'd</w>' is in the second block
    world = [ord("w") - 33, ord("o") - 33, ord("r") - 33, ord("l") - 33, 256 + ord("d") - 33]
    hello = 512 + 3  # "hello</w>" is the fourth merge
    assert tok.encode("Hello   WORLD") == [hello, *world]
    assert tok.encode("a!") == [256 + ord("a") - 33, 256 + ord("!") - 33]
    assert tok.encode("hello <end_of_text>") == [hello, 517]  # as OpenAI's: the special id
    ids = tok(["hello world", "hello " * 20]).tolist()
    assert ids[0] == [516, hello, *world, 517, 0, 0]
    assert ids[1] == [516] + [hello] * 8 + [517]  # truncated, end token kept
    again = from_json(tok.to_json())  # the vocabulary travels in the JSON
    (tmp_path / "vocab.txt.gz").unlink()
    assert torch.equal(again(["hello world"]), tok(["hello world"]))


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


def test_open_clip_and_openai_state_dicts_load_strictly_with_their_shapes(tmp_path):
    model = small_model().eval()
    state = model.state_dict()
    images, texts = torch.randn(2, 3, 32, 32), torch.randint(1, 299, (2, 12))
    texts[:, 5] = 299
    expected = model.encode_image(images), model.encode_text(texts)
    openai_like = {**state, "input_resolution": torch.tensor(32), "vocab_size": torch.tensor(300)}
    files = {
        "state_dict": _save(state, tmp_path / "open_clip_model.bin"),
        "training checkpoint": _save(
            {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
            tmp_path / "epoch_3.pt",
        ),
        "openai extras": _save(openai_like, tmp_path / "openai.pt"),
        "torchscript": str(tmp_path / "ViT-tiny.pt"),
    }
    torch.jit.save(torch.jit.trace(model, (images, texts)), files["torchscript"])
    for kind, path in files.items():
        weights = pretrained.load_weights(path, quick_gelu=model.cfg.quick_gelu)
        assert weights.config == model.cfg, kind
        loaded = CLIP(weights.config).eval()
        loaded.load_state_dict(weights.state, strict=True)
        assert torch.allclose(loaded.encode_image(images), expected[0], atol=1e-6), kind
        assert torch.allclose(loaded.encode_text(texts), expected[1], atol=1e-6), kind


def test_vit_b32_shapes_give_the_vit_b32_config():
    with torch.device("meta"):
        state = CLIP(preset("ViT-B-32")).state_dict()
    assert pretrained.config_from_state_dict(state) == preset("ViT-B-32")


def test_resnet_weights_are_refused_with_the_reason():
    state = {"visual.layer1.0.conv1.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="ResNet"):
        pretrained.config_from_state_dict(state)
