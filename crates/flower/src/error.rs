//! What can go wrong between a node and the SuperLink.

use std::time::Duration;

/// Errors of the Flower transport and codecs.
#[derive(Debug, thiserror::Error)]
pub enum FlowerError {
    /// The SuperLink could not be reached (connection refused, DNS, TLS, timeouts) even after
    /// the bounded retries.
    #[error("cannot reach the SuperLink at {url} ({rpc}) after {attempts} attempts over {:.1} s: {last}", waited.as_secs_f64())]
    Unreachable {
        url: String,
        rpc: &'static str,
        attempts: u32,
        waited: Duration,
        last: String,
    },
    /// The SuperLink answered with an error status.
    #[error("SuperLink refused {rpc}: HTTP {status}: {detail}")]
    Http {
        rpc: &'static str,
        status: u16,
        detail: String,
    },
    /// A reply or object that does not follow Flower's formats.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Settings that cannot work (address, certificates, intervals).
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = FlowerError> = std::result::Result<T, E>;

pub(crate) fn protocol(msg: impl Into<String>) -> FlowerError {
    FlowerError::Protocol(msg.into())
}
