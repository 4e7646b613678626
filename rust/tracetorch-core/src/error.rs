//! The one error type of the crate.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which side is at fault for an [`Error`]: the model file or the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The model file could not be read, parsed or validated.
    ModelFile,
    /// A call on a loaded engine got bad arguments (input size, stream index, states).
    Input,
}

/// Everything that can go wrong when loading a model or driving an engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model file could not be read from disk.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The operating system error.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (header, offsets, truncation).
    #[error("not a valid safetensors file: {0}")]
    SafeTensors(#[from] safetensors::SafeTensorError),
    /// The safetensors header has no `tracetorch` metadata entry.
    #[error(
        "the safetensors header has no `tracetorch` metadata: this is not a traceTorch model file"
    )]
    MissingMetadata,
    /// The `tracetorch` metadata is not valid JSON or does not have the expected structure.
    #[error("invalid `tracetorch` metadata document: {0}")]
    Document(String),
    /// The document's `format` field is not `"tracetorch"`.
    #[error("expected format \"tracetorch\", found {found}")]
    Format {
        /// The value found in the file.
        found: String,
    },
    /// The document's `version` is not one this engine knows.
    #[error("unsupported format version: expected 1, found {found}")]
    Version {
        /// The value found in the file.
        found: String,
    },
    /// Two nodes share a name, or a node is called `input`.
    #[error("node `{node}`: the name is already used by an earlier value")]
    DuplicateName {
        /// The repeated name.
        node: String,
    },
    /// A node has an op this engine does not know.
    #[error("node `{node}`: unknown op `{op}`")]
    UnknownOp {
        /// The node.
        node: String,
        /// The op found.
        op: String,
    },
    /// A node reads a value that is not defined before it (unknown name, forward reference or cycle).
    #[error("node `{node}`: input `{input}` is not defined by an earlier node (unknown value, wrong order or cycle)")]
    UndefinedInput {
        /// The node.
        node: String,
        /// The name it reads.
        input: String,
    },
    /// The graph output names a value that does not exist.
    #[error("the graph output `{output}` is not a defined value")]
    UndefinedOutput {
        /// The name found in `output`.
        output: String,
    },
    /// A node has the wrong number of inputs for its op.
    #[error("node `{node}` ({op}): expected {expected} inputs, found {found}")]
    InputCount {
        /// The node.
        node: String,
        /// The node's op.
        op: String,
        /// What the op takes.
        expected: String,
        /// How many were listed.
        found: usize,
    },
    /// A required tensor role is missing from a node.
    #[error("node `{node}`: missing tensor role `{role}`")]
    MissingRole {
        /// The node.
        node: String,
        /// The role expected.
        role: String,
    },
    /// A node lists a tensor role its op does not use.
    #[error("node `{node}`: unexpected tensor role `{role}` (expected one of: {expected})")]
    UnexpectedRole {
        /// The node.
        node: String,
        /// The role found.
        role: String,
        /// The roles the op takes.
        expected: String,
    },
    /// A node refers to a tensor name absent from the file.
    #[error("node `{node}`: tensor `{tensor}` (role `{role}`) is not in the file")]
    MissingTensor {
        /// The node.
        node: String,
        /// The role.
        role: String,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor is not float32.
    #[error("tensor `{tensor}`: expected dtype F32, found {found}")]
    Dtype {
        /// The tensor name.
        tensor: String,
        /// The dtype found.
        found: String,
    },
    /// A tensor holds a NaN or an infinity.
    #[error("tensor `{tensor}`: expected finite values, found {value} at flat index {index}")]
    NonFiniteWeight {
        /// The tensor name.
        tensor: String,
        /// Flat index of the first non-finite value.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A tensor has the wrong shape for its role.
    #[error("node `{node}`: tensor role `{role}` should have shape {expected}, found {found:?}")]
    TensorShape {
        /// The node.
        node: String,
        /// The role.
        role: String,
        /// The expected shape (description).
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor is used by more than one role.
    #[error("node `{node}`: tensor `{tensor}` is already used by another role; every tensor is used exactly once")]
    TensorReused {
        /// The node that uses it a second time.
        node: String,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor of the file is used by no node.
    #[error("tensor `{tensor}` is not used by any node; every tensor is used exactly once")]
    UnusedTensor {
        /// The tensor name.
        tensor: String,
    },
    /// An attribute is missing or has a wrong type or value.
    #[error("node `{node}`: attribute `{attr}`: expected {expected}, found {found}")]
    Attr {
        /// The node.
        node: String,
        /// The attribute.
        attr: String,
        /// What is expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The node's inputs do not fit its op (ranks, sizes, kernels larger than the input).
    #[error("node `{node}`: {reason}")]
    InvalidShape {
        /// The node (or `input` for the graph input).
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The declared `shape` of a node differs from the shape its op computes.
    #[error(
        "node `{node}`: declared shape {declared:?} differs from the computed shape {computed:?}"
    )]
    ShapeMismatch {
        /// The node.
        node: String,
        /// The shape the op computes from its inputs.
        computed: Vec<usize>,
        /// The shape written in the file.
        declared: Vec<usize>,
    },
    /// The model (or the model with this many streams) exceeds the engine's size limits.
    #[error("{what} is too large: {found} exceeds the limit of {limit} floats")]
    TooLarge {
        /// What was measured.
        what: String,
        /// The size found (or "overflow").
        found: String,
        /// The limit.
        limit: usize,
    },
    /// One step of the model would take more arithmetic than [`crate::MAX_WORK`] (a hang, not a model).
    #[error("one step of the model would take {found} multiply-adds per stream, above the limit of {limit}")]
    TooMuchWork {
        /// The work found (or "an overflowing amount").
        found: String,
        /// The limit.
        limit: usize,
    },
    /// The safetensors header is larger than [`crate::MAX_HEADER_BYTES`].
    #[error(
        "the safetensors header is too large: {found} bytes exceeds the limit of {limit} bytes"
    )]
    HeaderTooLarge {
        /// The header length the file declares.
        found: u64,
        /// The limit.
        limit: usize,
    },
    /// `TRACETORCH_SIMD` names an instruction set this CPU does not run.
    #[error(
        "TRACETORCH_SIMD={value:?}: expected `auto` or an instruction set this CPU runs: {}",
        available.join(", ")
    )]
    SimdSetting {
        /// The value given.
        value: String,
        /// The instruction sets this CPU runs.
        available: Vec<&'static str>,
    },
    /// An engine needs at least one stream.
    #[error("the number of streams must be at least 1, found {found}")]
    Streams {
        /// The value given.
        found: usize,
    },
    /// So many streams that the engine would exceed [`crate::MAX_FLOATS`].
    #[error("{streams} streams need {found} floats, above the limit of {limit}")]
    TooManyStreams {
        /// The number of streams asked for.
        streams: usize,
        /// The floats they would need (or "an overflowing size").
        found: String,
        /// The limit.
        limit: usize,
    },
    /// A buffer passed to the engine has the wrong number of floats.
    #[error("{what}: expected {expected} floats, found {found}")]
    Length {
        /// Which argument.
        what: String,
        /// The expected number of floats.
        expected: usize,
        /// The number given.
        found: usize,
    },
    /// An input or state value is NaN or infinite; the engine refuses it so
    /// that no state is poisoned (nothing changes).
    #[error("{what}: expected finite values, found {value} at flat index {index}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Flat index of the first non-finite value.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A stream index is out of range.
    #[error("stream index {index} is out of range for an engine of {streams} streams")]
    StreamIndex {
        /// The index given.
        index: usize,
        /// The number of streams.
        streams: usize,
    },
    /// A state name is not one of the engine's states.
    #[error("unknown state `{name}`")]
    UnknownState {
        /// The name given.
        name: String,
    },
    /// A full state snapshot lacks a state, or names one twice.
    #[error("state `{name}`: {reason}")]
    Snapshot {
        /// The state.
        name: String,
        /// Missing or duplicated.
        reason: String,
    },
    /// A state array has the wrong shape.
    #[error("state `{name}`: expected shape {expected:?}, found {found:?}")]
    StateShape {
        /// The state.
        name: String,
        /// The shape `[streams, *state shape]`.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },
}

impl Error {
    /// Whether the error comes from the model file or from the caller's arguments.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. }
            | Error::SafeTensors(_)
            | Error::MissingMetadata
            | Error::Document(_)
            | Error::Format { .. }
            | Error::Version { .. }
            | Error::DuplicateName { .. }
            | Error::UnknownOp { .. }
            | Error::UndefinedInput { .. }
            | Error::UndefinedOutput { .. }
            | Error::InputCount { .. }
            | Error::MissingRole { .. }
            | Error::UnexpectedRole { .. }
            | Error::MissingTensor { .. }
            | Error::Dtype { .. }
            | Error::TensorShape { .. }
            | Error::NonFiniteWeight { .. }
            | Error::TensorReused { .. }
            | Error::UnusedTensor { .. }
            | Error::Attr { .. }
            | Error::InvalidShape { .. }
            | Error::ShapeMismatch { .. }
            | Error::TooLarge { .. }
            | Error::TooMuchWork { .. }
            | Error::HeaderTooLarge { .. } => ErrorKind::ModelFile,
            Error::Streams { .. }
            | Error::SimdSetting { .. }
            | Error::TooManyStreams { .. }
            | Error::Length { .. }
            | Error::NonFinite { .. }
            | Error::StreamIndex { .. }
            | Error::UnknownState { .. }
            | Error::Snapshot { .. }
            | Error::StateShape { .. } => ErrorKind::Input,
        }
    }
}
