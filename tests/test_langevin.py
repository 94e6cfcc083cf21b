"""Langevin noise: one draw over one flat buffer, each group at its own std."""

from __future__ import annotations

import pytest
import torch

from methods.langevin import Noise


def test_one_buffer_each_group_at_its_std():
    torch.manual_seed(0)
    a, b = torch.zeros(300, 10), torch.zeros(2000)
    c = torch.zeros(1000)
    noise = Noise([([a, b], 0.5), ([c], 2.0)])
    storage = noise.flat.untyped_storage().data_ptr()
    assert {t.untyped_storage().data_ptr() for t in (a, b, c)} == {storage}
    noise.add_()
    assert torch.cat([a.reshape(-1), b]).std().item() == pytest.approx(0.5, rel=0.05)
    assert c.std().item() == pytest.approx(2.0, rel=0.1)
    assert torch.corrcoef(torch.stack([b[:1000], c]))[0, 1].abs() < 0.1  # independent draws


def test_common_std_zero_std_and_mixed_dtypes():
    x, y = torch.ones(50), torch.ones(50)
    Noise([([x], 0.0), ([y], 0.0)]).add_()
    assert torch.equal(x, torch.ones(50)) and torch.equal(y, torch.ones(50))  # no noise at all
    noise = Noise([([x], 0.1), ([y], 0.1)])
    assert noise.common_std == 0.1
    noise.add_()
    assert (x != 1).all() and (y != 1).all()
    h, f = torch.zeros(64, dtype=torch.float64), torch.zeros(64)
    mixed = Noise([([h], 1.0), ([f], 1.0)])  # no common buffer: a draw per group
    assert mixed.flat is None
    mixed.add_()
    assert h.dtype == torch.float64 and (h != 0).all() and (f != 0).all()
