"""Spiking layers: family A (``LI``, ``LIB``, ``LIT``, ``LITS`` and their D/S/R
variants) and family B (``LeakyIntegrator``, ``LIF``, ``Readout`` and kin).

Every layer is one declaration run by the shared neuron core
(:mod:`tracetorch.neuron`); all are ordinary ``nn.Module`` s.

Example:
    >>> import torch, tracetorch as tt
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4), tt.snn.LIB(4), tt.snn.LI(4))
    >>> net(torch.rand(2, 8)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from tracetorch.functional import atan_surrogate, sigmoid_surrogate
from tracetorch.model import Model
from tracetorch.snn import _family_a, _family_b
from tracetorch.snn._family_a import FamilyA
from tracetorch.snn._family_b import LeakyIntegrator
from tracetorch.snn._layer import Layer, Neuron


class TTModule(Model):
    """The README-era name of :class:`tracetorch.Model` (``zero_states``, ``detach_states``)."""


globals().update(_family_a.LAYERS)
globals().update(_family_b.LAYERS)

FAMILY_A: tuple[str, ...] = tuple(_family_a.LAYERS)
FAMILY_B: tuple[str, ...] = tuple(_family_b.LAYERS)

__all__ = [
    "Layer", "Neuron", "FamilyA", "LeakyIntegrator", "TTModule",
    "atan_surrogate", "sigmoid_surrogate", "FAMILY_A", "FAMILY_B",
    *FAMILY_A, *FAMILY_B,
]  # fmt: skip
