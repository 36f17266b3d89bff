//! `privpkt attack`: membership inference against a trained model.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use privpkt_attack::{run_attack, AttackConfig, AttackEvent, AttackKind, AttackReport, MemberUnit, Target};
use privpkt_dataset::Dataset;
use privpkt_nn::load_model;

use crate::plots::{render, ImageFormat, RocPlot, RocSeries};
use crate::ui::{json_to_stdout, progress_bar, say, write_json_report};

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum AttackArg {
    /// Threshold on the mean log-probability of the true class (Yeom et al. 2018).
    Loss,
    /// Shadow models on attacker data + one attack classifier per class (Shokri et al. 2017).
    Shokri,
    /// Likelihood-ratio attack with per-flow Gaussians over shadow models (Carlini et al. 2022).
    Lira,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum MemberUnitArg {
    Flow,
    Capture,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Members are flows (or captures) of the model's train split, non-members flows of its test \
split, equal in number and drawn with --seed; a flow's score is the mean of its samples' scores, so membership is \
measured per flow, the unit flow-level DP protects. Groups with samples in both splits (a dataset split by packet, \
or --unit capture on a flow split) are refused.\n\nShadow models train with the target's own settings (from its \
model file) in parallel. Shokri's shadows and offline LiRA's use attacker data disjoint from the target's training \
data: half the test split is kept back for them (or --shadow-data, checked by capture sha256 and flow). Online LiRA \
also trains each candidate, member or not, into half its shadows: LiRA's threat model, where the attacker holds the \
candidates. With --work the finished shadows are kept and a rerun reuses them.\n\nReports ROC AUC, balanced \
accuracy, advantage (max |TPR − FPR|) and TPR at 0.1 % and 1 % FPR, overall and per class.\n\nExamples:\n  privpkt \
attack --model m.safetensors --data ds --attack loss\n  privpkt attack --model m.safetensors --data ds --attack lira \
--shadows 16 --work lira-work --json lira.json --roc lira.png\n  privpkt attack --model global.safetensors --data ds \
--attack loss --federated-client 0"
)]
pub struct AttackArgs {
    /// Model file under attack (from `privpkt train` or `privpkt federate`).
    #[arg(long)]
    pub model: PathBuf,
    /// The dataset the model was trained on.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub attack: AttackArg,
    /// LiRA offline: no shadow model trains on a candidate.
    #[arg(long)]
    pub offline: bool,
    /// Shadow models [default: 16 for LiRA, 8 for Shokri].
    #[arg(long)]
    pub shadows: Option<usize>,
    /// Members to draw (and as many non-members) [default: as many as the data allow].
    #[arg(long)]
    pub members: Option<usize>,
    /// Unit of membership [default: the model's DP unit, else flow].
    #[arg(long, value_enum)]
    pub unit: Option<MemberUnitArg>,
    /// The attacker's own dataset for shadow models (instead of half the test split).
    #[arg(long)]
    pub shadow_data: Option<PathBuf>,
    /// Federated global model: members are this organisation's (0-based) training data.
    #[arg(long)]
    pub federated_client: Option<usize>,
    /// Keep the shadow models here; a rerun reuses the finished ones (else a temporary directory).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Write the full report (metrics, per-class slices, ROC points, settings) as JSON; `-` for stdout.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the ROC curve on log-log axes (.png or .svg).
    #[arg(long)]
    pub roc: Option<PathBuf>,
    /// Seed of the member draw and the shadow models (recorded in the report).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: AttackArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let ds = Dataset::open(&a.data)?;
    let shadow_ds = a.shadow_data.as_deref().map(Dataset::open).transpose()?;
    let kind = match a.attack {
        AttackArg::Loss => AttackKind::Loss,
        AttackArg::Shokri => AttackKind::Shokri,
        AttackArg::Lira => AttackKind::Lira,
    };
    let cfg = AttackConfig {
        kind,
        offline: a.offline,
        shadows: a.shadows.unwrap_or(if kind == AttackKind::Shokri { 8 } else { 16 }),
        members: a.members,
        unit: a.unit.map(|u| match u {
            MemberUnitArg::Flow => MemberUnit::Flow,
            MemberUnitArg::Capture => MemberUnit::Capture,
        }),
        seed: a.seed,
        federated_client: a.federated_client,
    };
    let to_stdout = json_to_stdout(a.json.as_deref());
    let bar = progress_bar(
        0,
        "{prefix:>12} [{bar:30}] {pos}/{len} {msg} elapsed {elapsed} eta {eta}",
        to_stdout,
    );
    bar.set_prefix("shadows");
    let done = AtomicUsize::new(0);
    let report = run_attack(
        &Target {
            model: &model,
            dataset: &ds,
            shadow_data: shadow_ds.as_ref(),
        },
        &cfg,
        a.work.as_deref(),
        &|e| match e {
            AttackEvent::Planned {
                members,
                non_members,
                pool,
                shadows,
            } => {
                say(
                    &bar,
                    format!(
                        "{members} members vs {non_members} non-members{}",
                        if shadows > 0 {
                            format!("; {shadows} shadow models on a pool of {pool} attacker groups")
                        } else {
                            String::new()
                        }
                    ),
                );
                bar.set_length(shadows as u64);
            }
            AttackEvent::ShadowEpoch { index, epoch, epochs } => {
                bar.set_message(format!("shadow {index}: epoch {epoch}/{epochs}"))
            }
            AttackEvent::ShadowDone { index, reused, seconds } => {
                bar.set_position(done.fetch_add(1, Ordering::Relaxed) as u64 + 1);
                if reused {
                    say(&bar, format!("shadow {index}: reused from the work directory"));
                } else {
                    say(&bar, format!("shadow {index}: trained in {seconds:.1} s"));
                }
            }
            AttackEvent::Warning(w) => say(&bar, format!("warning: {w}")),
        },
    )?;
    bar.finish_and_clear();
    if let Some(p) = &a.roc {
        render(
            p,
            ImageFormat::of_path(p),
            (640, 560),
            &RocPlot {
                title: format!(
                    "{} on {} ({} members, {}s)",
                    report.attack, report.target.arch, report.members, report.unit
                ),
                curves: vec![RocSeries {
                    name: format!("{} (AUC {:.3})", report.attack, report.metrics.auc),
                    fpr: report.roc.fpr.clone(),
                    tpr: report.roc.tpr.clone(),
                }],
            },
        )
        .with_context(|| format!("{}: cannot draw the ROC curve", p.display()))?;
    }
    write_json_report(a.json.as_deref(), &report)?;
    if !to_stdout {
        print_summary(&report);
        for p in [&a.json, &a.roc].into_iter().flatten() {
            println!("written: {}", p.display());
        }
    }
    Ok(())
}

fn print_summary(r: &AttackReport) {
    let privacy = match (r.target.epsilon, &r.target.privacy_unit) {
        (Some(e), Some(u)) => format!("ε = {e:.3} per {u}"),
        _ => "no DP".to_string(),
    };
    println!(
        "{} attack on {} ({privacy}{}): {} members vs {} non-members by {}, seed {}",
        r.attack,
        r.target.arch,
        r.target
            .federated_client
            .map_or(String::new(), |c| format!(", organisation {c}")),
        r.members,
        r.non_members,
        r.unit,
        r.seed
    );
    let m = &r.metrics;
    println!(
        "  AUC {:.4}   balanced accuracy {:.4}   advantage {:.4}   TPR@0.1%FPR {:.4}   TPR@1%FPR {:.4}",
        m.auc, m.best_balanced_accuracy, m.advantage, m.tpr_at_0_1pct_fpr, m.tpr_at_1pct_fpr
    );
    println!(
        "  {:<20} {:>8} {:>12} {:>8} {:>11}",
        "class", "members", "non-members", "AUC", "TPR@1%FPR"
    );
    for c in &r.per_class {
        let (auc, tpr) = c.metrics.as_ref().map_or(("-".into(), "-".into()), |m| {
            (format!("{:.4}", m.auc), format!("{:.4}", m.tpr_at_1pct_fpr))
        });
        println!(
            "  {:<20} {:>8} {:>12} {:>8} {:>11}",
            c.class, c.members, c.non_members, auc, tpr
        );
    }
    if r.shadows > 0 {
        println!(
            "  shadow models: {} ({} trained, {} reused) in {:.1} s",
            r.shadows, r.shadow_training.trained, r.shadow_training.reused, r.shadow_training.seconds
        );
    }
    if let Some(l) = &r.lira {
        println!(
            "  LiRA {}, {} variance",
            if l.online { "online" } else { "offline" },
            match l.variance {
                privpkt_attack::lira::Variance::Global => "global",
                privpkt_attack::lira::Variance::PerCandidate => "per-flow",
            }
        );
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
    println!("  {:.1} s in all", r.seconds);
}
