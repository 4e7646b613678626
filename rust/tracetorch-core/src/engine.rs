//! The mutable, per-stream side: buffers, neuron states and the random generator.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::floats::Floats;
use crate::kernels;
use crate::neuron::{neuron_kernel, NeuronLayer, NSLOT};
use crate::plan::{Kernel, Plan, StateInfo, MAX_FLOATS};
use crate::rng::Rng;
use crate::simd::{rows_in, Isa, Kernels};
use crate::team::{self, share_start, Shares, Team};

/// Seed of a new engine's generator (change it with [`Engine::seed`]).
pub const DEFAULT_SEED: u64 = 0;

/// A borrowed state array, e.g. one entry of a snapshot to load.
#[derive(Debug, Clone, Copy)]
pub struct StateView<'a> {
    /// `"<node name>.<state>"`.
    pub name: &'a str,
    /// `[streams, *state shape]` (neuron axis last).
    pub shape: &'a [usize],
    /// Row-major data of that shape.
    pub data: &'a [f32],
}

/// An owned copy of one state (see [`Engine::snapshot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StateData {
    /// `"<node name>.<state>"`.
    pub name: String,
    /// `[streams, *state shape]` (neuron axis last).
    pub shape: Vec<usize>,
    /// Row-major data of that shape.
    pub data: Vec<f32>,
}

impl StateData {
    /// A borrowed view, as [`Engine::load_states`] takes.
    pub fn view(&self) -> StateView<'_> {
        StateView {
            name: &self.name,
            shape: &self.shape,
            data: &self.data,
        }
    }
}

/// A model ready to stream: an immutable [`Plan`] plus the buffers and states
/// of `streams` independent streams, all allocated at construction.
/// [`Engine::step`] only computes: it never allocates and takes no lock.
#[derive(Debug, Clone)]
pub struct Engine {
    plan: Arc<Plan>,
    streams: usize,
    /// One buffer per plan buffer, `streams * size` floats, stream-major.
    buffers: Vec<Floats>,
    /// Per neuron node, the used state slots (sample layout, stream-major).
    states: Vec<[Floats; NSLOT]>,
    rng: Rng,
    /// The states and generator where a large [`Engine::run`] began, to
    /// return to if one of its inputs is refused.
    rollback: (Vec<[Floats; NSLOT]>, Rng),
    kernels: Kernels,
    /// The threads that share the heavy layers.
    team: Team,
    /// One scratch per thread of the team.
    scratch: Vec<Scratch>,
}

/// Per-thread scratch of the kernels, allocated with the engine.
#[derive(Debug, Clone)]
struct Scratch {
    /// One sample's convolution scratch (padded input or im2col matrix).
    col: Floats,
    /// Indices of the active inputs of an event-driven layer.
    active: Vec<u32>,
}

impl Scratch {
    fn new(plan: &Plan) -> Scratch {
        Scratch {
            col: Floats::zeros(plan.col_floats),
            // Slack to place the list in its page (`kernels::ACTIVE_SLACK`).
            active: vec![0; plan.active_len + kernels::ACTIVE_SLACK],
        }
    }
}

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads for a new engine: the available cores when there are streams to share.
fn default_threads(streams: usize) -> usize {
    if streams < 2 {
        return 1;
    }
    cores().min(streams)
}

/// Neuron layers of at least this many neurons (all streams) split across
/// threads: below it the hand-over costs more than the update.
const NEURON_PARALLEL: usize = 1 << 12;

/// One timestep of a neuron layer, its rows (streams) shared by the team
/// when the layer is large and draws no random numbers (the draws follow
/// the neuron order). Every neuron is computed as on one thread.
fn neurons(
    k: &Kernels,
    layer: &NeuronLayer,
    rng: &mut Rng,
    x: &[f32],
    out: &mut [f32],
    states: &mut [Floats; NSLOT],
    team: &mut Team,
) {
    let row = layer.row_len();
    let rows = rows_in(x.len(), row);
    let parts = team.threads().min(rows);
    if parts < 2 || layer.draws() || x.len() < NEURON_PARALLEL {
        return neuron_kernel(k, layer, rng, x, out, states.each_mut().map(|s| &mut s[..]));
    }
    let outs = Shares::new(out);
    let slots = states.each_mut().map(|s| Shares::new(&mut s[..]));
    team.run(parts, &|part, _| {
        let rows = share_start(rows, parts, part) * row..share_start(rows, parts, part + 1) * row;
        // SAFETY: the shares take disjoint rows.
        let (out, states) = unsafe {
            (
                outs.range(rows.clone()),
                slots.each_ref().map(|s| match s.len() {
                    0 => &mut [],
                    _ => s.range(rows.clone()),
                }),
            )
        };
        // Never drawn from: the layer is deterministic.
        let mut unused = Rng::new(0);
        neuron_kernel(k, layer, &mut unused, &x[rows], out, states);
    });
}

/// Buffer `i`, where buffer 0 (the model's input, never written by a step)
/// is read from the caller's `input` itself: copying it in cost a pass
/// over the input every step (800 KiB at 256 streams of 784).
fn input_or<'a>(buffers: &'a [Floats], input: &'a [f32], i: usize) -> &'a [f32] {
    match i {
        0 => input,
        _ => &buffers[i],
    }
}

/// Inputs of at least this many floats are checked by the whole team: the
/// check reads them from memory (16 MiB for `run` over 20 steps of 256
/// streams of 784: about 1 ms on one core).
const CHECK_PARALLEL: usize = 1 << 16;

/// A [`Engine::run`] over more input floats than this checks each step's
/// input just before its step, while it is in cache for the step, instead
/// of all of them first: 20 steps of 256 streams of 784 (16 MiB) were read
/// from memory twice, once by the check and once by the steps.
const CHECK_AHEAD: usize = 1 << 20;

/// Refuses NaN and infinities (no allocation on success): a non-finite input
/// would poison every state it reaches, for good. Large inputs are shared by
/// the team's threads. `first` is the flat index of `data[0]` in the
/// argument, for the error.
fn check_finite(
    k: &Kernels,
    team: &mut Team,
    what: &'static str,
    data: &[f32],
    first: usize,
) -> Result<()> {
    let parts = team.threads();
    let ok = if parts > 1 && data.len() >= CHECK_PARALLEL {
        let bad = AtomicBool::new(false);
        team.run(parts, &|part, _| {
            let share =
                share_start(data.len(), parts, part)..share_start(data.len(), parts, part + 1);
            if !kernels::all_finite(k, &data[share]) {
                bad.store(true, Ordering::Relaxed);
            }
        });
        !bad.into_inner()
    } else {
        kernels::all_finite(k, data)
    };
    if ok {
        return Ok(());
    }
    // The search for the first bad value runs only on failure.
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what,
            index: first + index,
            value: data[index],
        }),
    }
}

/// Copies every state slot of `from` into `to`, of the same shapes.
fn copy_states(to: &mut [[Floats; NSLOT]], from: &[[Floats; NSLOT]]) {
    for (to, from) in to.iter_mut().zip(from) {
        for (to, from) in to.iter_mut().zip(from) {
            to.copy_from_slice(from);
        }
    }
}

/// Refuses a sequence of `found` floats that is not `steps` of `per_step`.
fn check_sequence(what: &str, per_step: usize, steps: usize, found: usize) -> Result<()> {
    let want = per_step.checked_mul(steps);
    if want != Some(found) {
        return Err(len_err(what, want.unwrap_or(usize::MAX), found));
    }
    Ok(())
}

fn len_err(what: &str, expected: usize, found: usize) -> Error {
    Error::Length {
        what: what.to_string(),
        expected,
        found,
    }
}

impl Engine {
    /// Loads a model file from memory and allocates `streams` streams.
    pub fn new(model: &[u8], streams: usize) -> Result<Engine> {
        Engine::from_plan(Arc::new(Plan::from_bytes(model)?), streams)
    }

    /// Loads a model file from disk and allocates `streams` streams.
    pub fn from_path(path: impl AsRef<Path>, streams: usize) -> Result<Engine> {
        Engine::from_plan(Arc::new(Plan::from_path(path)?), streams)
    }

    /// An engine over an already validated plan (plans can be shared).
    ///
    /// Its kernels use the fastest instruction set of this CPU, or the one
    /// `TRACETORCH_SIMD` names (see [`Isa::from_env`] and [`Engine::set_isa`]).
    pub fn from_plan(plan: Arc<Plan>, streams: usize) -> Result<Engine> {
        if streams == 0 {
            return Err(Error::Streams { found: streams });
        }
        let isa = Isa::from_env()?;
        let total = plan
            .floats_for(streams)
            .and_then(|n| n.checked_add(plan.weight_floats()));
        match total {
            Some(n) if n <= MAX_FLOATS => {}
            other => {
                return Err(Error::TooManyStreams {
                    streams,
                    found: other.map_or_else(|| "an overflowing size".into(), |n| n.to_string()),
                    limit: MAX_FLOATS,
                })
            }
        }
        // Sizes are bounded by MAX_FLOATS above, so these products cannot
        // overflow. Buffer 0, the input, is read from the caller's input.
        let buffers = plan
            .buffer_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                if i == 0 {
                    Floats::default()
                } else {
                    Floats::zeros(n * streams)
                }
            })
            .collect();
        let mut states: Vec<[Floats; NSLOT]> = (0..plan.neurons.len())
            .map(|_| Default::default())
            .collect();
        for s in &plan.states {
            states[s.neuron][s.slot] = Floats::zeros(s.numel * streams);
        }
        let team = Team::new(default_threads(streams));
        let rng = Rng::new(DEFAULT_SEED);
        Ok(Engine {
            rollback: (states.clone(), rng.clone()),
            scratch: (0..team.threads()).map(|_| Scratch::new(&plan)).collect(),
            team,
            plan,
            streams,
            buffers,
            states,
            rng,
            kernels: Kernels::new(isa).ok_or(Error::SimdSetting {
                value: isa.name().to_string(),
                available: Isa::available().iter().map(|i| i.name()).collect(),
            })?,
        })
    }

    /// How many threads share the heavy layers of a step: linear and
    /// convolution layers and large deterministic neuron layers. Several
    /// streams are split by streams; a single stream's linear layers by
    /// output columns. Defaults to the cores available when there are several
    /// streams, and to 1 (the calling thread alone) for a single stream.
    /// Results never depend on it.
    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    /// Sets [`Engine::threads`], clamped to 1 ..= the available cores (the
    /// workers spin while they wait, so more threads than cores would only
    /// take turns), or fewer if the system refuses to start them; allocates
    /// one scratch per thread.
    ///
    /// Between steps the extra threads spin for up to a millisecond before
    /// they sleep, so that the next step reaches them in about 100 ns: on a
    /// single stream, more threads buy latency with a busy core.
    pub fn set_threads(&mut self, threads: usize) {
        self.use_threads(threads.clamp(1, cores().min(team::MAX_PARTS)));
    }

    /// [`Engine::set_threads`] without the clamp to the cores.
    fn use_threads(&mut self, threads: usize) {
        if threads != self.team.threads() {
            self.team = Team::new(threads);
        }
        let plan = &self.plan;
        self.scratch
            .resize_with(self.team.threads(), || Scratch::new(plan));
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    /// Switches the kernels to `isa` (results may differ in the last bits:
    /// sums are taken in another order). Fails, changing nothing, if this CPU
    /// does not run it.
    pub fn set_isa(&mut self, isa: Isa) -> Result<()> {
        self.kernels = Kernels::new(isa).ok_or_else(|| Error::SimdSetting {
            value: isa.name().to_string(),
            available: Isa::available().iter().map(|i| i.name()).collect(),
        })?;
        Ok(())
    }

    /// The shared, immutable plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Number of independent streams.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// Sample shape of one input (no stream axis).
    pub fn input_shape(&self) -> &[usize] {
        self.plan.input_shape()
    }

    /// Sample shape of one output (no stream axis).
    pub fn output_shape(&self) -> &[usize] {
        self.plan.output_shape()
    }

    /// Floats [`Engine::step`] reads: `streams * prod(input_shape)`.
    pub fn input_len(&self) -> usize {
        self.plan.input_len() * self.streams
    }

    /// Floats [`Engine::step`] writes: `streams * prod(output_shape)`.
    pub fn output_len(&self) -> usize {
        self.plan.output_len() * self.streams
    }

    /// Advances every stream by one timestep.
    ///
    /// `input` is `[streams, *input_shape]` and `output` `[streams,
    /// *output_shape]`, row-major. On error (a wrong length, or a NaN or
    /// infinite input: [`Error::NonFinite`]) nothing changes.
    pub fn step(&mut self, input: &[f32], output: &mut [f32]) -> Result<()> {
        if input.len() != self.input_len() {
            return Err(len_err("step input", self.input_len(), input.len()));
        }
        if output.len() != self.output_len() {
            return Err(len_err("step output", self.output_len(), output.len()));
        }
        check_finite(&self.kernels, &mut self.team, "step input", input, 0)?;
        self.step_unchecked(input, output);
        Ok(())
    }

    /// Runs `steps` timesteps: `inputs` is `[steps, streams, *input_shape]`,
    /// `outputs` `[steps, streams, *output_shape]`. On error (a wrong
    /// length, a NaN or infinite input) the states and the generator are as
    /// before the call, as if no step had been taken; `outputs` may have
    /// been written.
    pub fn run(&mut self, inputs: &[f32], outputs: &mut [f32], steps: usize) -> Result<()> {
        let (n_in, n_out) = (self.input_len(), self.output_len());
        check_sequence("run inputs", n_in, steps, inputs.len())?;
        check_sequence("run outputs", n_out, steps, outputs.len())?;
        let per_step = inputs.len() > CHECK_AHEAD;
        if !per_step {
            check_finite(&self.kernels, &mut self.team, "run inputs", inputs, 0)?;
        }
        if n_in == 0 || n_out == 0 {
            return Ok(());
        }
        if per_step {
            self.save_rollback();
        }
        let steps = inputs
            .chunks_exact(n_in)
            .zip(outputs.chunks_exact_mut(n_out));
        for (t, (x, y)) in steps.enumerate() {
            if per_step {
                let (k, team) = (&self.kernels, &mut self.team);
                if let Err(error) = check_finite(k, team, "run inputs", x, t * n_in) {
                    self.roll_back();
                    return Err(error);
                }
            }
            self.step_unchecked(x, y);
        }
        Ok(())
    }

    /// Keeps the states and the generator for [`Engine::roll_back`].
    fn save_rollback(&mut self) {
        copy_states(&mut self.rollback.0, &self.states);
        self.rollback.1 = self.rng.clone();
    }

    /// Returns to the states and the generator kept by
    /// [`Engine::save_rollback`].
    fn roll_back(&mut self) {
        copy_states(&mut self.states, &self.rollback.0);
        self.rng = self.rollback.1.clone();
    }

    /// For benchmarks: steps through `inputs` (`times.len()` steps, checked
    /// as by [`Engine::run`]) and writes the seconds each [`Engine::step`]
    /// took into `times`, with nothing else between steps. The outputs go to
    /// one buffer, allocated once per call; the states advance as with `run`.
    pub fn time_steps(&mut self, inputs: &[f32], times: &mut [f64]) -> Result<()> {
        let n_in = self.input_len();
        check_sequence("time_steps inputs", n_in, times.len(), inputs.len())?;
        check_finite(
            &self.kernels,
            &mut self.team,
            "time_steps inputs",
            inputs,
            0,
        )?;
        let mut output = vec![0.0f32; self.output_len()];
        for (i, time) in times.iter_mut().enumerate() {
            let x = &inputs[i * n_in..(i + 1) * n_in];
            let start = std::time::Instant::now();
            self.step(x, &mut output)?;
            *time = start.elapsed().as_secs_f64();
        }
        Ok(())
    }

    fn step_unchecked(&mut self, input: &[f32], output: &mut [f32]) {
        let Engine {
            plan,
            streams,
            buffers,
            states,
            rng,
            kernels: k,
            team,
            scratch,
            rollback: _,
        } = self;
        let streams = *streams;
        for step in &plan.steps {
            // The output buffer is never one of the step's inputs; taking it out
            // lets the kernel read the inputs while writing it (no allocation).
            let mut out = std::mem::take(&mut buffers[step.output]);
            let read = |i: usize| input_or(buffers, input, i);
            let x = read(step.inputs[0]);
            match &step.kernel {
                Kernel::Linear {
                    weight_t,
                    bias,
                    inp,
                    out: o,
                    event_limit: limit,
                } => {
                    let linear = |x: &[f32], y: &mut [f32], cols, s: &mut Scratch| {
                        let (bias, active) = (bias.as_deref(), &mut s.active);
                        kernels::linear(k, x, y, weight_t, bias, *inp, *o, cols, *limit, active)
                    };
                    let work = *inp * *o;
                    if streams == 1 {
                        // One stream: its outputs are shared instead.
                        let block = k.column_block();
                        kernels::split_columns(team, &mut out, block, scratch, work, |c, y, s| {
                            linear(x, y, c, s)
                        })
                    } else {
                        kernels::split_rows(
                            team,
                            x,
                            *inp,
                            &mut out,
                            *o,
                            scratch,
                            work,
                            |x, y, s| linear(x, y, 0..*o, s),
                        )
                    }
                }
                Kernel::Conv {
                    weight,
                    bias,
                    window,
                    layout,
                    out_channels,
                    groups,
                } => {
                    let (sample_in, sample_out) = window.sample_sizes(*out_channels);
                    // `sample_out * weight.len() / out_channels`, undivided.
                    let work = weight.len() * window.oh * window.ow;
                    kernels::split_rows(
                        team,
                        x,
                        sample_in,
                        &mut out,
                        sample_out,
                        scratch,
                        work,
                        |x, y, s| {
                            kernels::conv2d(
                                k,
                                x,
                                y,
                                weight,
                                bias.as_deref(),
                                window,
                                layout,
                                *out_channels,
                                *groups,
                                &mut s.col,
                            )
                        },
                    )
                }
                Kernel::Pool { window, kind } => kernels::pool2d(x, &mut out, window, *kind),
                Kernel::ChannelAffine {
                    scale,
                    shift,
                    inner,
                } => kernels::channel_affine(x, &mut out, scale, shift, *inner),
                Kernel::Unary(op) => kernels::unary(x, &mut out, *op),
                Kernel::Binary(op) => kernels::binary(x, read(step.inputs[1]), &mut out, *op),
                Kernel::Cat { chunks, rows } => {
                    kernels::cat(read, &step.inputs, chunks, &mut out, rows * streams)
                }
                Kernel::Neuron(i) => neurons(
                    k,
                    &plan.neurons[*i],
                    rng,
                    x,
                    &mut out,
                    &mut states[*i],
                    team,
                ),
            }
            buffers[step.output] = out;
        }
        output.copy_from_slice(input_or(buffers, input, plan.output_buffer));
    }

    /// Zeros every state of every stream (the generator is left as is).
    pub fn reset_all(&mut self) {
        for slots in &mut self.states {
            for s in slots.iter_mut() {
                s.fill(0.0);
            }
        }
    }

    /// Zeros the states of stream `index` only.
    pub fn reset_stream(&mut self, index: usize) -> Result<()> {
        if index >= self.streams {
            return Err(Error::StreamIndex {
                index,
                streams: self.streams,
            });
        }
        for info in &self.plan.states {
            let n = info.numel;
            if let Some(s) = self.states[info.neuron][info.slot].get_mut(index * n..(index + 1) * n)
            {
                s.fill(0.0);
            }
        }
        Ok(())
    }

    /// Restarts the engine's generator (used by stochastic quantizers) from `seed`.
    pub fn seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Names of every state, `"<node name>.<state>"`, in graph order.
    pub fn state_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.plan.state_names()
    }

    /// Shape of a state across streams, `[streams, *state shape]` (the neuron input's shape).
    pub fn state_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.plan.state_shape(name).map(|s| {
            let mut shape = Vec::with_capacity(s.len() + 1);
            shape.push(self.streams);
            shape.extend_from_slice(s);
            shape
        })
    }

    fn info(&self, name: &str) -> Result<&StateInfo> {
        self.plan
            .states
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownState {
                name: name.to_string(),
            })
    }

    /// Copies state `name` into `out` (`[streams, *state shape]`).
    pub fn read_state(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let info = self.info(name)?;
        let want = info.numel * self.streams;
        if out.len() != want {
            return Err(len_err(&format!("state `{name}`"), want, out.len()));
        }
        out.copy_from_slice(&self.states[info.neuron][info.slot]);
        Ok(())
    }

    /// Overwrites state `name` from `data` (`[streams, *state shape]`).
    /// Any value is accepted (a snapshot always loads back, even one where
    /// finite inputs overflowed to infinity). Nothing changes on error.
    pub fn write_state(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let info = self.info(name)?;
        let want = info.numel * self.streams;
        if data.len() != want {
            return Err(len_err(&format!("state `{name}`"), want, data.len()));
        }
        let (neuron, slot) = (info.neuron, info.slot);
        self.states[neuron][slot].copy_from_slice(data);
        Ok(())
    }

    /// A copy of every state (allocates; not for the real-time path).
    pub fn snapshot(&self) -> Vec<StateData> {
        self.plan
            .states
            .iter()
            .map(|info| {
                let mut data = vec![0.0; info.numel * self.streams];
                // Cannot fail: the name and length come from the plan.
                let _ = self.read_state(&info.name, &mut data);
                StateData {
                    name: info.name.clone(),
                    shape: self.state_shape(&info.name).unwrap_or_default(),
                    data,
                }
            })
            .collect()
    }

    /// Loads a full snapshot: every state exactly once, each with shape
    /// `[streams, *state shape]`. Everything is checked before anything is
    /// written, so on error the engine is unchanged.
    pub fn load_states(&mut self, states: &[StateView<'_>]) -> Result<()> {
        let mut seen = vec![false; self.plan.states.len()];
        for s in states {
            let index = self
                .plan
                .states
                .iter()
                .position(|i| i.name == s.name)
                .ok_or_else(|| Error::UnknownState {
                    name: s.name.to_string(),
                })?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(Error::Snapshot {
                    name: s.name.to_string(),
                    reason: "given more than once".to_string(),
                });
            }
            let expected = self.state_shape(s.name).unwrap_or_default();
            let numel = s.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if s.shape != expected.as_slice() || numel != Some(s.data.len()) {
                return Err(Error::StateShape {
                    name: s.name.to_string(),
                    expected,
                    found: if numel == Some(s.data.len()) {
                        s.shape.to_vec()
                    } else {
                        vec![s.data.len()]
                    },
                });
            }
        }
        if let Some(missing) = seen.iter().position(|&b| !b) {
            return Err(Error::Snapshot {
                name: self.plan.states[missing].name.clone(),
                reason: "missing from the snapshot (every state must be given)".to_string(),
            });
        }
        for s in states {
            self.write_state(s.name, s.data)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bits, neuron_node, ModelFile};
    use serde_json::{json, Value};

    /// input [2, 3] -> LI neuron on axis 0 (2 neurons, beta [0.5, 0.25]) -> reshape [6].
    fn axis0_model() -> Vec<u8> {
        let mut m = ModelFile::new(&[2, 3]);
        m.tensor("n.beta", &[2], &[0.5, 0.25]);
        m.node(neuron_node(
            "n",
            "input",
            &[2, 3],
            0,
            json!({}),
            Value::Null,
            json!({"beta": "n.beta"}),
        ));
        m.node(json!({"name": "flat", "op": "reshape", "inputs": ["n"], "shape": [6]}));
        m.bytes()
    }

    #[test]
    fn neuron_on_axis_0_and_state_layout() {
        let mut e = Engine::new(&axis0_model(), 2).unwrap();
        assert_eq!(e.input_shape(), [2, 3]);
        assert_eq!(e.output_shape(), [6]);
        assert_eq!(e.state_shape("n.mem"), Some(vec![2, 2, 3]));
        let x: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let mut y = vec![0.0; 12];
        e.step(&x, &mut y).unwrap();
        assert_eq!(y, x);
        e.step(&x, &mut y).unwrap();
        // mem = beta*x + x: neuron 0 (first row of each sample) *1.5, neuron 1 *1.25
        let expected: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| if (i / 3) % 2 == 0 { v * 1.5 } else { v * 1.25 })
            .collect();
        assert_eq!(y, expected);
        // States keep the input's layout [stream, neuron, position]: the output itself.
        let mut mem = vec![0.0; 12];
        e.read_state("n.mem", &mut mem).unwrap();
        assert_eq!(mem, expected);
        // write_state is read_state's inverse.
        let mut e2 = Engine::new(&axis0_model(), 2).unwrap();
        e2.write_state("n.mem", &mem).unwrap();
        let mut y2 = vec![0.0; 12];
        e.step(&x, &mut y).unwrap();
        e2.step(&x, &mut y2).unwrap();
        assert_eq!(y, y2);
    }

    #[test]
    fn reset_stream_and_reset_all() {
        let mut e = Engine::new(&axis0_model(), 2).unwrap();
        let x = vec![1.0; 12];
        let mut y = vec![0.0; 12];
        e.step(&x, &mut y).unwrap();
        e.reset_stream(1).unwrap();
        let mut mem = vec![0.0; 12];
        e.read_state("n.mem", &mut mem).unwrap();
        assert_eq!(mem[..6], [1.0; 6]);
        assert_eq!(mem[6..], [0.0; 6]);
        assert!(matches!(
            e.reset_stream(2),
            Err(Error::StreamIndex {
                index: 2,
                streams: 2
            })
        ));
        e.reset_all();
        e.read_state("n.mem", &mut mem).unwrap();
        assert_eq!(mem, [0.0; 12]);
    }

    #[test]
    fn bad_arguments_change_nothing() {
        let mut e = Engine::new(&axis0_model(), 2).unwrap();
        let x = vec![1.0; 12];
        let mut y = vec![0.0; 12];
        e.step(&x, &mut y).unwrap();
        let before = e.snapshot();
        assert!(matches!(
            e.step(&x[..11], &mut y),
            Err(Error::Length { .. })
        ));
        assert!(matches!(e.step(&x, &mut y[..3]), Err(Error::Length { .. })));
        assert!(matches!(e.run(&x, &mut y, 2), Err(Error::Length { .. })));
        assert_eq!(
            e.step(&x[..11], &mut y).unwrap_err().kind(),
            crate::ErrorKind::Input
        );
        // A snapshot with one bad entry changes nothing.
        let good = vec![7.0; 12];
        let wrong = [
            vec![
                StateView {
                    name: "n.mem",
                    shape: &[2, 2, 3],
                    data: &good,
                };
                2
            ],
            vec![StateView {
                name: "n.mem",
                shape: &[2, 3, 2],
                data: &good,
            }],
            vec![StateView {
                name: "n.ghost",
                shape: &[2, 2, 3],
                data: &good,
            }],
            vec![StateView {
                name: "n.mem",
                shape: &[2, 2, 3],
                data: &good[..11],
            }],
            vec![],
        ];
        for states in &wrong {
            assert!(e.load_states(states).is_err());
            assert_eq!(e.snapshot(), before);
        }
        assert!(matches!(
            e.write_state("n.mem", &good[..5]),
            Err(Error::Length { .. })
        ));
        assert_eq!(e.snapshot(), before);
        // A full valid snapshot loads.
        e.load_states(&[StateView {
            name: "n.mem",
            shape: &[2, 2, 3],
            data: &good,
        }])
        .unwrap();
        assert_eq!(e.snapshot()[0].data, good);
        let snap = before.iter().map(StateData::view).collect::<Vec<_>>();
        e.load_states(&snap).unwrap();
        assert_eq!(e.snapshot(), before);
    }

    #[test]
    fn non_finite_inputs_are_refused_and_change_nothing() {
        let mut e = Engine::new(&axis0_model(), 2).unwrap();
        let x = vec![1.0; 12];
        let mut y = vec![0.0; 12];
        e.step(&x, &mut y).unwrap();
        let before = e.snapshot();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut xb = x.clone();
            xb[7] = bad;
            let err = e.step(&xb, &mut y).unwrap_err();
            assert!(matches!(err, Error::NonFinite { index: 7, .. }), "{err}");
            assert_eq!(err.kind(), crate::ErrorKind::Input);
            assert!(err.to_string().contains("expected finite values"), "{err}");
            // In a run, a bad value in the last step stops the first one too.
            let xs = [x.clone(), x.clone(), xb].concat();
            let mut ys = vec![0.0; 36];
            assert!(matches!(
                e.run(&xs, &mut ys, 3),
                Err(Error::NonFinite { index: 31, .. })
            ));
            assert_eq!(format!("{:?}", e.snapshot()), format!("{before:?}"));
        }
        // A sequence large enough for the team to check it in shares: the
        // first bad value is found in any share, and nothing changes.
        let mut e3 = Engine::new(&axis0_model(), 2).unwrap();
        e3.use_threads(3);
        let steps = CHECK_PARALLEL / 12 + 1;
        let xs = vec![0.5; 12 * steps];
        let mut ys = vec![0.0; 12 * steps];
        e3.step(&x, &mut y).unwrap();
        let before = e3.snapshot();
        for index in [0, xs.len() / 2, xs.len() - 1] {
            let mut xb = xs.clone();
            xb[index] = f32::NAN;
            let err = e3.run(&xb, &mut ys, steps).unwrap_err();
            assert!(
                matches!(err, Error::NonFinite { index: i, .. } if i == index),
                "{err}"
            );
            assert_eq!(e3.snapshot(), before);
        }
        e3.run(&xs, &mut ys, steps).unwrap();
        assert_ne!(e3.snapshot(), before);
        // Finite inputs may overflow to infinity (IEEE arithmetic, as in
        // PyTorch); such states still snapshot and load back.
        e.step(&[f32::MAX; 12], &mut y).unwrap();
        e.step(&[f32::MAX; 12], &mut y).unwrap();
        let overflowed = e.snapshot();
        assert!(overflowed[0].data.iter().any(|v| v.is_infinite()));
        let views: Vec<_> = overflowed.iter().map(StateData::view).collect();
        e.load_states(&views).unwrap();
    }

    #[test]
    fn run_equals_steps() {
        let mut a = Engine::new(&axis0_model(), 2).unwrap();
        let mut b = Engine::new(&axis0_model(), 2).unwrap();
        let xs: Vec<f32> = (0..36).map(|v| (v as f32 * 0.37).sin()).collect();
        let mut ya = vec![0.0; 36];
        a.run(&xs, &mut ya, 3).unwrap();
        let mut yb = vec![0.0; 36];
        for (x, y) in xs.chunks(12).zip(yb.chunks_mut(12)) {
            b.step(x, y).unwrap();
        }
        assert_eq!(ya, yb);
    }

    /// The input is read where the caller holds it: a model whose output is
    /// its input (through a reshape), and the input used twice by one op,
    /// by a cat and by an elementwise op.
    #[test]
    fn the_input_is_read_in_place() {
        let mut m = ModelFile::new(&[2, 2]);
        m.node(json!({"name": "r", "op": "reshape", "inputs": ["input"], "shape": [4]}));
        let mut e = Engine::new(&m.bytes(), 2).unwrap();
        let mut y = [0.0; 8];
        e.step(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &mut y)
            .unwrap();
        assert_eq!(y, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);

        let mut m = ModelFile::new(&[2]);
        m.node(
            json!({"name": "twice", "op": "cat", "inputs": ["input", "input"], "shape": [4],
                      "attrs": {"axis": 0}}),
        );
        m.node(json!({"name": "sum", "op": "add", "inputs": ["input", "input"], "shape": [2]}));
        m.node(
            json!({"name": "out", "op": "cat", "inputs": ["twice", "sum"], "shape": [6],
                      "attrs": {"axis": 0}}),
        );
        let mut e = Engine::new(&m.bytes(), 2).unwrap();
        let mut y = [0.0; 12];
        e.step(&[1.0, 2.0, 3.0, 4.0], &mut y).unwrap();
        assert_eq!(
            y,
            [1.0, 2.0, 1.0, 2.0, 2.0, 4.0, 3.0, 4.0, 3.0, 4.0, 6.0, 8.0]
        );
    }

    /// `time_steps` advances the states as `run` does, times every step, and
    /// refuses what `run` refuses without touching the states.
    #[test]
    fn time_steps_advance_like_run() {
        let mut a = Engine::new(&axis0_model(), 2).unwrap();
        let mut b = Engine::new(&axis0_model(), 2).unwrap();
        let xs: Vec<f32> = (0..36).map(|v| (v as f32 * 0.37).sin()).collect();
        let mut times = [-1.0f64; 3];
        a.time_steps(&xs, &mut times).unwrap();
        assert!(
            times.iter().all(|t| t.is_finite() && *t >= 0.0),
            "{times:?}"
        );
        let mut ys = vec![0.0; 36];
        b.run(&xs, &mut ys, 3).unwrap();
        assert_eq!(a.snapshot(), b.snapshot());
        let before = a.snapshot();
        let err = a.time_steps(&xs[..35], &mut times).unwrap_err();
        assert!(matches!(err, Error::Length { .. }), "{err}");
        let mut bad = xs.clone();
        bad[20] = f32::NAN;
        let err = a.time_steps(&bad, &mut times).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 20, .. }), "{err}");
        assert_eq!(a.snapshot(), before);
    }

    /// 64 neurons that fire at random: mem = 1 -> sigmoid(0) = 0.5 -> 0 or 1.
    fn stochastic_model() -> Vec<u8> {
        let mut m = ModelFile::new(&[64]);
        m.tensor("b", &[], &[0.5]).tensor("t", &[], &[1.0]);
        m.node(neuron_node(
            "n",
            "input",
            &[64],
            0,
            json!({"output": "binary"}),
            json!({"spike": "sigmoid4x", "quant": {"kind": "stochastic_round", "step": 1.0}}),
            json!({"beta": "b", "pos_threshold": "t"}),
        ));
        m.bytes()
    }

    /// Stochastic quantizers: reproducible under `seed`, streams independent draws.
    #[test]
    fn seeded_stochastic_rounding() {
        let bytes = stochastic_model();
        let run = |seed: u64| {
            let mut e = Engine::new(&bytes, 1).unwrap();
            e.seed(seed);
            let mut y = vec![0.0; 64];
            // mem = 1 -> sigmoid(0) = 0.5 -> 0 or 1 at random.
            e.step(&[1.0; 64], &mut y).unwrap();
            y
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
        assert!(a.iter().all(|&v| v == 0.0 || v == 1.0));
        let ones = a.iter().filter(|&&v| v == 1.0).count();
        assert!((16..=48).contains(&ones), "{ones}");
    }

    /// A run too large to check before its first step checks each step as it
    /// comes: a bad value in a late step still leaves the states and the
    /// generator as they were, and is reported at its flat index.
    #[test]
    fn a_large_run_refused_late_rolls_back() {
        let bytes = stochastic_model();
        let steps = CHECK_AHEAD / 64 + 3;
        let xs: Vec<f32> = (0..64 * steps).map(|i| (i % 7) as f32 * 0.3).collect();
        let mut ys = vec![0.0; xs.len()];
        let mut e = Engine::new(&bytes, 1).unwrap();
        e.step(&xs[..64], &mut ys[..64]).unwrap();
        let before = e.snapshot();
        let mut twin = e.clone();
        for index in [5, 64 * (steps - 2) + 9, xs.len() - 1] {
            let mut bad = xs.clone();
            bad[index] = f32::INFINITY;
            let err = e.run(&bad, &mut ys, steps).unwrap_err();
            assert!(
                matches!(err, Error::NonFinite { index: i, .. } if i == index),
                "{err}"
            );
            assert_eq!(e.snapshot(), before);
        }
        // The generator went back too: the next draws are the twin's.
        let (mut a, mut b) = (vec![0.0; 64 * 4], vec![0.0; 64 * 4]);
        e.run(&xs[..64 * 4], &mut a, 4).unwrap();
        twin.run(&xs[..64 * 4], &mut b, 4).unwrap();
        assert_eq!(a, b);
        assert!(a.contains(&1.0) && a.contains(&0.0));
    }

    /// A two-layer network checked against values computed by hand.
    #[test]
    fn linear_lif_by_hand() {
        // x [2] -> linear W = [[1, 1], [1, -1]], b = [0, 0.5] -> LIF (beta 0.5,
        // threshold 1, Heaviside) -> relu (no-op on spikes) -> output.
        let mut m = ModelFile::new(&[2]);
        m.tensor("w", &[2, 2], &[1.0, 1.0, 1.0, -1.0])
            .tensor("b", &[2], &[0.0, 0.5])
            .tensor("beta", &[], &[0.5])
            .tensor("th", &[2], &[1.0, 1.0]);
        m.node(
            json!({"name": "fc", "op": "linear", "inputs": ["input"], "shape": [2],
                      "tensors": {"weight": "w", "bias": "b"}}),
        );
        m.node(neuron_node(
            "lif",
            "fc",
            &[2],
            0,
            json!({"output": "binary"}),
            json!({"spike": "heaviside", "quant": {"kind": "identity"}}),
            json!({"beta": "beta", "pos_threshold": "th"}),
        ));
        let mut e = Engine::new(&m.bytes(), 1).unwrap();
        let mut y = [0.0; 2];
        // t1: fc = [0.6, 0.5 + 0.2] = [0.6, 0.7]: no spikes; mem [0.6, 0.7].
        e.step(&[0.4, 0.2], &mut y).unwrap();
        assert_eq!(y, [0.0, 0.0]);
        // t2: fc = [0.6, 0.7]; mem [0.9, 1.05] -> neuron 1 spikes, mem 0.05.
        e.step(&[0.4, 0.2], &mut y).unwrap();
        assert_eq!(y, [0.0, 1.0]);
        let mut mem = [0.0; 2];
        e.read_state("lif.mem", &mut mem).unwrap();
        assert!(
            (mem[0] - 0.9).abs() < 1e-6 && (mem[1] - 0.05).abs() < 1e-6,
            "{mem:?}"
        );
    }

    /// Large neuron layers split across threads unless they draw random
    /// numbers; either way every thread count gives the same bits.
    #[test]
    fn neuron_layers_split_only_when_deterministic() {
        let n = 300;
        let streams = NEURON_PARALLEL / n + 1;
        for quant in [
            json!({"kind": "identity"}),
            json!({"kind": "stochastic_round", "step": 1.0}),
            json!({"kind": "probabilistic"}),
        ] {
            let mut m = ModelFile::new(&[n]);
            m.tensor("beta", &[], &[0.6]).tensor("th", &[], &[0.4]);
            m.node(neuron_node(
                "lif",
                "input",
                &[n],
                0,
                json!({"output": "binary"}),
                json!({"spike": "sigmoid4x", "quant": quant}),
                json!({"beta": "beta", "pos_threshold": "th"}),
            ));
            let bytes = m.bytes();
            let mut one = Engine::new(&bytes, streams).unwrap();
            one.set_threads(1);
            let mut many = Engine::new(&bytes, streams).unwrap();
            many.set_threads(2);
            let draws = many.plan.neurons[0].draws();
            assert_eq!(draws, quant["kind"] != "identity");
            let xs: Vec<f32> = (0..one.input_len() * 4)
                .map(|i| ((i as f32) * 0.029).sin())
                .collect();
            let mut ya = vec![0.0; one.output_len() * 4];
            let mut yb = ya.clone();
            one.run(&xs, &mut ya, 4).unwrap();
            many.run(&xs, &mut yb, 4).unwrap();
            assert!(
                ya.iter().any(|v| *v != ya[0]),
                "a constant output tests nothing"
            );
            assert_eq!(bits(&ya), bits(&yb), "{quant}");
        }
    }

    /// Threads split the streams of the heavy layers; every stream gets the
    /// same bits as on one thread, with dense and event-driven linear layers
    /// and a convolution.
    #[test]
    fn threads_give_the_same_bits() {
        let mut m = ModelFile::new(&[2, 6, 6]);
        let conv_w: Vec<f32> = (0..8 * 2 * 9).map(|i| ((i as f32) * 0.37).sin()).collect();
        let w1: Vec<f32> = (0..288 * 300)
            .map(|i| ((i as f32) * 0.11).cos() * 0.1)
            .collect();
        let w2: Vec<f32> = (0..300 * 300)
            .map(|i| ((i as f32) * 0.07).sin() * 0.1)
            .collect();
        m.tensor("cw", &[8, 2, 3, 3], &conv_w)
            .tensor("w1", &[300, 288], &w1)
            .tensor("w2", &[300, 300], &w2)
            .tensor("beta", &[], &[0.5])
            .tensor("th", &[], &[0.3]);
        m.node(
            json!({"name": "conv", "op": "conv2d", "inputs": ["input"], "shape": [8, 6, 6],
                      "attrs": {"padding": [1, 1], "stride": [1, 1], "dilation": [1, 1], "groups": 1},
                      "tensors": {"weight": "cw"}}),
        );
        m.node(json!({"name": "flat", "op": "reshape", "inputs": ["conv"], "shape": [288]}));
        m.node(
            json!({"name": "fc1", "op": "linear", "inputs": ["flat"], "shape": [300],
                      "tensors": {"weight": "w1"}}),
        );
        m.node(neuron_node(
            "lif",
            "fc1",
            &[300],
            0,
            json!({"output": "binary"}),
            json!({"spike": "heaviside", "quant": {"kind": "identity"}}),
            json!({"beta": "beta", "pos_threshold": "th"}),
        ));
        m.node(
            json!({"name": "fc2", "op": "linear", "inputs": ["lif"], "shape": [300],
                      "tensors": {"weight": "w2"}}),
        );
        let bytes = m.bytes();
        let streams = 512;
        // Every heavy layer, the convolution included, is worth splitting.
        let conv_work = 8 * 36 * 2 * 9 * streams;
        assert!(conv_work.min(288 * 300 * streams) >= crate::kernels::PARALLEL_WORK);
        let mut clamped = Engine::new(&bytes, 2).unwrap();
        clamped.set_threads(usize::MAX);
        assert_eq!(clamped.threads(), cores());
        // Many streams are split by streams; one stream's linear layers (both
        // worth splitting) by columns, in shares that are not all alike.
        const _: () = assert!(288 * 300 >= crate::kernels::COLUMN_WORK);
        for streams in [streams, 1] {
            let mut one = Engine::new(&bytes, streams).unwrap();
            one.set_threads(1);
            let mut many = Engine::new(&bytes, streams).unwrap();
            many.use_threads(3);
            assert_eq!((one.threads(), many.threads()), (1, 3));
            let xs: Vec<f32> = (0..one.input_len() * 5)
                .map(|i| ((i as f32) * 0.013).sin() * 3.0)
                .collect();
            let (mut ya, mut yb) = (
                vec![0.0; one.output_len() * 5],
                vec![0.0; one.output_len() * 5],
            );
            one.run(&xs, &mut ya, 5).unwrap();
            many.run(&xs, &mut yb, 5).unwrap();
            assert!(ya.iter().any(|v| *v != 0.0));
            assert_eq!(bits(&ya), bits(&yb), "{streams} streams");
        }
    }
}
