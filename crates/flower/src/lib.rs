//! privpkt-flower: privpkt organisations as nodes of a federation run by Flower's own server.
//!
//! Flower (flwr ≥ 1.40) has no client SDK outside Python, and its SuperNode↔SuperLink protocol
//! is internal; this crate speaks it directly so a privpkt organisation needs no Python:
//!
//! - [`proto`]: prost types of the vendored flwr 1.40.0 `.proto` files (`proto/`, compiled
//!   by protox at build time);
//! - [`auth`]: the node's P-256 key and the signed headers every Fleet request carries;
//! - [`objects`] and [`records`]: Flower's content-addressed objects (Message, RecordDict,
//!   ArrayRecord, Array, ArrayChunk, ConfigRecord, MetricRecord) and the records they carry,
//!   arrays as `.npy` bytes;
//! - [`fleet`]: the Fleet API over HTTP(S) with retries, and the node's heartbeat thread;
//! - [`client`]: the [`client::FlClient`] trait (train / evaluate on arrays and a config) and
//!   the loop that pulls messages, answers them and pushes the replies (Message API records,
//!   and Flower's legacy `fitins` / `evaluateins` ones);
//! - [`secagg`]: Flower's SecAgg+ on the node, byte-compatible with flwr's `secaggplus_mod`;
//! - [`trainer`]: privpkt's networks behind that trait (local epochs, DP-SGD with an accountant
//!   kept across rounds, evaluation on the local test split).
//!
//! Pinned to flwr 1.40 (the first release with the HTTP Fleet API; 1.40–1.42 share it).

pub mod auth;
pub mod client;
pub mod error;
pub mod fleet;
pub mod objects;
pub mod records;
pub mod secagg;
pub mod trainer;

pub use client::{serve, ClipReport, EvalReply, Event, FlClient, ServeOptions, Timing, TrainReply};
pub use error::{FlowerError, Result};
pub use fleet::{Fleet, FleetConfig, Tls};
pub use records::{Array, ArrayRecord, ConfigRecord, MetricRecord, Record, RecordDict};

/// The flwr release whose protocol and `.proto` schema this crate implements.
pub const FLWR_VERSION: &str = "1.40.0";

/// flwr release series whose SuperLink this crate is tested against (their protos are
/// byte-identical).
pub const SUPPORTED_FLWR: [&str; 3] = ["1.40.", "1.41.", "1.42."];

/// prost types of Flower's `flwr.proto` package (vendored from flwr 1.40.0, Apache-2.0).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/flwr.proto.rs"));
}
