"""NIR interchange (the Neuromorphic Intermediate Representation): :func:`to_nir`, :func:`from_nir`.

NIR describes neurons as continuous-time ODEs; traceTorch layers are discrete
steps. Both directions use forward Euler with one step ``dt`` (the convention
of snnTorch's exporter)::

    tau dv/dt = (v_leak - v) + r*I        ->  v <- beta*v + (1 - beta)*(v_leak + r*I)
    tau_syn dI/dt = -I + w_in*S           ->  I <- alpha*I + (1 - alpha)*w_in*S
                                              (v is updated with the new I)
    beta = 1 - dt/tau,  alpha = 1 - dt/tau_syn,  input gain of v: r*dt/tau = r*(1 - beta)

so a traceTorch membrane ``mem = beta*mem + c*(d + bias)`` (``c = 1 - beta`` for
the averaging ``EMA`` layers, else 1) is NIR ``tau = dt/(1 - beta)``,
``r = c/(1 - beta)`` (``1`` for EMA layers, ``tau/dt`` otherwise, as snnTorch
writes it) and ``v_leak = r*bias``; a synaptic trace ``syn = alpha*syn + a*x``
is ``tau_syn = dt/(1 - alpha)``, ``w_in = a/(1 - alpha)`` (``1`` when it
averages, ``tau_syn/dt`` otherwise).

| traceTorch | NIR | |
|---|---|---|
| ``nn.Linear`` (with / without bias) | ``Affine`` / ``Linear`` | exact |
| ``nn.Conv1d``, ``nn.Conv2d`` (zero padding) | ``Conv1d``, ``Conv2d`` | exact |
| ``nn.Flatten`` (not over the batch axis) | ``Flatten`` | exact |
| ``nn.AvgPool2d`` / with ``divisor_override=1`` | ``AvgPool2d`` / ``SumPool2d`` | exact |
| :class:`Scale` | ``Scale`` | exact |
| ``x + y`` of two branches | two edges into one node (NIR sums them) | exact |
| ``LI``, ``LIEMA``, ``Readout``, ``LeakyIntegrator`` (membrane) | ``LI`` | exact |
| ``SLI``, ``SLIEMA``, ``SReadout`` | ``CubaLI`` | exact |
| ``LIB`` (``quant_fn=round_ste()``), ``LIF``, ``LeakyIntegrator`` (binary) | ``LIF`` | reset |
| ``SLIB`` (``quant_fn=round_ste()``), ``SLIF`` | ``CubaLIF`` | reset |
| ``D*`` (dual traces) | none | refused |
| ``*LIT``, ``*LITS``, ``B*LIF`` (ternary) | none | refused |
| ``R*`` (recurrent) | none | refused |
| ``LIB`` with a graded or stochastic ``quant_fn``, custom ``spike_fn`` | none | refused |
| NIR ``IF``, ``I`` (no leak: ``beta = 1``), ``Threshold``, ``Delay`` | none | refused |
| NIR cycles (recurrent subgraphs) | none | refused |

**The reset (the one approximation).** A NIR ``LIF`` sets ``v`` to
``v_reset`` after a spike; every traceTorch layer subtracts the threshold
(``mem -= s*threshold``), so it keeps the overshoot ``v - v_threshold``. The two
agree exactly until a neuron's first spike; after it, the NIR reading starts
each inter-spike interval from ``v_reset`` and the traceTorch one from the
overshoot (at most the input gained in one step), so spikes can come earlier
in traceTorch. :func:`to_nir` writes ``v_reset = 0`` and records the subtracted
amount of each firing node in ``graph.metadata["tracetorch_reset_subtract"]``;
:func:`from_nir` reads that record (round trips are exact) and otherwise
subtracts ``v_threshold``. This is exactly what snnTorch models do (their
``Leaky``/``Synaptic`` reset by subtraction although their exporter writes
``v_reset = 0``), and Norse ``LIFBoxCell`` s with ``reset_method=reset_subtract``;
Norse's default reset-to-value neurons are reproduced only until each neuron's
first spike. A NIR ``v_reset`` other than 0 is refused.

Firing: NIR fires when ``v > v_threshold``; family-B layers fire on
``mem - threshold > 0`` (identical), family-A ``LIB`` with
``round(sigmoid(4*(mem - threshold + bias)))``, which is the same step
(``round(0.5) = 0``), at ``v_threshold = threshold - bias``.

Neuron parameters in NIR have the node's whole per-sample shape; traceTorch
keeps one value per neuron along the layer's ``dim``. Export broadcasts them;
import needs them constant along every other axis.

Example:
    >>> import torch, tracetorch as tt
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), tt.snn.LIF(2, beta=0.8))
    >>> graph = tt.nir.to_nir(model, torch.zeros(1, 3), dt=1e-3)
    >>> sorted(type(node).__name__ for node in graph.nodes.values())
    ['Affine', 'Input', 'LIF', 'Output']
    >>> copy = tt.nir.from_nir(graph, dt=1e-3)
    >>> x = torch.rand(4, 3)
    >>> bool(torch.equal(copy(x), model(x)))
    True
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from tracetorch import functional
from tracetorch._torch import torch
from tracetorch._tracing import example_step, record_shapes, trace
from tracetorch.errors import ExportError
from tracetorch.layer import Layer
from tracetorch.model import Model
from tracetorch.snn import _family_a, _family_b
from tracetorch.snn._family_a import FamilyA
from tracetorch.snn._family_b import LeakyIntegrator
from tracetorch.snn._layer import Neuron

try:
    import nir  # type: ignore[import-untyped]
except ImportError as _error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "tracetorch.nir needs the 'nir' package: pip install 'tracetorch[nir]'"
    ) from _error

nn = torch.nn
fx = torch.fx
Tensor = torch.Tensor

__all__ = ["RESET_KEY", "NIRModel", "Scale", "from_nir", "to_nir"]

RESET_KEY = "tracetorch_reset_subtract"
"""Graph metadata key: node name -> the amount its reset subtracts (traceTorch semantics)."""

_RTOL, _ATOL = 1e-5, 1e-7


class Scale(nn.Module):
    """Elementwise ``y = x * scale`` (NIR ``Scale``); ``scale`` has the per-sample shape.

    Example:
        >>> Scale(torch.tensor([2.0, 3.0]))(torch.ones(1, 2))
        tensor([[2., 3.]])
    """

    scale: Tensor

    def __init__(self, scale: Any) -> None:
        super().__init__()
        if isinstance(scale, torch.Tensor):
            value = scale.detach().to(torch.float32).clone()
        else:
            value = torch.tensor(np.array(scale, dtype=np.float32))
        self.register_buffer("scale", value)

    def forward(self, x: Tensor) -> Tensor:
        """Multiply by ``scale`` (broadcast over the leading batch axes)."""
        return x * self.scale


# --- export ------------------------------------------------------------------------------------


def _check_dt(dt: float) -> float:
    value = float(dt)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    return value


def to_nir(model: nn.Module, example_input: Tensor, dt: float = 1e-3) -> nir.NIRGraph:
    """Describe ``model`` (one timestep of it) as a NIR graph.

    Args:
        model: a module whose ``forward`` is traceable by ``torch.fx`` and made of
            the modules of the mapping table (see the module docstring).
        example_input: one timestep of input, batch first, e.g. ``torch.zeros(1, 784)``;
            it fixes the shapes. The model's states are left as they were.
        dt: the time step (seconds) that turns decays into time constants.

    Returns:
        The graph, with one ``Input`` node ``"input"`` and one ``Output`` node ``"output"``.

    Raises:
        ExportError: a module, function or layer configuration NIR cannot express;
            the message says which and why.

    Example:
        >>> import torch, tracetorch as tt
        >>> graph = tt.nir.to_nir(tt.snn.LI(3, beta=0.5), torch.zeros(1, 3), dt=1e-3)
        >>> graph.nodes["model"].tau.tolist()
        [0.002, 0.002, 0.002]
    """
    dt = _check_dt(dt)
    example = example_step(example_input)
    if isinstance(model, (Layer, Scale)):  # a lone leaf: trace it as a one-module model
        model = nn.Sequential(OrderedDict(model=model))
    graph_module = trace(model, leaves=(Layer, Scale))
    shapes = record_shapes(model, graph_module, example)
    return _Builder(graph_module, shapes, dt).build()


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _Builder:
    def __init__(self, graph_module: fx.GraphModule, shapes: dict[str, Any], dt: float) -> None:
        self.gm = graph_module
        self.shapes = shapes
        self.dt = dt
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[str, list[str]] = {}  # fx node -> NIR nodes whose sum it is
        self.resets: dict[str, np.ndarray] = {}

    def build(self) -> nir.NIRGraph:
        for node in self.gm.graph.nodes:
            self._visit(node)
        metadata = {RESET_KEY: self.resets} if self.resets else {}
        try:
            return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata)
        except (ValueError, AssertionError) as error:
            raise ExportError(f"NIR rejected the graph: {error}") from error

    def _sample(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.shapes[node.name][1:])

    def _add(self, name: str, nir_node: Any, sources: list[str]) -> None:
        self.nodes[name] = nir_node
        self.edges += [(source, name) for source in sources]
        self.values[name] = [name]

    def _sources(self, node: fx.Node, arg: Any) -> list[str]:
        if not isinstance(arg, fx.Node) or arg.name not in self.values:
            raise ExportError(f"{node.name}: its input must be a tensor computed by the model")
        return self.values[arg.name]

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if "input" in self.nodes:
                raise ExportError("the model takes more than one input; NIR export supports one")
            self.nodes["input"] = nir.Input(input_type=np.array(self._sample(node)))
            self.values[node.name] = ["input"]
        elif node.op == "output":
            result = node.args[0]
            sources = self._sources(node, result)
            shape = np.array(self.shapes[str(getattr(result, "name", ""))][1:])
            self.nodes["output"] = nir.Output(output_type=shape)
            self.edges += [(source, "output") for source in sources]
        elif node.op == "call_module":
            self._module(node, self.gm.get_submodule(str(node.target)))
        elif node.op in ("call_function", "call_method"):
            target = node.target
            binary = target in (operator.add, torch.add) or target == "add"
            if binary and len(node.args) == 2 and not node.kwargs:
                left, right = node.args
                self.values[node.name] = self._sources(node, left) + self._sources(node, right)
                return
            what = getattr(target, "__name__", str(target))
            raise ExportError(
                f"{node.name}: the function {what!r} has no NIR node (NIR graphs hold modules; "
                "only the sum of two branches maps, as two edges into one node)"
            )
        else:
            raise ExportError(f"{node.name}: {node.op} {node.target} has no NIR node")

    def _module(self, node: fx.Node, module: nn.Module) -> None:
        name = node.name
        if len(node.args) != 1 or node.kwargs:
            raise ExportError(f"{name}: NIR nodes take exactly one input")
        sources = self._sources(node, node.args[0])
        source_shape = self.shapes[str(getattr(node.args[0], "name", ""))][1:]
        kind = type(module).__name__
        if isinstance(module, (nn.Identity, nn.Dropout)):
            self.values[name] = sources
        elif isinstance(module, nn.Linear):
            weight = _array(module.weight)
            if module.bias is None:
                self._add(name, nir.Linear(weight=weight), sources)
            else:
                self._add(name, nir.Affine(weight=weight, bias=_array(module.bias)), sources)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            if module.padding_mode != "zeros":
                raise ExportError(
                    f"{name}: {kind} with padding_mode={module.padding_mode!r}; NIR convolutions "
                    "pad with zeros"
                )
            weight = _array(module.weight)
            bias = _array(module.bias) if module.bias is not None else np.zeros(weight.shape[0])
            padding = module.padding
            if isinstance(module, nn.Conv1d):
                self._add(name, nir.Conv1d(
                    input_shape=int(source_shape[-1]), weight=weight, stride=module.stride[0],
                    padding=padding if isinstance(padding, str) else padding[0],
                    dilation=module.dilation[0], groups=module.groups, bias=bias,
                ), sources)  # fmt: skip
            else:
                self._add(name, nir.Conv2d(
                    input_shape=tuple(int(s) for s in source_shape[-2:]), weight=weight,
                    stride=_pair(module.stride), dilation=_pair(module.dilation),
                    padding=padding if isinstance(padding, str) else _pair(padding),
                    groups=module.groups, bias=bias,
                ), sources)  # fmt: skip
        elif isinstance(module, nn.Flatten):
            ndim = len(source_shape) + 1
            start = module.start_dim % ndim
            end = module.end_dim % ndim
            if start == 0:
                raise ExportError(f"{name}: nn.Flatten over the batch axis has no NIR node")
            self._add(name, nir.Flatten(
                input_type={"input": np.array(source_shape)}, start_dim=start - 1,
                end_dim=end - 1,
            ), sources)  # fmt: skip
        elif isinstance(module, nn.AvgPool2d):
            self._add(name, self._pool(name, module), sources)
        elif isinstance(module, Scale):
            scale = np.broadcast_to(_array(module.scale), source_shape).copy()
            self._add(name, nir.Scale(scale=scale), sources)
        elif isinstance(module, Neuron):
            self._add(name, self._neuron(name, module, tuple(source_shape), node), sources)
        else:
            raise ExportError(f"{name}: {kind} has no NIR node (see tt.nir's mapping table)")

    def _pool(self, name: str, pool: nn.AvgPool2d) -> Any:
        if pool.ceil_mode:
            raise ExportError(f"{name}: AvgPool2d with ceil_mode=True has no NIR node")
        kernel = _pair(pool.kernel_size)
        stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        padding = _pair(pool.padding)
        if any(padding) and not pool.count_include_pad:
            raise ExportError(
                f"{name}: AvgPool2d with count_include_pad=False and padding has no NIR node"
            )
        args = {"kernel_size": np.array(kernel), "stride": np.array(stride),
                "padding": np.array(padding)}  # fmt: skip
        if pool.divisor_override is None:
            return nir.AvgPool2d(**args)
        if pool.divisor_override == 1:
            return nir.SumPool2d(**args)
        raise ExportError(
            f"{name}: AvgPool2d with divisor_override={pool.divisor_override} has no NIR node "
            "(1 maps to SumPool2d)"
        )

    def _neuron(self, name: str, layer: Neuron, shape: tuple[int, ...], node: fx.Node) -> Any:
        spec = layer.spec
        kind = type(layer).__name__
        where = f"{name} ({kind})"
        if spec.dual:
            raise ExportError(
                f"{where}: NIR has no dual-trace neuron (separate positive and negative traces)"
            )
        if spec.output == "ternary":
            raise ExportError(
                f"{where}: NIR has no ternary neuron (NIR neurons fire only positive spikes)"
            )
        if spec.recurrent:
            raise ExportError(
                f"{where}: recurrent layers are not exported; NIR has no recurrent neuron and "
                "a cyclic subgraph leaves the delay of the feedback undefined"
            )
        if spec.scaled:
            raise ExportError(
                f"{where}: NIR neurons emit unit spikes; a scaled output (pos_scale) has no NIR "
                "neuron (put a tt.nir.Scale after an unscaled layer)"
            )
        if spec.fires:
            self._check_fire(where, layer)
        ndim = len(shape) + 1
        axis = layer.dim % ndim - 1
        if axis < 0:
            raise ExportError(f"{where}: a layer acting on the batch axis has no NIR node")

        params = {k: _array(v) for k, v in layer._core_parameters().items()}

        def full(value: np.ndarray) -> np.ndarray:
            vector = np.broadcast_to(value, (layer.num_neurons,))
            view = [1] * len(shape)
            view[axis] = layer.num_neurons
            return np.broadcast_to(vector.reshape(view), shape).astype(np.float64)

        dt = self.dt
        beta = full(params["beta"])
        tau = dt / (1.0 - beta)
        r = np.ones_like(beta) if spec.mem_ema else 1.0 / (1.0 - beta)
        bias = full(params["bias"]) if spec.bias != "none" else np.zeros_like(beta)
        v_leak = r * bias if spec.bias == "drive" else np.zeros_like(beta)
        if spec.synaptic:
            alpha = full(params["alpha"])
            tau_syn = dt / (1.0 - alpha)
            w_in = np.ones_like(alpha) if spec.syn_ema else 1.0 / (1.0 - alpha)
        if not spec.fires:
            if spec.synaptic:
                return nir.CubaLI(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, w_in=w_in)
            return nir.LI(tau=tau, r=r, v_leak=v_leak)
        threshold = full(params["pos_threshold"])
        v_threshold = threshold - bias if spec.bias == "spike" else threshold
        self.resets[name] = threshold
        v_reset = np.zeros_like(threshold)
        if spec.synaptic:
            return nir.CubaLIF(
                tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, v_threshold=v_threshold,
                v_reset=v_reset, w_in=w_in,
            )  # fmt: skip
        return nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=v_threshold, v_reset=v_reset)

    @staticmethod
    def _check_fire(where: str, layer: Neuron) -> None:
        if isinstance(layer, FamilyA):
            quant = layer.quant_fn
            if isinstance(quant, nn.Identity):
                raise ExportError(
                    f"{where}: quant_fn=nn.Identity() gives graded outputs "
                    "(sigmoid firing probabilities); NIR neurons emit binary spikes: use "
                    "quant_fn=tt.functional.round_ste()"
                )
            if not isinstance(quant, functional.RoundSTE) or quant.step_size != 1.0:
                raise ExportError(
                    f"{where}: quant_fn={quant!r} is not NIR's deterministic unit spike; only "
                    "tt.functional.round_ste(1.0) maps to a NIR LIF"
                )
            if layer.spike_fn is not functional.sigmoid4x:
                raise ExportError(
                    f"{where}: a custom spike_fn {layer.spike_fn!r} has no NIR equivalent; only "
                    "the default tt.functional.sigmoid4x (a step at the threshold after "
                    "round_ste) maps to a NIR LIF"
                )
        elif isinstance(layer, LeakyIntegrator):
            surrogate = layer.pos_surrogate
            if not isinstance(surrogate, functional._Surrogate):
                raise ExportError(
                    f"{where}: a custom surrogate {surrogate!r} may not fire as a step; NIR "
                    "neurons fire as a Heaviside step (use tt.functional.atan_surrogate or "
                    "sigmoid_surrogate)"
                )
        else:
            raise ExportError(f"{where}: a custom firing layer has no NIR neuron")


# --- import ------------------------------------------------------------------------------------


class NIRModel(Model):
    """A NIR graph as a ``tt.Model``: one call runs one timestep through the graph.

    Each node's input is the sum of its predecessors' outputs (NIR's semantics of
    several incoming edges); nodes run in topological order.

    Attributes:
        nodes: the modules, by (sanitised) NIR node name.
        order: node names in the order they run.
        sources: for each node (and each output), the nodes feeding it.
        input_name: the graph input node's name.
        outputs: the output nodes' names.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        order: list[str],
        sources: dict[str, list[str]],
        input_name: str,
        outputs: list[str],
    ) -> None:
        super().__init__()
        self.nodes = nn.ModuleDict(modules)
        self.order = list(order)
        self.sources = {k: list(v) for k, v in sources.items()}
        self.input_name = input_name
        self.outputs = list(outputs)

    def forward(self, x: Tensor) -> Any:
        """One timestep; returns the output tensor (a tuple when the graph has several)."""
        values: dict[str, Tensor] = {self.input_name: x}

        def gather(name: str) -> Tensor:
            feeds = [values[s] for s in self.sources[name]]
            total = feeds[0]
            for extra in feeds[1:]:
                total = total + extra
            return total

        for name in self.order:
            values[name] = self.nodes[name](gather(name))
        results = tuple(gather(name) for name in self.outputs)
        return results[0] if len(results) == 1 else results


def from_nir(graph: nir.NIRGraph, dt: float = 1e-3) -> NIRModel:
    """Build a ``tt.Model`` that runs ``graph``, one timestep per call.

    Args:
        graph: the NIR graph (e.g. from ``nir.read(path)``); one ``Input`` node,
            no cycles. Nested acyclic ``NIRGraph`` nodes are run as sub-models.
        dt: the time step (seconds): ``beta = 1 - dt/tau``. Use the ``dt`` the graph
            was exported with (snnTorch 1.0 writes ``dt = 1e-4``; Norse 1.1 writes
            ``tau = dt/tau_mem_inv``, so a Norse graph exported with ``dt`` needs
            ``dt**2`` here).

    Returns:
        The model (eval-ready; neuron parameters learnable as in any traceTorch layer).

    Raises:
        ExportError: a node, parameter or structure traceTorch cannot run; the
            message says which and why.

    Example:
        >>> import nir, numpy as np, torch, tracetorch as tt
        >>> li = nir.LI(tau=np.full(2, 2e-3), r=np.full(2, 2.0), v_leak=np.zeros(2))
        >>> model = tt.nir.from_nir(nir.NIRGraph.from_list(li), dt=1e-3)
        >>> type(model.nodes["li"]).__name__, model.nodes["li"].beta.tolist()
        ('LI', [0.5, 0.5])
    """
    dt = _check_dt(dt)
    if not isinstance(graph, nir.NIRGraph):
        raise ExportError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    return _import_graph(graph, dt, "graph")


def _sanitise(names: Sequence[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = str(name).replace(".", "_") or "node"
        candidate, i = base, 1
        while candidate in used:
            candidate, i = f"{base}_{i}", i + 1
        used.add(candidate)
        mapping[name] = candidate
    return mapping


def _import_graph(graph: nir.NIRGraph, dt: float, where: str) -> NIRModel:
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1:
        raise ExportError(f"{where}: expected exactly one Input node, found {len(inputs)}")
    if not outputs:
        raise ExportError(f"{where}: the graph has no Output node")
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise ExportError(f"{where}: edge ({a!r}, {b!r}) names an unknown node {end!r}")
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order = _topological(graph, where)
    resets = dict((graph.metadata or {}).get(RESET_KEY, {}) or {})
    names = _sanitise(list(graph.nodes))
    modules: dict[str, nn.Module] = {}
    run: list[str] = []
    for key in order:
        node = graph.nodes[key]
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        if not preds[key]:
            raise ExportError(f"{where}: node {key!r} has no input edge")
        modules[names[key]] = _import_node(node, dt, f"{where}: node {key!r}", resets.get(key))
        run.append(names[key])
    sources = {names[k]: [names[p] for p in preds[k]] for k in graph.nodes}
    for out in outputs:
        if not preds[out]:
            raise ExportError(f"{where}: output {out!r} has no input edge")
    for key, feeds in preds.items():
        for feed in feeds:
            if isinstance(graph.nodes[feed], nir.Output):
                raise ExportError(f"{where}: output node {feed!r} feeds node {key!r}")
    return NIRModel(modules, run, sources, names[inputs[0]], [names[o] for o in outputs])


def _topological(graph: nir.NIRGraph, where: str) -> list[str]:
    indegree = {k: 0 for k in graph.nodes}
    for _, b in graph.edges:
        indegree[b] += 1
    ready = [k for k in graph.nodes if indegree[k] == 0]
    order: list[str] = []
    while ready:
        key = ready.pop(0)
        order.append(key)
        for a, b in graph.edges:
            if a == key:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    if len(order) != len(graph.nodes):
        cycle = sorted(k for k, d in indegree.items() if d > 0)
        raise ExportError(
            f"{where}: the graph has a cycle through {cycle}; recurrent NIR graphs are not "
            "imported (NIR does not define the delay of a feedback edge, and traceTorch's "
            "recurrent layers take a trace of their own output, not a weight matrix)"
        )
    return order


def _tensor(value: np.ndarray) -> Tensor:
    return torch.tensor(np.array(value, dtype=np.float32))


def _import_node(node: Any, dt: float, where: str, reset: Optional[Any]) -> nn.Module:
    if isinstance(node, nir.NIRGraph):
        return _import_graph(node, dt, where)
    if isinstance(node, nir.Affine):
        weight = _array(node.weight)
        if weight.ndim != 2:
            raise ExportError(f"{where}: Affine weight must be 2-D, got shape {weight.shape}")
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(_tensor(weight))
            linear.bias.copy_(_tensor(_array(node.bias)))
        return linear
    if isinstance(node, nir.Linear):
        weight = _array(node.weight)
        if weight.ndim != 2:
            raise ExportError(f"{where}: Linear weight must be 2-D, got shape {weight.shape}")
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            linear.weight.copy_(_tensor(weight))
        return linear
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return _import_conv(node)
    if isinstance(node, nir.Flatten):
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return nn.Flatten(start, end)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        # SumPool2d is average pooling times the kernel area: divisor 1.
        divisor = 1 if isinstance(node, nir.SumPool2d) else None
        return nn.AvgPool2d(
            _ints2(node.kernel_size), _ints2(node.stride), _ints2(node.padding),
            divisor_override=divisor,
        )  # fmt: skip
    if isinstance(node, nir.Scale):
        return Scale(_array(node.scale))
    if isinstance(node, (nir.LI, nir.CubaLI, nir.LIF, nir.CubaLIF)):
        return _import_neuron(node, dt, where, reset)
    if isinstance(node, (nir.IF, nir.I)):
        raise ExportError(
            f"{where}: NIR {type(node).__name__} has no leak (beta = 1); traceTorch decays lie "
            "strictly in (0, 1)"
        )
    if isinstance(node, nir.Threshold):
        raise ExportError(
            f"{where}: NIR Threshold (a stateless step) has no traceTorch layer; traceTorch "
            "fires only from a neuron's membrane"
        )
    raise ExportError(f"{where}: NIR {type(node).__name__} has no traceTorch equivalent")


def _ints2(value: Any) -> tuple[int, int]:
    a, b = (int(v) for v in np.broadcast_to(np.asarray(value), (2,)))
    return a, b


def _import_conv(node: Any) -> nn.Module:
    weight = _array(node.weight)
    bias = _array(node.bias) if node.bias is not None else np.zeros(weight.shape[0])
    padding = node.padding
    if not isinstance(padding, str):
        padding = tuple(int(p) for p in np.atleast_1d(np.asarray(padding)))
    if isinstance(node, nir.Conv1d):
        padding = padding if isinstance(padding, str) else padding[0]
        conv: nn.Conv1d | nn.Conv2d = nn.Conv1d(
            weight.shape[1] * node.groups, weight.shape[0], weight.shape[2],
            stride=int(np.asarray(node.stride).reshape(-1)[0]), padding=padding,
            dilation=int(np.asarray(node.dilation).reshape(-1)[0]), groups=node.groups,
        )  # fmt: skip
    else:
        conv = nn.Conv2d(
            weight.shape[1] * node.groups, weight.shape[0], tuple(weight.shape[2:]),
            stride=_ints2(node.stride), padding=padding, dilation=_ints2(node.dilation),
            groups=node.groups,
        )  # fmt: skip
    assert conv.bias is not None
    with torch.no_grad():
        conv.weight.copy_(_tensor(weight))
        conv.bias.copy_(_tensor(bias))
    return conv


def _close(value: np.ndarray, target: Any) -> bool:
    return bool(np.allclose(value, target, rtol=_RTOL, atol=_ATOL))


def _per_neuron(
    arrays: dict[str, np.ndarray], where: str
) -> tuple[int, int, dict[str, np.ndarray]]:
    """The neuron axis (negative, counted from the end) and one vector per parameter."""
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ExportError(f"{where}: parameters of different shapes {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) == 0:
        raise ExportError(
            f"{where}: scalar (0-d) parameters leave the number of neurons unknown; give one "
            "value per neuron"
        )
    for axis in range(len(shape)):
        vectors: dict[str, np.ndarray] = {}
        for key, array in arrays.items():
            vector = np.moveaxis(array, axis, 0).reshape(shape[axis], -1)
            if not np.array_equal(vector, np.repeat(vector[:, :1], vector.shape[1], axis=1)):
                break
            vectors[key] = vector[:, 0]
        else:
            return axis - len(shape), shape[axis], vectors
    raise ExportError(
        f"{where}: parameters of shape {shape} vary along more than one axis; a traceTorch "
        "layer holds one value per neuron along one axis"
    )


def _import_neuron(node: Any, dt: float, where: str, reset: Optional[Any]) -> nn.Module:
    synaptic = isinstance(node, (nir.CubaLI, nir.CubaLIF))
    fires = isinstance(node, (nir.LIF, nir.CubaLIF))
    arrays = {
        "tau": _array(node.tau_mem if synaptic else node.tau),
        "r": _array(node.r),
        "v_leak": _array(node.v_leak),
    }
    if synaptic:
        arrays["tau_syn"] = _array(node.tau_syn)
        arrays["w_in"] = np.broadcast_to(_array(node.w_in), arrays["tau"].shape)
    if fires:
        arrays["v_threshold"] = _array(node.v_threshold)
        v_reset = _array(node.v_reset) if node.v_reset is not None else np.zeros(1)
        if not _close(v_reset, 0.0):
            raise ExportError(
                f"{where}: v_reset != 0; traceTorch resets by subtracting the threshold, which "
                "approximates NIR's reset to v_reset only for v_reset = 0"
            )
        arrays["reset"] = (
            np.broadcast_to(_array(reset), arrays["tau"].shape)
            if reset is not None
            else arrays["v_threshold"]
        )
    full_shape = arrays["tau"].shape
    dim, n, p = _per_neuron(arrays, where)

    def decay(tau: np.ndarray, label: str) -> np.ndarray:
        value = 1.0 - dt / tau
        if not np.all((value > 0.0) & (value < 1.0)):
            raise ExportError(
                f"{where}: dt/{label} must lie in (0, 1) for a decay 1 - dt/{label} in (0, 1); "
                f"got dt={dt} and {label} from {tau.min():.3g} to {tau.max():.3g} "
                "(pass the dt the graph was exported with)"
            )
        return value

    beta = decay(p["tau"], "tau")
    mem_ema = _close(p["r"], 1.0)
    c = 1.0 - beta if mem_ema else np.ones_like(beta)
    gain = p["r"] * (1.0 - beta) / c
    bias = p["v_leak"] * (1.0 - beta) / c
    setups: dict[str, dict[str, Any]] = {"beta_setup": {"value": _tensor(beta),
                                                        "use_averaging": mem_ema}}  # fmt: skip
    syn_ema = True
    if synaptic:
        alpha = decay(p["tau_syn"], "tau_syn")
        syn_ema = _close(p["w_in"], 1.0)
        a = 1.0 - alpha if syn_ema else np.ones_like(alpha)
        gain = gain * (1.0 - alpha) * p["w_in"] / a
        setups["alpha_setup"] = {"value": _tensor(alpha), "use_averaging": syn_ema}
    has_bias = not _close(bias, 0.0)
    if has_bias:
        setups["bias_setup"] = {"value": _tensor(bias)}

    layer: nn.Module
    if not fires:
        if not has_bias and syn_ema:
            name = ("S" if synaptic else "") + ("LIEMA" if mem_ema else "LI")
            args = {"alpha": _tensor(alpha)} if synaptic else {}
            layer = _family_a.LAYERS[name](n, beta=_tensor(beta), dim=dim, **args)
        else:
            layer = LeakyIntegrator(n, dim=dim, **setups)
    else:
        threshold, amount = p["v_threshold"], p["reset"]
        if _close(amount, threshold):
            setups["pos_threshold_setup"] = {"value": _tensor(threshold)}
            layer = LeakyIntegrator(n, dim=dim, **setups)
            if not has_bias:
                cls = _family_b.LAYERS["SLIF" if synaptic else "LIF"]
                emas = {"alpha_ema": syn_ema} if synaptic else {}
                args = {"alpha": _tensor(alpha)} if synaptic else {}
                layer = cls(n, beta=_tensor(beta), pos_threshold=_tensor(threshold), dim=dim,
                            beta_ema=mem_ema, **emas, **args)  # fmt: skip
        elif not has_bias and not mem_ema and syn_ema and np.all(amount > 0):
            # Family A fires at threshold - bias and subtracts threshold.
            cls = _family_a.LAYERS["SLIB" if synaptic else "LIB"]
            args = {"alpha": _tensor(alpha)} if synaptic else {}
            layer = cls(n, beta=_tensor(beta), threshold=_tensor(amount),
                        bias=_tensor(amount - threshold), dim=dim,
                        quant_fn=functional.round_ste(), **args)  # fmt: skip
        else:
            raise ExportError(
                f"{where}: a reset that subtracts other than v_threshold together with v_leak, "
                "r = 1 or w_in != 1 has no traceTorch layer"
            )
    if _close(gain, 1.0):
        return layer
    view = [1] * len(full_shape)
    view[dim] = n
    scale = np.broadcast_to(gain.reshape(view), full_shape).copy()
    return nn.Sequential(Scale(scale), layer)
