//! privpkt-nn: Deep Packet (CNN, stacked autoencoder) and FlowPic CNN models on burn, their
//! training, evaluation metrics, the header-only baseline and inference.
//!
//! Models run on burn's pure-Rust CPU backend (Flex), or a GPU backend built in with the
//! `cuda` / `wgpu` features ([`device`]); parameters live in plain vectors owned
//! by the trainer (see [`model`]), and a trained model is one safetensors file
//! ([`modelfile`]).

pub mod arch;
pub mod archs;
pub mod augment;
pub mod baseline;
pub mod data;
pub mod device;
pub mod dp;
pub mod error;
pub mod init;
pub mod metrics;
pub mod model;
pub mod modelfile;
pub mod optim;
pub mod recipe;
mod tensors;
pub mod train;

pub use arch::{Arch, InputSpec, Scaling};
pub use data::{load_split, RawBatch, SampleData, Samples};
pub use dp::{DpConfig, PrivacyUnit};
pub use error::{NnError, Result};
pub use model::{ConvImpl, Network, ParamSpec, Params};
pub use modelfile::{
    check_compatible, check_out, load_model, manifest_sha256, preprocessing_differences, save_model, LoadedModel,
    Model, ModelMeta,
};
pub use optim::{OptimState, Optimizer};
pub use train::{
    train, train_samples, EpochRecord, Schedule, StepStats, TrainConfig, TrainData, TrainEvent, TrainOutcome,
};

/// Keep freed memory in the process instead of returning it to the OS after every tensor.
///
/// glibc's malloc trims the heap top and unmaps large blocks as soon as they are freed, so
/// every training step page-faults its ~100 MB of activations in again; measured here that
/// costs a third of a step. Call once at start-up, before any threads allocate. No-op off
/// Linux/glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before heavy allocation.
    unsafe {
        // mallopt takes a C int: 2 GiB − 1 is the largest trim threshold it accepts.
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
    }
}
