"""Export a trained model to one ``.safetensors`` file for the Rust streaming engine.

The model is traced with ``torch.fx`` (traceTorch layers stay leaves), so any
``forward`` made of the supported modules and functions exports, not only
``nn.Sequential``. The file layout is specified in ``docs/format.md``.

Example:
    >>> import tempfile, os, torch, tracetorch as tt
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), tt.snn.LIB(3))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> tt.export(model, torch.zeros(1, 4), path)
    >>> tt.runtime.load(path).input_shape
    [1, 4]
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from pathlib import Path
from typing import Any, Union

from safetensors.torch import save as save_safetensors

from tracetorch import functional
from tracetorch._torch import torch
from tracetorch._tracing import example_step, record_shapes, trace
from tracetorch.errors import ExportError
from tracetorch.snn._family_a import FamilyA
from tracetorch.snn._family_b import LeakyIntegrator
from tracetorch.snn._layer import Neuron

nn = torch.nn
fx = torch.fx
Tensor = torch.Tensor

FORMAT_VERSION = 1

__all__ = ["FORMAT_VERSION", "export", "export_bytes"]

_ELEMENTWISE_MODULES = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
_ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "reshape", "view"}
_UNARY_FUNCTIONS = {
    torch.relu: "relu", nn.functional.relu: "relu", torch.sigmoid: "sigmoid",
    torch.tanh: "tanh", nn.functional.tanh: "tanh", nn.functional.sigmoid: "sigmoid",
}  # fmt: skip
_UNARY_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
_BINARY_FUNCTIONS = {
    operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub",
    operator.mul: "mul", torch.mul: "mul",
}  # fmt: skip
_BINARY_METHODS = {"add": "add", "sub": "sub", "mul": "mul"}


def export(model: nn.Module, example_input: Tensor, path: Union[str, os.PathLike[str]]) -> None:
    """Write ``model`` to ``path`` as a traceTorch model file (atomically).

    Args:
        model: the trained model; exported with eval semantics (dropout off,
            batch norm on running statistics). Its states are left as they were.
        example_input: one timestep of input as the model receives it, batch
            first, e.g. ``torch.zeros(1, 784)``.
        path: the ``.safetensors`` file to write. Nothing is written unless the
            whole export succeeds.

    Raises:
        ExportError: a module or function the engine cannot run, a custom
            ``spike_fn``/``quant_fn``, an example input the model rejects, or a
            ``forward`` whose structure changes from one call to the next; the
            message names the culprit and where it sits in the graph.
    """
    data = export_bytes(model, example_input)
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_bytes(model: nn.Module, example_input: Tensor) -> bytes:
    """The model file of :func:`export`, as bytes."""
    example = example_step(example_input)
    graph_module = trace(model)
    shapes = record_shapes(model, graph_module, example)
    return _Writer(graph_module, shapes, example).write()


class _Writer:
    """Turns the traced graph into the document and tensors of ``docs/format.md``."""

    def __init__(
        self, graph_module: fx.GraphModule, shapes: dict[str, torch.Size], example: Tensor
    ):
        self.module = graph_module
        self.shapes = shapes
        self.batch = example.shape[0]
        self.values: dict[str, str] = {}  # fx node name -> value name in the file
        self.nodes: list[dict[str, Any]] = []
        self.tensors: dict[str, Tensor] = {}
        self.neurons_seen: set[int] = set()
        self.input_shape = list(example.shape[1:])
        self.output: str | None = None

    def write(self) -> bytes:
        for node in self.module.graph.nodes:
            self._visit(node)
        document = {
            "format": "tracetorch",
            "version": FORMAT_VERSION,
            "input_shape": self.input_shape,
            "output": self.output,
            "nodes": self.nodes,
        }
        return save_safetensors(self.tensors, metadata={"tracetorch": json.dumps(document)})

    # --- helpers ---

    def _where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            module = self.module.get_submodule(str(node.target))
            return f"module '{node.target}' ({type(module).__name__})"
        target = getattr(node.target, "__name__", str(node.target))
        return f"{node.op} '{target}' (graph node '{node.name}')"

    def _sample_shape(self, node: fx.Node) -> list[int]:
        shape = self.shapes.get(node.name)
        if shape is None or len(shape) == 0 or shape[0] != self.batch:
            raise ExportError(
                f"{self._where(node)} must produce a tensor with the batch axis first "
                f"(batch {self.batch}); got {'no tensor' if shape is None else tuple(shape)}"
            )
        return list(shape[1:])

    def _sample_axis(self, node: fx.Node, axis: int, ndim: int) -> int:
        if not -ndim <= axis < ndim or axis % ndim == 0:
            raise ExportError(f"{self._where(node)} acts on axis {axis}, which is the batch axis")
        return axis % ndim - 1

    def _input(self, node: fx.Node, arg: Any) -> str:
        if not isinstance(arg, fx.Node) or arg.name not in self.values:
            raise ExportError(f"{self._where(node)} reads {arg!r}, which is not a tensor value")
        return self.values[arg.name]

    def _name(self, node: fx.Node) -> str:
        name = str(node.target) if node.op == "call_module" else node.name
        taken = {n["name"] for n in self.nodes} | {"input"}
        base, index = name, 1
        while name in taken:
            name, index = f"{base}#{index}", index + 1
        return name

    def _emit(
        self,
        node: fx.Node,
        op: str,
        inputs: list[str],
        attrs: dict[str, Any] | None = None,
        tensors: dict[str, Tensor] | None = None,
        shape: list[int] | None = None,
        name: str | None = None,
    ) -> str:
        name = name or self._name(node)
        roles = {}
        for role, tensor in (tensors or {}).items():
            key = f"{name}.{role}"
            self.tensors[key] = tensor.detach().to(torch.float32).cpu().contiguous()
            roles[role] = key
        self.nodes.append({
            "name": name, "op": op, "inputs": inputs,
            "shape": shape if shape is not None else self._sample_shape(node),
            "attrs": attrs or {}, "tensors": roles,
        })  # fmt: skip
        self.values[node.name] = name
        return name

    # --- dispatch ---

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if "input" in self.values.values():
                raise ExportError(f"the model takes more than one input ({node.name}); "
                                  "export supports one")  # fmt: skip
            self.values[node.name] = "input"
        elif node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node) or result.name not in self.values:
                raise ExportError("the model must return one tensor")
            self.output = self.values[result.name]
        elif node.op == "call_module":
            self._module(node, self.module.get_submodule(str(node.target)))
        elif node.op == "call_function":
            self._function(node, node.target, node.args, node.kwargs)
        elif node.op == "call_method":
            self._function(node, str(node.target), node.args, node.kwargs)
        elif node.op == "get_attr" or node.name not in self.shapes:
            if any(user.op == "output" for user in node.users):
                raise ExportError(f"{self._where(node)} is not a supported model output")
        else:
            raise ExportError(f"{self._where(node)} is not supported")

    def _module(self, node: fx.Node, module: nn.Module) -> None:
        (arg,) = node.args
        source = self._input(node, arg)
        if isinstance(module, Neuron):
            self._neuron(node, module, source)
        elif isinstance(module, _ALIAS_MODULES):
            self.values[node.name] = source
        elif isinstance(module, nn.Linear):
            tensors = {"weight": module.weight}
            if module.bias is not None:
                tensors["bias"] = module.bias
            self._emit(node, "linear", [source], tensors=tensors)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            self._conv(node, module, source)
        elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d)):
            self._pool(node, module, source)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self._batch_norm(node, module, source)
        elif isinstance(module, nn.Flatten):
            self._emit(node, "reshape", [source])
        elif type(module) in _ELEMENTWISE_MODULES:
            self._emit(node, _ELEMENTWISE_MODULES[type(module)], [source])
        elif isinstance(module, nn.LeakyReLU):
            self._emit(node, "leaky_relu", [source],
                       attrs={"negative_slope": float(module.negative_slope)})  # fmt: skip
        else:
            raise ExportError(f"{self._where(node)} is not supported by the engine")

    def _conv(self, node: fx.Node, conv: nn.Conv1d | nn.Conv2d, source: str) -> None:
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ExportError(f"{self._where(node)}: only numeric zero padding is supported")
        tensors = {"weight": conv.weight}
        if conv.bias is not None:
            tensors["bias"] = conv.bias
        attrs = {
            "stride": list(conv.stride), "padding": list(conv.padding),
            "dilation": list(conv.dilation), "groups": conv.groups,
        }  # fmt: skip
        op = "conv1d" if isinstance(conv, nn.Conv1d) else "conv2d"
        self._emit(node, op, [source], attrs=attrs, tensors=tensors)

    def _pool(self, node: fx.Node, pool: nn.Module, source: str) -> None:
        two_d = isinstance(pool, (nn.AvgPool2d, nn.MaxPool2d))
        rank = 2 if two_d else 1

        def ints(value: Any) -> list[int]:
            return list(value) if isinstance(value, (tuple, list)) else [int(value)] * rank

        if getattr(pool, "ceil_mode", False):
            raise ExportError(f"{self._where(node)}: ceil_mode=True is not supported")
        attrs: dict[str, Any] = {
            "kernel": ints(pool.kernel_size),
            "stride": ints(pool.stride if pool.stride is not None else pool.kernel_size),
            "padding": ints(pool.padding),
        }
        if isinstance(pool, (nn.MaxPool1d, nn.MaxPool2d)):
            if ints(pool.dilation) != [1] * rank or pool.return_indices:
                raise ExportError(f"{self._where(node)}: dilation and return_indices "
                                  "are not supported")  # fmt: skip
            op = "max_pool2d" if two_d else "max_pool1d"
        else:
            if getattr(pool, "divisor_override", None) is not None:
                raise ExportError(f"{self._where(node)}: divisor_override is not supported")
            attrs["count_include_pad"] = bool(pool.count_include_pad)
            op = "avg_pool2d" if two_d else "avg_pool1d"
        self._emit(node, op, [source], attrs=attrs)

    def _batch_norm(
        self, node: fx.Node, norm: nn.modules.batchnorm._BatchNorm, source: str
    ) -> None:
        if norm.running_mean is None or norm.running_var is None:
            raise ExportError(f"{self._where(node)}: needs running statistics "
                              "(track_running_stats=True)")  # fmt: skip
        with torch.no_grad():
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight
            shift = -norm.running_mean * scale
            if norm.bias is not None:
                shift = shift + norm.bias
        self._emit(node, "channel_affine", [source], attrs={"axis": 0},
                   tensors={"scale": scale, "shift": shift})  # fmt: skip

    def _neuron(self, node: fx.Node, layer: Neuron, source: str) -> None:
        if id(layer) in self.neurons_seen:
            raise ExportError(f"{self._where(node)} is called more than once per step; "
                              "its states cannot be shared in the engine")  # fmt: skip
        self.neurons_seen.add(id(layer))
        shape = self._sample_shape(node)
        axis = self._sample_axis(node, layer.dim, len(shape) + 1)
        with torch.no_grad():
            params = {
                name: value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
                for name, value in layer._core_parameters().items()
            }
        attrs: dict[str, Any] = {
            "spec": layer.spec.to_dict(),
            "axis": axis,
            "num_neurons": layer.num_neurons,
            "states": list(layer.spec.state_names()),
        }
        if layer.spec.fires:
            attrs["fire"] = self._fire(node, layer)
        self._emit(node, "neuron", [source], attrs=attrs, tensors=params, shape=shape)

    def _fire(self, node: fx.Node, layer: Neuron) -> dict[str, Any]:
        if isinstance(layer, LeakyIntegrator):
            surrogates = [layer.pos_surrogate]
            if layer.spec.output == "ternary":
                surrogates.append(layer.neg_surrogate)
            for surrogate in surrogates:
                if not isinstance(surrogate, functional._Surrogate):
                    raise ExportError(f"{self._where(node)}: custom surrogate {surrogate!r} "
                                      "cannot be exported")  # fmt: skip
            return {"spike": "heaviside", "quant": {"kind": "identity"}}
        if not isinstance(layer, FamilyA) or layer.spike_fn is not functional.sigmoid4x:
            raise ExportError(
                f"{self._where(node)}: spike_fn {getattr(layer, 'spike_fn', None)!r} cannot be "
                "exported; the engine runs tt.functional.sigmoid4x"
            )
        quant = layer.quant_fn
        if type(quant) is nn.Identity:
            kind: dict[str, Any] = {"kind": "identity"}
        elif type(quant) is functional.RoundSTE:
            kind = {"kind": "round", "step": quant.step_size}
        elif type(quant) is functional.StochasticRoundSTE:
            kind = {"kind": "stochastic_round", "step": quant.step_size}
        elif type(quant) is functional.ProbabilisticSTE:
            kind = {"kind": "probabilistic"}
        else:
            raise ExportError(
                f"{self._where(node)}: quant_fn {quant!r} cannot be exported; use nn.Identity() "
                "or a quantizer of tt.functional"
            )
        return {"spike": "sigmoid4x", "quant": kind}

    def _function(self, node: fx.Node, target: Any, args: tuple, kwargs: dict) -> None:
        is_method = isinstance(target, str)
        if (target in _RESHAPE_METHODS) if is_method else (target in _RESHAPE_FUNCTIONS):
            self._emit(node, "reshape", [self._input(node, args[0])])
        elif (target in _UNARY_METHODS) if is_method else (target in _UNARY_FUNCTIONS):
            op = _UNARY_METHODS[target] if is_method else _UNARY_FUNCTIONS[target]
            if kwargs.get("inplace"):
                raise ExportError(f"{self._where(node)}: in-place ops are not supported")
            self._emit(node, op, [self._input(node, args[0])])
        elif target is nn.functional.leaky_relu:
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            self._emit(node, "leaky_relu", [self._input(node, args[0])],
                       attrs={"negative_slope": float(slope)})  # fmt: skip
        elif (target in _BINARY_METHODS) if is_method else (target in _BINARY_FUNCTIONS):
            op = _BINARY_METHODS[target] if is_method else _BINARY_FUNCTIONS[target]
            if kwargs.get("alpha", 1) != 1 or len(args) != 2:
                raise ExportError(f"{self._where(node)}: only two operands without alpha")
            self._binary(node, op, args[0], args[1])
        elif not is_method and target in (torch.cat, torch.concat):
            tensors = args[0]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            inputs = [self._input(node, t) for t in tensors]
            ndim = len(self._sample_shape(node)) + 1
            self._emit(node, "cat", inputs, attrs={"axis": self._sample_axis(node, dim, ndim)})
        elif (is_method and target == "size") or target is getattr:
            return  # shape queries feed reshape targets, which come from the traced shapes
        else:
            raise ExportError(f"{self._where(node)} is not supported by the engine")

    def _binary(self, node: fx.Node, op: str, left: Any, right: Any) -> None:
        tensor_left, tensor_right = isinstance(left, fx.Node), isinstance(right, fx.Node)
        if tensor_left and tensor_right:
            a, b = self._input(node, left), self._input(node, right)
            if self.shapes.get(left.name) != self.shapes.get(right.name):
                raise ExportError(
                    f"{self._where(node)}: operands of shapes {tuple(self.shapes[left.name])} "
                    f"and {tuple(self.shapes[right.name])}; broadcasting is not supported"
                )
            self._emit(node, op, [a, b])
            return
        if not (tensor_left or tensor_right) or not isinstance(
            right if tensor_left else left, (int, float)
        ):
            raise ExportError(f"{self._where(node)}: operands must be tensors or numbers")
        tensor, number = (left, float(right)) if tensor_left else (right, float(left))
        source = self._input(node, tensor)
        if op == "mul":
            self._emit(node, "mul_scalar", [source], attrs={"value": number})
        elif op == "add":
            self._emit(node, "add_scalar", [source], attrs={"value": number})
        elif tensor_left:  # x - c
            self._emit(node, "add_scalar", [source], attrs={"value": -number})
        else:  # c - x = (-1 * x) + c
            negated = self._emit(node, "mul_scalar", [source], attrs={"value": -1.0},
                                 name=self._name(node) + "#neg")  # fmt: skip
            self._emit(node, "add_scalar", [negated], attrs={"value": number})
