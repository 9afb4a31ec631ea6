"""Speed options of the training step and of inference, all off-or-equivalent by default (config node ``hardware``).

* ``hardware.channels_last`` (bool): the detector's parameters and buffers in ``torch.channels_last`` memory format,
  so cuDNN / oneDNN convolutions run NHWC without layout conversions (tensor cores on GPUs prefer it under mixed
  precision). Same function; float results differ only by summation order.
* ``hardware.compile`` (``none`` | ``backbone_stages``): regional ``torch.compile`` (inductor) of each MaxViT-RNN
  stage with static shapes (``dynamic=False``): the stage's partition reshapes, LayerNorms, GELUs and residual adds
  fuse; the PAFPN, head and loss (data-dependent assignment) stay eager. A new input shape (e.g. a last, smaller batch
  or the evaluation batch size) compiles once more; steps of the same shape never recompile.
* fused AdamW (:func:`build_adamw`): one kernel for all parameters where torch has it (CUDA, CPU), else the foreach
  implementation.

For inference only, :func:`fold_batch_norms` folds each eval-mode BatchNorm into the convolution before it (YOLOX
``BaseConv``: conv -> BN -> activation becomes conv with bias -> activation; ``torch.nn.utils.fusion``), which removes
one memory pass per convolution at batch size 1. Same function; outputs agree to float rounding (~1e-6 relative).

Activation checkpointing per stage is a model option (``model.backbone.checkpoint_stages``, :mod:`evdet.model.nn.backbone`).
What each option gives is measured with ``evdet-bench train --profile`` (``bench/README.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "apply_acceleration", "build_adamw", "fold_batch_norms"]

COMPILE_MODES = ("none", "backbone_stages")
"""Allowed values of ``hardware.compile``."""


def apply_acceleration(model: nn.Module, hardware: Mapping[str, Any]) -> nn.Module:
    """Apply ``hardware.channels_last`` and ``hardware.compile`` to a detector in place (see the module docstring).

    Args:
        model: an :class:`evdet.model.nn.detector.RVT` (``compile`` needs its ``backbone.stages``).
        hardware: the ``hardware`` config node; missing keys mean off (configs written before these options).

    Returns:
        ``model`` (the same object).

    Raises:
        ValueError: ``hardware.compile`` not one of :data:`COMPILE_MODES`, or ``hardware.channels_last`` not a bool
            (the message names the key).
    """
    channels_last = hardware.get("channels_last", False)
    if not isinstance(channels_last, bool):
        raise ValueError(f"hardware.channels_last: expected true or false, got {channels_last!r}")
    mode = hardware.get("compile", "none") or "none"
    if mode not in COMPILE_MODES:
        raise ValueError(f"hardware.compile: expected one of {list(COMPILE_MODES)}, got {mode!r}")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if mode == "backbone_stages":
        for stage in model.backbone.stages:
            stage.compile(dynamic=False)
    return model


def build_adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, ICLR 2019) with the fused implementation where torch supports the parameters'
    device (CUDA, CPU), else the foreach one. Same update rule; results agree to float rounding.

    Args:
        params: the parameters (all on one device).
        lr: learning rate.
        weight_decay: decoupled weight decay (torch's default 0.01).
    """
    params = list(params)
    device = params[0].device.type if params else "cpu"
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device in ("cuda", "cpu"))


def fold_batch_norms(model: nn.Module) -> int:
    """Fold the BatchNorm of every :class:`evdet.model.nn.csp.BaseConv` of ``model`` into its convolution, in place.

    ``conv.weight * gamma / sqrt(var + eps)`` and bias ``beta - mean * gamma / sqrt(var + eps)`` (Ioffe & Szegedy,
    ICML 2015, Alg. 2, inference form), computed by ``torch.nn.utils.fusion.fuse_conv_bn_eval``; the BN becomes an
    identity. For inference: the model must be in eval mode (running statistics are used) and is not trainable
    afterwards in the same sense (no batch statistics).

    Args:
        model: a detector or any module containing ``BaseConv`` layers.

    Returns:
        Number of folded BatchNorms.

    Raises:
        ValueError: ``model`` is in training mode.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from evdet.model.nn.csp import BaseConv

    if model.training:
        raise ValueError("fold_batch_norms: expected a model in eval mode (call model.eval() first)")
    folded = 0
    for module in model.modules():
        if isinstance(module, BaseConv) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
            folded += 1
    return folded
