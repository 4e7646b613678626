//! `Engine::step` must not allocate: a counting global allocator watches many
//! steps of a model that uses every op kind and every neuron feature.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};
use tracetorch_core::Engine;

struct Counting;

static EVENTS: AtomicUsize = AtomicUsize::new(0);

/// Set while watching: allocations on every thread count, the engine's
/// workers included (this test is the process's only other thread: it runs
/// without libtest, see Cargo.toml).
static WATCHING: AtomicBool = AtomicBool::new(false);

fn note() {
    if WATCHING.load(Ordering::SeqCst) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts allocator calls made while `f` runs, on any thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = EVENTS.load(Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    f();
    WATCHING.store(false, Ordering::SeqCst);
    EVENTS.load(Ordering::SeqCst) - before
}

struct File {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    nodes: Vec<Value>,
    seed: u32,
}

impl File {
    /// Adds a tensor of pseudo-random values in [lo, hi).
    fn t(&mut self, name: &str, shape: &[usize], lo: f32, hi: f32) -> String {
        let n: usize = shape.iter().product();
        let mut bytes = Vec::with_capacity(4 * n);
        for _ in 0..n {
            self.seed = self
                .seed
                .wrapping_mul(1_664_525)
                .wrapping_add(1_013_904_223);
            let u = (self.seed >> 8) as f32 / (1u32 << 24) as f32;
            bytes.extend((lo + (hi - lo) * u).to_le_bytes());
        }
        self.tensors.push((name.to_string(), shape.to_vec(), bytes));
        name.to_string()
    }

    fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        shape: &[usize],
        attrs: Value,
        tensors: Value,
    ) {
        self.nodes.push(
            json!({"name": name, "op": op, "inputs": inputs, "shape": shape,
                               "attrs": attrs, "tensors": tensors}),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn neuron(
        &mut self,
        name: &str,
        input: &str,
        shape: &[usize],
        axis: usize,
        spec: Value,
        states: &[&str],
        params: &[&str],
        fire: Value,
    ) {
        let c = shape[axis];
        let mut tensors = serde_json::Map::new();
        for (i, p) in params.iter().enumerate() {
            let (lo, hi) = if p.contains("alpha") || p.contains("beta") || p.contains("gamma") {
                (0.3, 0.9)
            } else if p.contains("threshold") {
                (0.5, 1.5)
            } else {
                (-1.0, 1.0)
            };
            // Alternate scalar and per-neuron parameters.
            let shape: &[usize] = if i % 2 == 0 { &[] } else { &[c] };
            let t = self.t(&format!("{name}.{p}"), shape, lo, hi);
            tensors.insert((*p).to_string(), Value::from(t));
        }
        let attrs =
            json!({"spec": spec, "axis": axis, "num_neurons": c, "fire": fire, "states": states});
        self.node(
            name,
            "neuron",
            &[input],
            shape,
            attrs,
            Value::Object(tensors),
        );
    }

    fn bytes(&self, output: &str) -> Vec<u8> {
        let doc = json!({"format": "tracetorch", "version": 1, "input_shape": [2, 6, 6],
                         "output": output, "nodes": self.nodes});
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let meta = HashMap::from([("tracetorch".to_string(), doc.to_string())]);
        safetensors::serialize(views, Some(meta)).unwrap()
    }
}

fn spec(
    dual: bool,
    syn: bool,
    rec: bool,
    bias: &str,
    output: &str,
    scaled: bool,
    nspr: bool,
) -> Value {
    json!({"dual": dual, "synaptic": syn, "recurrent": rec, "syn_ema": true, "rec_ema": false,
           "mem_ema": !dual, "bias": bias, "output": output, "scaled": scaled,
           "neg_sees_pos_reset": nspr})
}

fn every_op_model() -> Vec<u8> {
    let mut f = File {
        tensors: Vec::new(),
        nodes: Vec::new(),
        seed: 12345,
    };
    let w = f.t("conv.weight", &[4, 1, 3, 3], -0.5, 0.5);
    let b = f.t("conv.bias", &[4], -0.1, 0.1);
    f.node(
        "conv",
        "conv2d",
        &["input"],
        &[4, 6, 6],
        json!({"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 2}),
        json!({"weight": w, "bias": b}),
    );
    let s = f.t("bn.scale", &[4], 0.5, 1.5);
    let h = f.t("bn.shift", &[4], -0.2, 0.2);
    f.node(
        "bn",
        "channel_affine",
        &["conv"],
        &[4, 6, 6],
        json!({"axis": 0}),
        json!({"scale": s, "shift": h}),
    );
    // Family A DSRLITS on the channel axis, stochastic rounding.
    f.neuron(
        "n1",
        "bn",
        &[4, 6, 6],
        0,
        spec(true, true, true, "spike", "ternary", true, false),
        &[
            "pos_syn",
            "neg_syn",
            "pos_mem",
            "neg_mem",
            "pos_rec",
            "neg_rec",
            "prev_output",
        ],
        &[
            "pos_alpha",
            "neg_alpha",
            "pos_beta",
            "neg_beta",
            "pos_gamma",
            "neg_gamma",
            "pos_rec_weight",
            "neg_rec_weight",
            "pos_threshold",
            "neg_threshold",
            "bias",
            "pos_scale",
            "neg_scale",
        ],
        json!({"spike": "sigmoid4x", "quant": {"kind": "stochastic_round", "step": 0.5}}),
    );
    f.node(
        "mp",
        "max_pool2d",
        &["n1"],
        &[4, 3, 3],
        json!({"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]}),
        json!({}),
    );
    f.node(
        "ap",
        "avg_pool2d",
        &["bn"],
        &[4, 3, 3],
        json!({"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "count_include_pad": false}),
        json!({}),
    );
    f.node(
        "sum",
        "add",
        &["mp", "ap"],
        &[4, 3, 3],
        json!({}),
        json!({}),
    );
    f.node("r", "reshape", &["sum"], &[4, 9], json!({}), json!({}));
    let w1 = f.t("c1.weight", &[2, 4, 3], -0.5, 0.5);
    f.node(
        "c1",
        "conv1d",
        &["r"],
        &[2, 9],
        json!({"stride": [1], "padding": [1], "dilation": [1], "groups": 1}),
        json!({"weight": w1}),
    );
    f.node(
        "ap1",
        "avg_pool1d",
        &["r"],
        &[4, 9],
        json!({"kernel": [3], "stride": [1], "padding": [1], "count_include_pad": true}),
        json!({}),
    );
    f.node(
        "mp1",
        "max_pool1d",
        &["r"],
        &[4, 9],
        json!({"kernel": [3], "stride": [1], "padding": [1]}),
        json!({}),
    );
    f.node(
        "cat",
        "cat",
        &["c1", "ap1", "mp1"],
        &[10, 9],
        json!({"axis": 0}),
        json!({}),
    );
    f.node("relu", "relu", &["cat"], &[10, 9], json!({}), json!({}));
    f.node("sig", "sigmoid", &["cat"], &[10, 9], json!({}), json!({}));
    f.node("tanh", "tanh", &["cat"], &[10, 9], json!({}), json!({}));
    f.node(
        "lrelu",
        "leaky_relu",
        &["cat"],
        &[10, 9],
        json!({"negative_slope": 0.01}),
        json!({}),
    );
    f.node(
        "d",
        "sub",
        &["relu", "tanh"],
        &[10, 9],
        json!({}),
        json!({}),
    );
    f.node(
        "p",
        "mul",
        &["sig", "lrelu"],
        &[10, 9],
        json!({}),
        json!({}),
    );
    f.node("e", "add", &["d", "p"], &[10, 9], json!({}), json!({}));
    f.node(
        "as",
        "add_scalar",
        &["e"],
        &[10, 9],
        json!({"value": -0.1}),
        json!({}),
    );
    f.node(
        "ms",
        "mul_scalar",
        &["as"],
        &[10, 9],
        json!({"value": 2.0}),
        json!({}),
    );
    f.node("flat", "reshape", &["ms"], &[90], json!({}), json!({}));
    // Wide enough to be shared by threads, by columns for a single stream.
    let ww = f.t("wide.weight", &[384, 90], -0.3, 0.3);
    f.node(
        "wide",
        "linear",
        &["flat"],
        &[384],
        json!({}),
        json!({"weight": ww}),
    );
    let lw = f.t("fc.weight", &[5, 384], -0.1, 0.1);
    let lb = f.t("fc.bias", &[5], -0.1, 0.1);
    f.node(
        "fc",
        "linear",
        &["wide"],
        &[5],
        json!({}),
        json!({"weight": lw, "bias": lb}),
    );
    // Family B BSRLIF-like: drive bias, negative spike after the positive reset, probabilistic.
    f.neuron(
        "n2",
        "fc",
        &[5],
        0,
        spec(false, true, true, "drive", "ternary", true, true),
        &["syn", "mem", "rec", "prev_output"],
        &[
            "alpha",
            "beta",
            "gamma",
            "rec_weight",
            "pos_threshold",
            "neg_threshold",
            "bias",
            "pos_scale",
            "neg_scale",
        ],
        json!({"spike": "heaviside", "quant": {"kind": "probabilistic"}}),
    );
    // A binary layer with rounding and a membrane readout.
    f.neuron(
        "n3",
        "n2",
        &[5],
        0,
        spec(false, false, false, "spike", "binary", false, false),
        &["mem"],
        &["beta", "pos_threshold", "bias"],
        json!({"spike": "sigmoid4x", "quant": {"kind": "round", "step": 0.25}}),
    );
    f.neuron(
        "out",
        "n3",
        &[5],
        0,
        spec(false, false, false, "none", "membrane", false, false),
        &["mem"],
        &["beta"],
        Value::Null,
    );
    f.bytes("out")
}

fn main() {
    step_and_run_do_not_allocate();
    println!("test step_and_run_do_not_allocate ... ok");
}

fn step_and_run_do_not_allocate() {
    let bytes = every_op_model();
    // On 2 threads the heavy layers are shared by the team: by streams, or
    // a single stream's linear layers by columns.
    for (streams, threads) in [(3, 1), (1, 2), (3, 2), (64, 2)] {
        let mut engine = Engine::new(&bytes, streams).expect("the test model is valid");
        engine.set_threads(threads);
        // Long enough for idle workers to sleep: the first step wakes them.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(engine.output_shape(), [5]);
        let input: Vec<f32> = (0..engine.input_len() * 4)
            .map(|i| ((i as f32) * 0.731).sin() * 2.0)
            .collect();
        let n = engine.input_len();
        let mut output = vec![0.0f32; engine.output_len()];
        let mut outputs = vec![0.0f32; engine.output_len() * 4];

        let count = allocations(|| {
            for t in 0..200 {
                let x = &input[(t % 4) * n..(t % 4 + 1) * n];
                engine.step(x, &mut output).unwrap();
            }
            engine.run(&input, &mut outputs, 4).unwrap();
            engine.reset_stream(streams - 1).unwrap();
            engine.reset_all();
            engine.seed(9);
            engine.step(&input[..n], &mut output).unwrap();
        });
        assert_eq!(
            count, 0,
            "{streams} streams, {threads} threads: {count} allocations"
        );
        assert!(output.iter().all(|v| v.is_finite()));
        // The watcher works: a snapshot allocates.
        assert!(allocations(|| drop(engine.snapshot())) > 0);
    }
}
