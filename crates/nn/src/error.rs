//! Errors of model building, training, model files and inference.

use std::path::PathBuf;

use privpkt_dataset::store::StoreError;

/// Everything that can go wrong in this crate: user input (datasets, model files, batches,
/// settings) is never a panic.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error(transparent)]
    Dataset(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A model file that cannot be read as a privpkt model.
    #[error("{path}: not a usable privpkt model file: {msg}")]
    CorruptModel { path: PathBuf, msg: String },
    /// A checkpoint that cannot be resumed.
    #[error("{path}: cannot resume from this checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// Model and dataset (or batch) do not fit together.
    #[error("model and data do not match: {0}")]
    Incompatible(String),
    /// Bad settings (architecture for this data, batch size, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Bad data in a dataset (unknown label, sample count, ...).
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    /// Weights that are not numbers any more.
    #[error("{0}")]
    Diverged(String),
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io {
        path: path.to_path_buf(),
        source,
    }
}
