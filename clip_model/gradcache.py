"""Gradient accumulation with cached features (GradCache: Gao et al. 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup").

A contrastive loss couples every sample of the batch, so plain accumulation over micro-batches
would score each micro-batch only against itself: a smaller batch, another loss. GradCache keeps
the full-batch loss with the memory of one micro-batch:

1. encode every micro-batch without building a graph and concatenate the features;
2. compute the full-batch loss on those features (detached leaves) and backpropagate it to them,
   which gives d loss / d feature for every sample (and for the temperature and bias);
3. encode each micro-batch again with a graph and backpropagate the cached feature gradients
   through it. The parameter gradients add up to exactly those of the full batch.

Under DDP the loss in step 2 is the "local loss" with features gathered across ranks, and the
gradient all-reduce runs only with the last micro-batch (``no_sync`` for the others). The towers
must be deterministic between the two passes; they are (no dropout, no random layers).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().requires_grad_(True)


@torch.no_grad()
def _cached_features(raw, images: list[torch.Tensor], texts: list[torch.Tensor], autocast):
    """Step 1: normalised features of every micro-batch, without a graph -> (B, D) each."""
    image_f, text_f = [], []
    for im, tx in zip(images, texts):
        with autocast():
            image_f.append(raw.encode_image(im, normalize=True).float())
            text_f.append(raw.encode_text(tx, normalize=True).float())
    return torch.cat(image_f), torch.cat(text_f)


def cached_step(model, raw, images, texts, loss_fn, micro_batches: int, autocast) -> torch.Tensor:
    """Accumulate the gradients of ``loss_fn`` over the whole batch in ``micro_batches`` passes.

    ``model`` is what runs the forward pass (DDP and/or compiled), ``raw`` the bare :class:`CLIP`;
    ``autocast`` returns a fresh autocast context. Returns the (detached) full-batch loss.
    """
    images_mb, texts_mb = images.chunk(micro_batches), texts.chunk(micro_batches)
    image_f, text_f = _cached_features(raw, images_mb, texts_mb, autocast)
    image_f, text_f = _leaf(image_f), _leaf(text_f)  # (B, D) each
    extras = [_leaf(raw.logit_scale.exp())]
    if raw.logit_bias is not None:
        extras.append(_leaf(raw.logit_bias))
    loss = loss_fn(image_f, text_f, *extras)
    loss.backward()  # step 2: gradients w.r.t. the cached features, scale and bias
    sizes = [len(x) for x in images_mb]
    g_image, g_text = image_f.grad.split(sizes), text_f.grad.split(sizes)
    no_sync = getattr(model, "no_sync", None)
    for i, (im, tx) in enumerate(zip(images_mb, texts_mb)):
        last = i == len(sizes) - 1
        with nullcontext() if last or no_sync is None else no_sync():
            with autocast():
                out = model(im, tx)  # (image, text, scale[, bias])
            surrogate = (out[0].float() * g_image[i]).sum() + (out[1].float() * g_text[i]).sum()
            if last:  # the temperature (and bias) gradients once, with the all-reduce
                for value, leaf in zip(out[2:], extras):
                    surrogate = surrogate + (value.float() * leaf.grad).sum()
            surrogate.backward()
    return loss.detach()
