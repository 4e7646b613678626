"""A custom stateful layer on ``tt.snn.Layer``: an adaptive-threshold neuron.

The layer registers a decay, a threshold and a plain parameter with the
traceTorch helpers (so they are constrained, learnable, rank 0 or 1, and bake
into buffers with ``TTcompile``), declares its states, and keeps them shaped
like its input. ``tt.Model`` then resets, detaches, saves and restores them
like those of the built-in layers.

Run: python examples/custom_layer.py
"""

from __future__ import annotations

import torch
from torch import nn

import tracetorch as tt


class AdaptiveLIF(tt.snn.Layer):
    """Leaky integrate-and-fire whose threshold rises after each spike and relaxes back.

    ``mem = beta*mem + x``; ``s = sigmoid4x(mem - (threshold + adapt))``;
    ``mem -= s*threshold``; ``adapt = rho*adapt + gain*s``.
    """

    def __init__(self, num_neurons: int, beta: float = 0.9, rho: float = 0.95,
                 threshold: float = 1.0, gain: float = 0.2, dim: int = -1) -> None:  # fmt: skip
        super().__init__(num_neurons, dim)
        self._register_decay("beta", beta, rank=1, learnable=True)
        self._register_decay("rho", rho, rank=0, learnable=False)
        self._register_threshold("threshold", threshold, rank=1, learnable=True)
        self._register_parameter("gain", gain, rank=1, learnable=True)
        self._initialize_state("mem")
        self._initialize_state("adapt")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._to_working_dim(x)
        self._ensure_states(x)
        mem = self.beta * self.mem + x
        spikes = tt.functional.sigmoid4x(mem - (self.threshold + self.adapt))
        self.mem = mem - spikes * self.threshold
        self.adapt = self.rho * self.adapt + self.gain * spikes
        return self._from_working_dim(spikes)


class Net(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), AdaptiveLIF(16), nn.Linear(16, 2), tt.snn.LI(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> None:
    torch.manual_seed(0)
    model = Net()
    x = torch.rand(50, 8, 4)
    outputs = [model(step) for step in x]
    states = model.save_states()
    print("states:", sorted(states))
    # Adaptation: under constant drive the firing rate falls as the threshold rises.
    layer = AdaptiveLIF(1, gain=0.5)
    with torch.no_grad():
        rates = torch.stack([layer(torch.full((1,), 1.5)) for _ in range(60)]).squeeze()
    print(f"firing early {rates[:10].mean():.3f}, late {rates[-10:].mean():.3f}")
    # Training works through the custom layer.
    torch.stack(outputs).sum().backward()
    print("gradient reaches beta:", bool(model.net[1].raw_beta.grad.abs().sum() > 0))
    # TTcompile bakes its parameters like any built-in layer's; outputs stay the same.
    model.zero_states()
    with torch.no_grad():
        before = torch.stack([model(step) for step in x[:5]])
        model.TTcompile()
        model.zero_states()
        after = torch.stack([model(step) for step in x[:5]])
    print("TTcompile keeps outputs:", bool(torch.allclose(before, after)))


if __name__ == "__main__":
    main()
