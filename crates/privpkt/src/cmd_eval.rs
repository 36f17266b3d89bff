//! `privpkt eval`: a model on a dataset split, beside the header-only baseline.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use privpkt_dataset::{Dataset, Split};
use privpkt_nn::baseline::evaluate_baseline;
use privpkt_nn::metrics::{flow_level_confusion_probs, ConfusionMatrix, EvalReport};
use privpkt_nn::{check_compatible, load_model, load_split, preprocessing_differences, Model};
use serde::Serialize;

use crate::plots::{self, ConfusionPlot, ImageFormat};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Reports macro-F1 first, then per-class precision/recall/F1, balanced accuracy, weighted \
F1 (only for comparison with Deep Packet's published numbers) and flow-level accuracy (majority vote of a flow's \
samples). The header-only baseline (majority class per protocol and ports, fit on train) is evaluated on the same \
split, so the numbers show what the bytes add beyond header shortcuts.\n\nExamples:\n  \
privpkt eval model.safetensors ds\n  privpkt eval model.safetensors ds --json --plots eval-plots"
)]
pub struct EvalArgs {
    /// Model file (from `privpkt train`).
    pub model: PathBuf,
    /// Dataset directory prepared with the same settings as the model's training data.
    pub dataset: PathBuf,
    /// Split to evaluate: test (default), val or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write confusion matrices (sample and flow level) here.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "png")]
    pub format: ImageFormat,
}

#[derive(Serialize)]
pub struct Evaluation {
    pub model: String,
    pub arch: String,
    pub dataset: String,
    pub split: String,
    pub paper_comparable: bool,
    pub report: EvalReport,
    pub baseline: EvalReport,
    /// What the model's training spent (DP-SGD), as recorded in the model file.
    pub privacy: Option<serde_json::Value>,
    pub warnings: Vec<String>,
}

/// Evaluate the model file `model_path` on `split` of `dataset`.
pub fn evaluate(model_path: &std::path::Path, dataset: &std::path::Path, split: Split) -> Result<Evaluation> {
    let model = load_model(model_path)?;
    let ds = Dataset::open(dataset)?;
    evaluate_model(&model, model_path, &ds, split)
}

/// [`evaluate`] of a model already in memory (`model_path` names it in the report).
pub fn evaluate_model(model: &Model, model_path: &std::path::Path, ds: &Dataset, split: Split) -> Result<Evaluation> {
    let dataset = &ds.dir;
    check_compatible(model.meta(), &ds.manifest)?;
    let warnings = preprocessing_differences(model.meta(), &ds.manifest);
    let samples = load_split(ds, split)?;
    if samples.is_empty() {
        anyhow::bail!("{}: the {} split is empty", dataset.display(), split.name());
    }
    let probs = model.predict_samples(&samples)?;
    let k = ds.manifest.classes.len();
    let truth: Vec<usize> = samples.labels.iter().map(|&l| l as usize).collect();
    let pred: Vec<usize> = probs
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
        .collect();
    let cm = ConfusionMatrix::from_labels(k, &truth, &pred)?;
    let groups: Vec<(u32, u64)> = samples
        .capture
        .iter()
        .copied()
        .zip(samples.flow.iter().copied())
        .collect();
    let flat: Vec<f32> = probs.iter().flatten().copied().collect();
    let flows = flow_level_confusion_probs(k, &groups, &truth, &flat)?;
    let report = EvalReport::new(&ds.manifest.classes, &cm)?.with_flow_level(&flows)?;
    let baseline = evaluate_baseline(ds, split)?;
    Ok(Evaluation {
        model: model_path.display().to_string(),
        arch: model.meta().arch.name().to_string(),
        dataset: dataset.display().to_string(),
        split: split.name().to_string(),
        paper_comparable: ds.manifest.paper_comparable,
        report,
        baseline,
        privacy: model.meta().privacy.clone(),
        warnings,
    })
}

pub fn run(a: EvalArgs) -> Result<()> {
    let split =
        Split::parse(&a.split).with_context(|| format!("--split must be train, val or test, not `{}`", a.split))?;
    let ev = evaluate(&a.model, &a.dataset, split)?;
    let mut written = Vec::new();
    if let Some(dir) = &a.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let k = ev.report.classes.len() as u32;
        let size = (260 + 44 * k, 240 + 44 * k);
        let p = dir.join(format!("confusion.{}", a.format.ext()));
        plots::render(
            &p,
            a.format,
            size,
            &ConfusionPlot {
                title: format!("{} on {} ({} samples)", ev.arch, ev.split, ev.report.n),
                classes: ev.report.classes.clone(),
                matrix: ev.report.confusion.clone(),
            },
        )?;
        written.push(p);
        if let Some(f) = &ev.report.flow_level {
            let p = dir.join(format!("confusion_flows.{}", a.format.ext()));
            plots::render(
                &p,
                a.format,
                size,
                &ConfusionPlot {
                    title: format!("{} on {} ({} flows, majority vote)", ev.arch, ev.split, f.flows),
                    classes: ev.report.classes.clone(),
                    matrix: f.confusion.clone(),
                },
            )?;
            written.push(p);
        }
    }
    if a.json {
        let mut v = serde_json::to_value(&ev)?;
        v["plots"] = serde_json::json!(written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let r = &ev.report;
    let b = &ev.baseline;
    println!(
        "{} on the {} split of {} ({} samples{})",
        ev.arch,
        ev.split,
        ev.dataset,
        r.n,
        if ev.paper_comparable {
            ", split by packet: paper-comparable only"
        } else {
            ""
        }
    );
    println!("{:<22} {:>10} {:>16}", "", "model", "header baseline");
    let row = |name: &str, m: f64, bl: f64| println!("{name:<22} {m:>10.4} {bl:>16.4}");
    row("macro-F1", r.macro_f1, b.macro_f1);
    row("balanced accuracy", r.balanced_accuracy, b.balanced_accuracy);
    row("accuracy", r.accuracy, b.accuracy);
    row("weighted F1", r.weighted_f1, b.weighted_f1);
    if let (Some(f), Some(fb)) = (&r.flow_level, &b.flow_level) {
        row("flow macro-F1", f.macro_f1, fb.macro_f1);
        row("flow accuracy", f.accuracy, fb.accuracy);
    }
    println!(
        "\n{:<22} {:>9} {:>9} {:>9} {:>9}",
        "class", "precision", "recall", "F1", "support"
    );
    for c in &r.per_class {
        println!(
            "{:<22} {:>9.3} {:>9.3} {:>9.3} {:>9}",
            c.name, c.precision, c.recall, c.f1, c.support
        );
    }
    match &ev.privacy {
        Some(p) => println!("\ntrained with {}", crate::ui::privacy_line(p)),
        None => println!("\ntrained without differential privacy"),
    }
    for w in &ev.warnings {
        println!("warning: {w}");
    }
    for p in written {
        println!("plot: {}", p.display());
    }
    Ok(())
}
