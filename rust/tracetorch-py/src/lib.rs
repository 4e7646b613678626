//! Thin PyO3 binding of `tracetorch-core`: type and error conversion only.
//!
//! The Python-visible API of `tracetorch._native` (the stub to mirror in
//! `tracetorch/_native.pyi`):
//!
//! ```python
//! import numpy
//!
//! __version__: str
//!
//! class TraceTorchError(Exception): ...
//! class ModelFileError(TraceTorchError, ValueError): ...   # load / validation errors
//! class EngineInputError(TraceTorchError, ValueError): ... # bad arguments to a loaded engine
//!
//! class Engine:
//!     def __init__(self, path: str | os.PathLike[str], streams: int = 1) -> None: ...
//!     @staticmethod
//!     def from_bytes(data: bytes, streams: int = 1) -> Engine: ...
//!     @property
//!     def input_shape(self) -> list[int]: ...    # [streams, *input sample shape]
//!     @property
//!     def output_shape(self) -> list[int]: ...   # [streams, *output sample shape]
//!     @property
//!     def streams(self) -> int: ...
//!     @property
//!     def state_names(self) -> list[str]: ...    # "<node name>.<state>", graph order
//!     def step(self, x, out: numpy.ndarray | None = None) -> numpy.ndarray: ...
//!         # x of input_shape (or the sample shape with one stream): read in
//!         # place when float32 and C-contiguous, else converted by
//!         # tracetorch.runtime._step_input; returns a new float32 array of the
//!         # output shape, or `out` filled (Engine.step is this method)
//!     def run(self, xs: numpy.ndarray) -> numpy.ndarray: ...
//!         # xs: float32, C-contiguous, [T, *input_shape] -> [T, *output_shape]
//!     def _time_steps(self, xs: numpy.ndarray) -> numpy.ndarray: ...
//!         # for benchmarks: steps through xs like run, outputs discarded, and
//!         # returns the float64 seconds of each step, timed in Rust
//!     def reset(self, stream: int | None = None) -> None: ...
//!         # zero the states of every stream, or of one stream
//!     def states(self) -> dict[str, numpy.ndarray]: ...
//!         # copies, each float32 [streams, *state shape], shaped like the layer input
//!     def load_states(self, states: dict[str, numpy.ndarray]) -> None: ...
//!         # every state exactly once, float32, exact shapes; all checked before
//!         # anything changes
//!     def seed(self, seed: int) -> None: ...   # restart the stochastic-quantizer RNG
//!     def to_bytes(self) -> bytes: ...         # the model file (for pickling)
//! ```
//!
//! `step`, `run` and `_time_steps` release the GIL while computing. Every core error is
//! converted in `to_py_err`: file errors raise `ModelFileError`, argument
//! errors `EngineInputError` (including NaN or infinite inputs). A failed call
//! leaves the states unchanged.
//!
//! Threads: an `Engine` may be shared by threads. Its core engine sits behind
//! a mutex that every call takes once, with the GIL released, around the whole
//! computation (calls on one engine are serialised, never interleaved); the
//! core's `step` itself takes no lock. Use one engine per thread to run in
//! parallel.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use numpy::npyffi::NPY_ARRAY_WRITEABLE;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};
use tracetorch_core::{Engine, Error, ErrorKind, Isa, Plan, StateView, MAX_FLOATS};

create_exception!(
    tracetorch._native,
    TraceTorchError,
    PyException,
    "Base class of every error raised by the traceTorch engine."
);

static MODEL_FILE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ENGINE_INPUT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Creates `class <name>(TraceTorchError, ValueError)` in `tracetorch._native`.
fn subclass(py: Python<'_>, name: &str, doc: &str) -> PyResult<Py<PyType>> {
    let bases = PyTuple::new(
        py,
        [
            py.get_type::<TraceTorchError>(),
            py.get_type::<PyValueError>(),
        ],
    )?;
    let ns = PyDict::new(py);
    ns.set_item("__module__", "tracetorch._native")?;
    ns.set_item("__doc__", doc)?;
    let ty = py.get_type::<PyType>().call1((name, bases, ns))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

/// The class stored in `cell`, created by [`subclass`] on first use.
fn cached_subclass<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    doc: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.get_or_try_init(py, || subclass(py, name, doc))
        .map(|t| t.bind(py))
}

fn model_file_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let doc = "The model file could not be read, parsed or validated.";
    cached_subclass(py, &MODEL_FILE_ERROR, "ModelFileError", doc)
}

fn engine_input_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let doc = "A loaded engine got a bad argument (input shape or dtype, stream index, states).";
    cached_subclass(py, &ENGINE_INPUT_ERROR, "EngineInputError", doc)
}

/// The one place where core errors become Python exceptions.
fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let msg = err.to_string();
    let ty = match err.kind() {
        ErrorKind::ModelFile => model_file_error(py),
        ErrorKind::Input => engine_input_error(py),
        _ => return TraceTorchError::new_err(msg),
    };
    match ty {
        Ok(ty) => PyErr::from_type(ty.clone(), msg),
        Err(e) => e,
    }
}

fn input_err(py: Python<'_>, msg: String) -> PyErr {
    match engine_input_error(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), msg),
        Err(e) => e,
    }
}

/// Runs `f` with the GIL released, unless `keep_gil` (for calls of a few
/// microseconds, where releasing and taking back the GIL would cost more than
/// the work). `Err` carries the message of a panic (a bug: the core never
/// panics on any input), which must not reach Python as a `PanicException`.
fn detached<T, F>(py: Python<'_>, keep_gil: bool, f: F) -> Result<Result<T, Error>, String>
where
    F: FnOnce() -> Result<T, Error> + Send,
    T: Send,
{
    let call = || if keep_gil { f() } else { py.detach(f) };
    std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

fn internal_error(what: &str) -> PyErr {
    TraceTorchError::new_err(format!(
        "internal error in the traceTorch engine (please report it): {what}"
    ))
}

/// Loads an engine with the GIL released.
fn load(py: Python<'_>, f: impl FnOnce() -> Result<Engine, Error> + Send) -> PyResult<PyEngine> {
    match detached(py, false, f) {
        Ok(Ok(engine)) => Ok(PyEngine {
            input_shape: [&[engine.streams()], engine.plan().input_shape()].concat(),
            output_shape: [&[engine.streams()], engine.plan().output_shape()].concat(),
            step_work: engine.plan().work().saturating_mul(engine.streams()),
            plan: engine.plan().clone(),
            streams: engine.streams(),
            inner: Mutex::new(Inner {
                engine,
                broken: false,
            }),
        }),
        Ok(Err(e)) => Err(to_py_err(py, e)),
        Err(what) => Err(internal_error(&what)),
    }
}

/// Borrows `x` as a float32 C-contiguous array of exactly `shape`.
fn array_arg<'py>(
    py: Python<'py>,
    what: &str,
    x: &Bound<'py, PyAny>,
    shape: &[usize],
) -> PyResult<numpy::PyReadonlyArrayDyn<'py, f32>> {
    checked_array(py, what, x, shape)?
        .try_readonly()
        .map_err(|e| input_err(py, format!("{what}: {e}")))
}

/// `x` as a float32 C-contiguous array of `shape`, not yet borrowed.
fn checked_array<'a, 'py>(
    py: Python<'py>,
    what: &str,
    x: &'a Bound<'py, PyAny>,
    shape: &[usize],
) -> PyResult<&'a Bound<'py, PyArrayDyn<f32>>> {
    let arr = x.cast::<PyArrayDyn<f32>>().map_err(|_| {
        let found = x
            .getattr("dtype")
            .map(|d| format!("dtype {d}"))
            .unwrap_or_else(|_| format!("{}", x.get_type()));
        input_err(
            py,
            format!("{what}: expected a float32 numpy array, found {found}"),
        )
    })?;
    if arr.shape() != shape {
        return Err(input_err(
            py,
            format!("{what}: expected shape {shape:?}, found {:?}", arr.shape()),
        ));
    }
    if !arr.is_c_contiguous() {
        return Err(input_err(
            py,
            format!("{what}: expected a C-contiguous array"),
        ));
    }
    Ok(arr)
}

/// The engine and whether it is still usable, behind [`PyEngine::inner`].
struct Inner {
    engine: Engine,
    /// Set when a computation panicked: the buffers may be inconsistent.
    broken: bool,
}

/// A streaming traceTorch model: all buffers allocated at load, one `step` per timestep.
#[pyclass(module = "tracetorch._native", name = "Engine", frozen)]
struct PyEngine {
    /// The engine's plan and stream count, readable without the lock.
    plan: Arc<Plan>,
    streams: usize,
    /// `[streams, *sample]` of one step's input and output, kept for the
    /// per-call checks.
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    /// Multiply-adds of one step of all streams (see [`LIGHT_WORK`]).
    step_work: usize,
    /// Taken once per call, with the GIL released (threads sharing an engine
    /// are serialised).
    inner: Mutex<Inner>,
}

/// Calls doing at most this many multiply-adds (a few microseconds) keep the
/// GIL: releasing and taking it back would cost more than the work. Longer
/// calls release it, so other Python threads run meanwhile.
const LIGHT_WORK: usize = 1 << 17;

const BROKEN: &str = "this engine hit an internal error earlier and can no longer be used";

impl PyEngine {
    /// `x` as the engine reads it in place (a float32 C-contiguous array of
    /// `input_shape`, or of the sample shape with one stream), with the shape
    /// of the output that goes with it; `None` for anything else.
    fn step_form<'a, 'py>(
        &self,
        x: &'a Bound<'py, PyAny>,
    ) -> Option<(&'a Bound<'py, PyArrayDyn<f32>>, &[usize])> {
        let x = x.cast::<PyArrayDyn<f32>>().ok()?;
        if !x.is_c_contiguous() {
            return None;
        }
        let full = &self.input_shape;
        if x.shape() == &full[..] {
            Some((x, &self.output_shape[..]))
        } else if self.streams == 1 && x.shape() == &full[1..] {
            Some((x, &self.output_shape[1..]))
        } else {
            None
        }
    }

    /// Borrows `xs` as a float32 C-contiguous `[T, *input_shape]` array and
    /// returns `T` with it (`what` names the argument in errors).
    fn sequence_arg<'py>(
        &self,
        py: Python<'py>,
        what: &str,
        xs: &Bound<'py, PyAny>,
    ) -> PyResult<(usize, numpy::PyReadonlyArrayDyn<'py, f32>)> {
        let t = xs
            .cast::<PyArrayDyn<f32>>()
            .ok()
            .and_then(|a| a.shape().first().copied())
            .unwrap_or(0);
        let mut want = vec![t];
        want.extend(self.input_shape());
        Ok((t, array_arg(py, what, xs, &want)?))
    }

    /// One step from `x`, read in place, into `ys` (apart from `x`). A light
    /// step ([`LIGHT_WORK`]) keeps the GIL until it returns, so no other
    /// thread runs Python, or numpy on these arrays, meanwhile: `x` is read
    /// without rust-numpy's borrow tracking, which took a mutex and a map
    /// entry per borrow, most of a small step's call (a 4-3 layer: 0.67 ->
    /// 0.27 us from Python). A heavy step releases the GIL and borrows `x`.
    fn step_into(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyArrayDyn<f32>>,
        ys: &mut [f32],
    ) -> PyResult<()> {
        if self.step_work <= LIGHT_WORK {
            // SAFETY: as above; `x` is C-contiguous (`step_form`).
            let xs =
                unsafe { x.as_slice() }.map_err(|e| input_err(py, format!("step input: {e}")))?;
            return self.compute(py, self.step_work, |e| e.step(xs, ys));
        }
        let ro = x
            .try_readonly()
            .map_err(|e| input_err(py, format!("step input: {e}")))?;
        let xs = ro
            .as_slice()
            .map_err(|e| input_err(py, format!("step input: {e}")))?;
        self.compute(py, self.step_work, |e| e.step(xs, ys))
    }

    /// The lock; a poisoned one (a panic while held) marks the engine broken.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            guard.broken = true;
            guard
        })
    }

    /// Runs `f` on the engine with the lock held, and the GIL released when
    /// the call does more than [`LIGHT_WORK`] multiply-adds (`work`).
    fn compute<T: Send>(
        &self,
        py: Python<'_>,
        work: usize,
        f: impl FnOnce(&mut Engine) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        let run = || {
            let mut inner = self.lock();
            if inner.broken {
                return Ok(None);
            }
            let inner = &mut *inner;
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut inner.engine))) {
                Ok(result) => result.map(Some),
                Err(payload) => {
                    inner.broken = true;
                    std::panic::resume_unwind(payload)
                }
            }
        };
        match detached(py, work <= LIGHT_WORK, run) {
            Ok(Ok(Some(value))) => Ok(value),
            Ok(Ok(None)) => Err(TraceTorchError::new_err(BROKEN)),
            Ok(Err(e)) => Err(to_py_err(py, e)),
            Err(what) => Err(internal_error(&what)),
        }
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (path, streams = 1))]
    fn new(py: Python<'_>, path: PathBuf, streams: usize) -> PyResult<Self> {
        load(py, || Engine::from_path(&path, streams))
    }

    /// Loads a model from the bytes of a model file.
    #[staticmethod]
    #[pyo3(signature = (data, streams = 1))]
    fn from_bytes(py: Python<'_>, data: &[u8], streams: usize) -> PyResult<Self> {
        load(py, || Engine::new(data, streams))
    }

    /// `[streams, *input sample shape]`.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.clone()
    }

    /// `[streams, *output sample shape]`.
    #[getter]
    fn output_shape(&self) -> Vec<usize> {
        self.output_shape.clone()
    }

    /// Number of independent streams.
    #[getter]
    fn streams(&self) -> usize {
        self.streams
    }

    /// State names, `"<node name>.<state>"`, in graph order.
    #[getter]
    fn state_names(&self) -> Vec<String> {
        self.plan.state_names().map(str::to_string).collect()
    }

    /// One timestep. `x` is an array of `input_shape`, or of the sample shape
    /// when there is one stream; the output takes the same form. A float32
    /// C-contiguous array is read in place; anything else numpy turns into a
    /// real array is converted first (`tracetorch.runtime._step_input`). With
    /// `out` (a writable float32 C-contiguous array of that output shape) the
    /// result goes there and nothing is allocated.
    #[pyo3(signature = (x, out = None))]
    fn step<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let converted;
        let (x, out_shape) = match self.step_form(x) {
            Some(form) => form,
            None => {
                converted = py
                    .import("tracetorch.runtime")?
                    .getattr("_step_input")?
                    .call1((x, self.input_shape.clone()))?;
                self.step_form(&converted).ok_or_else(|| {
                    internal_error("step: a converted input is not in the engine's form")
                })?
            }
        };
        let Some(out) = out else {
            let fresh = PyArrayDyn::<f32>::zeros(py, out_shape, false);
            // SAFETY: `fresh` was created just above and is not shared yet.
            let ys = unsafe { fresh.as_slice_mut() }.map_err(|e| internal_error(&e.to_string()))?;
            self.step_into(py, x, ys)?;
            return Ok(fresh);
        };
        let array = checked_array(py, "step out", out, out_shape)?;
        let span = |a: &Bound<'py, PyArrayDyn<f32>>| {
            let start = a.data() as usize;
            start..start + a.len() * std::mem::size_of::<f32>()
        };
        let (xs, ys) = (span(x), span(array));
        if !xs.is_empty() && !ys.is_empty() && xs.start < ys.end && ys.start < xs.end {
            return Err(input_err(
                py,
                "step out: shares memory with the step input; pass a separate array".into(),
            ));
        }
        if self.step_work <= LIGHT_WORK {
            // SAFETY: `(*ptr).flags` is the array's own field.
            let flags = unsafe { (*array.as_array_ptr()).flags };
            if flags & NPY_ARRAY_WRITEABLE == 0 {
                return Err(input_err(py, "step out: the array is read-only".into()));
            }
            // SAFETY: a light step holds the GIL throughout (see
            // `step_into`), `array` is writeable and apart from the input.
            let ys = unsafe { array.as_slice_mut() }
                .map_err(|e| input_err(py, format!("step out: {e}")))?;
            self.step_into(py, x, ys)?;
        } else {
            let mut rw = array
                .try_readwrite()
                .map_err(|e| input_err(py, format!("step out: {e}")))?;
            let ys = rw
                .as_slice_mut()
                .map_err(|e| input_err(py, format!("step out: {e}")))?;
            self.step_into(py, x, ys)?;
        }
        Ok(array.clone())
    }

    /// `T` timesteps: float32 `[T, *input_shape]` in, `[T, *output_shape]` out.
    fn run<'py>(
        &self,
        py: Python<'py>,
        xs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (t, ro) = self.sequence_arg(py, "run inputs", xs)?;
        let data = ro
            .as_slice()
            .map_err(|e| input_err(py, format!("run inputs: {e}")))?;
        // Outputs can be far larger than inputs: cap them before allocating.
        let n = (self.plan.output_len() * self.streams)
            .checked_mul(t)
            .filter(|&n| n <= MAX_FLOATS)
            .ok_or_else(|| {
                input_err(
                    py,
                    format!(
                        "run inputs: {t} timesteps would produce more than {MAX_FLOATS} output \
                         floats; run the sequence in chunks"
                    ),
                )
            })?;
        let mut out = vec![0.0f32; n];
        let work = self.step_work.saturating_mul(t);
        self.compute(py, work, |e| e.run(data, &mut out, t))?;
        let mut shape = vec![t];
        shape.extend(self.output_shape());
        PyArray1::from_vec(py, out).reshape(shape)
    }

    /// For benchmarks: steps through `xs` (float32 `[T, *input_shape]`, as
    /// for `run`) and returns the seconds each `Engine::step` took, float64
    /// `[T]` (`Engine::time_steps`). The states advance exactly as with
    /// `run`; a refused call changes nothing; the GIL is released throughout.
    fn _time_steps<'py>(
        &self,
        py: Python<'py>,
        xs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        const WHAT: &str = "time_steps inputs";
        let (t, ro) = self.sequence_arg(py, WHAT, xs)?;
        let data = ro
            .as_slice()
            .map_err(|e| input_err(py, format!("{WHAT}: {e}")))?;
        let mut times = vec![0.0f64; t];
        // Always detached: a timing loop may run for seconds.
        self.compute(py, usize::MAX, |e| e.time_steps(data, &mut times))?;
        Ok(PyArray1::from_vec(py, times))
    }

    /// Zeros the states of every stream, or of stream `stream` only.
    #[pyo3(signature = (stream = None))]
    fn reset(&self, py: Python<'_>, stream: Option<usize>) -> PyResult<()> {
        self.compute(py, self.step_work, |e| match stream {
            None => {
                e.reset_all();
                Ok(())
            }
            Some(i) => e.reset_stream(i),
        })
    }

    /// Copies of every state, `{name: float32 [streams, *state shape]}` (shaped like the layer input).
    fn states<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = self.compute(py, self.step_work, |e| Ok(e.snapshot()))?;
        let dict = PyDict::new(py);
        for s in snapshot {
            let arr = PyArray1::from_vec(py, s.data).reshape(s.shape)?;
            dict.set_item(s.name, arr)?;
        }
        Ok(dict)
    }

    /// Loads a full `states()` snapshot; nothing changes unless all of it is valid.
    fn load_states(&self, py: Python<'_>, states: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::with_capacity(states.len());
        for (k, v) in states.iter() {
            let name: String = k
                .extract()
                .map_err(|_| input_err(py, format!("state names must be str, found {k:?}")))?;
            let arr = v.cast::<PyArrayDyn<f32>>().map_err(|_| {
                input_err(
                    py,
                    format!("state `{name}`: expected a float32 numpy array"),
                )
            })?;
            let ro = arr
                .try_readonly()
                .map_err(|e| input_err(py, format!("state `{name}`: {e}")))?;
            let data: Vec<f32> = ro.as_array().iter().copied().collect();
            owned.push((name, ro.shape().to_vec(), data));
        }
        let views: Vec<StateView<'_>> = owned
            .iter()
            .map(|(name, shape, data)| StateView { name, shape, data })
            .collect();
        self.compute(py, self.step_work, |e| e.load_states(&views))
    }

    /// Restarts the generator of the stochastic quantizers from `seed`.
    fn seed(&self, py: Python<'_>, seed: u64) -> PyResult<()> {
        self.compute(py, self.step_work, |e| {
            e.seed(seed);
            Ok(())
        })
    }

    /// The instruction set the kernels run on (`scalar`, `neon`, `avx2`, `avx512`).
    #[getter]
    fn simd(&self) -> &'static str {
        self.lock().engine.isa().name()
    }

    /// Threads that share the heavy layers of a step (see `Engine::threads` of the core).
    #[getter]
    fn threads(&self) -> usize {
        self.lock().engine.threads()
    }

    /// Sets how many threads may share the heavy layers of a step.
    fn set_threads(&self, py: Python<'_>, threads: usize) -> PyResult<()> {
        if threads == 0 {
            return Err(input_err(py, "threads must be at least 1, found 0".into()));
        }
        self.compute(py, self.step_work, |e| {
            e.set_threads(threads);
            Ok(())
        })
    }

    /// Switches the kernels to another instruction set this CPU runs.
    fn set_simd(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let isa = Isa::from_setting(name).map_err(|e| to_py_err(py, e))?;
        self.compute(py, self.step_work, |e| e.set_isa(isa))
    }

    /// The model file bytes (for pickling).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.plan.source())
    }

    fn __repr__(&self) -> String {
        format!(
            "Engine(input_shape={:?}, output_shape={:?}, streams={})",
            self.input_shape(),
            self.output_shape(),
            self.streams
        )
    }
}

/// The instruction sets this CPU runs, scalar first, fastest last.
#[pyfunction]
fn simd_available() -> Vec<&'static str> {
    Isa::available().into_iter().map(Isa::name).collect()
}

/// The native part of the `tracetorch` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", tracetorch_core::VERSION)?;
    m.add("TraceTorchError", py.get_type::<TraceTorchError>())?;
    m.add("ModelFileError", model_file_error(py)?)?;
    m.add("EngineInputError", engine_input_error(py)?)?;
    m.add_class::<PyEngine>()?;
    m.add_function(wrap_pyfunction!(simd_available, m)?)?;
    Ok(())
}
