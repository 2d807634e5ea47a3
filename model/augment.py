"""Training augmentation on whole batches of tensors, every draw from one seeded generator.

``augment`` runs on float images in [0, 1] (flip, affine rotation/scale/shift, colour jitter,
grayscale, drawn eyeglasses, then ``degrade``); ``random_erase`` runs on the normalised input.
The draws come from the CPU generator in a fixed order, so a seed gives the same batches on
every device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model import eyeglasses
from model.train_config import AugmentConfig


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    """``n`` uniform draws from the CPU generator (one random stream on every device)."""
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def augment(
    x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, crop: float = 1.0
) -> torch.Tensor:
    """Batch augmentation of float images in [0, 1], NCHW, on ``x``'s device; ``crop`` is the
    data's centred crop (where the eyes are, for the eyeglasses)."""
    n = x.shape[0]

    def u(lo, hi):
        return _uniform(n, lo, hi, gen, x.device)

    if cfg.eyeglasses:  # first, so the glasses turn and scale with the face
        chosen = torch.rand(n, generator=gen) < cfg.eyeglasses
        x = eyeglasses.draw(x, gen, eyeglasses.eyes_in_crop(crop), chosen)
    if cfg.hflip:
        flip = u(0, 1) < cfg.hflip
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    rot, scale, shift = cfg.rotate_deg, cfg.scale, cfg.translate
    if rot or scale or shift:
        a = u(-rot, rot) * math.pi / 180
        s = u(1 - scale, 1 + scale)
        tx, ty = u(-shift, shift) * 2, u(-shift, shift) * 2
        theta = torch.stack(
            [
                torch.stack([torch.cos(a) / s, -torch.sin(a) / s, tx], 1),
                torch.stack([torch.sin(a) / s, torch.cos(a) / s, ty], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    b, c, sat = cfg.brightness, cfg.contrast, cfg.saturation
    if b:
        x = x * u(1 - b, 1 + b)[:, None, None, None]
    if c:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * u(1 - c, 1 + c)[:, None, None, None] + mean
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    if sat:
        x = gray + (x - gray) * u(1 - sat, 1 + sat)[:, None, None, None]
    if cfg.grayscale:
        g = u(0, 1) < cfg.grayscale
        x = torch.where(g[:, None, None, None], gray.expand_as(x), x)
    return degrade(x.clamp(0, 1), cfg, gen)


def degrade(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Camera-like degradation of float images in [0, 1], NCHW.

    Kiosk video differs from web photos less in pose than in capture: faces a few dozen pixels
    wide and upscaled, soft focus, sensor noise, grey-ish exposure and white balance. Each image
    independently gets, with its own probability: a down- and up-scale through
    ``downscale_px`` pixels (area down, bilinear up), a per-channel gain (white balance), a
    gamma curve and Gaussian noise.
    """
    n = x.shape[0]

    def u(lo, hi):
        return _uniform(n, lo, hi, gen, x.device)

    if cfg.downscale_prob:
        lo, hi = cfg.downscale_px
        chosen = u(0, 1) < cfg.downscale_prob
        # Bucket the sizes to multiples of 4 px: one interpolate call per bucket, not per image.
        sizes = ((u(lo, hi) / 4).round().long() * 4).clamp(min=2)
        out = x.clone()
        for side in sizes[chosen].unique().tolist():
            pick = chosen & (sizes == side)
            small = F.interpolate(x[pick], size=(side, side), mode="area")
            out[pick] = F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)
        x = out
    if cfg.white_balance:
        wb = cfg.white_balance
        x = x * _uniform(n * 3, 1 - wb, 1 + wb, gen, x.device).view(n, 3, 1, 1)
    if cfg.gamma:
        x = x.clamp(0, 1) ** torch.exp(u(-cfg.gamma, cfg.gamma))[:, None, None, None]
    if cfg.noise:
        sigma = u(0, cfg.noise)[:, None, None, None]
        x = x + torch.randn(x.shape, generator=gen).to(x.device) * sigma
    return x.clamp(0, 1)


def random_erase(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random erasing on normalised images: one box per chosen image filled with noise."""
    p = cfg.erase_prob
    if not p:
        return x
    n, _, h, w = x.shape
    lo, hi = cfg.erase_area
    area = torch.rand(n, generator=gen) * (hi - lo) + lo
    logr = torch.rand(n, generator=gen) * (2 * math.log(3.3)) - math.log(3.3)
    ratio = torch.exp(logr)
    eh = (torch.sqrt(area * ratio) * h).clamp(1, h).long()
    ew = (torch.sqrt(area / ratio) * w).clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen) * (h - eh + 1).float()).long()
    x0 = (torch.rand(n, generator=gen) * (w - ew + 1).float()).long()
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    my = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])
    mx = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
    chosen = torch.rand(n, generator=gen) < p
    mask = (my[:, :, None] & mx[:, None, :] & chosen[:, None, None])[:, None].to(x.device)
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    return torch.where(mask, noise, x)
