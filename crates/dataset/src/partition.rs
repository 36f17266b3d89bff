//! Client partitions for federated learning: which organisation holds which flows.
//!
//! Partitions are made of whole groups (flows, or captures), never of single samples: an
//! organisation sees a flow whole, and a flow split across clients would leak between them
//! (PrivPkt scattered packets into random shards and then dealt the shards out). Three schemes:
//!
//! - `iid`: groups shuffled within each class and dealt round-robin, so every client gets the
//!   same class mix;
//! - `dirichlet:α`: for each class, client shares drawn from Dirichlet(α) (Hsu et al. 2019);
//!   α = 0.1 leaves most clients with a few classes, α = 100 is close to iid;
//! - `by-capture`: every capture (site) goes whole to one client, balancing sample counts.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

/// How a dataset is divided among clients.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scheme {
    Iid,
    Dirichlet { alpha: f64 },
    ByCapture,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Iid => f.write_str("iid"),
            Scheme::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Scheme::ByCapture => f.write_str("by-capture"),
        }
    }
}

impl FromStr for Scheme {
    type Err = PartitionError;
    fn from_str(s: &str) -> Result<Scheme, PartitionError> {
        let bad = || PartitionError::Scheme(s.to_string());
        match s {
            "iid" => Ok(Scheme::Iid),
            "by-capture" => Ok(Scheme::ByCapture),
            _ => {
                let a = s.strip_prefix("dirichlet:").ok_or_else(bad)?;
                let alpha: f64 = a.parse().map_err(|_| bad())?;
                if alpha.is_finite() && alpha > 0.0 {
                    Ok(Scheme::Dirichlet { alpha })
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Why a partition cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown partition `{0}` (iid, dirichlet:ALPHA with ALPHA > 0, or by-capture)")]
    Scheme(String),
    #[error("{0}")]
    Impossible(String),
}

/// A group as the partitioner sees it: its capture, its class and its number of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub capture: u32,
    pub class: u32,
    pub samples: usize,
}

/// Assigns every group to one of `clients` clients (the client index per group), seeded.
/// Every client gets at least one group, or it is an error saying why.
pub fn partition(groups: &[Group], clients: usize, scheme: Scheme, seed: u64) -> Result<Vec<usize>, PartitionError> {
    if clients == 0 {
        return Err(PartitionError::Impossible("at least one client is needed".into()));
    }
    if groups.len() < clients {
        return Err(PartitionError::Impossible(format!(
            "{} groups cannot give each of {clients} clients one",
            groups.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let by_class = |rng: &mut ChaCha8Rng| {
        let classes = groups.iter().map(|g| g.class as usize + 1).max().unwrap_or(0);
        let mut members = vec![Vec::new(); classes];
        for (i, g) in groups.iter().enumerate() {
            members[g.class as usize].push(i);
        }
        for m in &mut members {
            m.shuffle(rng);
        }
        members
    };
    let out = match scheme {
        Scheme::Iid => {
            let mut out = vec![0; groups.len()];
            let mut next = 0;
            for m in by_class(&mut rng) {
                for i in m {
                    out[i] = next % clients;
                    next += 1;
                }
            }
            out
        }
        Scheme::Dirichlet { alpha } => {
            if !(alpha.is_finite() && alpha > 0.0) {
                return Err(PartitionError::Scheme(format!("dirichlet:{alpha}")));
            }
            let gamma = Gamma::new(alpha, 1.0).map_err(|e| PartitionError::Impossible(e.to_string()))?;
            let members = by_class(&mut rng);
            // Redraw until every client holds something (as FL benchmark code does); a very
            // small α on few groups may never get there.
            let mut attempt = 0;
            loop {
                let mut out = vec![0; groups.len()];
                for m in &members {
                    let w: Vec<f64> = (0..clients).map(|_| gamma.sample(&mut rng)).collect();
                    let total: f64 = w.iter().sum();
                    let mut cum = 0.0;
                    let mut start = 0;
                    for (c, wc) in w.iter().enumerate() {
                        cum += wc / total;
                        let end = if c + 1 == clients {
                            m.len()
                        } else {
                            ((cum * m.len() as f64).round() as usize).min(m.len())
                        };
                        for &i in &m[start..end.max(start)] {
                            out[i] = c;
                        }
                        start = end.max(start);
                    }
                }
                let mut held = vec![false; clients];
                out.iter().for_each(|&c| held[c] = true);
                if held.iter().all(|&h| h) {
                    break out;
                }
                attempt += 1;
                if attempt == 100 {
                    return Err(PartitionError::Impossible(format!(
                        "dirichlet:{alpha} left a client empty in 100 draws over {} groups; use more groups, fewer \
                         clients or a larger α",
                        groups.len()
                    )));
                }
            }
        }
        Scheme::ByCapture => {
            let mut caps: Vec<(u32, usize)> = Vec::new();
            for g in groups {
                match caps.iter_mut().find(|(c, _)| *c == g.capture) {
                    Some((_, n)) => *n += g.samples,
                    None => caps.push((g.capture, g.samples)),
                }
            }
            if caps.len() < clients {
                return Err(PartitionError::Impossible(format!(
                    "{} captures cannot give each of {clients} clients a site of its own",
                    caps.len()
                )));
            }
            // Largest capture first to the client holding the fewest samples (ties broken by
            // a seeded shuffle, so seeds give different but balanced assignments).
            caps.shuffle(&mut rng);
            caps.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
            let mut load = vec![0usize; clients];
            let mut site = std::collections::HashMap::new();
            for (k, (cap, n)) in caps.iter().enumerate() {
                // The first `clients` captures go one per client, so none is left empty.
                let c = if k < clients {
                    k
                } else {
                    (0..clients)
                        .min_by_key(|&c| (load[c], rng.random::<u32>()))
                        .unwrap_or(0)
                };
                load[c] += n;
                site.insert(*cap, c);
            }
            groups.iter().map(|g| site[&g.capture]).collect()
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize, classes: u32, captures: u32) -> Vec<Group> {
        (0..n)
            .map(|i| Group {
                capture: i as u32 % captures,
                class: (i as u32 / 3) % classes,
                samples: 1 + i % 7,
            })
            .collect()
    }

    fn class_counts(g: &[Group], a: &[usize], clients: usize, classes: usize) -> Vec<Vec<usize>> {
        let mut m = vec![vec![0; classes]; clients];
        for (g, &c) in g.iter().zip(a) {
            m[c][g.class as usize] += 1;
        }
        m
    }

    /// Mean entropy (bits) of each client's class distribution.
    fn mean_entropy(m: &[Vec<usize>]) -> f64 {
        m.iter()
            .map(|row| {
                let t: usize = row.iter().sum();
                row.iter()
                    .filter(|&&v| v > 0)
                    .map(|&v| {
                        let p = v as f64 / t as f64;
                        -p * p.log2()
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / m.len() as f64
    }

    #[test]
    fn iid_gives_every_client_the_same_class_mix() {
        let g = groups(600, 5, 20);
        let a = partition(&g, 4, Scheme::Iid, 1).unwrap();
        for (k, row) in class_counts(&g, &a, 4, 5).iter().enumerate() {
            for &v in row {
                assert!((29..=31).contains(&v), "client {k}: {row:?}");
            }
        }
    }

    #[test]
    fn dirichlet_skews_with_small_alpha_and_is_seeded() {
        let g = groups(3000, 10, 50);
        let skewed = partition(&g, 10, Scheme::Dirichlet { alpha: 0.1 }, 3).unwrap();
        let mild = partition(&g, 10, Scheme::Dirichlet { alpha: 100.0 }, 3).unwrap();
        let e_skew = mean_entropy(&class_counts(&g, &skewed, 10, 10));
        let e_mild = mean_entropy(&class_counts(&g, &mild, 10, 10));
        assert!(
            e_skew < 2.0 && e_mild > 3.2,
            "entropies {e_skew} vs {e_mild} (max 3.32)"
        );
        assert_eq!(skewed, partition(&g, 10, Scheme::Dirichlet { alpha: 0.1 }, 3).unwrap());
        assert_ne!(skewed, partition(&g, 10, Scheme::Dirichlet { alpha: 0.1 }, 4).unwrap());
        let mut held = [false; 10];
        skewed.iter().for_each(|&c| held[c] = true);
        assert!(held.iter().all(|&h| h), "every client holds something");
    }

    #[test]
    fn by_capture_keeps_sites_whole_and_balanced() {
        let g = groups(900, 4, 30);
        let a = partition(&g, 3, Scheme::ByCapture, 5).unwrap();
        let mut site = std::collections::HashMap::new();
        let mut load = [0usize; 3];
        for (g, &c) in g.iter().zip(&a) {
            assert_eq!(*site.entry(g.capture).or_insert(c), c, "capture {} split", g.capture);
            load[c] += g.samples;
        }
        let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
        assert!(*hi as f64 <= *lo as f64 * 1.1, "loads {load:?}");
        let err = partition(&g, 31, Scheme::ByCapture, 5).unwrap_err();
        assert!(err.to_string().contains("30 captures"), "{err}");
    }

    #[test]
    fn schemes_parse_and_bad_requests_are_errors() {
        for s in ["iid", "dirichlet:0.5", "by-capture"] {
            assert_eq!(s.parse::<Scheme>().unwrap().to_string(), s);
        }
        for s in ["dirichlet:0", "dirichlet:-1", "dirichlet:x", "dirichlet", "random"] {
            assert!(s.parse::<Scheme>().is_err(), "{s}");
        }
        assert!(partition(&groups(5, 2, 5), 6, Scheme::Iid, 1).is_err());
        assert!(partition(&groups(5, 2, 5), 0, Scheme::Iid, 1).is_err());
        let err = partition(&groups(12, 2, 12), 12, Scheme::Dirichlet { alpha: 0.01 }, 1).unwrap_err();
        assert!(err.to_string().contains("left a client empty"), "{err}");
    }
}
