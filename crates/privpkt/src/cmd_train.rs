//! `privpkt train`: a classifier on a prepared dataset.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use privpkt_dataset::Dataset;
use privpkt_nn::{save_model, train, Arch, Schedule, TrainConfig, TrainEvent};

use crate::dpargs::DpArgs;
use crate::trainargs::{arch_or_default, OptArg};
use crate::ui::{progress_bar, say};

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum ScheduleArg {
    Constant,
    Cosine,
    Step,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Training uses the dataset's train split; early stopping and the kept weights are chosen \
on its validation split (macro-F1), never on test. Evaluate on test with `privpkt eval`.\n\nExamples:\n  \
privpkt train ds --out model.safetensors\n  \
privpkt train ds --out sae.safetensors --arch sae --epochs 30 --pretrain-epochs 5\n  \
privpkt train ds --out m.safetensors --resume          # continue an interrupted run\n  \
privpkt train ds --out dp.safetensors --dp --epsilon 4 --delta 1e-5   # flow-level DP-SGD\n\n\
DP-SGD (--dp): each step Poisson-samples privacy units (flows by default) with rate q = batch size / units, \
clips each unit's summed gradient (at most --unit-cap of its samples) to --clip, adds N(0, σ²C²) noise and \
divides by the expected batch. σ is calibrated so the planned epochs spend exactly --epsilon at --delta; with \
--sigma instead, training stops before the budget would be exceeded. The model file records σ, C, q, steps, \
unit, accountant and ε. Noise and sampling come from OS entropy unless --seed is given (then reproducible, and \
recorded)."
)]
pub struct TrainArgs {
    /// Dataset directory (from `privpkt prepare`).
    pub dataset: PathBuf,
    /// Model file to write (one safetensors file with weights and metadata).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Architecture: series-cnn, mlp, logistic (flow behaviour); deeppacket-app,
    /// deeppacket-traffic, sae (Deep Packet vectors); flowpic, flowpic-mini. Default: series-cnn
    /// for behaviour data with a series (mlp without), deeppacket-app for Deep Packet vectors,
    /// flowpic / flowpic-mini by resolution.
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Optimizer [default: the recipe's: adam; sgd without momentum under --dp for behaviour models].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptArg>,
    /// SGD momentum (with --optimizer sgd).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Learning rate [default: the recipe's: 1e-3; 4 under --dp for behaviour models].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning-rate schedule over epochs.
    #[arg(long, value_enum, default_value = "constant")]
    pub schedule: ScheduleArg,
    /// Step schedule: multiply the rate by --gamma every this many epochs.
    #[arg(long, default_value_t = 5)]
    pub step_every: usize,
    #[arg(long, default_value_t = 0.5)]
    pub gamma: f64,
    /// Epochs [default: the recipe's: 60 for behaviour models (100 DP steps under --dp), 10 for
    /// the papers' models].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per step; with DP, privacy units expected per step (`full`: all of them)
    /// [default: 64; `full` under --dp for behaviour models].
    #[arg(long, value_parser = crate::trainargs::parse_batch)]
    pub batch_size: Option<usize>,
    /// Stop after this many epochs without a better validation macro-F1 (0: never) [default: 15
    /// for behaviour models, 3 for the papers'; never under --dp for behaviour models].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Weight the loss by inverse class frequency [default for behaviour models without DP].
    #[arg(long, conflicts_with = "no_class_weights")]
    pub class_weights: bool,
    /// Do not weight the loss by class frequency.
    #[arg(long)]
    pub no_class_weights: bool,
    /// Shift the output biases by −log of the training class frequencies (logit adjustment), so
    /// rare classes are not drowned by common ones. With --dp the class counts are released once
    /// with the run's noise and composed in ε (class weights would read private counts
    /// unaccounted) [default for behaviour models under --dp].
    #[arg(long, conflicts_with = "no_logit_adjust")]
    pub logit_adjust: bool,
    /// No logit adjustment.
    #[arg(long)]
    pub no_logit_adjust: bool,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed of initialisation, shuffling and dropout (recorded in the model file); default 42.
    /// With --dp it also keys the noise and sampling (a reproducible experiment).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stacked autoencoder: pre-training epochs per layer.
    #[arg(long, default_value_t = 3)]
    pub pretrain_epochs: usize,
    /// Train on a random subset of at most this many training samples.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Where checkpoints go (default: `<out>.work`).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Continue from the checkpoint in the work directory.
    #[arg(long)]
    pub resume: bool,
    /// Print a JSON summary on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Replace an existing model file at --out (only a privpkt model; never another file).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub recipe: crate::trainargs::RecipeArgs,
    #[command(flatten)]
    pub dp: DpArgs,
}

pub fn config(a: &TrainArgs, ds: &Dataset) -> Result<TrainConfig> {
    let arch = arch_or_default(a.arch, ds);
    let mut cfg = TrainConfig::new(arch);
    // What is not given comes from the architecture's recipe, private or not.
    let r = privpkt_nn::recipe::recipe(arch, a.dp.dp);
    cfg.optimizer = a.optimizer.map_or(r.optimizer, |o| o.to_optimizer(a.momentum));
    cfg.lr = a.lr.unwrap_or(r.lr);
    cfg.schedule = match a.schedule {
        ScheduleArg::Constant => Schedule::Constant,
        ScheduleArg::Cosine => Schedule::Cosine,
        ScheduleArg::Step => Schedule::Step {
            every: a.step_every,
            gamma: a.gamma,
        },
    };
    cfg.epochs = a.epochs.unwrap_or(r.epochs);
    cfg.batch_size = a.batch_size.unwrap_or(r.batch_size);
    cfg.patience = a.patience.map_or(r.patience, |p| (p > 0).then_some(p));
    cfg.class_weights = (a.class_weights || r.class_weights) && !a.no_class_weights;
    cfg.logit_adjust = (a.logit_adjust || r.logit_adjust) && !a.no_logit_adjust;
    cfg.ema = r.ema;
    cfg.augment = r.augment;
    cfg.ple_bins = r.ple_bins.filter(|_| privpkt_nn::recipe::is_behaviour(arch));
    cfg.weight_decay = a.weight_decay;
    cfg.seed = a.seed.unwrap_or(42);
    cfg.sae_pretrain_epochs = a.pretrain_epochs;
    cfg.max_train_samples = a.max_train_samples;
    cfg.dp = a.dp.config(a.seed.is_some())?;
    a.recipe.apply(&mut cfg)?;
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(a: TrainArgs) -> Result<()> {
    // Before any work: the output must not replace what the user had.
    privpkt_nn::check_out(&a.out, a.force)?;
    let ds = Dataset::open(&a.dataset)?;
    if ds.manifest.paper_comparable && !a.json {
        eprintln!("note: this dataset is split by packet (paper-comparable, not an honest estimate)");
    }
    let cfg = config(&a, &ds)?;
    let work = a.work_dir.clone().unwrap_or_else(|| {
        let mut p = a.out.clone().into_os_string();
        p.push(".work");
        PathBuf::from(p)
    });
    let bar = progress_bar(0, "{prefix:>12} [{bar:30}] {pos}/{len} {msg} eta {eta}", a.json);
    let t0 = Instant::now();
    let quiet = a.json;
    let outcome = train(&ds, &cfg, &work, a.resume, &|e| match e {
        TrainEvent::Resumed { epochs_done } => say(&bar, format!("resuming after epoch {epochs_done}")),
        TrainEvent::Pretrain {
            layer,
            layers,
            epoch,
            epochs,
            loss,
        } => say(
            &bar,
            format!("pre-training layer {layer}/{layers}, epoch {epoch}/{epochs}: loss {loss:.4}"),
        ),
        TrainEvent::EpochStart {
            epoch,
            epochs,
            batches,
            lr,
        } => {
            bar.reset();
            bar.set_length(batches as u64);
            bar.set_prefix(format!("epoch {epoch}/{epochs}"));
            bar.set_message(format!("lr {lr:.2e}"));
        }
        TrainEvent::Batch {
            batch, loss, accuracy, ..
        } => {
            bar.set_position(batch as u64);
            bar.set_message(format!("loss {loss:.4} acc {accuracy:.3}"));
        }
        TrainEvent::EpochEnd { record, best } => {
            if !quiet {
                say(
                    &bar,
                    format!(
                        "epoch {}: train loss {:.4} acc {:.3}; val macro-F1 {} acc {}{} ({:.1} s){}",
                        record.epoch,
                        record.train_loss,
                        record.train_accuracy,
                        record.val_macro_f1.map_or("-".into(), |v| format!("{v:.4}")),
                        record.val_accuracy.map_or("-".into(), |v| format!("{v:.3}")),
                        record.epsilon.map_or(String::new(), |e| format!("; ε spent {e:.3}")),
                        record.seconds,
                        if best { "  best" } else { "" }
                    ),
                );
            }
        }
        TrainEvent::EarlyStop { epoch, best_epoch } => say(
            &bar,
            format!("early stop after epoch {epoch}; best was epoch {best_epoch}"),
        ),
        TrainEvent::Privacy {
            sigma,
            calibrated,
            q,
            units,
            steps_per_epoch,
            max_steps,
            epsilon_at_max,
        } => say(
            &bar,
            format!(
                "DP-SGD: σ = {sigma:.4}{}, q = {q:.5} of {units} units, {steps_per_epoch} steps per epoch, at most \
                 {max_steps} steps (ε = {epsilon_at_max:.3})",
                if calibrated { " (calibrated)" } else { "" }
            ),
        ),
        TrainEvent::BudgetSpent { epoch, epsilon } => say(
            &bar,
            format!("privacy budget spent after epoch {epoch} (ε = {epsilon:.3}): stopping"),
        ),
        TrainEvent::Warning(w) => say(&bar, format!("warning: {w}")),
    })?;
    bar.finish_and_clear();
    if let Some(dir) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    save_model(&a.out, &outcome.model)?;
    let secs = t0.elapsed().as_secs_f64();
    let meta = outcome.model.meta();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": a.out.display().to_string(),
                "arch": meta.arch.name(),
                "params": meta.params,
                "epochs_run": outcome.history.len(),
                "best_epoch": outcome.best_epoch,
                "best_val_macro_f1": outcome.best_val_macro_f1,
                "stopped_early": outcome.stopped_early,
                "seconds": secs,
                "privacy": meta.privacy,
                "history": outcome.history,
            }))?
        );
    } else {
        println!(
            "{} ({} parameters) trained in {secs:.1} s; best epoch {} with validation macro-F1 {}; written to {}",
            meta.arch.name(),
            meta.params,
            outcome.best_epoch,
            outcome.best_val_macro_f1.map_or("-".into(), |v| format!("{v:.4}")),
            a.out.display()
        );
        if let Some(p) = &meta.privacy {
            println!("privacy: {}", crate::ui::privacy_line(p));
        }
        println!(
            "evaluate it on the test split with: privpkt eval {} {}",
            a.out.display(),
            a.dataset.display()
        );
    }
    if outcome.history.is_empty() {
        bail!("no epoch was run");
    }
    Ok(())
}
