//! Who is a member. Membership is decided per flow or per capture (the DP unit), never per
//! packet: members are groups of the target's training data, non-members groups of its test
//! split, and an attacker's shadow pool is held-out data the target never trained on.
//!
//! Everything lives in one [`Universe`]: the samples of every group, concatenated once, so
//! shadow models and scoring reuse the loaded data.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use privpkt_dataset::{Dataset, Split, SplitUnit};
use privpkt_federated::{client_partition, FedConfig};
use privpkt_nn::train::training_subset;
use privpkt_nn::{check_compatible, load_split, manifest_sha256, ModelMeta, Samples};
use serde::{Deserialize, Serialize};

use crate::{AttackError, Result};

/// The unit of membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberUnit {
    Flow,
    Capture,
}

impl MemberUnit {
    pub fn name(self) -> &'static str {
        match self {
            MemberUnit::Flow => "flow",
            MemberUnit::Capture => "capture",
        }
    }

    /// The target's DP unit when it is a flow or capture, else flows.
    pub fn default_for(meta: &ModelMeta) -> MemberUnit {
        match meta.privacy.as_ref().and_then(|p| p["unit"].as_str()) {
            Some("capture") => MemberUnit::Capture,
            _ => MemberUnit::Flow,
        }
    }
}

impl fmt::Display for MemberUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MemberUnit {
    type Err = AttackError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "flow" => Ok(MemberUnit::Flow),
            "capture" => Ok(MemberUnit::Capture),
            "packet" | "sample" => Err(AttackError::Config(
                "membership by packet is not measured: packets of one flow would be members and non-members at \
                 once; use flow or capture"
                    .into(),
            )),
            _ => Err(AttackError::Config(format!(
                "unknown membership unit `{s}` (flow or capture)"
            ))),
        }
    }
}

/// Where a group's samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The target's training data: member candidates.
    TargetTrain,
    /// The target dataset's test split: non-member candidates and the shadow pool.
    HeldOut,
    /// A separate attacker dataset (`--shadow-data`).
    ShadowData,
}

/// One flow or capture.
#[derive(Debug, Clone)]
pub struct Group {
    pub origin: Origin,
    /// Position of the capture in its dataset's manifest.
    pub capture: u32,
    /// `None` for capture-level membership.
    pub flow: Option<u64>,
    /// Majority label.
    pub class: u32,
    /// Its samples in [`Universe::samples`] (for members: only those the target trained on).
    pub samples: Vec<usize>,
}

/// All samples an attack looks at, loaded once, grouped by membership unit.
#[derive(Debug, Clone)]
pub struct Universe {
    pub samples: Samples,
    pub groups: Vec<Group>,
    pub unit: MemberUnit,
    /// Groups dropped from the shadow pool, with the reason.
    pub notes: Vec<String>,
}

/// What decides membership.
pub struct MemberSource<'a> {
    pub dataset: &'a Dataset,
    pub meta: &'a ModelMeta,
    pub unit: MemberUnit,
    /// A federated target: members are this organisation's training data.
    pub federated_client: Option<usize>,
    /// An attacker's own dataset for shadow models, checked disjoint from the target's training data.
    pub shadow_data: Option<&'a Dataset>,
}

type Key = (u32, Option<u64>);

fn key(s: &Samples, i: usize, unit: MemberUnit) -> Key {
    match unit {
        MemberUnit::Flow => (s.capture[i], Some(s.flow[i])),
        MemberUnit::Capture => (s.capture[i], None),
    }
}

/// Groups of the samples at `positions`, in order of first appearance, with their majority label.
fn group(s: &Samples, positions: &[usize], unit: MemberUnit, origin: Origin, offset: usize) -> Vec<Group> {
    let mut at: HashMap<Key, usize> = HashMap::new();
    let mut out: Vec<Group> = Vec::new();
    let mut votes: Vec<HashMap<u32, usize>> = Vec::new();
    for (j, &i) in positions.iter().enumerate() {
        let k = key(s, i, unit);
        let g = *at.entry(k).or_insert_with(|| {
            out.push(Group {
                origin,
                capture: k.0,
                flow: k.1,
                class: 0,
                samples: Vec::new(),
            });
            votes.push(HashMap::new());
            out.len() - 1
        });
        out[g].samples.push(offset + j);
        *votes[g].entry(s.labels[i]).or_default() += 1;
    }
    for (g, v) in out.iter_mut().zip(votes) {
        g.class = v
            .into_iter()
            .max_by_key(|&(c, n)| (n, std::cmp::Reverse(c)))
            .map_or(0, |(c, _)| c);
    }
    out
}

/// The target's training samples (positions in its train split) that an attack may call members.
fn member_positions(src: &MemberSource<'_>, train: &Samples, notes: &mut Vec<String>) -> Result<Vec<usize>> {
    let Some(fed) = &src.meta.federated else {
        if src.federated_client.is_some() {
            return Err(AttackError::Config(
                "--federated-client: the model is not the global model of a `privpkt federate` run".into(),
            ));
        }
        return Ok(training_subset(train.len(), &src.meta.train));
    };
    let cfg: FedConfig = serde_json::from_value(fed["config"].clone()).map_err(|e| {
        AttackError::Config(format!(
            "the model's federated record has no readable configuration ({e}): its members cannot be reconstructed"
        ))
    })?;
    let parts = client_partition(train, &cfg)?;
    let trained: HashSet<usize> = match fed["rounds"].as_array() {
        Some(rounds) => rounds
            .iter()
            .flat_map(|r| r["clients"].as_array().into_iter().flatten())
            .filter_map(|c| c.as_u64().map(|c| c as usize))
            .collect(),
        None => (0..cfg.clients).collect(),
    };
    match src.federated_client {
        Some(c) if c >= cfg.clients => Err(AttackError::Config(format!(
            "--federated-client {c}: the federation had {} clients (0..{})",
            cfg.clients,
            cfg.clients - 1
        ))),
        Some(c) if !trained.contains(&c) => Err(AttackError::Config(format!(
            "--federated-client {c}: that organisation never trained in any round, so its data are not members"
        ))),
        Some(c) => {
            notes.push(format!(
                "members: organisation {c} of {} ({} partition)",
                cfg.clients, cfg.partition
            ));
            Ok(parts[c].clone())
        }
        None => {
            let mut all: Vec<usize> = parts
                .iter()
                .enumerate()
                .filter(|(c, _)| trained.contains(c))
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            all.sort_unstable();
            notes.push(format!(
                "members: the training data of every organisation that trained ({} of {})",
                trained.len(),
                cfg.clients
            ));
            Ok(all)
        }
    }
}

/// Identity of a capture across datasets: its sha256 when the manifest lists it.
fn capture_ids(ds: &Dataset) -> Option<Vec<String>> {
    (!ds.manifest.captures.is_empty()).then(|| ds.manifest.captures.iter().map(|c| c.sha256.clone()).collect())
}

/// Loads the target's data (and the attacker's), refusing member/non-member overlap and shadow
/// data that overlaps the target's training data.
pub fn build_universe(src: &MemberSource<'_>) -> Result<Universe> {
    let ds = src.dataset;
    let sha = manifest_sha256(ds)?;
    if sha != src.meta.dataset_manifest_sha256 {
        return Err(AttackError::Config(format!(
            "the model was trained on another dataset (manifest sha256 {}…, {} has {}…): who is a member is unknown",
            &src.meta.dataset_manifest_sha256.get(..12).unwrap_or(""),
            ds.dir.display(),
            &sha[..12]
        )));
    }
    check_compatible(src.meta, &ds.manifest)?;
    let unit = src.unit;
    let train = load_split(ds, Split::Train)?;
    let test = load_split(ds, Split::Test)?;
    if train.is_empty() || test.is_empty() {
        return Err(AttackError::Config(format!(
            "{}: membership inference needs non-empty train and test splits",
            ds.dir.display()
        )));
    }
    // Members and non-members must be different groups: a group with samples on both sides
    // (a dataset split by packet, or capture-level membership on a flow split) is refused.
    let train_keys: HashSet<Key> = (0..train.len()).map(|i| key(&train, i, unit)).collect();
    let both: Vec<Key> = {
        let mut b: Vec<Key> = (0..test.len())
            .map(|i| key(&test, i, unit))
            .filter(|k| train_keys.contains(k))
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    };
    if !both.is_empty() {
        let split = match ds.manifest.split.unit {
            SplitUnit::Flow => "flow",
            SplitUnit::Capture => "capture",
            SplitUnit::Packet => "packet",
        };
        return Err(AttackError::Overlap(format!(
            "members and non-members would overlap: {} {}s have samples in both the train split (members) and the \
             test split (non-members), e.g. capture {} {}; the dataset is split by {split}, so measure membership \
             by a unit it keeps whole (flow for a flow split, capture for a capture split)",
            both.len(),
            unit,
            both[0].0,
            both[0].1.map_or(String::new(), |f| format!("flow {f}"))
        )));
    }
    let mut notes = Vec::new();
    let positions = member_positions(src, &train, &mut notes)?;
    if positions.is_empty() {
        return Err(AttackError::Config(
            "the target has no training samples to call members".into(),
        ));
    }
    let members = train.subset(&positions);
    let mut groups = group(
        &members,
        &(0..members.len()).collect::<Vec<_>>(),
        unit,
        Origin::TargetTrain,
        0,
    );
    let held: Vec<usize> = (0..test.len()).collect();
    groups.extend(group(&test, &held, unit, Origin::HeldOut, members.len()));
    let mut parts = vec![members, test];

    if let Some(sd) = src.shadow_data {
        check_compatible(src.meta, &sd.manifest)?;
        let mut all = Vec::new();
        for split in Split::ALL {
            all.push(load_split(sd, split)?);
        }
        let shadow = concat(&all.iter().collect::<Vec<_>>())?;
        let same = manifest_sha256(sd)? == sha;
        // Capture identities comparable across the two datasets.
        let (ids_t, ids_s) = if same {
            (None, None)
        } else {
            match (capture_ids(ds), capture_ids(sd)) {
                (Some(a), Some(b)) => (Some(a), Some(b)),
                _ => {
                    return Err(AttackError::Overlap(format!(
                        "cannot check that the shadow data {} is disjoint from the target's training data: a manifest \
                         lists no captures (sha256)",
                        sd.dir.display()
                    )))
                }
            }
        };
        let name = |ids: &Option<Vec<String>>, c: u32| match ids {
            Some(v) => v.get(c as usize).cloned().unwrap_or_default(),
            None => format!("#{c}"),
        };
        // Flow ids mean the same only when both datasets cut flows the same way.
        let same_flows = same || ds.manifest.extract == sd.manifest.extract;
        let ident = |ids: &Option<Vec<String>>, s: &Samples, i: usize| {
            (name(ids, s.capture[i]), same_flows.then_some(s.flow[i]))
        };
        let target_train: HashSet<(String, Option<u64>)> = (0..train.len()).map(|i| ident(&ids_t, &train, i)).collect();
        let clash: Vec<usize> = (0..shadow.len())
            .filter(|&i| target_train.contains(&ident(&ids_s, &shadow, i)))
            .collect();
        if let Some(&i) = clash.first() {
            return Err(AttackError::Overlap(format!(
                "the shadow data {} overlaps the target's training data: {} of its samples come from {} the target \
                 trained on (first: sample {}, capture {}{}); shadow models must be trained on other data",
                sd.dir.display(),
                clash.len(),
                if same_flows { "flows" } else { "captures" },
                shadow.sample[i],
                name(&ids_s, shadow.capture[i]),
                if same_flows {
                    format!(" flow {}", shadow.flow[i])
                } else {
                    String::new()
                }
            )));
        }
        let test = &parts[1];
        let held_ids: HashSet<(String, Option<u64>)> = (0..test.len()).map(|i| ident(&ids_t, test, i)).collect();
        let keep: Vec<usize> = (0..shadow.len())
            .filter(|&i| !held_ids.contains(&ident(&ids_s, &shadow, i)))
            .collect();
        if keep.len() < shadow.len() {
            notes.push(format!(
                "{} samples of the shadow data are also in the target's test split: left out of the shadow pool",
                shadow.len() - keep.len()
            ));
        }
        let kept = shadow.subset(&keep);
        let offset = parts[0].len() + parts[1].len();
        let all: Vec<usize> = (0..kept.len()).collect();
        groups.extend(group(&kept, &all, unit, Origin::ShadowData, offset));
        parts.push(kept);
    }
    let samples = concat(&parts.iter().collect::<Vec<_>>())?;
    Ok(Universe {
        samples,
        groups,
        unit,
        notes,
    })
}

/// The samples of several sets one after the other (same input representation).
pub fn concat(parts: &[&Samples]) -> Result<Samples> {
    Samples::concat(parts).map_err(|e| AttackError::Config(e.to_string()))
}
