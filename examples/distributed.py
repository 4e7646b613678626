"""Data-parallel training of a traceTorch model with ``torch.distributed`` (DDP, gloo).

Each process trains a replica on its own shard of the data; DDP averages the
gradients, so the replicas keep identical weights, while each keeps its own
neuron states (states are plain attributes, not buffers, so DDP leaves them
alone). At the end every rank checks that its weights equal rank 0's.

On this machine (spawns the processes itself, CPU, gloo):

    python examples/distributed.py --world-size 2

Across machines, launch one copy per process with torchrun, which sets the
rank and rendezvous variables that this script reads:

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 examples/distributed.py

(use ``--backend nccl`` on GPUs).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import tracetorch as tt


class Net(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 32)
        self.hidden = tt.snn.SRLIB(32, quant_fn=tt.functional.round_ste())
        self.fc2 = nn.Linear(32, 3)
        self.readout = tt.snn.LI(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.fc2(self.hidden(self.fc1(x))))


def data(samples: int = 512, steps: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (samples,), generator=generator)
    x = 0.1 * torch.randn(steps, samples, 6, generator=generator)
    x[:, torch.arange(samples), labels] += 1.0
    return x, labels


def train(rank: int, world: int, backend: str, epochs: int) -> None:
    dist.init_process_group(backend, rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts them)
    model = Net()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=0.02)
    x, y = data()
    shard = slice(rank, None, world)  # every world-th sample
    for epoch in range(epochs):
        model.zero_states()
        optimizer.zero_grad()
        logits = torch.stack([ddp(step[shard]) for step in x]).mean(0)
        loss = nn.functional.cross_entropy(logits, y[shard])
        loss.backward()
        optimizer.step()
        if rank == 0 and (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    # Every replica compares its weights with rank 0's.
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor(float(torch.equal(flat, reference)))
    dist.all_reduce(same)
    if rank == 0:
        print(f"replicas with weights identical to rank 0: {int(same.item())} of {world}")
    dist.destroy_process_group()


def _leave_worker() -> None:
    """Ends a worker process without interpreter finalization.

    A gloo worker thread may drop its reference to the last backward pass's
    all-reduce a moment after the collective completes; that work holds a
    Python object, and releasing it once finalization has begun aborts the
    process ("terminate called without an active exception", seen under
    torchrun on a loaded 2-core machine). Everything is done and flushed by
    now, so the worker skips finalization, as multiprocessing's forked
    children do.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _spawned(rank: int, world: int, port: int, backend: str, epochs: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    train(rank, world, backend, epochs)
    _leave_worker()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    if "RANK" in os.environ:  # launched by torchrun
        train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), args.backend, args.epochs)
        _leave_worker()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_spawned, args=(args.world_size, port, args.backend, args.epochs),
             nprocs=args.world_size, join=True)  # fmt: skip


if __name__ == "__main__":
    main()
