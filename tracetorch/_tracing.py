"""Tracing shared by the exporters (engine file and NIR): one timestep of a model as a graph.

traceTorch layers stay leaves (they hold states); the model is traced in eval
mode, twice, so a ``forward`` that changes structure between calls is caught;
one eval step from zero states then records every node's output shape, and the
model's own states are put back afterwards.
"""

from __future__ import annotations

from typing import Any

from tracetorch._torch import torch
from tracetorch.errors import ExportError
from tracetorch.layer import Layer
from tracetorch.model import named_layers

nn = torch.nn
fx = torch.fx
Tensor = torch.Tensor

__all__ = ["example_step", "record_shapes", "trace"]


class _Tracer(fx.Tracer):
    """Keeps ``leaves`` (traceTorch layers, stateful) and PyTorch's own modules as leaves."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, self.leaves) or super().is_leaf_module(module, qualified_name)


def example_step(example_input: Any) -> Tensor:
    """``example_input`` checked (one timestep, batch first) and made float32 on the CPU."""
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise ExportError(
            "example_input must be a tensor of one timestep with a leading batch axis, "
            f"e.g. torch.zeros(1, features); got {_shape_of(example_input)}"
        )
    return example_input.detach().to(torch.float32).cpu()


def trace(model: nn.Module, leaves: tuple[type, ...] = (Layer,)) -> fx.GraphModule:
    """Trace ``model`` in eval mode, twice: the two graphs must be the same.

    ``forward`` runs once per trace, so one whose structure depends on Python
    state (a call counter, a flag it flips) gives two different graphs; the
    engine could only ever run one of them.
    """
    was_training = model.training
    graphs = []
    try:
        model.eval()
        for _ in range(2):
            graphs.append(_Tracer(leaves).trace(model))
    except ExportError:
        raise
    except Exception as error:  # fx raises many kinds on untraceable code
        raise ExportError(f"could not trace the model with torch.fx: {error}") from error
    finally:
        model.train(was_training)
    first, second = (_signature(g) for g in graphs)
    if first != second:
        pairs = enumerate(zip(first, second, strict=False))  # may differ in length
        where = next(
            (f"at graph node {i}: {a} then {b}" for i, (a, b) in pairs if a != b),
            f"the graphs have {len(first)} and {len(second)} nodes",
        )  # fmt: skip
        raise ExportError(
            "the model's forward changed structure between two traces "
            f"({where}); forward must not depend on Python state such as a call counter"
        )
    inputs = [n.name for n in graphs[0].nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ExportError(
            f"the model takes {len(inputs)} inputs ({', '.join(inputs)}); export supports one"
        )
    return fx.GraphModule(model, graphs[0])


def _signature(graph: fx.Graph) -> list[str]:
    """What a graph computes, node by node, in a comparable form."""
    return [f"{n.op} {n.target} {n.args} {n.kwargs}" for n in graph.nodes]


def _shape_of(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)


def record_shapes(
    model: nn.Module, graph_module: fx.GraphModule, example: Tensor
) -> dict[str, torch.Size]:
    """Run one eval step on a copy of the weights' device (CPU) and record every node's shape."""
    held = {id(layer): dict(vars(layer)) for _, layer in named_layers(model)}
    was_training = model.training
    shapes: dict[str, torch.Size] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node: fx.Node) -> Any:
            result = super().run_node(node)
            if isinstance(result, torch.Tensor):
                shapes[node.name] = result.shape
            return result

    try:
        model.eval()
        for _, layer in named_layers(model):
            layer.zero_states()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            Recorder(graph_module).run(example.to(device))
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(
            f"the model rejected example_input of shape {tuple(example.shape)}: {error}"
        ) from error
    finally:
        model.train(was_training)
        for _, layer in named_layers(model):
            for name in layer.state_names:
                layer.__dict__[name] = held[id(layer)][name]
    return shapes
