//! What the command-line tests share: running the binary, and a sweep small enough for a
//! debug build.
#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::{Command, Output};

/// `privpkt ARGS` in `cwd`.
pub fn privpkt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_privpkt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("runs")
}

/// Stdout of a run that must succeed (the failure shows both streams).
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout then stderr (progress lines) of a run that must succeed.
pub fn ok_all(o: &Output) -> String {
    ok(o) + &String::from_utf8_lossy(&o.stderr)
}

/// Stderr of a run that must fail (with the reason a user reads).
pub fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `privpkt synth` into `cwd/caps`: `captures_per_class` captures of `flows_per_capture` flows
/// for each of `categories` (and their VPN variants when `vpn`); its JSON summary.
pub fn synth_caps(
    cwd: &Path,
    categories: &str,
    vpn: bool,
    captures_per_class: usize,
    flows_per_capture: usize,
) -> serde_json::Value {
    let (cpc, fpc) = (captures_per_class.to_string(), flows_per_capture.to_string());
    let mut args = vec!["synth", "--out", "caps", "--categories", categories, "--json"];
    if !vpn {
        args.push("--no-vpn");
    }
    args.extend(["--captures-per-class", &cpc, "--flows-per-capture", &fpc]);
    json(&privpkt(&args, cwd))
}

/// Stdout of a successful run as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Eight cells (centralised and FedAvg over 3 organisations, without DP and at ε = 8, two
/// seeds) of the MLP on 80 synthetic flows' behaviour: seconds in a debug build. The batch is
/// small because DP-SGD needs the expected batch within each organisation's few flows; the
/// `<script>` in the title checks escaping end to end.
pub const TINY_PLAN: &str = r#"title = "tiny <script>"
[data]
synthetic = { seed = 7, captures_per_class = 1, flows_per_capture = 8 }
packets = 10
[train]
epochs = 2
rounds = 2
local_epochs = 1
batch_size = 4
[attack]
kinds = ["loss"]
[sweep]
setting = ["centralised", "fedavg"]
organisations = [3]
partition = ["iid"]
epsilon = ["none", 8]
model = ["mlp"]
seed = [1, 2]
"#;
