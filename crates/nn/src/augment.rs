//! Augmented views of a flow's behaviour: the same flow as the network might meet it on
//! another path, host or day.
//!
//! Every view of a raw behaviour sample (layout of `privpkt_capture::behaviour`):
//! - **time dilation**: every gap and every time statistic scaled by one factor
//!   `exp(U(−d, d))` (rates by its inverse): a slower or faster path;
//! - **jitter**: each series gap scaled by its own `exp(N(0, j²))`: queueing;
//! - with probability `p` each: a **dropped** packet (a row removed, later rows move up), a
//!   **duplicated** packet (a retransmission: a row repeated with a near-zero gap, later rows
//!   move down), and **truncation** to the first `m ≥ N/2` packets (a flow decided early).
//!
//! Statistics other than times are left as they are (they describe the whole flow, of which the
//! series shows only the start). Non-private training draws one view per sample and step; under
//! DP-SGD a unit's gradient is the mean over several views before clipping ("augmentation
//! multiplicity", De et al. 2022), which costs no privacy: the views are of the same unit.

use privpkt_capture::behaviour::StatKind;
use privpkt_capture::{SERIES_CHANNELS, STATS};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::arch::InputSpec;
use crate::error::{NnError, Result};

/// Augmentation settings (stored with the training configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Views per sample and step: 1 in plain training; under DP-SGD their gradients are averaged
    /// before the unit is clipped.
    pub views: usize,
    /// Half-width of the log time-dilation factor.
    pub dilation: f64,
    /// Standard deviation of the log jitter of each gap.
    pub jitter: f64,
    /// Probability of each of drop, duplicate and truncate.
    pub p_edit: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            views: 1,
            dilation: 0.3,
            jitter: 0.1,
            p_edit: 0.2,
        }
    }
}

impl Augment {
    pub fn validate(&self, input: &InputSpec) -> Result<()> {
        let bad = |m: String| Err(NnError::Config(format!("augmentation: {m}")));
        if !matches!(input, InputSpec::Behaviour { .. }) {
            return bad(format!(
                "defined for flow behaviour samples (series, flowstats), not {}",
                input.representation()
            ));
        }
        if self.views == 0 || self.views > 64 {
            return bad(format!("views must be 1 to 64, got {}", self.views));
        }
        for (name, v, hi) in [
            ("dilation", self.dilation, 3.0),
            ("jitter", self.jitter, 3.0),
            ("edit probability", self.p_edit, 1.0),
        ] {
            if !(v.is_finite() && (0.0..=hi).contains(&v)) {
                return bad(format!("{name} must be in [0, {hi}], got {v}"));
            }
        }
        Ok(())
    }

    /// Write a view of the raw behaviour sample `raw` into `out` (same length).
    pub fn view<R: Rng>(&self, input: &InputSpec, raw: &[f32], out: &mut [f32], rng: &mut R) {
        out.copy_from_slice(raw);
        let Some((packets, payload_bytes, stats)) = input.behaviour_layout() else {
            return;
        };
        let c = SERIES_CHANNELS + payload_bytes;
        let series = packets * c;
        let factor = if self.dilation > 0.0 {
            rng.random_range(-self.dilation..=self.dilation).exp() as f32
        } else {
            1.0
        };
        // Rows present (a prefix: the series is the flow's first packets).
        let mut len = (0..packets).take_while(|&i| out[i * c] > 0.0).count();
        if packets > 0 {
            let rows = &mut out[..series];
            if len > 2 && rng.random_bool(self.p_edit) {
                let i = rng.random_range(1..len);
                rows.copy_within((i + 1) * c..len * c, i * c);
                rows[(len - 1) * c..len * c].fill(0.0);
                len -= 1;
            }
            if len > 1 && len < packets && rng.random_bool(self.p_edit) {
                let i = rng.random_range(1..len);
                rows.copy_within(i * c..len * c, (i + 1) * c);
                // The copy follows its original after a short gap.
                rows[(i + 1) * c + 4] = rows[i * c + 4].min(1000.0) * 0.1;
                len += 1;
            }
            if len > 2 && rng.random_bool(self.p_edit) {
                let m = rng.random_range(len.div_ceil(2)..len);
                rows[m * c..len * c].fill(0.0);
                len = m;
            }
            let jitter = Normal::new(0.0, self.jitter.max(0.0)).expect("finite, non-negative σ");
            for row in rows[..len * c].chunks_exact_mut(c) {
                let j = if self.jitter > 0.0 {
                    (jitter.sample(rng) as f32).exp()
                } else {
                    1.0
                };
                row[4] *= factor * j;
            }
        }
        for (v, f) in out[series..series + stats].iter_mut().zip(STATS.iter()) {
            match f.kind {
                StatKind::Millis => *v *= factor,
                _ if f.name.ends_with("_per_s") => *v /= factor,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn series(rows: &[[f32; SERIES_CHANNELS]], packets: usize) -> Vec<f32> {
        let mut v: Vec<f32> = rows.iter().flatten().copied().collect();
        v.resize(packets * SERIES_CHANNELS, 0.0);
        v
    }

    #[test]
    fn views_keep_the_layout_and_scale_only_time() {
        let input = InputSpec::Behaviour {
            packets: 6,
            payload_bytes: 0,
            stats: 0,
            bins: crate::arch::PLE_BINS,
        };
        let row = |dir: f32, size: f32, iat: f32| [1.0, dir, size, size - 40.0, iat, 0., 0., 0., 0., 1., 0.];
        let raw = series(
            &[
                row(1.0, 100.0, 0.0),
                row(-1.0, 1500.0, 2000.0),
                row(1.0, 60.0, 500.0),
                row(-1.0, 900.0, 70.0),
            ],
            6,
        );
        let aug = Augment {
            p_edit: 0.0,
            ..Augment::default()
        };
        let mut out = vec![0.0; raw.len()];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        aug.view(&input, &raw, &mut out, &mut rng);
        for (r, o) in raw.chunks(SERIES_CHANNELS).zip(out.chunks(SERIES_CHANNELS)) {
            // Everything but the gap is untouched; gaps stay ≥ 0 and within the dilation × jitter range.
            assert_eq!(r[..4], o[..4]);
            assert_eq!(r[5..], o[5..]);
            assert!(o[4] >= 0.0 && o[4] <= r[4] * 3.0 && o[4] >= r[4] / 3.0, "{r:?} → {o:?}");
        }
        // Edits always on: still a prefix of present rows, never longer than the series.
        let always = Augment {
            p_edit: 1.0,
            ..Augment::default()
        };
        for s in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(s);
            always.view(&input, &raw, &mut out, &mut rng);
            let present: Vec<bool> = out.chunks(SERIES_CHANNELS).map(|r| r[0] > 0.0).collect();
            let n = present.iter().take_while(|&&p| p).count();
            assert!(present[n..].iter().all(|&p| !p), "{present:?}");
            assert!((2..=5).contains(&n), "{n}");
            assert!(out.chunks(SERIES_CHANNELS).skip(n).all(|r| r.iter().all(|&v| v == 0.0)));
        }
    }

    #[test]
    fn only_behaviour_samples_augment() {
        let a = Augment::default();
        assert!(a.validate(&InputSpec::DeepPacket { len: 1500 }).is_err());
        let b = InputSpec::Behaviour {
            packets: 4,
            payload_bytes: 0,
            stats: 0,
            bins: crate::arch::PLE_BINS,
        };
        assert!(a.validate(&b).is_ok());
        assert!(Augment { views: 0, ..a }.validate(&b).is_err());
        assert!(Augment { jitter: f64::NAN, ..a }.validate(&b).is_err());
    }
}
