"""Byte-level BPE tokenizers: OpenAI's CLIP vocabulary (from a local file) or one trained on captions.

Both produce rows of ``context_length`` ids: ``<start_of_text> ... <end_of_text>`` then padding 0.
In both vocabularies ``<end_of_text>`` has the largest id, so the text tower pools at
``argmax(ids)`` exactly as OpenAI's model does. Truncation drops caption tokens, never the end token.
Nothing here downloads: the CLIP vocabulary must already be on disk.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import os
from collections.abc import Iterable, Sequence

import torch

SOT, EOT = "<start_of_text>", "<end_of_text>"
# OpenAI's pre-tokenisation pattern (contractions, letters, digits, other symbols).
_CLIP_PATTERN = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def clean(text: str) -> str:
    """ftfy + HTML unescape + collapsed whitespace + lower case, as OpenAI cleans captions."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class Tokenizer:
    """Common interface: ``tok(texts) -> (N, context_length)`` LongTensor."""

    kind = ""
    vocab_size = 0
    sot_id = 0
    eot_id = 0

    def __init__(self, context_length: int = 77):
        if context_length < 3:
            raise ValueError(f"context_length must be >= 3, got {context_length}")
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        """Ids of a caption without the start/end tokens."""
        raise NotImplementedError

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Ids of several captions (subclasses may batch this)."""
        return [self.encode(t) for t in texts]

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)  # pad 0
        for i, ids in enumerate(self.encode_many(texts)):
            ids = [self.sot_id, *ids[: n - 2], self.eot_id]  # keep EOT when truncating
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def to_json(self) -> str:
        """Serialised form stored in checkpoints (a string: loads with ``weights_only=True``)."""
        raise NotImplementedError


@functools.lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte -> printable unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ClipBPE(Tokenizer):
    """OpenAI's CLIP BPE (49,408 ids) read from ``bpe_simple_vocab_16e6.txt.gz`` (the file that
    OpenAI's repository and open_clip's wheel ship); the same ids as open_clip's tokenizer."""

    kind = "clip"

    def __init__(self, vocab_path: str, context_length: int = 77, vocab_gz: bytes | None = None):
        super().__init__(context_length)
        import regex

        if vocab_gz is None:
            if not vocab_path or not os.path.isfile(vocab_path):
                raise FileNotFoundError(
                    f"the CLIP BPE vocabulary file is not on disk ({vocab_path!r}); copy "
                    "bpe_simple_vocab_16e6.txt.gz there (open_clip's wheel ships it)"
                )
            with open(vocab_path, "rb") as f:
                vocab_gz = f.read()
        self.vocab_path, self.vocab_gz = vocab_path, vocab_gz
        lines = gzip.decompress(vocab_gz).decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
        vocab = list(_bytes_to_unicode().values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.vocab_size = len(vocab)
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.pattern = regex.compile(_CLIP_PATTERN, regex.IGNORECASE)
        self._bpe = functools.lru_cache(maxsize=100_000)(self._bpe_uncached)

    def _bpe_uncached(self, token: str) -> tuple[str, ...]:
        if token in (SOT, EOT):  # a caption that spells a special token gets its id, as OpenAI's
            return (token,)
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text: str) -> list[int]:
        b2u = _bytes_to_unicode()
        ids = []
        for token in self.pattern.findall(clean(text)):
            token = "".join(b2u[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token))
        return ids

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "vocab_path": self.vocab_path,
                # the file itself, so the checkpoint loads where that path does not exist
                "vocab_gz": base64.b64encode(self.vocab_gz).decode("ascii"),
                "context_length": self.context_length,
            }
        )


class TrainedBPE(Tokenizer):
    """A byte-level BPE trained on the dataset's captions with the ``tokenizers`` library."""

    kind = "trained"

    def __init__(self, hf_tokenizer, context_length: int = 77):
        super().__init__(context_length)
        self.hf = hf_tokenizer
        self.vocab_size = hf_tokenizer.get_vocab_size()
        self.sot_id, self.eot_id = hf_tokenizer.token_to_id(SOT), hf_tokenizer.token_to_id(EOT)
        assert self.eot_id == self.vocab_size - 1, "EOT must have the largest id (argmax pooling)"

    @classmethod
    def train(
        cls, captions: Iterable[str], vocab_size: int, context_length: int = 77
    ) -> TrainedBPE:
        """Learn merges from captions; the special tokens are appended so EOT gets the top id."""
        from tokenizers import Tokenizer as HF
        from tokenizers import decoders, models, pre_tokenizers, trainers

        hf = HF(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - 2,
            min_frequency=2,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator((clean(c) for c in captions), trainer=trainer)
        hf.add_special_tokens([SOT, EOT])
        return cls(hf, context_length)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(clean(text), add_special_tokens=False).ids

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [
            e.ids for e in self.hf.encode_batch([clean(t) for t in texts], add_special_tokens=False)
        ]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids (special tokens and padding dropped)."""
        return self.hf.decode([i for i in ids if i not in (self.sot_id, self.eot_id, 0)])

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "context_length": self.context_length, "hf": self.hf.to_str()}
        )


def from_json(blob: str) -> Tokenizer:
    """Rebuild a tokenizer saved with ``to_json``."""
    d = json.loads(blob)
    if d["kind"] == "clip":
        gz = base64.b64decode(d["vocab_gz"]) if "vocab_gz" in d else None
        return ClipBPE(d["vocab_path"], d["context_length"], gz)
    from tokenizers import Tokenizer as HF

    return TrainedBPE(HF.from_str(d["hf"]), d["context_length"])
