//! Gaussian noise for DP-SGD, reproducible independently of the thread count.
//!
//! The buffer is cut into [`NOISE_CHUNK`]-element chunks; chunk `i` draws from its own ChaCha20
//! stream `stream_base + i` (RFC 8439 nonce) starting at word 0, so every element's noise is a
//! pure function of (seed, stream, position) and rayon may fill chunks in any order. ChaCha20
//! is a CSPRNG: with an OS seed an adversary cannot predict or replay the noise, which DP
//! assumes. Standard normals are drawn in f64 (`rand_distr::StandardNormal`, ziggurat), scaled
//! and added in f64, then rounded once to f32.
//!
//! Caveat (Mironov 2012, "On Significance of the Least Significant Bits for Differential
//! Privacy", CCS): floating-point samplers do not produce the continuous distribution the proof
//! assumes; the pattern of representable outputs can reveal the unnoised value, breaking the
//! guarantee in the worst case. This implementation does not defend against that attack
//! (defences: snapping, or the discrete Gaussian of Canonne, Kamath & Steinke 2020). The
//! practical risk in DP-SGD, where only the final model is released after many noisy steps, is
//! considered low, but the formal ε assumes exact Gaussians.

use std::fmt;

use rand::rngs::OsRng;
use rand::{RngCore, SeedableRng, TryRngCore};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{PrivacyError, Result};

/// Elements per ChaCha20 stream (64 Ki).
pub const NOISE_CHUNK: usize = 1 << 16;

/// Number of streams (chunks) a buffer of `len` elements consumes.
pub fn streams_needed(len: usize) -> u64 {
    len.div_ceil(NOISE_CHUNK) as u64
}

/// Adds N(0, `std`²) noise to every element of `buf`, element `j` of chunk `i` drawn from
/// stream `stream_base + i` of ChaCha20 keyed with `seed`. Output is identical for any rayon
/// thread count. Consecutive calls must use disjoint stream ranges
/// (`stream_base += streams_needed(len)`; [`NoiseGenerator`] does it), or noise repeats.
pub fn add_gaussian_noise(buf: &mut [f32], std: f32, seed: &[u8; 32], stream_base: u64) -> Result<()> {
    if !std.is_finite() || std < 0.0 {
        return Err(PrivacyError::InvalidParameter {
            name: "noise std",
            value: f64::from(std),
            reason: "must be finite and >= 0",
        });
    }
    let chunks = streams_needed(buf.len());
    if stream_base.checked_add(chunks).is_none() {
        return Err(PrivacyError::InvalidParameter {
            name: "stream_base",
            value: stream_base as f64,
            reason: "stream counter would overflow u64",
        });
    }
    let std = f64::from(std);
    buf.par_chunks_mut(NOISE_CHUNK).enumerate().for_each(|(i, chunk)| {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        rng.set_stream(stream_base + i as u64);
        rng.set_word_pos(0);
        for x in chunk {
            let z: f64 = StandardNormal.sample(&mut rng);
            *x = (f64::from(*x) + std * z) as f32;
        }
    });
    Ok(())
}

/// Where a [`NoiseGenerator`]'s key came from; record it next to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedSource {
    /// OS entropy: not reproducible, the right choice for real private training.
    Os,
    /// Expanded from this u64 (`SeedableRng::seed_from_u64`): reproducible experiments only.
    Fixed(u64),
    /// A caller-supplied 32-byte key.
    Explicit,
}

/// The two secret keys of a private training run: one for the noise, one for the sampling
/// (which units or clients join a step must stay secret too). From OS entropy, or expanded
/// from `seed` for a reproducible experiment (not for a real claim: 64 bits can be searched).
pub fn run_keys(seed: Option<u64>) -> Result<([u8; 32], [u8; 32])> {
    let master = match seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s).get_seed(),
        None => {
            let mut m = [0u8; 32];
            OsRng
                .try_fill_bytes(&mut m)
                .map_err(|e| PrivacyError::Entropy(e.to_string()))?;
            m
        }
    };
    let mut m = ChaCha20Rng::from_seed(master);
    let (mut noise, mut sampling) = ([0u8; 32], [0u8; 32]);
    m.fill_bytes(&mut noise);
    m.fill_bytes(&mut sampling);
    Ok((noise, sampling))
}

/// Stateful noise source for a training run: one key, and a stream counter that advances by
/// [`streams_needed`] per call so no noise is ever reused.
///
/// `Debug` does not print the key: leaking it would let anyone subtract the noise.
pub struct NoiseGenerator {
    seed: [u8; 32],
    source: SeedSource,
    next_stream: u64,
}

impl fmt::Debug for NoiseGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseGenerator")
            .field("source", &self.source)
            .field("next_stream", &self.next_stream)
            .finish_non_exhaustive()
    }
}

impl NoiseGenerator {
    /// Key from the operating system's CSPRNG (`getrandom` via `OsRng`). Use for real runs.
    pub fn from_os_entropy() -> Result<Self> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| PrivacyError::Entropy(e.to_string()))?;
        Ok(Self {
            seed,
            source: SeedSource::Os,
            next_stream: 0,
        })
    }

    /// Key derived from a u64, for reproducible experiments (not for a privacy claim an
    /// adversary could attack: 64 bits of key can be searched).
    pub fn from_u64(seed: u64) -> Self {
        Self {
            seed: ChaCha20Rng::seed_from_u64(seed).get_seed(),
            source: SeedSource::Fixed(seed),
            next_stream: 0,
        }
    }

    /// Key supplied by the caller.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            seed,
            source: SeedSource::Explicit,
            next_stream: 0,
        }
    }

    /// How the key was obtained.
    pub fn source(&self) -> SeedSource {
        self.source
    }

    /// First stream the next call will use (persist it to resume a run without reusing noise).
    pub fn next_stream(&self) -> u64 {
        self.next_stream
    }

    /// Sets the stream counter, e.g. when resuming a run from a checkpoint.
    pub fn set_next_stream(&mut self, stream: u64) {
        self.next_stream = stream;
    }

    /// Adds N(0, `std`²) to `buf` and advances the stream counter.
    pub fn add_noise(&mut self, buf: &mut [f32], std: f32) -> Result<()> {
        add_gaussian_noise(buf, std, &self.seed, self.next_stream)?;
        self.next_stream += streams_needed(buf.len());
        Ok(())
    }
}
