"""The suite's bi-level baselines side by side with the library a user would pick instead: the
same algorithms written with torchopt (Ren et al.'s L2RW as in torchopt's ``examples/L2R``, and
Meta-Weight-Net, for which torchopt has no example, in the same style), on the same model,
initial state and batches.

Before timing, one step of each from the same state must give the same weights and parameters.
Then the suite (both backends) and the torchopt version take turns in alternating blocks of steps
(``blocked.py``), and the test fails if the suite's default backend is more than PEER_BOUND times
slower. Needs torchopt (``pip install dps-bench[peers]``; ``tox -e bench`` installs it).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from benchmarks.harness import RunSetup
from methods import Batch, get_method
from methods.mwn import applied

from .blocked import blocked_medians
from .conftest import BENCH_SCENARIOS, device, quick_setup, source_label
from .test_step_cost import ENFORCE

pytestmark = pytest.mark.bench

PEER_BOUND = 1.05
BLOCKS = int(os.environ.get("DPS_BENCH_BLOCKS", 20))
BLOCK_STEPS = int(os.environ.get("DPS_BENCH_BLOCK_STEPS", 40))
PEERS: dict[tuple[str, str], dict] = {}  # (scenario, method) -> measurements


class TorchoptL2RW:
    """Learning to Reweight with torchopt: a differentiable ``MetaSGD`` step on Σ ε_i·l_i from a
    saved state, ε's gradient of the meta loss, then the state restored (torchopt's L2R example)."""

    def __init__(self, setup: RunSetup) -> None:
        import torchopt

        self.torchopt, self.ctx = torchopt, setup.ctx
        self.opt = self.ctx.make_optimizer(self.ctx.model.parameters())
        self.meta_opt = torchopt.MetaSGD(self.ctx.model, lr=setup.method.alpha)

    def batch_weights(self, train: Batch, meta: Batch) -> torch.Tensor:
        model, loss, topt = self.ctx.model, self.ctx.loss, self.torchopt
        eps = torch.zeros(len(train), device=train.x.device, requires_grad=True)
        net_state = topt.extract_state_dict(model)
        opt_state = topt.extract_state_dict(self.meta_opt)
        self.meta_opt.step((eps * loss(model(train.x), train.y)).sum())
        (grad,) = torch.autograd.grad(loss(model(meta.x), meta.y).mean(), eps)
        topt.recover_state_dict(model, net_state)
        topt.recover_state_dict(self.meta_opt, opt_state)
        w = torch.clamp(-grad, min=0.0)
        total = w.sum()
        return w / (total + (total == 0).to(w.dtype))

    def step(self, train: Batch, meta: Batch) -> None:
        w = self.batch_weights(train, meta)
        self.opt.zero_grad(set_to_none=True)
        (w * self.ctx.loss(self.ctx.model(train.x), train.y)).sum().backward()
        self.opt.step()


class TorchoptMWN:
    """Meta-Weight-Net with torchopt: ``MetaSGD`` look-ahead on the weighted loss, V's gradient
    of the meta loss by ``autograd.grad`` (V's parameters only), state restored, real step."""

    def __init__(self, setup: RunSetup) -> None:
        import copy

        import torchopt

        self.torchopt, self.ctx, self.hp = torchopt, setup.ctx, setup.method.hp
        self.vnet = copy.deepcopy(setup.method.vnet)  # the suite's V at the same initial state
        self.vnet_opt = type(setup.method.vnet_opt)(self.vnet.parameters(),
                                                    **setup.method.vnet_opt.defaults)
        self.opt = self.ctx.make_optimizer(self.ctx.model.parameters())
        self.meta_opt = torchopt.MetaSGD(self.ctx.model, lr=setup.method.alpha)

    def step(self, train: Batch, meta: Batch) -> None:
        model, loss, topt, hp = self.ctx.model, self.ctx.loss, self.torchopt, self.hp
        net_state = topt.extract_state_dict(model)
        opt_state = topt.extract_state_dict(self.meta_opt)
        losses = loss(model(train.x), train.y)
        w = self.vnet(losses.detach() if hp.detach_input else losses)
        self.meta_opt.step((applied(w, hp.normalize) * losses).sum())
        params = list(self.vnet.parameters())
        grads = torch.autograd.grad(loss(model(meta.x), meta.y).mean(), params)
        topt.recover_state_dict(model, net_state)
        topt.recover_state_dict(self.meta_opt, opt_state)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.vnet_opt.step()
        self.opt.zero_grad(set_to_none=True)
        losses = loss(model(train.x), train.y)
        with torch.no_grad():
            omega = applied(self.vnet(losses.detach()), hp.normalize)
        (omega * losses).sum().backward()
        self.opt.step()


PEER_CLASSES = {"l2rw": TorchoptL2RW, "mwn": TorchoptMWN}


def state(setup: RunSetup, peer=None) -> list[torch.Tensor]:
    tensors = list(setup.ctx.model.parameters())
    vnet = peer.vnet if peer is not None and hasattr(peer, "vnet") else getattr(
        setup.method, "vnet", None)
    if vnet is not None:
        tensors += list(vnet.parameters())
    return [t.detach().clone() for t in tensors]


def check_same_step(suite: RunSetup, peer_setup: RunSetup, peer, method: str) -> None:
    """The suite's step and the peer's, from the same state on the same batches, agree: the
    resulting θ (and V), l2rw's batch weights, and mwn's hypergradient on V."""
    bt, bm = suite.next_batches()
    bt2, bm2 = peer_setup.next_batches()
    assert torch.equal(bt.index, bt2.index) and torch.equal(bm.index, bm2.index)
    if method == "l2rw":
        torch.testing.assert_close(peer.batch_weights(bt2, bm2), suite.method.batch_weights(bt, bm)[0],
                                   rtol=1e-4, atol=1e-7)
    suite.method.step(bt, bm)
    peer.step(bt2, bm2)
    for a, b in zip(state(suite), state(peer_setup, peer), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    if method == "mwn":  # V's hypergradient itself: at lr_v 1e-5 one step may not move V at all
        for a, b in zip(suite.method.vnet.parameters(), peer.vnet.parameters(), strict=True):
            assert a.grad is not None and b.grad is not None and a.grad.abs().sum() > 0
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("scenario", list(BENCH_SCENARIOS))
@pytest.mark.parametrize("method", list(PEER_CLASSES))
def test_suite_is_as_fast_as_torchopt(scenario, method):
    pytest.importorskip("torchopt", reason="the peer benchmark needs torchopt: "
                                           "pip install 'dps-bench[peers]' (tox -e bench has it)")
    default = get_method(method).Hparams().backend
    suite = quick_setup(scenario, method)
    peer_setup = quick_setup(scenario, method)  # same seed: same model, V and batch streams
    peer = PEER_CLASSES[method](peer_setup)
    peer_setup = dataclasses.replace(peer_setup, method=peer)
    # the same step from the same state, before anything is timed; in full float32 on CUDA
    # (cuDNN's TF32 convolutions would differ between the two graphs by more than the tolerance)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        check_same_step(suite, peer_setup, peer, method)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32

    other = "func" if default == "higher" else "higher"
    setups = {default: suite, other: quick_setup(scenario, method, {"backend": other}),
              "torchopt": peer_setup}
    ms = blocked_medians(setups, BLOCKS, BLOCK_STEPS)
    PEERS[(scenario, method)] = {
        "suite_ms": {default: ms[default], other: ms[other]}, "peer_ms": ms["torchopt"],
        "checked": default, "source": source_label(scenario), "device": str(device()),
        "threads": torch.get_num_threads()}
    ratio = ms[default] / ms["torchopt"]
    assert ratio <= PEER_BOUND or not ENFORCE, (
        f"{method} ({default}) takes {ratio:.3f}x torchopt's time per step "
        f"({ms[default]:.3f} vs {ms['torchopt']:.3f} ms)")
