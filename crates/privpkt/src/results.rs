//! What an experiment (or the demo) measured: the schema of `results.json`, from which the CSV
//! table, the plots and `report.html` are all drawn, so every figure in them is one number here.

use serde::{Deserialize, Serialize};

/// Everything one run of `privpkt experiment` / `privpkt demo` measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// privpkt's version that wrote the file.
    pub privpkt_version: String,
    pub title: String,
    /// The command line, for the record.
    pub command: String,
    /// Seconds since the Unix epoch when the results were assembled.
    pub created_unix: u64,
    pub data: DataInfo,
    /// Settings shared by every cell (training budget, DP and attack settings).
    pub settings: Settings,
    /// One entry per finished cell of the sweep, in plan order.
    pub cells: Vec<CellResult>,
    /// Cells grouped over seeds: mean ± std (what the plot and the main table show).
    pub summary: Vec<SummaryRow>,
    /// Wall-clock seconds of this run (cells reused from an earlier run count 0).
    pub seconds: f64,
}

/// The dataset every cell trained and was evaluated on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataInfo {
    /// `synthetic (seed N)` or the captures' folder as given.
    pub source: String,
    /// The prepared dataset's folder.
    pub dataset: String,
    /// sha256 of the dataset's manifest: cells are keyed by it.
    pub manifest_sha256: String,
    /// Representation (`deeppacket` or `flowpic`).
    pub repr: String,
    pub label_column: String,
    pub classes: Vec<String>,
    /// Samples per split: train, val, test.
    pub samples: [u64; 3],
    /// Flows per split: train, val, test.
    pub flows: [u64; 3],
    /// Train samples per class (class order).
    pub train_class_counts: Vec<u64>,
    /// What the split is by (flow or capture): the unit no sample crosses.
    pub split_by: String,
}

/// Settings shared by every cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// Centralised epochs; federated runs train `rounds` × `local_epochs` instead.
    pub epochs: usize,
    pub rounds: usize,
    pub local_epochs: usize,
    pub optimizer: String,
    pub lr: f64,
    pub batch_size: usize,
    /// DP-SGD: δ, clipping norm, privacy unit and accountant of every private cell.
    pub delta: f64,
    pub clip: f64,
    pub privacy_unit: String,
    pub accountant: String,
    /// Membership-inference attacks run on every cell (shadow attacks on centralised cells only).
    pub attacks: Vec<String>,
}

/// How a cell trains.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// One organisation holding the whole train split.
    #[serde(alias = "centralized")]
    Centralised,
    /// FedAvg over organisations holding disjoint parts of the train split.
    Fedavg,
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Setting::Centralised => "centralised",
            Setting::Fedavg => "FedAvg",
        }
    }
}

/// One finished cell: one model trained, evaluated and attacked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellResult {
    /// Stable key of the cell's full configuration (a rerun with the same key is skipped).
    pub id: String,
    /// Human name, e.g. `FedAvg, 3 orgs (iid), ε = 8`.
    pub label: String,
    pub setting: Setting,
    /// 1 for centralised.
    pub organisations: usize,
    /// Partition of the train split among organisations (`-` for centralised).
    pub partition: String,
    /// Architecture name.
    pub model: String,
    /// Requested DP-SGD budget per organisation (`None`: no DP).
    pub epsilon_target: Option<f64>,
    pub seed: u64,
    pub utility: Utility,
    /// What the training spent, as recorded in the model file (`None`: no DP).
    pub privacy: Option<Privacy>,
    pub attacks: Vec<AttackSummary>,
    /// Learning curve: validation macro-F1 per epoch (centralised) or global test macro-F1 per
    /// round (federated; a curve only, the final model is not picked by it).
    pub curve: Vec<CurvePoint>,
    /// Train samples, flows and class counts of each organisation.
    pub organisations_data: Vec<OrgData>,
    pub train_seconds: f64,
    pub attack_seconds: f64,
    /// The model file, relative to the experiment's folder.
    pub model_file: String,
}

/// Test-split numbers of a model beside the header-only baseline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Utility {
    pub macro_f1: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    /// Majority vote over each flow's samples.
    pub flow_macro_f1: f64,
    pub flow_accuracy: f64,
    /// Majority class per protocol and ports, fit on train.
    pub baseline_macro_f1: f64,
    pub baseline_flow_macro_f1: f64,
    /// F1 per class (class order of [`DataInfo::classes`]).
    pub per_class_f1: Vec<f64>,
    /// Flow confusion matrix, `[true][predicted]`.
    pub flow_confusion: Vec<Vec<u64>>,
    pub test_samples: u64,
    pub test_flows: u64,
}

/// A cell's DP guarantee (for federated cells: the worst organisation's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Privacy {
    pub mechanism: String,
    pub epsilon: f64,
    pub delta: f64,
    pub unit: String,
    pub sigma: f64,
    pub clip: f64,
    pub accountant: String,
    pub steps: u64,
}

/// One membership-inference attack on a cell's model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttackSummary {
    /// `loss`, `shokri`, `lira` or `lira-offline`.
    pub attack: String,
    pub members: usize,
    pub non_members: usize,
    /// Unit of membership (flow or capture).
    pub unit: String,
    pub auc: f64,
    pub advantage: f64,
    pub balanced_accuracy: f64,
    pub tpr_at_1pct_fpr: f64,
    pub tpr_at_0_1pct_fpr: f64,
    pub shadows: usize,
    /// ROC points (thinned to at most a few hundred) for the plot.
    pub roc_fpr: Vec<f64>,
    pub roc_tpr: Vec<f64>,
}

/// One point of a learning curve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    /// Epoch or round, 1-based.
    pub step: usize,
    pub macro_f1: f64,
    /// ε spent so far (DP cells).
    pub epsilon: Option<f64>,
}

/// One organisation's share of the train split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrgData {
    pub samples: usize,
    pub flows: usize,
    pub class_counts: Vec<u64>,
}

/// Mean ± sample standard deviation over the seeds of one configuration.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// 0 for a single seed.
    pub std: f64,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Stat {
        let n = xs.len() as f64;
        if xs.is_empty() {
            return Stat {
                mean: f64::NAN,
                std: f64::NAN,
            };
        }
        let mean = xs.iter().sum::<f64>() / n;
        let std = if xs.len() < 2 {
            0.0
        } else {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Stat { mean, std }
    }
}

/// One configuration (all but the seed) over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SummaryRow {
    /// Human name of the configuration.
    pub label: String,
    /// Name of the configuration without ε: the line it belongs to in the trade-off plot.
    pub group: String,
    pub setting: Setting,
    pub organisations: usize,
    pub partition: String,
    pub model: String,
    pub epsilon_target: Option<f64>,
    /// Seeds averaged.
    pub seeds: Vec<u64>,
    /// Ids of the cells averaged.
    pub cells: Vec<String>,
    pub macro_f1: Stat,
    pub flow_macro_f1: Stat,
    pub accuracy: Stat,
    /// ε spent (the largest over the seeds; `None` without DP).
    pub epsilon: Option<f64>,
    /// Attack name → AUC and TPR at 1 % FPR over the seeds.
    pub attacks: Vec<AttackStat>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttackStat {
    pub attack: String,
    pub auc: Stat,
    pub tpr_at_1pct_fpr: Stat,
}

/// Group `cells` by everything but the seed, in first-seen order.
pub fn summarise(cells: &[CellResult]) -> Vec<SummaryRow> {
    let mut rows: Vec<SummaryRow> = Vec::new();
    let mut members: Vec<Vec<&CellResult>> = Vec::new();
    for c in cells {
        let key = (
            c.setting,
            c.organisations,
            &c.partition,
            &c.model,
            c.epsilon_target.map(f64::to_bits),
        );
        let pos = rows.iter().position(|r| {
            (
                r.setting,
                r.organisations,
                &r.partition,
                &r.model,
                r.epsilon_target.map(f64::to_bits),
            ) == key
        });
        match pos {
            Some(i) => members[i].push(c),
            None => {
                rows.push(SummaryRow {
                    label: config_label(c.setting, c.organisations, &c.partition, &c.model, c.epsilon_target),
                    group: group_label(c.setting, c.organisations, &c.partition, &c.model),
                    setting: c.setting,
                    organisations: c.organisations,
                    partition: c.partition.clone(),
                    model: c.model.clone(),
                    epsilon_target: c.epsilon_target,
                    seeds: Vec::new(),
                    cells: Vec::new(),
                    macro_f1: Stat::of(&[]),
                    flow_macro_f1: Stat::of(&[]),
                    accuracy: Stat::of(&[]),
                    epsilon: None,
                    attacks: Vec::new(),
                });
                members.push(vec![c]);
            }
        }
    }
    for (r, m) in rows.iter_mut().zip(&members) {
        r.seeds = m.iter().map(|c| c.seed).collect();
        r.cells = m.iter().map(|c| c.id.clone()).collect();
        let col = |f: &dyn Fn(&CellResult) -> f64| Stat::of(&m.iter().map(|c| f(c)).collect::<Vec<_>>());
        r.macro_f1 = col(&|c| c.utility.macro_f1);
        r.flow_macro_f1 = col(&|c| c.utility.flow_macro_f1);
        r.accuracy = col(&|c| c.utility.accuracy);
        r.epsilon = m
            .iter()
            .filter_map(|c| c.privacy.as_ref().map(|p| p.epsilon))
            .reduce(f64::max);
        let mut names: Vec<&str> = Vec::new();
        for c in m {
            for a in &c.attacks {
                if !names.contains(&a.attack.as_str()) {
                    names.push(&a.attack);
                }
            }
        }
        r.attacks = names
            .iter()
            .map(|&n| {
                let of = |f: &dyn Fn(&AttackSummary) -> f64| {
                    Stat::of(
                        &m.iter()
                            .flat_map(|c| c.attacks.iter().filter(|a| a.attack == n).map(f))
                            .collect::<Vec<_>>(),
                    )
                };
                AttackStat {
                    attack: n.to_string(),
                    auc: of(&|a| a.auc),
                    tpr_at_1pct_fpr: of(&|a| a.tpr_at_1pct_fpr),
                }
            })
            .collect();
    }
    rows
}

/// `centralised, sae` / `FedAvg, 3 orgs (iid), sae`.
pub fn group_label(setting: Setting, orgs: usize, partition: &str, model: &str) -> String {
    match setting {
        Setting::Centralised => format!("centralised, {model}"),
        Setting::Fedavg => format!("FedAvg, {orgs} orgs ({partition}), {model}"),
    }
}

/// [`group_label`] with the privacy budget.
pub fn config_label(setting: Setting, orgs: usize, partition: &str, model: &str, eps: Option<f64>) -> String {
    format!(
        "{}, {}",
        group_label(setting, orgs, partition, model),
        epsilon_label(eps)
    )
}

/// `no DP` or `ε = 8`.
pub fn epsilon_label(eps: Option<f64>) -> String {
    match eps {
        None => "no DP".into(),
        Some(e) => format!("ε = {}", trim_float(e)),
    }
}

/// 8 → `8`, 0.5 → `0.5` (no trailing zeros).
pub fn trim_float(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The fixed-precision form every number takes in the CSV, the plots' labels and the report,
/// so the browser test can compare the page with `results.json` exactly.
pub fn fmt3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_mean_and_sample_std() {
        let s = Stat::of(&[1.0, 2.0, 3.0]);
        assert!((s.mean - 2.0).abs() < 1e-12);
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.5]).std, 0.0);
        assert!(Stat::of(&[]).mean.is_nan());
    }

    #[test]
    fn labels() {
        assert_eq!(epsilon_label(Some(8.0)), "ε = 8");
        assert_eq!(epsilon_label(Some(0.5)), "ε = 0.5");
        assert_eq!(epsilon_label(None), "no DP");
        assert_eq!(
            config_label(Setting::Fedavg, 3, "iid", "sae", Some(2.0)),
            "FedAvg, 3 orgs (iid), sae, ε = 2"
        );
        assert_eq!(fmt3(0.12345), "0.123");
        assert_eq!(fmt3(f64::NAN), "–");
    }
}
