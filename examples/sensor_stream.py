"""Train a recurrent SNN on synthetic 6-axis motion data, export it, stream it reading by reading.

The data is generated here (no download): each class is a motion pattern, a
mix of sinusoids of class-specific frequencies on the accelerometer and gyroscope
axes, with noise. The model sees one 6-value reading per timestep, as a
sensor would deliver it.

Run: python examples/sensor_stream.py [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tracetorch as tt

CLASSES, STEPS, AXES = 4, 50, 6


def make_data(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[STEPS, samples, AXES] readings and their class labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, samples)
    t = np.arange(STEPS)[:, None, None]
    freq = 0.05 + 0.04 * labels[None, :, None] * (1 + np.arange(AXES)[None, None, :] % 2)
    phase = rng.uniform(0, 2 * np.pi, (1, samples, AXES))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.3 * rng.normal(size=(STEPS, samples, AXES))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels)


class SensorSNN(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(AXES, 64)
        self.hidden = tt.snn.SRLIB(64, quant_fn=tt.functional.round_ste())
        self.fc2 = nn.Linear(64, 64)
        self.hidden2 = tt.snn.RLIB(64, quant_fn=tt.functional.round_ste())
        self.fc3 = nn.Linear(64, CLASSES)
        self.readout = tt.snn.LI(CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden2(self.fc2(self.hidden(self.fc1(x))))
        return self.readout(self.fc3(h))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args()
    torch.manual_seed(0)
    train_x, train_y = make_data(512, seed=0)
    test_x, test_y = make_data(128, seed=1)

    model = SensorSNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(args.epochs):
        model.zero_states()
        optimizer.zero_grad()
        logits = torch.stack([model(step) for step in train_x]).mean(0)
        loss = nn.functional.cross_entropy(logits, train_y)
        loss.backward()
        optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "sensor.safetensors"
    tt.export(model, torch.zeros(1, AXES), path)

    # Deployment side: numpy and the engine only; one stream, one reading at a time.
    engine = tt.runtime.load(path)
    correct, latencies = 0, []
    for i in range(test_y.shape[0]):
        engine.reset()
        total = np.zeros(CLASSES, np.float32)
        for reading in test_x[:, i].numpy():
            start = time.perf_counter()
            total += engine.step(reading)
            latencies.append(time.perf_counter() - start)
        correct += int(total.argmax() == int(test_y[i]))
    model.eval()
    model.zero_states()
    with torch.no_grad():
        torch_pred = torch.stack([model(step) for step in test_x]).mean(0).argmax(1)
    torch_acc = float((torch_pred == test_y).float().mean())
    print(
        f"accuracy: PyTorch {torch_acc:.3f}, engine {correct / test_y.shape[0]:.3f}; "
        f"median engine step {np.median(latencies) * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
