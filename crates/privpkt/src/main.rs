//! `privpkt`: privacy-preserving, collaborative classification of encrypted traffic.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use privpkt::{
    cmd_attack, cmd_audit, cmd_classify, cmd_eval, cmd_federate, cmd_flower, cmd_inspect, cmd_plot, cmd_prepare,
    cmd_privacy, cmd_report, cmd_synth, cmd_train, demo, experiment,
};

#[derive(Parser)]
#[command(
    name = "privpkt",
    version,
    about = "Privacy-preserving, collaborative classification of encrypted network traffic",
    long_about = "privpkt turns packet captures into Deep Packet vectors and FlowPic images, trains traffic \
classifiers on them, alone or federated across organisations, with differential privacy, and measures what \
the trained models leak.\n\nStart with `privpkt demo`, which runs the whole pipeline on synthetic traffic.",
    after_help = "Typical workflow:\n  privpkt synth --out caps\n  privpkt prepare caps --out ds\n  privpkt inspect ds --plots ds/plots\n  privpkt train ds --out model.safetensors\n  privpkt eval model.safetensors ds\n  privpkt classify model.safetensors new.pcap"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write synthetic labelled traffic (pcap/pcapng + flows_labels.csv) of several app classes.
    Synth(cmd_synth::SynthArgs),
    /// Turn captures into a labelled, split dataset: flow behaviour (default), Deep Packet vectors or FlowPic images.
    Prepare(cmd_prepare::PrepareArgs),
    /// Summarise a dataset: counts per class, flow and capture, skipped records; draw plots.
    Inspect(cmd_inspect::InspectArgs),
    /// Train a classifier on a dataset (early stopping on its validation split), optionally with DP-SGD.
    Train(cmd_train::TrainArgs),
    /// Evaluate a model on a dataset split beside the header-only baseline.
    Eval(cmd_eval::EvalArgs),
    /// Classify the flows of captures with a trained model.
    Classify(cmd_classify::ClassifyArgs),
    /// Federated learning simulated on one machine: FedAvg/FedProx over client partitions of a dataset.
    Federate(cmd_federate::FederateArgs),
    /// Join a federation run by Flower's own server (flwr 1.40–1.42) as one organisation's node (SecAgg+ included).
    FlowerClient(cmd_flower::FlowerArgs),
    /// Make a node key for `flower-client --node-key` (and its public half for `flwr supernode register`).
    FlowerKey(cmd_flower::FlowerKeyArgs),
    /// ε of a DP-SGD/DP-FedAvg setting under the RDP and PRV accountants, or σ for a target ε.
    Privacy(cmd_privacy::PrivacyArgs),
    /// Membership inference (loss, Shokri, LiRA) against a trained model: does it leak its training flows?
    Attack(cmd_attack::AttackArgs),
    /// Empirical lower bound on a DP-SGD setting's ε from one training run with canaries, beside the accountant's.
    Audit(cmd_audit::AuditArgs),
    /// Draw a line chart with error bars from a JSON description (for experiment sweeps).
    Plot(cmd_plot::PlotArgs),
    /// Sweep ε, organisations, partition, model and seed from a plan.toml: CSV, plots, report.html (resumable).
    Experiment(experiment::ExperimentArgs),
    /// Rebuild report.html (self-contained, plots inline) from an experiment's results.json.
    Report(cmd_report::ReportArgs),
    /// The whole pipeline on an embedded default: synthetic traffic → 3 organisations → centralised,
    /// FedAvg, FedAvg + DP → membership inference → report.html.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `privpkt ... | head` would die with a panic on the next print;
    // restore the default so a closed pipe ends the process quietly, as for any Unix tool.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    privpkt_nn::tune_allocator();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Synth(a) => cmd_synth::run(a),
        Cmd::Prepare(a) => cmd_prepare::run(a),
        Cmd::Inspect(a) => cmd_inspect::run(a),
        Cmd::Train(a) => cmd_train::run(a),
        Cmd::Eval(a) => cmd_eval::run(a),
        Cmd::Classify(a) => cmd_classify::run(a),
        Cmd::Federate(a) => cmd_federate::run(a),
        Cmd::FlowerClient(a) => cmd_flower::run(a),
        Cmd::FlowerKey(a) => cmd_flower::run_key(a),
        Cmd::Privacy(a) => cmd_privacy::run(a),
        Cmd::Attack(a) => cmd_attack::run(a),
        Cmd::Audit(a) => cmd_audit::run(a),
        Cmd::Plot(a) => cmd_plot::run(a),
        Cmd::Experiment(a) => experiment::run(a),
        Cmd::Report(a) => cmd_report::run(a),
        Cmd::Demo(a) => demo::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", privpkt::ui::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
