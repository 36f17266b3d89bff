//! `privpkt flower-client`: this organisation as a node of a federation run by Flower's own
//! server (a `flower-superlink` and a ServerApp such as `flower/` in this repository).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use privpkt_dataset::{Dataset, Split};
use privpkt_flower::auth::NodeKey;
use privpkt_flower::client::{Report, Timing};
use privpkt_flower::fleet::Node;
use privpkt_flower::records::Metric;
use privpkt_flower::trainer::{PrivpktTrainer, TrainerConfig};
use privpkt_flower::{serve, Event, Fleet, FleetConfig, ServeOptions, Tls};
use privpkt_nn::{Arch, TrainConfig};

use crate::dpargs::DpArgs;
use crate::trainargs::{arch_or_default, LocalOptimizerArgs};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Speaks Flower's Fleet API (flwr 1.40, protobuf over HTTP) directly: no Python on this \
machine. The node registers with its P-256 key (--node-key FILE, made by `privpkt flower-key FILE`; a fresh one \
per process without it), sends heartbeats while it trains, and answers `train` \
messages (local epochs on the --data train split; replies the weights, `num-examples` and train_loss, plus ε with \
--dp) and `evaluate` messages (the --eval-split: eval_loss, eval_acc, eval_macro_f1). Arrays that do not fit the \
local model get an error reply naming the tensor. Server config keys read: local-epochs, lr, server-round, \
privpkt-model, clipping_norm (Flower's client-side DP clipping). Ctrl-C (or SIGTERM) deactivates and unregisters the node.\n\nExamples:\n  privpkt flower-client \
--data ds --export-initial init            # initial weights for the ServerApp\n  privpkt flower-client --data ds \
--superlink 10.0.0.5:8000 --root-certificates ca.pem --save-global global.safetensors\n  privpkt flower-client \
--data ds --superlink 127.0.0.1:8000 --insecure --dp --epsilon 8 --rounds 10"
)]
pub struct FlowerArgs {
    /// This organisation's dataset (from `privpkt prepare`): trains on its train split.
    #[arg(long)]
    pub data: PathBuf,
    /// HOST:PORT of the SuperLink (`flower-superlink --port`, 8000 by default).
    #[arg(long, required_unless_present = "export_initial")]
    pub superlink: Option<String>,
    /// Plain HTTP, for a SuperLink started with --insecure.
    #[arg(long, conflicts_with = "root_certificates")]
    pub insecure: bool,
    /// PEM file of the CA that signed the SuperLink's certificate (HTTPS). Without it and
    /// without --insecure, public CAs are trusted.
    #[arg(long)]
    pub root_certificates: Option<PathBuf>,
    /// The node's persistent identity: a P-256 private key in PEM, readable by its owner only
    /// (`privpkt flower-key FILE` makes one). Needed to join a SuperLink started with
    /// --enable-supernode-auth, after `flwr supernode register FILE.pub`.
    #[arg(long, value_name = "FILE")]
    pub node_key: Option<PathBuf>,
    /// Write the model's initial weights for the ServerApp (0.npy, 1.npy, … and model.json)
    /// to this directory and exit.
    #[arg(long)]
    pub export_initial: Option<PathBuf>,
    /// Write every new global model received to this privpkt model file (for `privpkt eval`).
    #[arg(long)]
    pub save_global: Option<PathBuf>,
    /// Local epochs per round (the server's `local-epochs` config overrides it).
    #[arg(long, default_value_t = 1)]
    pub local_epochs: usize,
    /// Split the evaluate messages are answered on: test or val.
    #[arg(long, default_value = "test")]
    pub eval_split: String,
    /// Architecture (default by the dataset's representation, as for `train`); all
    /// organisations must use the same.
    #[arg(long)]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub local: LocalOptimizerArgs,
    /// Learning rate (the server's `lr` config overrides it).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Samples per step; with DP, privacy units expected per step (`full`: all of them).
    #[arg(long, default_value = "64", value_parser = crate::trainargs::parse_batch)]
    pub batch_size: usize,
    /// Seed of the exported initial weights, shuffling and dropout [default: 42]; with --dp it
    /// also keys noise and sampling (a reproducible experiment, not for real privacy).
    #[arg(long)]
    pub seed: Option<u64>,
    /// DP-SGD: the rounds the budget is planned for (σ is calibrated for rounds × local
    /// epochs; once the budget is spent the node answers train messages with an error).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Heartbeat interval in seconds (Flower accepts 10–1800): the node sends one every ~0.8 ×
    /// this, and the SuperLink counts it offline after twice this without one.
    #[arg(long, default_value_t = 30.0)]
    pub heartbeat_interval: f64,
    /// Seconds between polls for messages while idle.
    #[arg(long, default_value_t = 1.0)]
    pub poll_interval: f64,
    /// Retries (exponential backoff from 0.5 s, at most 8 s apart) before an unreachable
    /// SuperLink is an error.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
    /// Seconds one request may take: a SuperLink that accepts connections but never answers
    /// costs at most this per attempt.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub request_timeout: f64,
    /// Seconds after which no new attempt of a failing request starts: the longest a node
    /// waits for a SuperLink that is down or silent before it stops with an error.
    #[arg(long, default_value_t = 180.0, value_name = "SECONDS")]
    pub give_up_after: f64,
    /// One JSON object per answered message on stdout (timings included).
    #[arg(long)]
    pub json: bool,
    /// Local DP-SGD (one accountant for all rounds; ε is this organisation's).
    #[command(flatten)]
    pub dp: DpArgs,
}

fn train_config(a: &FlowerArgs, ds: &Dataset, private: bool) -> Result<TrainConfig> {
    let arch = arch_or_default(a.arch, ds);
    let cfg = TrainConfig {
        lr: a.lr,
        optimizer: a.local.optimizer(),
        batch_size: a.batch_size,
        seed: a.seed.unwrap_or(42),
        dp: if private { a.dp.config(a.seed.is_some())? } else { None },
        // Rounds train end to end; the SAE's greedy pre-training has no federated form.
        sae_pretrain_epochs: 0,
        ..TrainConfig::new(arch)
    };
    Ok(cfg)
}

/// What leaving did: a key the operator registered stays registered.
fn sign_off(node: &Node) -> &'static str {
    if node.self_registered() {
        "deactivated, unregistered"
    } else {
        "deactivated; its key stays registered"
    }
}

/// A finite, positive number of seconds given on the command line.
fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e9) {
        bail!("{flag} must be a finite number of seconds > 0, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

fn tls(a: &FlowerArgs) -> Result<Tls> {
    Ok(match (&a.root_certificates, a.insecure) {
        (Some(p), _) => Tls::RootCertificates(
            std::fs::read(p).with_context(|| format!("{}: cannot read the root certificates", p.display()))?,
        ),
        (None, true) => Tls::Insecure,
        (None, false) => Tls::WebPki,
    })
}

pub fn run(a: FlowerArgs) -> Result<()> {
    let ds = Dataset::open(&a.data)?;
    let Some(eval_split) = Split::parse(&a.eval_split).filter(|s| *s != Split::Train) else {
        bail!("--eval-split must be test or val, got `{}`", a.eval_split);
    };
    if let Some(dir) = &a.export_initial {
        // The initial weights do not depend on DP settings; they are checked when training.
        let trainer = PrivpktTrainer::new(
            &ds,
            TrainerConfig {
                train: train_config(&a, &ds, false)?,
                local_epochs: a.local_epochs,
                planned_rounds: None,
                eval_split,
                save_global: None,
            },
        )?;
        trainer.export_initial(dir)?;
        let d = trainer.description();
        println!(
            "{} initial arrays of {} ({} classes) written to {} with {}; fingerprint {}",
            d.params.len(),
            d.arch,
            d.classes.len(),
            dir.display(),
            privpkt_flower::trainer::MODEL_JSON,
            d.fingerprint
        );
        return Ok(());
    }
    if a.rounds.is_some() && !a.dp.dp {
        bail!("--rounds plans the DP-SGD budget: add --dp, or leave --rounds out (the server sets the rounds)");
    }
    let Some(address) = a.superlink.clone() else {
        bail!("--superlink HOST:PORT is required to join a federation");
    };
    if !(a.poll_interval.is_finite() && a.poll_interval > 0.0) {
        bail!(
            "--poll-interval must be a finite number of seconds > 0, got {}",
            a.poll_interval
        );
    }
    if let Some(p) = a
        .save_global
        .as_ref()
        .and_then(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(p).with_context(|| format!("{}: cannot create", p.display()))?;
    }
    let mut trainer = PrivpktTrainer::new(
        &ds,
        TrainerConfig {
            train: train_config(&a, &ds, true)?,
            local_epochs: a.local_epochs,
            planned_rounds: a.rounds,
            eval_split,
            save_global: a.save_global.clone(),
        },
    )?;
    let mut cfg = FleetConfig::new(&address, tls(&a)?);
    cfg.retries = a.retries;
    cfg.timeout = seconds("--request-timeout", a.request_timeout)?;
    cfg.give_up_after = seconds("--give-up-after", a.give_up_after)?;
    let fleet = Arc::new(match &a.node_key {
        Some(path) => Fleet::with_key(cfg, NodeKey::load_file(path)?)?,
        None => Fleet::new(cfg)?,
    });
    let url = fleet.url().to_string();
    let node = Arc::new(Node::connect(
        fleet,
        a.heartbeat_interval,
        Arc::new(|w| eprintln!("warning: {w}")),
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    install_signal_handler(stop.clone(), node.clone());

    let (n_train, n_eval) = trainer.sizes();
    let d = trainer.description();
    let server = node.fleet().server_version();
    if let Some(v) = &server {
        if !privpkt_flower::SUPPORTED_FLWR.iter().any(|s| v.starts_with(s)) {
            eprintln!(
                "warning: the SuperLink runs flwr {v}; this node speaks the Fleet API of flwr {} (tested: {})",
                privpkt_flower::FLWR_VERSION,
                privpkt_flower::SUPPORTED_FLWR.join(", ")
            );
        }
    }
    eprintln!(
        "node {} joined {url} (Flower Fleet API; SuperLink flwr {}): {} on {n_train} train / {n_eval} {} samples, \
         model {}{}; waiting for messages (Ctrl-C to leave)",
        node.node_id(),
        server.as_deref().unwrap_or("version not reported"),
        d.arch,
        eval_split.name(),
        d.fingerprint,
        trainer
            .dp_sigma()
            .map_or(String::new(), |s| format!(", DP-SGD σ = {s:.4}"))
    );
    let mut opts = ServeOptions::new(stop.clone());
    opts.poll_interval = Duration::from_secs_f64(a.poll_interval);
    let started = Instant::now();
    let json = a.json;
    let served = serve(&node, &mut trainer, &opts, &mut |e| show(&e, json));
    let closed = node.close();
    let answered = served?;
    match closed {
        Ok(()) => eprintln!(
            "node {} left the federation ({}) after {answered} messages in {:.0} s",
            node.node_id(),
            sign_off(&node),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("warning: node {} could not sign off cleanly: {e}", node.node_id()),
    }
    if let Some(p) = &a.save_global {
        if p.exists() {
            eprintln!(
                "last global model: {} (privpkt eval {} DATASET)",
                p.display(),
                p.display()
            );
        }
    }
    Ok(())
}

/// Ctrl-C / SIGTERM: the loop stops at its next check; if it is busy training, the handler
/// deactivates the node itself after a short grace and exits, so the server stops waiting
/// for this node at once. A second signal exits immediately.
fn install_signal_handler(stop: Arc<AtomicBool>, node: Arc<Node>) {
    let r = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("stopping: leaving the federation");
        std::thread::sleep(Duration::from_secs(2));
        if let Err(e) = node.close() {
            eprintln!("warning: node {} could not sign off cleanly: {e}", node.node_id());
        } else {
            eprintln!(
                "node {} left the federation ({}) while busy",
                node.node_id(),
                sign_off(&node)
            );
        }
        std::process::exit(0);
    });
    if let Err(e) = r {
        eprintln!("warning: no Ctrl-C handler ({e}): an interrupted node stays registered until it times out");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn metric(r: &Report, key: &str) -> Option<f64> {
    r.metrics.iter().find(|(k, _)| k == key).map(|(_, v)| match *v {
        Metric::Int(i) => i as f64,
        Metric::Float(f) => f,
    })
}

fn show(e: &Event<'_>, json: bool) {
    match e {
        Event::Received { .. } => {}
        Event::Warning(w) => eprintln!("warning: {w}"),
        Event::Replied(r) => {
            eprintln!("{}", line(r));
            if json {
                println!("{}", json_line(r));
            }
        }
    }
}

fn round_name(round: Option<i64>) -> String {
    round.map_or("message".into(), |r| format!("round {r}"))
}

/// One human line per answered message: what it did, then where the time went.
fn line(r: &Report) -> String {
    let t = &r.timing;
    let head = format!("{} {}", round_name(r.round), r.message_type);
    let cost = format!(
        "flower {:.0} ms (pull {:.0}, decode {:.0}, convert {:.0}, encode {:.0}, push {:.0}; {:.1} MB in, {:.1} MB \
         out)",
        ms(t.overhead()),
        ms(t.pull),
        ms(t.decode),
        ms(t.convert),
        ms(t.encode),
        ms(t.push),
        t.bytes_in as f64 / 1e6,
        t.bytes_out as f64 / 1e6
    );
    if let Some(err) = &r.error {
        return format!("{head}: error reply sent: {err} | {cost}");
    }
    match r.secagg_stage {
        Some("collect_masked_vectors") | None => {}
        Some(stage) => return format!("{head}: SecAgg+ {stage} answered | {cost}"),
    }
    let n = r.num_examples.unwrap_or(0);
    let masked = if r.secagg_stage.is_some() {
        ", sent masked (SecAgg+)"
    } else {
        ""
    };
    let what = match r.message_type.split('.').next() {
        Some("train") => format!(
            "{n} examples, loss {:.4}{}{}{masked} | training {:.2} s",
            metric(r, "train_loss").unwrap_or(f64::NAN),
            metric(r, "epsilon").map_or(String::new(), |e| format!(", ε {e:.3}")),
            r.clip.map_or(String::new(), |c| format!(
                ", update norm {:.4} → {:.4} (clipping_norm {})",
                c.norm_before, c.norm_after, c.clipping_norm
            )),
            t.compute().as_secs_f64()
        ),
        _ => format!(
            "{n} examples, loss {:.4}, accuracy {:.3}, macro-F1 {:.4} | evaluation {:.2} s",
            metric(r, "eval_loss").unwrap_or(f64::NAN),
            metric(r, "eval_acc").unwrap_or(f64::NAN),
            metric(r, "eval_macro_f1").unwrap_or(f64::NAN),
            t.compute().as_secs_f64()
        ),
    };
    format!("{head}: {what}, {cost}")
}

fn json_line(r: &Report) -> serde_json::Value {
    let t: &Timing = &r.timing;
    let metrics: serde_json::Map<String, serde_json::Value> = r
        .metrics
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                match *v {
                    Metric::Int(i) => i.into(),
                    Metric::Float(f) => f.into(),
                },
            )
        })
        .collect();
    serde_json::json!({
        "run_id": r.run_id,
        "type": r.message_type,
        "round": r.round,
        "num_examples": r.num_examples,
        "metrics": metrics,
        "error": r.error,
        "secagg_stage": r.secagg_stage,
        "clip": r.clip.map(|c| serde_json::json!({
            "clipping_norm": c.clipping_norm,
            "norm_before": c.norm_before,
            "norm_after": c.norm_after,
        })),
        "ms": {
            "pull": ms(t.pull),
            "decode": ms(t.decode),
            "work": ms(t.work),
            "convert": ms(t.convert),
            "encode": ms(t.encode),
            "push": ms(t.push),
            "overhead": ms(t.overhead()),
            "compute": ms(t.compute()),
        },
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
    })
}

/// `privpkt flower-key`: a node identity for a SuperLink that admits only registered keys.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Writes FILE (the P-256 private key, PKCS#8 PEM, mode 600) and FILE.pub (its public \
half in OpenSSH format). Neither is ever replaced. Then:\n  flwr supernode register FILE.pub [SUPERLINK]   # \
the federation's operator, once per organisation\n  privpkt flower-client --node-key FILE --superlink HOST:PORT \
...\n\nA SuperLink started with --enable-supernode-auth refuses nodes whose key is not registered. Keep FILE on \
the node's machine only: whoever holds it can join as this organisation."
)]
pub struct FlowerKeyArgs {
    /// Where to write the private key (its public half goes to FILE.pub).
    pub file: PathBuf,
}

pub fn run_key(a: FlowerKeyArgs) -> Result<()> {
    let (_, public) = NodeKey::create_file(&a.file)?;
    println!(
        "node key: {} (private, mode 600)\npublic key: {}\nregister it: flwr supernode register {} [SUPERLINK]",
        a.file.display(),
        public.display(),
        public.display()
    );
    Ok(())
}
