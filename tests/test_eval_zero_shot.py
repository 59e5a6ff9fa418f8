"""Zero-shot on a labelled image folder and retrieval recall@k: folder scanning, class names,
templates, top-1/top-5 and per-class accuracy, unreadable images counted."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from clip_model import zero_shot as Z
from clip_model.model import CLIP
from clip_model.presets import preset
from clip_model.tokenizer import TrainedBPE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _jpg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    """<root>/<class>/ images: 2 classes named by WordNet-style ids, one stray file, one bad image."""
    root = tmp_path / "val"
    for wnid, colour, n in (("n02", (200, 10, 10), 3), ("n01", (10, 10, 200), 2)):
        (root / wnid).mkdir(parents=True)
        for i in range(n):
            (root / wnid / f"img{i}.JPEG").write_bytes(_jpg(colour))
    (root / "n01" / "notes.txt").write_text("not an image")
    (root / "n02" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "README").write_text("a file beside the class folders")
    return root


def test_scan_lists_classes_in_folder_order_with_their_images(folder):
    f = Z.scan_folder(str(folder))
    assert f.folders == ["n01", "n02"] and f.classnames == ["n01", "n02"]
    assert len(f.paths) == 6 and f.labels == [0, 0, 1, 1, 1, 1]  # .JPEG counts, .txt does not


@pytest.mark.parametrize(
    "name,text",
    [
        ("names.txt", "tench\ngoldfish\n"),
        ("names.tsv", "n02\tgoldfish\nn01\ttench\n"),
        ("names.json", json.dumps({"n01": "tench", "n02": "goldfish"})),
    ],
)
def test_class_names_files_in_three_forms(folder, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert Z.scan_folder(str(folder), str(tmp_path / name)).classnames == ["tench", "goldfish"]


def test_a_class_names_file_that_does_not_match_is_refused(folder, tmp_path):
    (tmp_path / "names.txt").write_text("tench\ngoldfish\nshark\n")
    with pytest.raises(ValueError, match="3 class names for 2 class folders"):
        Z.scan_folder(str(folder), str(tmp_path / "names.txt"))
    (tmp_path / "names.json").write_text(json.dumps({"n01": "tench"}))
    with pytest.raises(ValueError, match="n02"):
        Z.scan_folder(str(folder), str(tmp_path / "names.json"))


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no <class>/<image>"):
        Z.scan_folder(str(tmp_path / "empty"))


def test_templates_builtin_and_from_a_file(tmp_path):
    assert (
        len(Z.read_templates("openai")) == 80 and Z.read_templates("simple") == Z.SIMPLE_TEMPLATES
    )
    (tmp_path / "t.txt").write_text("a photo of a {}.\n\nitap of a {}.\n")
    assert Z.read_templates(str(tmp_path / "t.txt")) == ("a photo of a {}.", "itap of a {}.")
    (tmp_path / "bad.txt").write_text("a photo of a {}.\nno placeholder\n")
    with pytest.raises(ValueError, match="no placeholder"):
        Z.read_templates(str(tmp_path / "bad.txt"))


def test_classify_gives_top1_top5_and_per_class_accuracy():
    # 6 classes; both images of class 0 are right, one of the two of class 1, the others have none
    classifier = torch.eye(6)  # (D, C): the feature's largest coordinate is the prediction
    feats = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0.9, 0.1, 0, 0, 0, 0],  # class 0: right twice
                          [0, 1.0, 0, 0, 0, 0], [1.0, 0.5, 0, 0, 0, 0]])  # fmt: skip
    labels = torch.tensor([0, 0, 1, 1])
    names = ["a", "b", "c", "d", "e", "f"]
    r = Z.classify(feats, labels, classifier, names)
    assert r["top1"] == pytest.approx(0.75) and r["top5"] == 1.0 and r["classes"] == 6
    assert r["per_class"] == {"a": {"top1": 1.0, "images": 2}, "b": {"top1": 0.5, "images": 2}}
    assert r["mean_per_class_top1"] == pytest.approx(0.75)
    assert r["chance_top1"] == pytest.approx(1 / 6) and r["chance_top5"] == pytest.approx(5 / 6)


def test_retrieval_recall_at_k_in_both_directions():
    image = torch.eye(4)
    text = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
    r = Z.retrieval(image, text)  # pairs 0 and 3 match; 1 and 2 are swapped
    assert r["image_to_text_r1"] == r["text_to_image_r1"] == 0.5
    assert r["recall_at_5"] == r["recall_at_10"] == 1.0 and r["pairs"] == 4


def test_evaluate_folder_counts_unreadable_images(folder):
    torch.manual_seed(0)
    tok = TrainedBPE.train(["a photo of a tench", "a photo of a goldfish"] * 20, 300, 12)
    model = CLIP(preset("tiny", image_size=32, context_length=12, vocab_size=tok.vocab_size))
    r = Z.evaluate_folder(model, tok, Z.scan_folder(str(folder)), Z.SIMPLE_TEMPLATES, "cpu",
                          batch=4, workers=0)  # fmt: skip
    assert r["images"] == 5 and r["unreadable_images"] == 1
    assert r["unreadable_examples"][0].endswith("broken.jpg")
    assert sum(v["images"] for v in r["per_class"].values()) == 5 and r["templates"] == 1
