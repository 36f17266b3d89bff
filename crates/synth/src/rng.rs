//! Seed derivation and the few distributions the traffic models need.
//!
//! Every random stream is keyed by *what* it generates (class, file, flow
//! ordinal, purpose), never by thread or scheduling order, so output is
//! byte-identical however rayon splits the work.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

/// The generator used everywhere: fast, portable and reproducible.
pub(crate) type Rng = ChaCha8Rng;

/// Stream purposes, mixed into seeds so streams never collide.
pub(crate) const S_UNIT: u64 = 0x756e_6974;
pub(crate) const S_DNS: u64 = 0x0064_6e73;
pub(crate) const S_FILE_PLAN: u64 = 0x706c_616e;
pub(crate) const S_FILE_RT: u64 = 0x6669_6c65;
pub(crate) const S_BYTES: u64 = 0x6279_7465;

/// SplitMix64 finaliser: a cheap bijective mixer with good avalanche.
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed with a path of identifiers into one 64-bit seed.
pub(crate) fn derive(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(splitmix(seed), |h, &p| splitmix(h ^ splitmix(p)))
}

/// RNG for one (seed, identifiers...) stream.
pub(crate) fn rng_for(seed: u64, parts: &[u64]) -> Rng {
    Rng::seed_from_u64(derive(seed, parts))
}

/// Stable 64-bit hash of a class name (FNV-1a), so a class's data does not
/// change when other categories are added to or removed from the config.
pub(crate) fn name_key(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Log-normal sample given its median and log-space sigma.
pub(crate) fn lognormal(rng: &mut Rng, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    median * (sigma * z).exp()
}

/// Exponential sample with the given mean.
pub(crate) fn exp(rng: &mut Rng, mean: f64) -> f64 {
    let e: f64 = rng.sample(Exp1);
    mean * e
}

/// Normal sample.
pub(crate) fn normal(rng: &mut Rng, mean: f64, sd: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    mean + sd * z
}

/// Seconds (f64) to whole nanoseconds, clamping negatives to zero.
pub(crate) fn secs(s: f64) -> u64 {
    if s <= 0.0 {
        0
    } else {
        (s * 1e9) as u64
    }
}

/// Milliseconds (f64) to nanoseconds.
pub(crate) fn ms(m: f64) -> u64 {
    secs(m / 1000.0)
}

/// Integer sample from a log-normal, clamped to `[lo, hi]`.
pub(crate) fn size_ln(rng: &mut Rng, median: f64, sigma: f64, lo: u64, hi: u64) -> u64 {
    (lognormal(rng, median, sigma).round() as u64).clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn derive_depends_on_every_part() {
        let a = derive(1, &[2, 3]);
        assert_ne!(a, derive(1, &[3, 2]));
        assert_ne!(a, derive(2, &[2, 3]));
        assert_eq!(a, derive(1, &[2, 3]));
        assert_eq!(
            rng_for(9, &[1]).next_u64(),
            rng_for(9, &[1]).next_u64(),
            "same key must give the same stream"
        );
    }

    #[test]
    fn lognormal_median_is_close() {
        let mut r = rng_for(5, &[]);
        let mut v: Vec<f64> = (0..4001).map(|_| lognormal(&mut r, 100.0, 0.5)).collect();
        v.sort_by(f64::total_cmp);
        assert!((v[2000] - 100.0).abs() < 6.0, "median {}", v[2000]);
    }
}
