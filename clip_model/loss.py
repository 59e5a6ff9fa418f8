"""Contrastive losses over image-text similarities: CLIP's softmax loss and SigLIP's sigmoid loss.

Under DDP each rank gathers every rank's features with gradients and scores only its local rows
against the global columns ("local loss", labels offset by rank * B_local): the effective batch is
the global batch while each rank computes a (B_local, B_global) block of the logits, not the
(B_global, B_global) matrix. DDP's gradient average then equals the gradient of the global loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B_local, D) -> (world * B_local, D); each rank's slice receives the gradients of all ranks.

    ``torch.distributed.nn.all_gather`` sums, in the backward pass, what every rank's loss sends to
    this rank's features; after DDP averages, the parameter gradient is exactly that of the
    global-batch loss (a plain all_gather with the local slice re-inserted would drop the other
    ranks' terms).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def clip_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, *, gather: bool = True
) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy; features (B, D) are L2-normalised."""
    rank = _rank() if gather else 0
    all_image = gather_with_grad(image) if gather else image  # (N, D), N = world * B
    all_text = gather_with_grad(text) if gather else text
    logits_per_image = scale * image @ all_text.T  # (B, N)
    logits_per_text = scale * text @ all_image.T  # (B, N)
    labels = torch.arange(image.shape[0], device=image.device) + rank * image.shape[0]
    return (
        F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)
    ) / 2


def siglip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """SigLIP (Zhai et al. 2023): each image-text pair is a binary match/no-match decision.

    loss = -sum_ij log sigmoid(z_ij * (scale * <image_i, text_j> + bias)) / B_global, with
    z_ij = 1 for the matching pair and -1 otherwise. Each rank scores its images against every
    rank's texts (gathered with gradients) and divides by its own batch: the mean over ranks is
    the global loss, each pair counted once.
    """
    rank = _rank() if gather else 0
    all_text = gather_with_grad(text) if gather else text  # (N, D)
    logits = scale * image @ all_text.T + bias  # (B, N)
    b = image.shape[0]
    signs = -torch.ones_like(logits)
    rows = torch.arange(b, device=logits.device)
    signs[rows, rows + rank * b] = 1.0
    return -F.logsigmoid(signs * logits).sum() / b


LOSSES = {"clip": clip_loss, "siglip": siglip_loss}
