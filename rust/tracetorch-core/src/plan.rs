//! Loading and validating a model file into an immutable [`Plan`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::floats::Floats;
use crate::kernels::{self, Binary, DirectLayout, PoolKind, Unary, Window};
use crate::neuron::{Fire, NeuronLayer, NeuronSpec, ParamRow, Quant, Spike, NPARAM, PARAM_NAMES};
use crate::simd::to_panels;

/// Largest number of floats the engine allocates for one model: weights plus
/// every buffer and state of every stream (2^28 floats, 1 GiB).
pub const MAX_FLOATS: usize = 1 << 28;

/// Largest number of multiply-adds one step may take per stream (2^32, a few
/// seconds at worst): a file within the memory cap could otherwise declare a
/// step that runs for hours.
pub const MAX_WORK: usize = 1 << 32;

/// Largest safetensors header (JSON) the loader parses: 16 MiB, thousands of
/// times a real model's.
pub const MAX_HEADER_BYTES: usize = 1 << 24;

/// The format version this engine reads.
pub const FORMAT_VERSION: u64 = 1;

#[derive(Deserialize)]
struct Document {
    input_shape: Vec<usize>,
    output: String,
    nodes: Vec<NodeDoc>,
}

#[derive(Deserialize)]
struct NodeDoc {
    name: String,
    op: String,
    inputs: Vec<String>,
    shape: Vec<usize>,
    #[serde(default)]
    attrs: Map<String, Value>,
    #[serde(default)]
    tensors: BTreeMap<String, String>,
}

/// What one executable step computes.
#[derive(Debug, Clone)]
pub(crate) enum Kernel {
    /// Matrix-vector product over the last axis.
    Linear {
        /// `[inp, out]` (transposed at load, in column panels): each input
        /// adds one contiguous weight row to the outputs, with no horizontal
        /// sums, and the event-driven path adds only the rows of active inputs.
        weight_t: Floats,
        bias: Option<Floats>,
        inp: usize,
        out: usize,
        /// The input is spikes: a row with at most this many active inputs
        /// adds only their weights ([`kernels::event_limit`]; 0 for an input
        /// that is not spikes, or a layer where skipping never pays).
        event_limit: usize,
    },
    /// 1-d or 2-d convolution.
    Conv {
        weight: Floats,
        bias: Option<Floats>,
        window: Window,
        /// [`Window::layout`] of the window, groups and weights.
        layout: DirectLayout,
        out_channels: usize,
        groups: usize,
    },
    /// 1-d or 2-d pooling over the last one or two axes.
    Pool { window: Window, kind: PoolKind },
    /// Per-channel scale and shift.
    ChannelAffine {
        scale: Vec<f32>,
        shift: Vec<f32>,
        inner: usize,
    },
    /// Elementwise op of one input.
    Unary(Unary),
    /// Elementwise op of two inputs.
    Binary(Binary),
    /// Concatenation; `chunks[i]` floats of input `i` per outer row, `rows` rows per stream.
    Cat { chunks: Vec<usize>, rows: usize },
    /// A neuron layer (index into [`Plan::neurons`]).
    Neuron(usize),
}

/// One executable node: reads buffers `inputs`, writes buffer `output`.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) kernel: Kernel,
    pub(crate) inputs: Vec<usize>,
    pub(crate) output: usize,
}

/// One named state of one neuron node.
#[derive(Debug, Clone)]
pub(crate) struct StateInfo {
    /// `"<node>.<state>"`.
    pub(crate) name: String,
    /// Index into [`Plan::neurons`].
    pub(crate) neuron: usize,
    /// Slot in that neuron's state array.
    pub(crate) slot: usize,
    /// Per-stream shape: the shape of the neuron's input, as PyTorch keeps it.
    pub(crate) shape: Vec<usize>,
    /// Per-stream number of floats.
    pub(crate) numel: usize,
}

/// A validated model: weights, buffer layout and execution order. Immutable
/// and shareable between engines (`Arc<Plan>`).
#[derive(Debug, Clone)]
pub struct Plan {
    source: Vec<u8>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    /// Per-stream floats of each buffer; buffer 0 is the graph input.
    pub(crate) buffer_sizes: Vec<usize>,
    pub(crate) output_buffer: usize,
    pub(crate) steps: Vec<Step>,
    pub(crate) neurons: Vec<NeuronLayer>,
    pub(crate) states: Vec<StateInfo>,
    /// Floats held by the plan (weights, in every layout kept) plus the
    /// per-engine scratch below.
    weight_floats: usize,
    /// Per-engine scratch: the largest convolution scratch of one sample (a
    /// padded input or an im2col matrix, see
    /// [`crate::kernels::Window::scratch_floats`]).
    pub(crate) col_floats: usize,
    /// Per-engine scratch: the largest input of an event-driven linear layer.
    pub(crate) active_len: usize,
    /// Multiply-adds of one step of one stream.
    work: usize,
    /// Floats of buffers and states per stream, each state counted twice
    /// (the engine keeps a copy to roll a refused [`crate::Engine::run`] back).
    pub(crate) stream_floats: usize,
}

/// A linear layer's `[out, inp]` weight as its kernel reads it: `W^T`
/// (`[inp, out]`) in column panels.
pub(crate) fn linear_weights(weight: &[f32], out: usize, inp: usize) -> Floats {
    to_panels(&transpose(weight, out, inp), inp, out)
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; m.len()];
    for (r, row) in m.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (c, v) in row.iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn too_large(what: impl Into<String>, found: Option<usize>) -> Error {
    Error::TooLarge {
        what: what.into(),
        found: found.map_or_else(|| "an overflowing size".to_string(), |n| n.to_string()),
        limit: MAX_FLOATS,
    }
}

/// Number of floats of `shape`, refusing anything above [`MAX_FLOATS`].
fn checked_numel(what: &str, shape: &[usize]) -> Result<usize> {
    match numel(shape) {
        Some(n) if n <= MAX_FLOATS => Ok(n),
        other => Err(too_large(what, other)),
    }
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// Attribute reader for one node.
struct Attrs<'a> {
    node: &'a str,
    map: &'a Map<String, Value>,
}

impl Attrs<'_> {
    fn err(&self, attr: &str, expected: &str, found: Option<&Value>) -> Error {
        Error::Attr {
            node: self.node.to_string(),
            attr: attr.to_string(),
            expected: expected.to_string(),
            found: found.map_or_else(|| "nothing (missing)".to_string(), describe),
        }
    }

    fn get(&self, attr: &str) -> Option<&Value> {
        self.map.get(attr)
    }

    fn int_of(&self, attr: &str, v: &Value, expected: &str, min: usize) -> Result<usize> {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n >= min && n <= MAX_FLOATS)
            .ok_or_else(|| self.err(attr, expected, Some(v)))
    }

    fn int(&self, attr: &str, min: usize) -> Result<usize> {
        let expected = format!("an integer >= {min}");
        let v = self
            .get(attr)
            .ok_or_else(|| self.err(attr, &expected, None))?;
        self.int_of(attr, v, &expected, min)
    }

    /// `n` integers >= `min`, given as a list of `n` or a single integer.
    fn ints(&self, attr: &str, n: usize, min: usize) -> Result<Vec<usize>> {
        let expected = format!("a list of {n} integers >= {min}");
        let v = self
            .get(attr)
            .ok_or_else(|| self.err(attr, &expected, None))?;
        self.ints_of(attr, v, n, min, &expected)
    }

    fn ints_of(
        &self,
        attr: &str,
        v: &Value,
        n: usize,
        min: usize,
        expected: &str,
    ) -> Result<Vec<usize>> {
        match v {
            Value::Array(items) if items.len() == n => items
                .iter()
                .map(|x| self.int_of(attr, x, expected, min))
                .collect(),
            Value::Number(_) => Ok(vec![self.int_of(attr, v, expected, min)?; n]),
            _ => Err(self.err(attr, expected, Some(v))),
        }
    }

    fn bool(&self, attr: &str) -> Result<bool> {
        let v = self.get(attr);
        v.and_then(Value::as_bool)
            .ok_or_else(|| self.err(attr, "a boolean", v))
    }

    fn float(&self, attr: &str) -> Result<f32> {
        let v = self.get(attr);
        v.and_then(Value::as_f64)
            .map(|x| x as f32)
            .filter(|x| x.is_finite())
            .ok_or_else(|| self.err(attr, "a finite number", v))
    }

    fn axis(&self, rank: usize) -> Result<usize> {
        let expected = format!("an axis in 0..{rank}");
        let v = self
            .get("axis")
            .ok_or_else(|| self.err("axis", &expected, None))?;
        v.as_u64()
            .and_then(|a| usize::try_from(a).ok())
            .filter(|&a| a < rank)
            .ok_or_else(|| self.err("axis", &expected, Some(v)))
    }
}

/// Tensor access for one node: checks roles, dtype, shape and single use.
struct Tensors<'a, 'd> {
    node: &'a NodeDoc,
    file: &'a SafeTensors<'d>,
    used: &'a mut HashSet<String>,
    weight_floats: &'a mut usize,
}

impl Tensors<'_, '_> {
    /// Rejects roles the op does not take.
    fn allow(&self, roles: &[&str]) -> Result<()> {
        for role in self.node.tensors.keys() {
            if !roles.contains(&role.as_str()) {
                return Err(Error::UnexpectedRole {
                    node: self.node.name.clone(),
                    role: role.clone(),
                    expected: if roles.is_empty() {
                        "none".to_string()
                    } else {
                        roles.join(", ")
                    },
                });
            }
        }
        Ok(())
    }

    fn has(&self, role: &str) -> bool {
        self.node.tensors.contains_key(role)
    }

    /// The file's tensor name for `role`.
    fn tensor_name(&self, role: &str) -> Result<&String> {
        self.node
            .tensors
            .get(role)
            .ok_or_else(|| Error::MissingRole {
                node: self.node.name.clone(),
                role: role.to_string(),
            })
    }

    /// Shape of a role's tensor (checks presence, dtype and single use).
    fn shape(&mut self, role: &str) -> Result<Vec<usize>> {
        let name = self.tensor_name(role)?.clone();
        let node = &self.node.name;
        let view = self.file.tensor(&name).map_err(|_| Error::MissingTensor {
            node: node.clone(),
            role: role.to_string(),
            tensor: name.clone(),
        })?;
        if view.dtype() != Dtype::F32 {
            return Err(Error::Dtype {
                tensor: name.clone(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if !self.used.insert(name.clone()) {
            return Err(Error::TensorReused {
                node: node.clone(),
                tensor: name.clone(),
            });
        }
        Ok(view.shape().to_vec())
    }

    /// The data of a role's tensor (after [`Self::shape`] checked it).
    fn data(&mut self, role: &str) -> Result<Vec<f32>> {
        let name = self.tensor_name(role)?;
        let view = self.file.tensor(name)?;
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteWeight {
                tensor: name.clone(),
                index,
                value: data[index],
            });
        }
        self.count(data.len())?;
        Ok(data)
    }

    /// Counts `n` floats of weights (or of their copies laid out for a
    /// kernel) against [`MAX_FLOATS`].
    fn count(&mut self, n: usize) -> Result<()> {
        *self.weight_floats = self
            .weight_floats
            .checked_add(n)
            .filter(|&n| n <= MAX_FLOATS)
            .ok_or_else(|| too_large("the weights", None))?;
        Ok(())
    }

    /// A role's tensor, which must have exactly `expected` shape.
    fn exact(&mut self, role: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let found = self.shape(role)?;
        if found != expected {
            return Err(Error::TensorShape {
                node: self.node.name.clone(),
                role: role.to_string(),
                expected: format!("{expected:?}"),
                found,
            });
        }
        self.data(role)
    }

    /// An optional `bias` of shape `[n]`.
    fn bias(&mut self, n: usize) -> Result<Option<Floats>> {
        if self.has("bias") {
            Ok(Some(self.exact("bias", &[n])?.into()))
        } else {
            Ok(None)
        }
    }
}

/// Output length of a convolution or pooling axis (PyTorch's formula).
fn out_len(
    node: &str,
    what: &str,
    l: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
) -> Result<usize> {
    let span = k
        .checked_sub(1)
        .and_then(|k1| k1.checked_mul(d))
        .and_then(|x| x.checked_add(1));
    let padded = p.checked_mul(2).and_then(|p2| p2.checked_add(l));
    match (span, padded) {
        (Some(span), Some(padded)) if padded >= span && s > 0 => Ok((padded - span) / s + 1),
        _ => Err(Error::InvalidShape {
            node: node.to_string(),
            reason: format!(
                "{what}: the kernel (size {k}, dilation {d}) is larger than the padded input (length {l}, padding {p})"
            ),
        }),
    }
}

fn input_count(node: &NodeDoc, expected: usize) -> Result<()> {
    if node.inputs.len() != expected {
        return Err(Error::InputCount {
            node: node.name.clone(),
            op: node.op.clone(),
            expected: expected.to_string(),
            found: node.inputs.len(),
        });
    }
    Ok(())
}

fn bad_shape(node: &NodeDoc, reason: String) -> Error {
    Error::InvalidShape {
        node: node.name.clone(),
        reason,
    }
}

/// Parses `attrs.fire` of a firing neuron.
fn parse_fire(a: &Attrs<'_>) -> Result<Fire> {
    let fire = a.get("fire");
    let obj = fire
        .and_then(Value::as_object)
        .ok_or_else(|| a.err("fire", "an object {\"spike\": ..., \"quant\": ...}", fire))?;
    let spike_v = obj.get("spike");
    let spike = match spike_v.and_then(Value::as_str) {
        Some("sigmoid4x") => Spike::Sigmoid4x,
        Some("heaviside") => Spike::Heaviside,
        _ => return Err(a.err("fire.spike", "\"sigmoid4x\" or \"heaviside\"", spike_v)),
    };
    let quant_v = obj.get("quant");
    let q = quant_v
        .and_then(Value::as_object)
        .ok_or_else(|| a.err("fire.quant", "an object {\"kind\": ...}", quant_v))?;
    let step = || {
        let v = q.get("step");
        v.and_then(Value::as_f64)
            .map(|x| x as f32)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| a.err("fire.quant.step", "a finite number > 0", v))
    };
    let kind_v = q.get("kind");
    let quant = match kind_v.and_then(Value::as_str) {
        Some("identity") => Quant::Identity,
        Some("round") => Quant::Round(step()?),
        Some("stochastic_round") => Quant::StochasticRound(step()?),
        Some("probabilistic") => Quant::Probabilistic,
        _ => {
            return Err(a.err(
                "fire.quant.kind",
                "\"identity\", \"round\", \"stochastic_round\" or \"probabilistic\"",
                kind_v,
            ))
        }
    };
    Ok(Fire { spike, quant })
}

impl Plan {
    /// Reads and validates a model file from disk.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Plan> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Plan::from_vec(bytes)
    }

    /// Validates a model file held in memory (the bytes are copied).
    pub fn from_bytes(bytes: &[u8]) -> Result<Plan> {
        Plan::from_vec(bytes.to_vec())
    }

    /// Validates a model file, taking ownership of its bytes.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Plan> {
        let mut plan = Builder::build(&bytes)?;
        plan.source = bytes;
        Ok(plan)
    }

    /// The original model file bytes.
    pub fn source(&self) -> &[u8] {
        &self.source
    }

    /// Sample shape of the graph input (no stream axis).
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Sample shape of the graph output (no stream axis).
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Number of floats of one input sample.
    pub fn input_len(&self) -> usize {
        self.buffer_sizes.first().copied().unwrap_or(0)
    }

    /// Number of floats of one output sample.
    pub fn output_len(&self) -> usize {
        self.buffer_sizes
            .get(self.output_buffer)
            .copied()
            .unwrap_or(0)
    }

    /// Names of every state, `"<node name>.<state>"`, in graph order.
    pub fn state_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.states.iter().map(|s| s.name.as_str())
    }

    /// Per-stream shape of a state (the neuron's input shape), or `None` for an unknown name.
    pub fn state_shape(&self, name: &str) -> Option<&[usize]> {
        self.states
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.shape.as_slice())
    }

    /// Floats an engine of `streams` streams would allocate (weights excluded).
    pub fn floats_for(&self, streams: usize) -> Option<usize> {
        self.stream_floats.checked_mul(streams)
    }

    /// Multiply-adds (and other element operations) of one step of one stream.
    pub fn work(&self) -> usize {
        self.work
    }

    /// Floats held once per engine: weights (in every layout the kernels
    /// use) and scratch.
    pub fn weight_floats(&self) -> usize {
        self.weight_floats
    }
}

struct ValueInfo {
    shape: Vec<usize>,
    buffer: usize,
}

struct Builder {
    values: HashMap<String, ValueInfo>,
    buffer_sizes: Vec<usize>,
    steps: Vec<Step>,
    neurons: Vec<NeuronLayer>,
    states: Vec<StateInfo>,
    weight_floats: usize,
    stream_floats: usize,
    /// Multiply-adds of one step, per stream.
    work: usize,
}

/// Rejects tensor offsets past the end of the file before the safetensors
/// crate sees them: its header check adds offsets unchecked, which overflows
/// (a panic in debug builds) on crafted offsets near `usize::MAX`.
fn check_offsets(bytes: &[u8]) -> Result<()> {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Ok(()); // safetensors reports the short header
    };
    let declared = u64::from_le_bytes(*len);
    if declared > MAX_HEADER_BYTES as u64 && declared <= rest.len() as u64 {
        return Err(Error::HeaderTooLarge {
            found: declared,
            limit: MAX_HEADER_BYTES,
        });
    }
    let Some(n) = usize::try_from(declared).ok().filter(|&n| n <= rest.len()) else {
        return Ok(()); // safetensors reports the lying length
    };
    let (header, data) = rest.split_at(n);
    let Ok(Value::Object(entries)) = serde_json::from_slice::<Value>(header) else {
        return Ok(());
    };
    for (name, info) in &entries {
        let offsets = info.get("data_offsets").and_then(Value::as_array);
        for o in offsets.into_iter().flatten() {
            if o.as_u64().is_none_or(|o| o > data.len() as u64) {
                return Err(safetensors::SafeTensorError::InvalidOffset(name.clone()).into());
            }
        }
    }
    Ok(())
}

impl Builder {
    fn build(bytes: &[u8]) -> Result<Plan> {
        check_offsets(bytes)?;
        let file = SafeTensors::deserialize(bytes)?;
        let (_, meta) = SafeTensors::read_metadata(bytes)?;
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("tracetorch"))
            .ok_or(Error::MissingMetadata)?;
        let doc: Value = serde_json::from_str(text).map_err(|e| Error::Document(e.to_string()))?;
        let obj = doc.as_object().ok_or_else(|| {
            Error::Document(format!("expected a JSON object, found {}", describe(&doc)))
        })?;
        match obj.get("format") {
            Some(Value::String(s)) if s == "tracetorch" => {}
            other => {
                return Err(Error::Format {
                    found: other.map_or_else(|| "nothing (missing)".to_string(), describe),
                })
            }
        }
        match obj.get("version") {
            Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
            other => {
                return Err(Error::Version {
                    found: other.map_or_else(|| "nothing (missing)".to_string(), describe),
                })
            }
        }
        let doc: Document =
            serde_json::from_value(doc).map_err(|e| Error::Document(e.to_string()))?;

        let mut b = Builder {
            values: HashMap::new(),
            buffer_sizes: Vec::new(),
            steps: Vec::new(),
            neurons: Vec::new(),
            states: Vec::new(),
            weight_floats: 0,
            stream_floats: 0,
            work: 0,
        };
        if doc.input_shape.contains(&0) {
            return Err(Error::InvalidShape {
                node: "input".to_string(),
                reason: format!("input_shape {:?} has a zero-sized axis", doc.input_shape),
            });
        }
        let n_in = checked_numel("the input", &doc.input_shape)?;
        let input = b.new_buffer(n_in)?;
        b.values.insert(
            "input".to_string(),
            ValueInfo {
                shape: doc.input_shape.clone(),
                buffer: input,
            },
        );

        let mut used = HashSet::new();
        for node in &doc.nodes {
            b.node(node, &file, &mut used)?;
        }
        let mut names: Vec<&str> = file.names();
        names.sort_unstable();
        if let Some(unused) = names.into_iter().find(|n| !used.contains(*n)) {
            return Err(Error::UnusedTensor {
                tensor: unused.to_string(),
            });
        }
        let out = b
            .values
            .get(&doc.output)
            .ok_or_else(|| Error::UndefinedOutput {
                output: doc.output.clone(),
            })?;
        let output_buffer = out.buffer;
        let output_shape = out.shape.clone();
        let (col_floats, active_len) = b.lay_out_for_kernels()?;
        let total = b
            .weight_floats
            .checked_add(b.stream_floats)
            .filter(|&n| n <= MAX_FLOATS);
        if total.is_none() {
            return Err(too_large("the model (weights, buffers and states)", None));
        }
        Ok(Plan {
            source: Vec::new(),
            input_shape: doc.input_shape,
            output_shape,
            buffer_sizes: b.buffer_sizes,
            output_buffer,
            steps: b.steps,
            neurons: b.neurons,
            states: b.states,
            weight_floats: b.weight_floats,
            col_floats,
            active_len,
            work: b.work,
            stream_floats: b.stream_floats,
        })
    }

    /// Marks the linear layers fed by spikes (for the event-driven path) and
    /// returns the scratch sizes `(convolution floats, active-input indices)`,
    /// which count against the weight budget.
    fn lay_out_for_kernels(&mut self) -> Result<(usize, usize)> {
        let spiking: HashSet<usize> = self
            .steps
            .iter()
            .filter_map(|s| match s.kernel {
                Kernel::Neuron(i) if self.neurons[i].emits_spikes() => Some(s.output),
                _ => None,
            })
            .collect();
        let (mut col, mut active) = (0usize, 0usize);
        for step in &mut self.steps {
            match &mut step.kernel {
                Kernel::Linear {
                    inp,
                    out,
                    event_limit,
                    ..
                } if spiking.contains(&step.inputs[0]) => {
                    *event_limit = kernels::event_limit(*inp, *out);
                    if *event_limit > 0 {
                        active = active.max(*inp);
                    }
                }
                Kernel::Conv {
                    window: g, groups, ..
                } => {
                    col = col.max(g.scratch_floats(*groups).unwrap_or(usize::MAX));
                }
                _ => {}
            }
        }
        self.weight_floats = self.weight_floats.saturating_add(col);
        if self.weight_floats > MAX_FLOATS {
            return Err(too_large(
                "the weights and scratch",
                Some(self.weight_floats),
            ));
        }
        Ok((col, active))
    }

    fn add_stream_floats(&mut self, n: usize) -> Result<()> {
        self.stream_floats = self
            .stream_floats
            .checked_add(n)
            .filter(|&t| t <= MAX_FLOATS)
            .ok_or_else(|| too_large("the buffers and states of one stream", None))?;
        Ok(())
    }

    /// Counts the multiply-adds of a step writing `n` floats against [`MAX_WORK`].
    fn add_work(&mut self, kernel: &Kernel, n: usize) -> Result<()> {
        let per_output = match kernel {
            Kernel::Linear { inp, .. } => Some(*inp),
            Kernel::Conv {
                weight,
                out_channels,
                ..
            } => Some(weight.len() / (*out_channels).max(1)),
            Kernel::Pool { window, .. } => window.kh.checked_mul(window.kw),
            _ => Some(1),
        };
        let total = per_output
            .and_then(|p| p.checked_mul(n))
            .and_then(|w| w.checked_add(self.work));
        match total {
            Some(t) if t <= MAX_WORK => {
                self.work = t;
                Ok(())
            }
            other => Err(Error::TooMuchWork {
                found: other.map_or_else(|| "an overflowing amount of".into(), |t| t.to_string()),
                limit: MAX_WORK,
            }),
        }
    }

    fn new_buffer(&mut self, n: usize) -> Result<usize> {
        self.add_stream_floats(n)?;
        self.buffer_sizes.push(n);
        Ok(self.buffer_sizes.len() - 1)
    }

    fn node(
        &mut self,
        node: &NodeDoc,
        file: &SafeTensors<'_>,
        used: &mut HashSet<String>,
    ) -> Result<()> {
        if node.name == "input" || self.values.contains_key(&node.name) {
            return Err(Error::DuplicateName {
                node: node.name.clone(),
            });
        }
        let mut in_shapes = Vec::with_capacity(node.inputs.len());
        let mut in_buffers = Vec::with_capacity(node.inputs.len());
        for input in &node.inputs {
            let v = self
                .values
                .get(input)
                .ok_or_else(|| Error::UndefinedInput {
                    node: node.name.clone(),
                    input: input.clone(),
                })?;
            in_shapes.push(v.shape.clone());
            in_buffers.push(v.buffer);
        }
        let a = Attrs {
            node: &node.name,
            map: &node.attrs,
        };
        let mut weight_floats = self.weight_floats;
        let mut t = Tensors {
            node,
            file,
            used,
            weight_floats: &mut weight_floats,
        };
        let op = node.op.as_str();
        let known = [
            "linear",
            "conv1d",
            "conv2d",
            "avg_pool1d",
            "avg_pool2d",
            "max_pool1d",
            "max_pool2d",
            "channel_affine",
            "reshape",
            "relu",
            "sigmoid",
            "tanh",
            "leaky_relu",
            "add",
            "sub",
            "mul",
            "add_scalar",
            "mul_scalar",
            "cat",
            "neuron",
        ];
        if !known.contains(&op) {
            return Err(Error::UnknownOp {
                node: node.name.clone(),
                op: node.op.clone(),
            });
        }
        if op == "cat" {
            if node.inputs.len() < 2 {
                return Err(Error::InputCount {
                    node: node.name.clone(),
                    op: node.op.clone(),
                    expected: "2 or more".to_string(),
                    found: node.inputs.len(),
                });
            }
        } else if matches!(op, "add" | "sub" | "mul") {
            input_count(node, 2)?;
        } else {
            input_count(node, 1)?;
        }
        let x = &in_shapes[0];

        // Every arm returns (kernel or None for an alias, computed output shape).
        let (kernel, shape): (Option<Kernel>, Vec<usize>) = match op {
            "linear" => {
                t.allow(&["weight", "bias"])?;
                let ws = t.shape("weight")?;
                let (out, inp) = match ws.as_slice() {
                    [o, i] => (*o, *i),
                    _ => {
                        return Err(Error::TensorShape {
                            node: node.name.clone(),
                            role: "weight".to_string(),
                            expected: "[out, in]".to_string(),
                            found: ws,
                        })
                    }
                };
                if x.last() != Some(&inp) {
                    return Err(bad_shape(
                        node,
                        format!("input shape {x:?} should end with the weight's in size {inp}"),
                    ));
                }
                let weight = t.data("weight")?;
                let bias = t.bias(out)?;
                let mut shape = x.clone();
                if let Some(last) = shape.last_mut() {
                    *last = out;
                }
                (
                    Some(Kernel::Linear {
                        weight_t: linear_weights(&weight, out, inp),
                        bias,
                        inp,
                        out,
                        event_limit: 0,
                    }),
                    shape,
                )
            }
            "conv1d" | "conv2d" => {
                let two = op == "conv2d";
                let n = if two { 2 } else { 1 };
                t.allow(&["weight", "bias"])?;
                if x.len() != n + 1 {
                    return Err(bad_shape(
                        node,
                        format!(
                            "input should be {} (rank {}), found shape {x:?}",
                            if two { "[C, H, W]" } else { "[C, L]" },
                            n + 1
                        ),
                    ));
                }
                let stride = a.ints("stride", n, 1)?;
                let padding = a.ints("padding", n, 0)?;
                let dilation = a.ints("dilation", n, 1)?;
                let groups = a.int("groups", 1)?;
                let c = x[0];
                let ws = t.shape("weight")?;
                let bad_weight = |ws: Vec<usize>| Error::TensorShape {
                    node: node.name.clone(),
                    role: "weight".to_string(),
                    expected: format!(
                        "[O, C/groups = {}, {}] with O a multiple of groups = {groups}",
                        if c % groups == 0 {
                            (c / groups).to_string()
                        } else {
                            "?".into()
                        },
                        if two { "KH, KW" } else { "K" }
                    ),
                    found: ws,
                };
                if c % groups != 0 {
                    return Err(bad_shape(
                        node,
                        format!("{c} input channels are not divisible by groups = {groups}"),
                    ));
                }
                if ws.len() != n + 2 || ws[1] != c / groups || ws[0] % groups != 0 || ws[0] == 0 {
                    return Err(bad_weight(ws));
                }
                let o = ws[0];
                let (kh, kw) = if two { (ws[2], ws[3]) } else { (1, ws[2]) };
                let (h, w) = if two { (x[1], x[2]) } else { (1, x[1]) };
                let pick = |v: &[usize], one: usize| if two { (v[0], v[1]) } else { (one, v[0]) };
                let stride = pick(&stride, 1);
                let pad = pick(&padding, 0);
                let dil = pick(&dilation, 1);
                let ow = out_len(&node.name, "width", w, kw, stride.1, pad.1, dil.1)?;
                let oh = out_len(&node.name, "height", h, kh, stride.0, pad.0, dil.0)?;
                let weight = t.data("weight")?;
                let bias = t.bias(o)?;
                let shape = if two { vec![o, oh, ow] } else { vec![o, ow] };
                let window = Window {
                    c,
                    h,
                    w,
                    kh,
                    kw,
                    stride,
                    pad,
                    dil,
                    oh,
                    ow,
                };
                // Counted before they are laid out: eight copies of each weight.
                t.count(window.paired_floats(groups, o).unwrap_or(usize::MAX))?;
                (
                    Some(Kernel::Conv {
                        layout: window.layout(groups, &weight, o),
                        weight: weight.into(),
                        bias,
                        window,
                        out_channels: o,
                        groups,
                    }),
                    shape,
                )
            }
            "avg_pool1d" | "avg_pool2d" | "max_pool1d" | "max_pool2d" => {
                let two = op.ends_with("2d");
                let n = if two { 2 } else { 1 };
                t.allow(&[])?;
                if x.len() < n {
                    return Err(bad_shape(
                        node,
                        format!("input of rank {} cannot be pooled over {n} axes", x.len()),
                    ));
                }
                let kernel = a.ints("kernel", n, 1)?;
                let stride = match a.get("stride") {
                    None | Some(Value::Null) => kernel.clone(),
                    Some(Value::Array(v)) if v.is_empty() => kernel.clone(),
                    Some(_) => a.ints("stride", n, 1)?,
                };
                let padding = a.ints("padding", n, 0)?;
                if let Some(d) = a.get("dilation") {
                    let dil =
                        a.ints_of("dilation", d, n, 1, "dilation 1 (pools are not dilated)")?;
                    if dil.iter().any(|&v| v != 1) {
                        return Err(a.err("dilation", "1 (pools are not dilated)", Some(d)));
                    }
                }
                if kernel.iter().zip(&padding).any(|(&k, &p)| p > k / 2) {
                    return Err(a.err(
                        "padding",
                        "at most half the kernel size (as PyTorch requires)",
                        a.get("padding"),
                    ));
                }
                let kind = if op.starts_with("avg") {
                    PoolKind::Avg {
                        count_include_pad: a.bool("count_include_pad")?,
                    }
                } else {
                    PoolKind::Max
                };
                let r = x.len();
                let pick = |v: &[usize], one: usize| if two { (v[0], v[1]) } else { (one, v[0]) };
                let (kh, kw) = pick(&kernel, 1);
                let stride = pick(&stride, 1);
                let pad = pick(&padding, 0);
                let (h, w) = if two {
                    (x[r - 2], x[r - 1])
                } else {
                    (1, x[r - 1])
                };
                let ow = out_len(&node.name, "width", w, kw, stride.1, pad.1, 1)?;
                let oh = out_len(&node.name, "height", h, kh, stride.0, pad.0, 1)?;
                let mut shape = x.clone();
                if two {
                    shape[r - 2] = oh;
                }
                shape[r - 1] = ow;
                let window = Window {
                    c: 1,
                    h,
                    w,
                    kh,
                    kw,
                    stride,
                    pad,
                    dil: (1, 1),
                    oh,
                    ow,
                };
                (Some(Kernel::Pool { window, kind }), shape)
            }
            "channel_affine" => {
                t.allow(&["scale", "shift"])?;
                let axis = a.axis(x.len())?;
                let c = x[axis];
                let scale = t.exact("scale", &[c])?;
                let shift = t.exact("shift", &[c])?;
                let inner = x[axis + 1..].iter().product();
                (
                    Some(Kernel::ChannelAffine {
                        scale,
                        shift,
                        inner,
                    }),
                    x.clone(),
                )
            }
            "reshape" => {
                t.allow(&[])?;
                if numel(&node.shape) != numel(x) {
                    return Err(bad_shape(
                        node,
                        format!(
                            "cannot reshape {x:?} ({} elements) to {:?}",
                            numel(x).unwrap_or(0),
                            node.shape
                        ),
                    ));
                }
                (None, node.shape.clone())
            }
            "relu" | "sigmoid" | "tanh" | "leaky_relu" | "add_scalar" | "mul_scalar" => {
                t.allow(&[])?;
                let u = match op {
                    "relu" => Unary::Relu,
                    "sigmoid" => Unary::Sigmoid,
                    "tanh" => Unary::Tanh,
                    "leaky_relu" => Unary::LeakyRelu(a.float("negative_slope")?),
                    "add_scalar" => Unary::AddScalar(a.float("value")?),
                    _ => Unary::MulScalar(a.float("value")?),
                };
                (Some(Kernel::Unary(u)), x.clone())
            }
            "add" | "sub" | "mul" => {
                t.allow(&[])?;
                if in_shapes[1] != *x {
                    return Err(bad_shape(
                        node,
                        format!(
                            "both inputs must have the same shape, found {x:?} and {:?}",
                            in_shapes[1]
                        ),
                    ));
                }
                let op = match op {
                    "add" => Binary::Add,
                    "sub" => Binary::Sub,
                    _ => Binary::Mul,
                };
                (Some(Kernel::Binary(op)), x.clone())
            }
            "cat" => {
                t.allow(&[])?;
                let axis = a.axis(x.len())?;
                let mut shape = x.clone();
                let mut total = 0usize;
                let inner: usize = x[axis + 1..].iter().product();
                let mut chunks = Vec::with_capacity(in_shapes.len());
                for s in &in_shapes {
                    let fits = s.len() == x.len()
                        && s.iter()
                            .zip(x)
                            .enumerate()
                            .all(|(i, (p, q))| i == axis || p == q);
                    if !fits {
                        return Err(bad_shape(
                            node,
                            format!(
                                "cannot concatenate shapes {in_shapes:?} along axis {axis}: other axes differ"
                            ),
                        ));
                    }
                    total = total
                        .checked_add(s[axis])
                        .ok_or_else(|| too_large("a concatenation", None))?;
                    chunks.push(s[axis] * inner);
                }
                shape[axis] = total;
                let rows = x[..axis].iter().product();
                (Some(Kernel::Cat { chunks, rows }), shape)
            }
            _ => {
                // "neuron"
                let (layer, states) = neuron(node, x, &a, &mut t)?;
                let index = self.neurons.len();
                let kernel = Kernel::Neuron(index);
                let mut infos = Vec::with_capacity(states.len());
                let n = checked_numel("a neuron state", x)?;
                for (state, slot) in states {
                    // The state and its copy for a run's roll-back.
                    self.add_stream_floats(2 * n)?;
                    infos.push(StateInfo {
                        name: format!("{}.{}", node.name, state),
                        neuron: index,
                        slot,
                        shape: x.clone(),
                        numel: n,
                    });
                }
                self.neurons.push(layer);
                self.states.extend(infos);
                (Some(kernel), x.clone())
            }
        };
        if shape != node.shape {
            return Err(Error::ShapeMismatch {
                node: node.name.clone(),
                computed: shape,
                declared: node.shape.clone(),
            });
        }
        if shape.contains(&0) {
            return Err(bad_shape(
                node,
                format!("output shape {shape:?} has a zero-sized axis"),
            ));
        }
        let n = checked_numel(&format!("the output of node `{}`", node.name), &shape)?;
        self.weight_floats = weight_floats;
        let buffer = match kernel {
            None => in_buffers[0],
            Some(kernel) => {
                self.add_work(&kernel, n)?;
                let output = self.new_buffer(n)?;
                self.steps.push(Step {
                    kernel,
                    inputs: in_buffers,
                    output,
                });
                output
            }
        };
        self.values
            .insert(node.name.clone(), ValueInfo { shape, buffer });
        Ok(())
    }
}

/// Validates a neuron node and loads its parameters.
fn neuron(
    node: &NodeDoc,
    x: &[usize],
    a: &Attrs<'_>,
    t: &mut Tensors<'_, '_>,
) -> Result<(NeuronLayer, Vec<(&'static str, usize)>)> {
    let spec_v = a.get("spec");
    let spec: NeuronSpec = match spec_v {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            a.err(
                "spec",
                &format!("a NeuronSpec dict with exactly the fields dual, synaptic, recurrent, syn_ema, rec_ema, mem_ema, bias, output, scaled, neg_sees_pos_reset ({e})"),
                spec_v,
            )
        })?,
        None => return Err(a.err("spec", "a NeuronSpec dict", None)),
    };
    spec.check().map_err(|why| a.err("spec", why, spec_v))?;
    let axis = a.axis(x.len())?;
    let c = x[axis];
    let num = a.int("num_neurons", 1)?;
    if num != c {
        return Err(a.err(
            "num_neurons",
            &format!("{c} (the size of axis {axis} of the input {x:?})"),
            a.get("num_neurons"),
        ));
    }
    let fire = if spec.fires() {
        parse_fire(a)?
    } else {
        Fire {
            spike: Spike::Sigmoid4x,
            quant: Quant::Identity,
        }
    };
    let states = spec.states();
    let expected_states: Vec<Value> = states.iter().map(|s| Value::from(s.0)).collect();
    match a.get("states") {
        Some(Value::Array(v)) if *v == expected_states => {}
        other => {
            return Err(a.err(
                "states",
                &format!(
                    "{} (NeuronSpec.state_names())",
                    Value::from(expected_states)
                ),
                other,
            ))
        }
    }
    let params = spec.parameters();
    let roles: Vec<&str> = params.iter().map(|&i| PARAM_NAMES[i]).collect();
    t.allow(&roles)?;
    let mut rows: Vec<ParamRow> = vec![[0.0; NPARAM]; c];
    for &p in &params {
        let role = PARAM_NAMES[p];
        let shape = t.shape(role)?;
        if !(shape.is_empty() || shape == [c]) {
            return Err(Error::TensorShape {
                node: node.name.clone(),
                role: role.to_string(),
                expected: format!("[] or [{c}]"),
                found: shape,
            });
        }
        let data = t.data(role)?;
        for (i, row) in rows.iter_mut().enumerate() {
            row[p] = if data.len() == 1 { data[0] } else { data[i] };
        }
    }
    let inner = x[axis + 1..].iter().product();
    Ok((NeuronLayer::new(spec, fire, rows, inner), states))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{neuron_node, ModelFile};
    use serde_json::json;

    /// input [4] -> linear 4->3 -> LI neuron.
    fn base() -> ModelFile {
        let mut m = ModelFile::new(&[4]);
        m.tensor("l.weight", &[3, 4], &[0.5; 12])
            .tensor("l.bias", &[3], &[0.0; 3])
            .tensor("n.beta", &[], &[0.9]);
        m.node(
            json!({"name": "l", "op": "linear", "inputs": ["input"], "shape": [3],
                      "attrs": {}, "tensors": {"weight": "l.weight", "bias": "l.bias"}}),
        );
        m.node(neuron_node(
            "n",
            "l",
            &[3],
            0,
            json!({}),
            Value::Null,
            json!({"beta": "n.beta"}),
        ));
        m
    }

    fn load(m: &ModelFile) -> Result<Plan> {
        Plan::from_bytes(&m.bytes())
    }

    fn err(m: &ModelFile) -> Error {
        load(m).expect_err("the file should be rejected")
    }

    #[test]
    fn base_loads() {
        let p = load(&base()).unwrap();
        assert_eq!(p.input_shape(), [4]);
        assert_eq!(p.output_shape(), [3]);
        assert_eq!(p.state_names().collect::<Vec<_>>(), ["n.mem"]);
        assert_eq!(p.state_shape("n.mem"), Some(&[3usize][..]));
        assert_eq!(p.weight_floats(), 12 + 3 + 1);
    }

    #[test]
    fn truncated_and_corrupted_files_are_errors_not_panics() {
        let bytes = base().bytes();
        for n in 0..bytes.len() {
            assert!(
                Plan::from_bytes(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        // Flip every byte of the file, one at a time: any outcome but a panic.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5A;
            let _ = Plan::from_bytes(&b);
            b[i] = b'9';
            let _ = Plan::from_bytes(&b);
        }
        assert!(matches!(
            Plan::from_bytes(b"not a model"),
            Err(Error::SafeTensors(_))
        ));
    }

    #[test]
    fn metadata_errors() {
        let m = base();
        assert!(matches!(
            Plan::from_bytes(&m.bytes_with(None)),
            Err(Error::MissingMetadata)
        ));
        assert!(matches!(
            Plan::from_bytes(&m.bytes_with(Some("{not json".into()))),
            Err(Error::Document(_))
        ));
        let mut doc = m.doc();
        doc["format"] = json!("onnx");
        assert!(matches!(
            Plan::from_bytes(&m.bytes_with(Some(doc.to_string()))),
            Err(Error::Format { .. })
        ));
        let mut doc = m.doc();
        doc["version"] = json!(2);
        let e = Plan::from_bytes(&m.bytes_with(Some(doc.to_string()))).unwrap_err();
        assert!(matches!(e, Error::Version { .. }), "{e}");
        assert!(e.to_string().contains("expected 1, found 2"), "{e}");
        let mut doc = m.doc();
        doc["nodes"][0]["inputs"] = json!("input");
        assert!(matches!(
            Plan::from_bytes(&m.bytes_with(Some(doc.to_string()))),
            Err(Error::Document(_))
        ));
    }

    #[test]
    fn wrong_dtype() {
        let mut m = base();
        m.replace_raw("l.bias", safetensors::Dtype::F64, &[3], vec![0u8; 24]);
        let e = err(&m);
        assert!(matches!(e, Error::Dtype { .. }), "{e}");
        assert_eq!(e.kind(), crate::ErrorKind::ModelFile);
    }

    #[test]
    fn missing_and_unused_tensors() {
        let mut m = base();
        m.nodes[0]["tensors"]["bias"] = json!("nope");
        let e = err(&m);
        assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
        assert!(e.to_string().contains("node `l`"), "{e}");

        let mut m = base();
        m.nodes[1]["tensors"] = json!({});
        assert!(matches!(err(&m), Error::MissingRole { .. }));

        let mut m = base();
        m.tensor("extra", &[1], &[1.0]);
        assert!(matches!(err(&m), Error::UnusedTensor { .. }));

        let mut m = base();
        m.nodes[0]["tensors"]["bias"] = json!("n.beta");
        m.tensor("spare", &[3], &[0.0; 3]);
        let e = err(&m);
        // Either l.bias is unused or n.beta is used twice: both are errors.
        assert!(
            matches!(
                e,
                Error::TensorShape { .. } | Error::TensorReused { .. } | Error::UnusedTensor { .. }
            ),
            "{e}"
        );

        let mut m = base();
        m.tensor("n2.beta", &[], &[0.5]);
        m.node(neuron_node(
            "n2",
            "l",
            &[3],
            0,
            json!({}),
            Value::Null,
            json!({"beta": "l.weight"}),
        ));
        let e = err(&m);
        assert!(
            matches!(e, Error::TensorReused { .. } | Error::TensorShape { .. }),
            "{e}"
        );

        let mut m = base();
        m.nodes[0]["tensors"]["gain"] = json!("l.bias");
        assert!(matches!(err(&m), Error::UnexpectedRole { .. }));
    }

    #[test]
    fn graph_errors() {
        let mut m = base();
        m.nodes[0]["op"] = json!("softmax");
        assert!(matches!(err(&m), Error::UnknownOp { .. }));

        // Forward reference / cycle: l reads n, n reads l.
        let mut m = base();
        m.nodes[0]["inputs"] = json!(["n"]);
        let e = err(&m);
        assert!(matches!(e, Error::UndefinedInput { .. }), "{e}");

        let mut m = base();
        m.nodes[1]["inputs"] = json!(["ghost"]);
        assert!(matches!(err(&m), Error::UndefinedInput { .. }));

        let mut m = base();
        m.output = "ghost".into();
        assert!(matches!(err(&m), Error::UndefinedOutput { .. }));

        let mut m = base();
        m.nodes[1]["name"] = json!("l");
        assert!(matches!(err(&m), Error::DuplicateName { .. }));

        let mut m = base();
        m.nodes[1]["name"] = json!("input");
        assert!(matches!(err(&m), Error::DuplicateName { .. }));

        let mut m = base();
        m.nodes[0]["inputs"] = json!(["input", "input"]);
        assert!(matches!(err(&m), Error::InputCount { .. }));
    }

    #[test]
    fn shape_errors() {
        let mut m = base();
        m.nodes[0]["shape"] = json!([4]);
        let e = err(&m);
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        assert!(
            e.to_string().contains("[4]") && e.to_string().contains("[3]"),
            "{e}"
        );

        let mut m = base();
        m.input_shape = vec![5];
        assert!(matches!(err(&m), Error::InvalidShape { .. }));

        let mut m = base();
        m.input_shape = vec![0, 4];
        assert!(matches!(err(&m), Error::InvalidShape { .. }));

        // bias of the wrong length
        let mut m = ModelFile::new(&[4]);
        m.tensor("w", &[3, 4], &[0.0; 12])
            .tensor("b", &[4], &[0.0; 4]);
        m.node(
            json!({"name": "l", "op": "linear", "inputs": ["input"], "shape": [3],
                      "tensors": {"weight": "w", "bias": "b"}}),
        );
        assert!(matches!(err(&m), Error::TensorShape { .. }));

        // neuron parameter of the wrong length
        let mut m = base();
        m.replace_tensor("n.beta", &[2], &[0.5, 0.5]);
        assert!(matches!(err(&m), Error::TensorShape { .. }));
    }

    #[test]
    fn non_finite_weights_are_refused() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut m = base();
            let mut w = [0.5f32; 12];
            w[5] = bad;
            m.replace_tensor("l.weight", &[3, 4], &w);
            let e = err(&m);
            assert!(
                matches!(&e, Error::NonFiniteWeight { tensor, index: 5, .. } if tensor == "l.weight"),
                "{e}"
            );
            assert_eq!(e.kind(), crate::ErrorKind::ModelFile);
        }
    }

    #[test]
    fn steps_that_would_run_for_hours_are_refused() {
        // Within the memory cap (3 * 2^22 floats), but 2^22 outputs of 2^11
        // multiply-adds each: 2^33 per step.
        let linear = |rows: usize| {
            let mut m = ModelFile::new(&[rows, 1 << 11]);
            m.tensor("w", &[1 << 11, 1 << 11], &vec![0.0; 1 << 22]);
            m.node(json!({"name": "l", "op": "linear", "inputs": ["input"],
                          "shape": [rows, 1 << 11], "tensors": {"weight": "w"}}));
            load(&m).map(|_| ())
        };
        let e = linear(1 << 11).unwrap_err();
        assert!(matches!(e, Error::TooMuchWork { .. }), "{e}");
        assert!(e.to_string().contains("multiply-adds per stream"), "{e}");
        assert_eq!(e.kind(), crate::ErrorKind::ModelFile);
        // The same layer on a smaller input loads.
        linear(4).unwrap();
    }

    #[test]
    fn huge_headers_are_refused_before_parsing() {
        let mut bytes = ((MAX_HEADER_BYTES + 1) as u64).to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b' ', MAX_HEADER_BYTES + 1));
        let e = Plan::from_bytes(&bytes).unwrap_err();
        assert!(matches!(e, Error::HeaderTooLarge { .. }), "{e}");
    }

    #[test]
    fn huge_dims_are_refused() {
        for shape in [
            vec![1usize << 40, 1 << 40],
            vec![1 << 20, 1 << 20],
            vec![usize::MAX, 2],
        ] {
            let mut m = ModelFile::new(&shape);
            m.node(json!({"name": "r", "op": "relu", "inputs": ["input"], "shape": shape}));
            let e = err(&m);
            assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        }
        // A reshape to a huge declared shape with the same (overflowing) count.
        let mut m = ModelFile::new(&[4]);
        m.node(json!({"name": "r", "op": "reshape", "inputs": ["input"],
                      "shape": [1usize << 32, 1usize << 32, 1usize << 32]}));
        assert!(load(&m).is_err());
        // Enormous conv attributes.
        let mut m = ModelFile::new(&[1, 8]);
        m.tensor("w", &[1, 1, 3], &[1.0; 3]);
        m.node(json!({"name": "c", "op": "conv1d", "inputs": ["input"], "shape": [1, 1],
                      "attrs": {"stride": [u64::MAX], "padding": [u64::MAX], "dilation": [1], "groups": 1},
                      "tensors": {"weight": "w"}}));
        assert!(matches!(err(&m), Error::Attr { .. }));
        let mut m = ModelFile::new(&[1, 8]);
        m.tensor("w", &[1, 1, 3], &[1.0; 3]);
        m.node(
            json!({"name": "c", "op": "conv1d", "inputs": ["input"], "shape": [1, 1],
                      "attrs": {"stride": [1], "padding": [0], "dilation": [100000], "groups": 1},
                      "tensors": {"weight": "w"}}),
        );
        assert!(matches!(err(&m), Error::InvalidShape { .. }));
        // Too many streams for the memory cap, which counts the buffers
        // and every state twice (its roll-back copy).
        let p = std::sync::Arc::new(load(&base()).unwrap());
        let states: usize = p.states.iter().map(|s| s.numel).sum();
        let buffers: usize = p.buffer_sizes.iter().sum();
        assert!(states > 0);
        assert_eq!(p.floats_for(3), Some(3 * (buffers + 2 * states)));
        assert!(matches!(
            crate::Engine::from_plan(p.clone(), usize::MAX / 2),
            Err(Error::TooManyStreams { .. })
        ));
        assert!(matches!(
            crate::Engine::from_plan(p, 0),
            Err(Error::Streams { .. })
        ));
    }

    fn conv_file(
        op: &str,
        input: &[usize],
        w: &[usize],
        attrs: Value,
        shape: &[usize],
    ) -> ModelFile {
        let mut m = ModelFile::new(input);
        let n: usize = w.iter().product();
        m.tensor("w", w, &vec![1.0; n]);
        m.node(
            json!({"name": "c", "op": op, "inputs": ["input"], "shape": shape,
                      "attrs": attrs, "tensors": {"weight": "w"}}),
        );
        m
    }

    #[test]
    fn conv_and_pool_shapes() {
        // L' = floor((L + 2p - d(K-1) - 1)/s) + 1
        // conv1d: L=10, K=3, s=2, p=1, d=2 -> (10 + 2 - 4 - 1)/2 + 1 = 4
        let a = json!({"stride": [2], "padding": [1], "dilation": [2], "groups": 1});
        assert!(load(&conv_file(
            "conv1d",
            &[2, 10],
            &[3, 2, 3],
            a.clone(),
            &[3, 4]
        ))
        .is_ok());
        let e = err(&conv_file("conv1d", &[2, 10], &[3, 2, 3], a, &[3, 5]));
        assert!(
            matches!(e, Error::ShapeMismatch { ref computed, .. } if computed == &[3, 4]),
            "{e}"
        );
        // conv2d with groups 2: [4, 7, 6], weight [6, 2, 3, 2], stride (2,1), pad (0,1), dil (1,2)
        // H' = (7 - 2 - 1)/2 + 1 = 3; W' = (6 + 2 - 2 - 1)/1 + 1 = 6
        let a = json!({"stride": [2, 1], "padding": [0, 1], "dilation": [1, 2], "groups": 2});
        assert!(load(&conv_file(
            "conv2d",
            &[4, 7, 6],
            &[6, 2, 3, 2],
            a.clone(),
            &[6, 3, 6]
        ))
        .is_ok());
        // wrong C/groups in the weight
        let e = err(&conv_file(
            "conv2d",
            &[4, 7, 6],
            &[6, 4, 3, 2],
            a.clone(),
            &[6, 3, 6],
        ));
        assert!(matches!(e, Error::TensorShape { .. }), "{e}");
        // groups not dividing the channels
        let a3 = json!({"stride": [2, 1], "padding": [0, 1], "dilation": [1, 2], "groups": 3});
        assert!(matches!(
            err(&conv_file(
                "conv2d",
                &[4, 7, 6],
                &[6, 2, 3, 2],
                a3,
                &[6, 3, 6]
            )),
            Error::InvalidShape { .. }
        ));
        let a0 = json!({"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 0});
        assert!(matches!(
            err(&conv_file(
                "conv2d",
                &[4, 7, 6],
                &[6, 2, 3, 2],
                a0,
                &[6, 3, 6]
            )),
            Error::Attr { .. }
        ));
        // kernel larger than the input
        let a = json!({"stride": 1, "padding": 0, "dilation": 1, "groups": 1});
        assert!(matches!(
            err(&conv_file("conv1d", &[1, 2], &[1, 1, 3], a, &[1, 1])),
            Error::InvalidShape { .. }
        ));
        // conv input of the wrong rank
        let a = json!({"stride": [1], "padding": [0], "dilation": [1], "groups": 1});
        assert!(matches!(
            err(&conv_file("conv1d", &[8], &[1, 1, 3], a, &[1, 6])),
            Error::InvalidShape { .. }
        ));

        let pool = |op: &str, input: &[usize], attrs: Value, shape: &[usize]| {
            let mut m = ModelFile::new(input);
            m.node(
                json!({"name": "p", "op": op, "inputs": ["input"], "shape": shape, "attrs": attrs}),
            );
            load(&m)
        };
        // max_pool2d k3 s2 p1 on 3x7x5: H' = (7 + 2 - 3)/2 + 1 = 4, W' = (5 + 2 - 3)/2 + 1 = 3
        let a = json!({"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]});
        assert!(pool("max_pool2d", &[3, 7, 5], a.clone(), &[3, 4, 3]).is_ok());
        assert!(matches!(
            pool("max_pool2d", &[3, 7, 5], a, &[3, 3, 3]),
            Err(Error::ShapeMismatch { .. })
        ));
        // avg_pool1d k4 s4 (stride defaults to the kernel when null)
        let a = json!({"kernel": [4], "stride": null, "padding": [0], "count_include_pad": true});
        assert!(pool("avg_pool1d", &[2, 9], a, &[2, 2]).is_ok());
        // padding above half the kernel is refused, as in PyTorch
        let a = json!({"kernel": [2], "stride": [1], "padding": [2], "count_include_pad": true});
        assert!(matches!(
            pool("avg_pool1d", &[2, 9], a, &[2, 12]),
            Err(Error::Attr { .. })
        ));
        // count_include_pad is required for avg pools
        let a = json!({"kernel": [2], "stride": [2], "padding": [0]});
        assert!(matches!(
            pool("avg_pool1d", &[2, 8], a, &[2, 4]),
            Err(Error::Attr { .. })
        ));
    }

    #[test]
    fn neuron_attr_errors() {
        let li = |spec: Value, fire: Value, tensors: Value| {
            let mut m = ModelFile::new(&[3]);
            for (role, name) in tensors.as_object().unwrap() {
                let name = name.as_str().unwrap();
                m.tensor(
                    name,
                    &[],
                    &[if role.contains("threshold") { 1.0 } else { 0.5 }],
                );
            }
            m.node(neuron_node("n", "input", &[3], 0, spec, fire, tensors));
            m
        };
        let fire = json!({"spike": "heaviside", "quant": {"kind": "identity"}});
        let lib_t = json!({"beta": "b", "pos_threshold": "t"});
        let lif = json!({"output": "binary"});
        assert!(load(&li(lif.clone(), fire.clone(), lib_t.clone())).is_ok());
        // firing spec without fire
        assert!(matches!(
            err(&li(lif.clone(), Value::Null, lib_t.clone())),
            Error::Attr { .. }
        ));
        // unknown spike / quant
        let bad = json!({"spike": "relu", "quant": {"kind": "identity"}});
        assert!(matches!(
            err(&li(lif.clone(), bad, lib_t.clone())),
            Error::Attr { .. }
        ));
        let bad = json!({"spike": "heaviside", "quant": {"kind": "round"}});
        assert!(matches!(
            err(&li(lif.clone(), bad, lib_t.clone())),
            Error::Attr { .. }
        ));
        let bad = json!({"spike": "heaviside", "quant": {"kind": "round", "step": 0.0}});
        assert!(matches!(
            err(&li(lif.clone(), bad, lib_t.clone())),
            Error::Attr { .. }
        ));
        // unknown spec field, bad enum value, inconsistent spec
        assert!(matches!(
            err(&li(
                json!({"output": "binary", "adaptive": true}),
                fire.clone(),
                lib_t.clone()
            )),
            Error::Attr { .. }
        ));
        assert!(matches!(
            err(&li(json!({"output": "spiky"}), fire.clone(), lib_t.clone())),
            Error::Attr { .. }
        ));
        let e = err(&li(
            json!({"bias": "spike"}),
            fire.clone(),
            json!({"beta": "b", "bias": "c"}),
        ));
        assert!(e.to_string().contains("spike bias"), "{e}");
        // missing parameter / extra parameter
        assert!(matches!(
            err(&li(lif.clone(), fire.clone(), json!({"beta": "b"}))),
            Error::MissingRole { .. }
        ));
        assert!(matches!(
            err(&li(json!({}), fire.clone(), lib_t.clone())),
            Error::UnexpectedRole { .. }
        ));
        // wrong states list / num_neurons / axis
        let mut m = li(lif.clone(), fire.clone(), lib_t.clone());
        m.nodes[0]["attrs"]["states"] = json!(["mem", "syn"]);
        assert!(matches!(err(&m), Error::Attr { .. }));
        let mut m = li(lif.clone(), fire.clone(), lib_t.clone());
        m.nodes[0]["attrs"]["num_neurons"] = json!(4);
        assert!(matches!(err(&m), Error::Attr { .. }));
        let mut m = li(lif, fire, lib_t);
        m.nodes[0]["attrs"]["axis"] = json!(1);
        assert!(matches!(err(&m), Error::Attr { .. }));
    }

    #[test]
    fn error_messages_name_node_expected_and_found() {
        let mut m = base();
        m.nodes[0]["op"] = json!("softmax");
        assert_eq!(err(&m).to_string(), "node `l`: unknown op `softmax`");
        let mut m = ModelFile::new(&[4]);
        m.node(
            json!({"name": "lr", "op": "leaky_relu", "inputs": ["input"], "shape": [4],
                      "attrs": {"negative_slope": "small"}}),
        );
        assert_eq!(
            err(&m).to_string(),
            "node `lr`: attribute `negative_slope`: expected a finite number, found \"small\""
        );
    }
}
#[cfg(test)]
mod overflow_probe {
    /// Offsets whose sum overflows inside the safetensors crate are refused first.
    #[test]
    fn offsets_summing_near_usize_max() {
        let size: u64 = (1u64 << 61) - 1;
        let mut entries = Vec::new();
        let mut start = 0u64;
        for i in 0..8 {
            let end = start + size;
            entries.push(format!(
                "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[{start},{end}]}}"
            ));
            start = end;
        }
        let header = format!("{{{}}}", entries.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        let r = super::Plan::from_bytes(&bytes);
        assert!(matches!(r, Err(super::Error::SafeTensors(_))));
    }
}
