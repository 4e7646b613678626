"""Online learning on an endless stream: truncated BPTT with ``detach_states()``.

The model never sees the stream restart: every ``--window`` timesteps it takes
one optimizer step on the loss of that window, then detaches its states so the
next window's gradient stops there (truncated backpropagation through time)
while the states themselves carry on. The task: report which of two input
channels carried more pulses over the last ~20 timesteps, from a stream that
switches its source at random.

Run: python examples/online_learning.py [--steps N] [--window W]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import tracetorch as tt


class Online(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 32)
        self.hidden = tt.snn.SRLIB(32, quant_fn=tt.functional.round_ste())
        self.head = nn.Linear(32, 2)
        self.readout = tt.snn.LI(2, beta=0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.head(self.hidden(self.fc(x))))


def stream(steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pulses on two channels; the busy channel switches every 40-120 steps."""
    source = torch.zeros(steps, dtype=torch.long)
    t, current = 0, 0
    while t < steps:
        length = int(torch.randint(40, 120, (1,), generator=generator))
        source[t : t + length] = current
        t, current = t + length, 1 - current
    rates = torch.full((steps, 2), 0.05)
    rates[torch.arange(steps), source] = 0.4
    pulses = torch.bernoulli(rates, generator=generator)
    return pulses[:, None, :], source  # a batch of one stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--window", type=int, default=25)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, target = stream(args.steps, torch.Generator().manual_seed(0))
    model = Online()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.zero_states()  # once: the stream never restarts
    correct = []
    for start in range(0, args.steps, args.window):
        optimizer.zero_grad()
        logits = torch.cat(
            [model(x[t]) for t in range(start, min(start + args.window, args.steps))]
        )
        labels = target[start : start + args.window]
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        model.detach_states()  # truncate: the next window's graph starts here
        correct.append((logits.argmax(1) == labels).float().mean().item())
    quarter = max(1, len(correct) // 4)
    first = sum(correct[:quarter]) / quarter
    last = sum(correct[-quarter:]) / quarter
    print(f"online accuracy: first quarter {first:.3f}, last quarter {last:.3f}")


if __name__ == "__main__":
    main()
