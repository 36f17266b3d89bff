//! Train / validation / test splits by group: flow (default), capture, or — only on request
//! and labelled as such — packet.
//!
//! Splitting by packet puts packets of one flow on both sides, so a model can recognise flows
//! instead of applications; the papers did that (see the evaluation protocol). Groups are
//! stratified by class: each class's groups are shuffled with a seeded generator, the first
//! ones seed test, validation and train so every class is evaluated where it has enough groups,
//! and the rest go wherever the split is furthest below its share of that class's samples.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "val" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

/// What a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SplitUnit {
    #[default]
    Flow,
    Capture,
    /// Comparable to the papers, not an honest estimate.
    Packet,
}

impl std::str::FromStr for SplitUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flow" => Ok(SplitUnit::Flow),
            "capture" => Ok(SplitUnit::Capture),
            "packet" => Ok(SplitUnit::Packet),
            _ => Err(format!("split unit must be flow, capture or packet, not `{s}`")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    pub unit: SplitUnit,
    /// Shares of train, val, test (sum 1).
    pub fractions: [f64; 3],
    pub seed: u64,
}

impl SplitConfig {
    pub fn validate(&self) -> Result<(), String> {
        let s: f64 = self.fractions.iter().sum();
        if self.fractions.iter().any(|f| !(0.0..=1.0).contains(f)) || (s - 1.0).abs() > 1e-6 {
            return Err(format!(
                "split fractions must be in [0,1] and sum to 1, got {:?}",
                self.fractions
            ));
        }
        if self.fractions[0] <= 0.0 {
            return Err("the train fraction must be > 0".into());
        }
        Ok(())
    }
}

/// A split group: a flow or a capture, with its sample count and (majority) class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub id: u64,
    pub samples: u64,
    pub class: u32,
}

/// Assign every group a split (stratified by class, seeded). Returns the splits by group id and
/// warnings about classes that cannot be evaluated honestly. Memory is per group, not per sample.
pub fn assign_groups(
    groups: &[Group],
    class_names: &[String],
    cfg: &SplitConfig,
) -> (std::collections::HashMap<u64, Split>, Vec<String>) {
    use std::collections::BTreeMap;
    let mut by_class: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for g in groups {
        by_class.entry(g.class).or_default().push((g.id, g.samples));
    }
    let mut warnings = Vec::new();
    let mut out = std::collections::HashMap::with_capacity(groups.len());
    let unit = match cfg.unit {
        SplitUnit::Flow => "flow",
        SplitUnit::Capture => "capture",
        SplitUnit::Packet => "packet",
    };
    for (class, mut gs) in by_class {
        // Group ids are sorted first so the result does not depend on the caller's order.
        gs.sort_unstable();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        gs.shuffle(&mut rng);
        let total: u64 = gs.iter().map(|g| g.1).sum();
        let mut have = [0u64; 3];
        let name = class_names.get(class as usize).map(String::as_str).unwrap_or("?");
        // Seed the splits that should exist: test first (an unevaluated class is the worst
        // outcome), then val, then train.
        let mut order: Vec<usize> = Vec::new();
        if cfg.fractions[2] > 0.0 {
            order.push(2);
        }
        if cfg.fractions[1] > 0.0 {
            order.push(1);
        }
        order.push(0);
        if gs.len() < order.len() {
            warnings.push(format!(
                "class `{name}` has {} {unit}(s): not enough to appear in every split{}",
                gs.len(),
                if gs.len() == 1 { " (train only)" } else { "" }
            ));
            // With too few groups, train comes first, then test.
            order = if gs.len() == 1 { vec![0] } else { vec![0, 2] };
        }
        for (i, (g, n)) in gs.iter().enumerate() {
            let s = if i < order.len() {
                order[i]
            } else {
                // Furthest below its target share.
                (0..3)
                    .filter(|&s| cfg.fractions[s] > 0.0)
                    .max_by(|&a, &b| {
                        let da = cfg.fractions[a] * total as f64 - have[a] as f64;
                        let db = cfg.fractions[b] * total as f64 - have[b] as f64;
                        da.partial_cmp(&db).unwrap_or(std::cmp::Ordering::Equal).then(b.cmp(&a))
                    })
                    .unwrap_or(0)
            };
            have[s] += n;
            out.insert(*g, Split::ALL[s]);
        }
    }
    (out, warnings)
}

/// Split of one sample when splitting by packet: a seeded hash of its index, so it needs no
/// memory; shares match the fractions in expectation.
pub fn packet_split(seed: u64, sample: u64, fractions: &[f64; 3]) -> Split {
    let mut z = seed ^ sample.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    if u < fractions[0] {
        Split::Train
    } else if u < fractions[0] + fractions[1] {
        Split::Val
    } else {
        Split::Test
    }
}

/// Assign every sample a split. `groups[i]` is the group of sample i, `labels[i]` its class;
/// a group's class is its majority class (ties: lowest id).
pub fn assign(groups: &[u64], labels: &[u32], class_names: &[String], cfg: &SplitConfig) -> (Vec<Split>, Vec<String>) {
    use std::collections::BTreeMap;
    assert_eq!(groups.len(), labels.len());
    let mut info: BTreeMap<u64, (u64, BTreeMap<u32, u64>)> = BTreeMap::new();
    for (&g, &l) in groups.iter().zip(labels) {
        let e = info.entry(g).or_default();
        e.0 += 1;
        *e.1.entry(l).or_default() += 1;
    }
    let gs: Vec<Group> = info
        .iter()
        .map(|(&id, (n, hist))| Group {
            id,
            samples: *n,
            class: majority(hist.iter().map(|(c, k)| (*c, *k))),
        })
        .collect();
    let (map, warnings) = assign_groups(&gs, class_names, cfg);
    (groups.iter().map(|g| map[g]).collect(), warnings)
}

/// Most frequent class among (class, count) pairs; ties go to the lowest class id.
pub fn majority(counts: impl Iterator<Item = (u32, u64)>) -> u32 {
    counts
        .filter(|c| c.1 > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|c| c.0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn groups_never_straddle_splits_and_shares_are_close() {
        // 2 classes × 50 flows × 1..=20 packets
        let (mut groups, mut labels) = (Vec::new(), Vec::new());
        for g in 0..100u64 {
            for _ in 0..(g % 20 + 1) {
                groups.push(g);
                labels.push((g % 2) as u32);
            }
        }
        let cfg = SplitConfig {
            unit: SplitUnit::Flow,
            fractions: [0.7, 0.1, 0.2],
            seed: 7,
        };
        let (s, w) = assign(&groups, &labels, &names(2), &cfg);
        assert!(w.is_empty());
        let mut seen = std::collections::HashMap::new();
        for (g, sp) in groups.iter().zip(&s) {
            assert_eq!(*seen.entry(*g).or_insert(*sp), *sp, "group {g} split across");
        }
        for c in 0..2u32 {
            let n = labels.iter().filter(|&&l| l == c).count() as f64;
            for (i, sp) in Split::ALL.iter().enumerate() {
                let k = labels.iter().zip(&s).filter(|(l, x)| **l == c && *x == sp).count() as f64;
                assert!((k / n - cfg.fractions[i]).abs() < 0.06, "class {c} {sp:?}: {}", k / n);
            }
        }
        // Same seed, same answer; another seed, another answer.
        assert_eq!(assign(&groups, &labels, &names(2), &cfg).0, s);
        let other = SplitConfig { seed: 8, ..cfg };
        assert_ne!(assign(&groups, &labels, &names(2), &other).0, s);
    }

    #[test]
    fn small_classes_warn_and_keep_test_when_possible() {
        let groups = vec![1, 2, 3, 3, 4];
        let labels = vec![0, 1, 1, 1, 2];
        let cfg = SplitConfig {
            unit: SplitUnit::Capture,
            fractions: [0.6, 0.2, 0.2],
            seed: 1,
        };
        let (s, w) = assign(&groups, &labels, &names(3), &cfg);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("c0") && w[0].contains("train only"));
        // class 1 has two groups: one train, one test
        let c1: Vec<Split> = (1..4).map(|i| s[i]).collect();
        assert!(c1.contains(&Split::Train) && c1.contains(&Split::Test));
    }

    #[test]
    fn packet_split_shares_and_determinism() {
        let f = [0.7, 0.1, 0.2];
        let n = 100_000u64;
        let mut c = [0u64; 3];
        for i in 0..n {
            c[packet_split(9, i, &f) as usize] += 1;
        }
        for k in 0..3 {
            assert!((c[k] as f64 / n as f64 - f[k]).abs() < 0.01, "{c:?}");
        }
        assert_eq!(packet_split(9, 5, &f), packet_split(9, 5, &f));
    }

    #[test]
    fn majority_ties_go_to_lowest_class() {
        assert_eq!(majority([(3, 5), (1, 5), (2, 4)].into_iter()), 1);
        assert_eq!(majority([(3, 6), (1, 5)].into_iter()), 3);
    }
}
