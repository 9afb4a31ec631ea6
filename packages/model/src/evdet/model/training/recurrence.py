"""Running the recurrent detector over a batch of sequences (B sequences x L windows).

RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 3.3 and 4.1) trains with truncated back-propagation through time: each
batch holds L consecutive 50 ms windows per sequence; the LSTM states are carried from one batch to the next for
streaming sampling (detached, so gradients stop at the batch boundary) and reset to zero at the first sample of a
recording. Only windows that have labels produce detection losses and detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evdet.model.nn.detector import RVT, LstmStates

__all__ = ["LabelledFrames", "run_sequence", "reset_states", "detach_states"]


def reset_states(states: LstmStates | None, is_first: torch.Tensor, batch_size: int) -> LstmStates | None:
    """Zero the recurrent state of the batch slots that start a new recording.

    Args:
        states: ``(h, c)`` per stage, each ``(B, C_s, H_s, W_s)``, or None.
        is_first: bool ``(B,)``; True where the slot begins a recording.
        batch_size: B of the incoming batch; states of another batch size are dropped (returns None).

    Returns:
        The states with the first-sample slots zeroed, or None when there is nothing to carry.
    """
    if states is None or states[0][0].shape[0] != batch_size:
        return None
    if bool(is_first.all()):
        return None
    keep = (~is_first).to(states[0][0].dtype).view(-1, 1, 1, 1)
    return [(h * keep, c * keep) for h, c in states]


def detach_states(states: LstmStates | None) -> LstmStates | None:
    """Cut the autograd graph at a batch boundary (truncated BPTT)."""
    if states is None:
        return None
    return [(h.detach(), c.detach()) for h, c in states]


@dataclass
class LabelledFrames:
    """Features and targets of the labelled windows of one batch.

    Attributes:
        features: per stage ``(N, C_s, h_s, w_s)`` float, N = number of labelled, non-padded windows.
        targets: N float32 tensors ``(n_i, 5)`` on the host: ``[class_id, x, y, w, h]`` (px, top-left); the loss
            pads them and moves them to the device in one copy (:func:`evdet.model.loss.yolox_loss.pad_targets`).
        batch_index: long ``(N,)`` batch slot of each frame.
        time_index: long ``(N,)`` position in the sequence (0..L-1).
        label_t_us: int64 ``(N,)`` label timestamp (µs).
    """

    features: dict[int, torch.Tensor]
    targets: list[torch.Tensor]
    batch_index: torch.Tensor
    time_index: torch.Tensor
    label_t_us: torch.Tensor

    @property
    def count(self) -> int:
        """Number of labelled frames N."""
        return len(self.targets)


def run_sequence(
    model: RVT, batch: dict, states: LstmStates | None
) -> tuple[LabelledFrames, LstmStates]:
    """Run the backbone over the L windows of a batch and gather the labelled frames.

    Args:
        model: the detector.
        batch: batch dict from :mod:`evdet.model.training.dataset` (``representation`` uint8 ``(B, L, C, H, W)``, ``labels``,
            ``has_label`` ``(B, L)``, ``label_t_us`` ``(B, L)``, ``is_first_sample`` ``(B,)``, ``is_padded`` ``(B,)``).
        states: states carried from the previous batch (None for zero states).

    Returns:
        The labelled frames and the states after the last window (not detached).
    """
    frames = batch["representation"]
    bsz, seq_len = frames.shape[:2]
    device = next(model.parameters()).device
    states = reset_states(states, batch["is_first_sample"].to(device), bsz)
    # Which windows are labelled is decided on the host (the masks and labels stay there, see
    # RVTModule.transfer_batch_to_device), so gathering the labelled frames never waits for the device.
    use = (batch["has_label"] & ~batch["is_padded"].view(-1, 1)).cpu()
    pin = device.type == "cuda"
    per_stage: dict[int, list[torch.Tensor]] = {s: [] for s in model.in_stages}
    targets: list[torch.Tensor] = []
    b_idx: list[torch.Tensor] = []
    t_idx: list[torch.Tensor] = []
    for t in range(seq_len):
        x = frames[:, t].to(device=device, dtype=torch.float32, non_blocking=True)
        features, states = model.forward_backbone(x, states)
        slots = torch.nonzero(use[:, t], as_tuple=False).flatten()
        if slots.numel() == 0:
            continue
        slots_dev = (slots.pin_memory() if pin else slots).to(device, non_blocking=True)
        for s in model.in_stages:
            per_stage[s].append(features[s].index_select(0, slots_dev))
        for b in slots.tolist():
            targets.append(batch["labels"][t][b].to(device="cpu", dtype=torch.float32))
        b_idx.append(slots)
        t_idx.append(torch.full_like(slots, t))
    if targets:
        batch_index = torch.cat(b_idx)
        time_index = torch.cat(t_idx)
        feats = {s: torch.cat(v) for s, v in per_stage.items()}
    else:
        batch_index = torch.zeros(0, dtype=torch.long)
        time_index = torch.zeros(0, dtype=torch.long)
        feats = {}
    label_t = batch["label_t_us"][batch_index, time_index] if targets else torch.zeros(0, dtype=torch.int64)
    return LabelledFrames(feats, targets, batch_index, time_index, label_t), states
