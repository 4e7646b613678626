"""Training works: BPTT, truncated BPTT, torch.compile, any device, DistributedDataParallel."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import tracetorch as tt

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class RateNet(tt.Model):
    """Linear -> SRLIB -> Linear -> LI: a small recurrent SNN with a readout."""

    def __init__(self, features: int = 6, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.lif = tt.snn.SRLIB(hidden, quant_fn=tt.functional.round_ste())
        self.fc2 = nn.Linear(hidden, classes)
        self.readout = tt.snn.LI(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.fc2(self.lif(self.fc1(x))))


def make_task(device: str, samples: int = 64, steps: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences whose class is which input channel carries a constant drive."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (samples,), generator=generator)
    x = 0.1 * torch.randn(steps, samples, 6, generator=generator)
    x[:, torch.arange(samples), labels] += 1.0
    return x.to(device), labels.to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_bptt_learns_a_task(device: str) -> None:
    torch.manual_seed(0)
    model = RateNet().to(device)
    x, y = make_task(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        model.zero_states()
        optimizer.zero_grad()
        logits = torch.stack([model(step) for step in x]).mean(0)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.zero_states()
    accuracy = (torch.stack([model(step) for step in x]).mean(0).argmax(1) == y).float().mean()
    assert accuracy > 0.9


def test_detach_states_truncates_backpropagation() -> None:
    torch.manual_seed(0)
    layer = tt.snn.RLIB(4, rec_weight=0.5)
    early = torch.randn(2, 4, requires_grad=True)
    layer(early)
    layer.detach_states()
    late = torch.randn(2, 4, requires_grad=True)
    layer(late).sum().backward()
    assert early.grad is None  # the graph before detach_states() is cut
    assert late.grad is not None and late.grad.abs().sum() > 0
    # Without detaching, the gradient reaches the earlier input.
    layer.zero_states()
    layer(early)
    layer(late).sum().backward()
    assert early.grad is not None and early.grad.abs().sum() > 0


def test_online_learning_with_truncated_bptt() -> None:
    torch.manual_seed(0)
    model = RateNet()
    x, y = make_task("cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.zero_states()
    for t, step in enumerate(x):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(step), y)
        loss.backward()  # would fail on the second step if states kept the old graph
        optimizer.step()
        model.detach_states()
        assert all(not s.requires_grad for s in model.save_states().values()), t


# Dynamo itself reads .grad of the (non-leaf) states it is handed; the warning is torch's own.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_torch_compile_matches_eager() -> None:
    torch.manual_seed(0)
    model = RateNet()
    x, _ = make_task("cpu", samples=4, steps=5)
    eager = [model(step) for step in x]
    model.zero_states()
    compiled = torch.compile(model)
    outputs = [compiled(step) for step in x]
    for output, expected in zip(outputs, eager, strict=True):
        torch.testing.assert_close(output, expected)
    # The compiled step trains: gradients reach the neuron parameters.
    torch.stack(outputs).sum().backward()
    assert model.lif.raw_beta.grad is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, results: dict) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # identical initial weights on both replicas
    model = RateNet()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x, y = make_task("cpu", samples=32)
    shard = slice(rank * 16, (rank + 1) * 16)  # each replica sees different data
    for _ in range(3):
        model.zero_states()
        optimizer.zero_grad()
        logits = torch.stack([ddp(step[shard]) for step in x]).mean(0)
        nn.functional.cross_entropy(logits, y[shard]).backward()
        optimizer.step()
    results[rank] = (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        model.save_states(),
    )
    dist.destroy_process_group()


def test_distributed_data_parallel_keeps_replicas_in_sync() -> None:
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, _free_port(), results), nprocs=2, join=True)
        (weights0, states0), (weights1, states1) = results[0], results[1]
    for key in weights0:
        torch.testing.assert_close(weights0[key], weights1[key], rtol=0, atol=0)
    # States are per replica (not buffers): each holds its own data's states.
    assert (
        set(states0)
        == set(states1)
        == {"lif.syn", "lif.mem", "lif.rec", "lif.prev_output", "readout.mem"}
    )
    assert not torch.equal(states0["lif.mem"], states1["lif.mem"])
