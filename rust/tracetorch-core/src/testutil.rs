//! Builds model files in tests (safetensors + the `tracetorch` document),
//! and compares results bit for bit.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};

/// A model file under construction.
pub(crate) struct ModelFile {
    pub(crate) input_shape: Vec<usize>,
    pub(crate) output: String,
    pub(crate) nodes: Vec<Value>,
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

impl ModelFile {
    pub(crate) fn new(input_shape: &[usize]) -> Self {
        ModelFile {
            input_shape: input_shape.to_vec(),
            output: "input".to_string(),
            nodes: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Adds an F32 tensor.
    pub(crate) fn tensor(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors
            .push((name.to_string(), Dtype::F32, shape.to_vec(), bytes));
        self
    }

    /// Adds a tensor of any dtype from raw bytes.
    pub(crate) fn raw_tensor(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        bytes: Vec<u8>,
    ) -> &mut Self {
        self.tensors
            .push((name.to_string(), dtype, shape.to_vec(), bytes));
        self
    }

    /// Replaces a tensor by a new F32 one.
    pub(crate) fn replace_tensor(&mut self, name: &str, shape: &[usize], data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.replace_raw(name, Dtype::F32, shape, bytes);
    }

    /// Replaces a tensor by one of any dtype.
    pub(crate) fn replace_raw(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        bytes: Vec<u8>,
    ) {
        self.tensors.retain(|t| t.0 != name);
        self.raw_tensor(name, dtype, shape, bytes);
    }

    /// Appends a node and makes it the output.
    pub(crate) fn node(&mut self, node: Value) -> &mut Self {
        if let Some(name) = node.get("name").and_then(Value::as_str) {
            self.output = name.to_string();
        }
        self.nodes.push(node);
        self
    }

    /// The document as written into the file.
    pub(crate) fn doc(&self) -> Value {
        json!({
            "format": "tracetorch",
            "version": 1,
            "input_shape": self.input_shape,
            "output": self.output,
            "nodes": self.nodes,
        })
    }

    /// Serializes with the built document.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.bytes_with(Some(self.doc().to_string()))
    }

    /// Serializes with any (or no) `tracetorch` metadata string.
    pub(crate) fn bytes_with(&self, meta: Option<String>) -> Vec<u8> {
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let meta = meta.map(|m| HashMap::from([("tracetorch".to_string(), m)]));
        safetensors::serialize(views, meta).unwrap()
    }
}

/// A neuron node over `input` with the given spec fields (merged into a LI default).
pub(crate) fn neuron_node(
    name: &str,
    input: &str,
    shape: &[usize],
    axis: usize,
    spec: Value,
    fire: Value,
    tensors: Value,
) -> Value {
    let mut full = json!({
        "dual": false, "synaptic": false, "recurrent": false, "syn_ema": true,
        "rec_ema": true, "mem_ema": false, "bias": "none", "output": "membrane",
        "scaled": false, "neg_sees_pos_reset": false
    });
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        for (k, v) in s {
            f.insert(k.clone(), v.clone());
        }
    }
    // An invalid spec (for error tests) gets the LI state list.
    let states: Vec<&str> = serde_json::from_value::<crate::neuron::NeuronSpec>(full.clone())
        .map_or_else(
            |_| vec!["mem"],
            |p| p.states().iter().map(|s| s.0).collect(),
        );
    json!({
        "name": name, "op": "neuron", "inputs": [input], "shape": shape,
        "attrs": {"spec": full, "axis": axis, "num_neurons": shape[axis], "fire": fire,
                  "states": states},
        "tensors": tensors,
    })
}

/// The bit patterns of `v`: equal exactly when the floats are the same bits
/// (NaN included, and -0.0 told from 0.0).
pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
