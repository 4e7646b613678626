"""The quick start of the README-era release (seed 004) runs unchanged against this package.

The two code blocks below are copied verbatim from that README; only the names
the README leaves to the reader (``dataloader``, ``num_timesteps``) are defined
around them.
"""

from __future__ import annotations

import torch

QUICKSTART_MODEL = """
import torch
from torch import nn
import tracetorch as tt
from tracetorch import snn


class ConvSNN(snn.TTModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            # dim=-3 tells the layer that the 3rd-to-last dimension is the channel dim.
            # This works for (B, C, H, W) AND unbatched (C, H, W) inputs automatically.
            snn.LIF(num_neurons=32, beta=0.9, dim=-3),

            nn.Flatten(),
            nn.Linear(32 * 26 * 26, 128),

            # Readout layer with learnable decay initialized to scrape various timescales
            snn.Readout(128, beta=torch.rand(128)),
            # Map the readout layer back down to the desired number of dimensions
            nn.Linear(128, 10)
        )

    def forward(self, x):
        return self.net(x)
"""

QUICKSTART_TRAINING = """
device = "cuda" if torch.cuda.is_available() else "cpu"
model = ConvSNN().to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()

# Training Step
model.train()
for x, y in dataloader:
    x, y = x.to(device), y.to(device)

    model.zero_states()  # Crucial: Reset hidden states for the batch
    optimizer.zero_grad()

    # Time loop
    spikes = []
    for step in range(num_timesteps):
        # Just pass x. No state tuples to manage.
        spikes.append(model(x))

    # Stack output and compute loss
    output = torch.stack(spikes)
    loss = loss_fn(output.mean(0), y)  # Rate coding example

    loss.backward()
    optimizer.step()
"""


def test_readme_quickstart_trains() -> None:
    torch.manual_seed(0)
    namespace: dict = {}
    exec(QUICKSTART_MODEL, namespace)
    images = torch.rand(3, 4, 1, 28, 28)
    labels = torch.randint(0, 10, (3, 4))
    namespace["dataloader"] = list(zip(images, labels, strict=True))
    namespace["num_timesteps"] = 4
    exec(QUICKSTART_TRAINING, namespace)

    model = namespace["model"]
    loss = namespace["loss"]
    assert torch.isfinite(loss)
    # Every learnable parameter received a gradient through the hard spikes' surrogate.
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
    assert model.net[1].raw_pos_threshold.grad.abs().sum() > 0
    assert set(model.save_states()) == {"net.1.mem", "net.4.mem"}
    model.zero_states()
    assert model.save_states() == {}
