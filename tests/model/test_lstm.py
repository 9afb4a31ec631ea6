"""Tests for the ConvLSTM cells (evdet.model.nn.lstm): parameter counts from the RVT reference, gate math, errors."""

import pytest
import torch
import torch.nn.functional as F

from evdet.model.nn.lstm import LSTM_CELL_NAMES, DWSConvLSTM2d, PlainLSTM2d, build_lstm_cell

# RVT-B per-stage LSTM parameter counts (shared/docs/rvt-architecture-facts.md).
RVT_B_LSTM_COUNTS = {64: 33_024, 128: 131_584, 256: 525_312, 512: 2_099_200}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def reference_lstm_step(x, h, c, w_x, b_x, w_h):
    """Hand-written ConvLSTM step with 1x1 weights w_x, w_h (4d, d), bias b_x (4d,); gates f, i, o, g."""
    pre = torch.einsum("oc,bchw->bohw", w_x, x) + b_x[None, :, None, None] + torch.einsum("oc,bchw->bohw", w_h, h)
    d = x.shape[1]
    f, i, o, g = pre[:, :d], pre[:, d : 2 * d], pre[:, 2 * d : 3 * d], pre[:, 3 * d :]
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


@pytest.mark.parametrize("dim", sorted(RVT_B_LSTM_COUNTS))
def test_parameter_counts_match_rvt_reference(dim):
    assert count(DWSConvLSTM2d(dim)) == RVT_B_LSTM_COUNTS[dim]
    assert count(PlainLSTM2d(dim)) == RVT_B_LSTM_COUNTS[dim]


@pytest.mark.parametrize("dim", [64, 512])
def test_depthwise_conv_adds_ten_params_per_channel(dim):
    assert count(DWSConvLSTM2d(dim, dws_conv=True)) - count(DWSConvLSTM2d(dim)) == 9 * dim + dim
    assert count(DWSConvLSTM2d(dim, dws_conv=True, dws_conv_kernel_size=5)) - count(DWSConvLSTM2d(dim)) == 26 * dim


def test_plain_lstm_matches_hand_written_reference():
    torch.manual_seed(0)
    cell = PlainLSTM2d(3)
    x, h, c = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    w_x = cell.input_transform.weight[:, :, 0, 0]
    w_h = cell.hidden_transform.weight[:, :, 0, 0]
    expected_h, expected_c = reference_lstm_step(x, h, c, w_x, cell.input_transform.bias, w_h)
    got_h, got_c = cell(x, (h, c))
    torch.testing.assert_close(got_h, expected_h)
    torch.testing.assert_close(got_c, expected_c)
    # hidden state stays bounded by the output gate times tanh
    assert got_h.abs().max() < 1


def test_dws_lstm_matches_hand_written_reference():
    torch.manual_seed(1)
    cell = DWSConvLSTM2d(3)
    x, h, c = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    w = cell.gates_conv.weight[:, :, 0, 0]
    expected_h, expected_c = reference_lstm_step(x, h, c, w[:, :3], cell.gates_conv.bias, w[:, 3:])
    got_h, got_c = cell(x, (h, c))
    torch.testing.assert_close(got_h, expected_h)
    torch.testing.assert_close(got_c, expected_c)


def test_dws_conv_filters_hidden_state_before_gates():
    torch.manual_seed(2)
    cell = DWSConvLSTM2d(4, dws_conv=True)
    x, h, c = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    dw = cell.hidden_dws_conv
    h_filtered = F.conv2d(h, dw.weight, dw.bias, padding=1, groups=4)
    w = cell.gates_conv.weight[:, :, 0, 0]
    expected_h, expected_c = reference_lstm_step(x, h_filtered, c, w[:, :4], cell.gates_conv.bias, w[:, 4:])
    got_h, got_c = cell(x, (h, c))
    torch.testing.assert_close(got_h, expected_h)
    torch.testing.assert_close(got_c, expected_c)


def test_fused_and_plain_cells_compute_the_same_function():
    torch.manual_seed(3)
    plain, fused = PlainLSTM2d(4), DWSConvLSTM2d(4)
    with torch.no_grad():
        fused.gates_conv.weight.copy_(torch.cat((plain.input_transform.weight, plain.hidden_transform.weight), 1))
        fused.gates_conv.bias.copy_(plain.input_transform.bias)
    x, h, c = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    for a, b in zip(plain(x, (h, c)), fused(x, (h, c))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell_cls", [PlainLSTM2d, DWSConvLSTM2d])
def test_none_state_equals_zero_state(cell_cls):
    torch.manual_seed(4)
    cell = cell_cls(4)
    x = torch.randn(2, 4, 3, 3)
    zeros = (torch.zeros_like(x), torch.zeros_like(x))
    for a, b in zip(cell(x, None), cell(x, zeros)):
        torch.testing.assert_close(a, b)
    h1, c1 = cell(x, None)
    h2, _ = cell(x, (h1, c1))
    assert not torch.allclose(h1, h2)


def test_build_lstm_cell_by_name():
    assert LSTM_CELL_NAMES == ("DWSConvLSTM2d", "PlainLSTM2d")
    assert isinstance(build_lstm_cell("PlainLSTM2d", 8), PlainLSTM2d)
    cell = build_lstm_cell("DWSConvLSTM2d", 8, dws_conv=True)
    assert isinstance(cell, DWSConvLSTM2d) and count(cell) == 8 * 8 * 8 + 4 * 8 + 10 * 8


def test_build_lstm_cell_unknown_name_names_the_key_and_choices():
    with pytest.raises(ValueError, match=r"lstm_cell must be one of \['DWSConvLSTM2d', 'PlainLSTM2d'\].*'GRU'"):
        build_lstm_cell("GRU", 8)


def test_build_lstm_cell_rejects_dws_conv_for_plain_cell():
    with pytest.raises(ValueError, match="PlainLSTM2d.*dws_conv"):
        build_lstm_cell("PlainLSTM2d", 8, dws_conv=True)


@pytest.mark.parametrize("cell_cls", [PlainLSTM2d, DWSConvLSTM2d])
def test_bad_input_and_state_raise(cell_cls):
    cell = cell_cls(4)
    with pytest.raises(ValueError, match=r"input x must be a float tensor \(B, 4, H, W\), got \(1, 3, 2, 2\)"):
        cell(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="input x must be a float tensor.*uint8"):
        cell(torch.zeros(1, 4, 2, 2, dtype=torch.uint8))
    x = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match=r"state c must have the input's shape \(1, 4, 2, 2\), got \(1, 4, 3, 3\)"):
        cell(x, (torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"state must be None or a pair \(h, c\)"):
        cell(x, torch.zeros(1, 4, 2, 2))


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="dws_conv_kernel_size must be a positive odd integer, got 4"):
        DWSConvLSTM2d(8, dws_conv=True, dws_conv_kernel_size=4)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        PlainLSTM2d(0)
