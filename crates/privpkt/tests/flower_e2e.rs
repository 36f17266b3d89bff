//! `privpkt flower-client` against Flower's real server: a `flower-superlink` (flwr 1.40.0,
//! from a cached venv in the target directory), the ServerApp in `flower/` running Flower's
//! FedAvg, and privpkt nodes as separate processes.
//!
//! One federation covers: 3 rounds completed; a node whose data makes another model gets error
//! replies that reach the server's log; a node killed (SIGKILL) after round 1 does not stop the
//! others (the SuperLink marks it offline after 2 × its 10 s heartbeat interval and answers its
//! message with an error); the survivors' last global model equals the ServerApp's final
//! arrays and classifies above chance; Ctrl-C makes a node sign off and exit 0.
//!
//! Without python3 / PyPI the federation test prints SKIP and passes, unless `CI` is set.

#[path = "../../nn/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{write_dataset, Kind};

const FLWR: &str = "1.40.0";

fn privpkt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_privpkt"))
}

/// The target directory (the binary lives in `<target>/<profile>/`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_privpkt"))
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in <target>/<profile>")
        .to_path_buf()
}

fn skip_or_fail(why: String) -> Option<PathBuf> {
    if std::env::var_os("CI").is_some() {
        panic!("Flower end-to-end test cannot run in CI: {why}");
    }
    eprintln!("SKIP flower end-to-end test: {why}");
    None
}

/// A venv with flwr 1.40.0, made once and kept in the target directory (ignored by git).
fn venv() -> Option<PathBuf> {
    venv_with(FLWR)
}

/// A venv with flwr `version`, made once and kept in the target directory.
fn venv_with(version: &str) -> Option<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join(format!("flwr-venv-{version}"));
    let ready = dir.join(".privpkt-ready");
    if ready.exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let run = |cmd: &mut Command| match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        )),
        Err(e) => Err(format!("{cmd:?}: {e}")),
    };
    let made = run(Command::new("python3").args(["-m", "venv"]).arg(&dir)).and_then(|()| {
        run(Command::new(dir.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("flwr=={version}"),
        ]))
    });
    match made {
        Ok(()) => {
            std::fs::write(&ready, version).unwrap();
            Some(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            skip_or_fail(format!("no Python venv with flwr=={version}: {e}"))
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines a process writes, gathered by a thread.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                l.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        self.all().join("\n")
    }

    /// Waits until a line satisfies `pred`.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.all().iter().any(|l| pred(l)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no {what} within {timeout:?}; output so far:\n{}", self.text());
    }
}

/// A started process with its output.
struct Proc {
    name: String,
    child: Child,
    out: Lines,
    err: Lines,
    /// Its own process group (the SuperLink's children die with it).
    group: bool,
}

/// Every process a test started, killed by PID (or process group) on drop, so a failing
/// assertion leaves nothing running.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn start(&mut self, name: &str, cmd: &mut Command, group: bool) -> usize {
        use std::os::unix::process::CommandExt;
        if group {
            cmd.process_group(0);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = Lines::follow(child.stdout.take().unwrap());
        let err = Lines::follow(child.stderr.take().unwrap());
        self.0.push(Proc {
            name: name.into(),
            child,
            out,
            err,
            group,
        });
        self.0.len() - 1
    }

    fn signal(&self, i: usize, sig: i32) {
        let pid = self.0[i].child.id() as i32;
        // SAFETY: kill(2) on a process (group) this test started and has not reaped.
        unsafe {
            libc::kill(if self.0[i].group { -pid } else { pid }, sig);
        }
    }

    /// Everything the processes wrote, for failure messages.
    fn dump(&self) -> String {
        self.0
            .iter()
            .map(|p| {
                let err = p.err.all();
                let tail = err[err.len().saturating_sub(25)..].join("\n");
                format!("--- {} (stderr tail)\n{tail}", p.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for i in 0..self.0.len() {
            if matches!(self.0[i].child.try_wait(), Ok(None)) {
                self.signal(i, libc::SIGKILL);
            }
            let _ = self.0[i].child.wait();
        }
    }
}

/// Waits until the SuperLink started as `procs[link]` accepts connections on `port`.
fn wait_for_port(port: u16, procs: &mut Procs, link: usize) {
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(60),
            "SuperLink not up:\n{}",
            procs.dump()
        );
        assert!(
            matches!(procs.0[link].child.try_wait(), Ok(None)),
            "SuperLink exited:\n{}",
            procs.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn flwr(venv: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(venv.join("bin/flwr"))
        .args(args)
        .envs(flwr_env(venv, home))
        .output()
        .expect("flwr runs")
}

fn flwr_env(venv: &Path, home: &Path) -> Vec<(String, String)> {
    // The SuperLink starts `flower-superexec` from PATH.
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    vec![
        ("PATH".into(), path),
        ("FLWR_HOME".into(), home.display().to_string()),
        ("FLWR_TELEMETRY_ENABLED".into(), "0".into()),
        ("FLWR_DISABLE_UPDATE_CHECK".into(), "1".into()),
    ]
}

fn json_lines(lines: &Lines) -> Vec<serde_json::Value> {
    lines
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Writes `--export-initial` of dataset `ds` into `dir/out`; returns what it printed.
fn export_initial(dir: &Path, ds: &str, out: &str) -> String {
    let o = privpkt()
        .args(["flower-client", "--data"])
        .arg(dir.join(ds))
        .arg("--export-initial")
        .arg(dir.join(out))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A flwr home in `dir` whose config names the SuperLink on `port` "e2e" (plain HTTP, or
/// HTTPS trusting `ca`).
fn flwr_home(dir: &Path, port: u16, ca: Option<&Path>) -> PathBuf {
    let home = dir.join("flwr-home");
    std::fs::create_dir_all(&home).unwrap();
    let transport = match ca {
        Some(ca) => format!("root-certificates = \"{}\"", ca.display()),
        None => "insecure = true".into(),
    };
    std::fs::write(
        home.join("config.toml"),
        format!("[superlink]\ndefault = \"e2e\"\n\n[superlink.e2e]\naddress = \"127.0.0.1:{port}\"\n{transport}\n"),
    )
    .unwrap();
    home
}

/// Starts a plain-HTTP node for each dataset in `names` and waits until all have joined.
fn join_nodes(procs: &mut Procs, dir: &Path, port: u16, names: &[&str]) -> Vec<usize> {
    let nodes: Vec<usize> = names
        .iter()
        .map(|n| procs.start(n, &mut client(dir, n, port, &[]), false))
        .collect();
    for &i in &nodes {
        wait_joined(procs, i, "http");
    }
    nodes
}

/// Ctrl-C to node `i`, and waits (at most 15 s) until it has exited.
fn interrupt(procs: &mut Procs, i: usize) {
    procs.signal(i, libc::SIGINT);
    let end = Instant::now() + Duration::from_secs(15);
    while matches!(procs.0[i].child.try_wait(), Ok(None)) {
        assert!(Instant::now() < end, "{} did not stop after Ctrl-C", procs.0[i].name);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for node `i` to say it joined over `scheme` (http or https).
fn wait_joined(procs: &Procs, i: usize, scheme: &str) {
    let want = format!(" joined {scheme}://127.0.0.1:");
    procs.0[i]
        .err
        .wait_for("`joined` line", Duration::from_secs(60), |l| l.contains(&want));
}

fn client(dir: &Path, ds: &str, port: u16, extra: &[&str]) -> Command {
    let mut c = privpkt();
    c.args(["flower-client", "--data"])
        .arg(dir.join(ds))
        .args(["--superlink", &format!("127.0.0.1:{port}"), "--insecure"])
        .args(["--batch-size", "16", "--heartbeat-interval", "10", "--json"])
        .args(extra);
    if !extra.contains(&"--poll-interval") {
        c.args(["--poll-interval", "0.3"]);
    }
    c
}

#[test]
fn flower_federation_end_to_end() {
    let t0 = Instant::now();
    let Some(venv) = venv() else { return };
    let setup = t0.elapsed();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // Three organisations with their own data of the same 3 classes, one with 4 classes.
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        write_dataset(&dir.join(name), Kind::DeepPacket, 3, 100, 10 + i as u64);
    }
    write_dataset(&dir.join("misfit"), Kind::DeepPacket, 4, 40, 20);
    let init = dir.join("init");
    assert!(export_initial(dir, "a", "init").contains("12 initial arrays of deeppacket-app (3 classes)"));

    let port = free_port();
    let home = flwr_home(dir, port, None);
    let mut procs = Procs::default();
    start_superlink(&mut procs, &venv, &home, dir, port, &[]);

    let nodes: Vec<usize> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let save = dir.join(format!("global-{n}.safetensors"));
            let save = save.to_str().unwrap();
            procs.start(n, &mut client(dir, n, port, &["--save-global", save]), false)
        })
        .collect();
    let misfit = procs.start("misfit", &mut client(dir, "misfit", port, &[]), false);
    for &i in nodes.iter().chain([&misfit]) {
        wait_joined(&procs, i, "http");
    }

    let final_dir = dir.join("final");
    let run_config = format!(
        "initial-arrays=\"{}\" save-final=\"{}\" num-server-rounds=3 local-epochs=2 min-nodes=2",
        init.display(),
        final_dir.display()
    );
    let fed_start = Instant::now();
    let run_id = start_run(&venv, &home, &run_config);

    // Node a dies after answering round 1's evaluate message.
    let a = nodes[0];
    procs.0[a]
        .out
        .wait_for("round 1 evaluate reply of node a", Duration::from_secs(180), |l| {
            l.contains("\"type\":\"evaluate\"") && l.contains("\"round\":1")
        });
    procs.signal(a, libc::SIGKILL);

    let (status, log) = wait_run(&venv, &home, &run_id, &procs);
    let fed_time = fed_start.elapsed();
    assert_eq!(status, "finished:completed", "server log:\n{log}\n{}", procs.dump());

    // The misfit's error replies were sent and reached the strategy.
    let misfit_err = procs.0[misfit].err.text();
    assert!(
        misfit_err.contains("error reply sent: the global model does not fit this node: array 10 (`10`, the local model's `out.weight`) has shape [50, 3], the local model needs [50, 4]"),
        "{misfit_err}"
    );
    assert!(log.contains("Received error in reply from node"), "{log}");
    assert!(
        log.contains("has shape [50, 3], the local model needs [50, 4]"),
        "{log}"
    );

    // The survivors trained all 3 rounds (2 local epochs from the server's config) and
    // evaluated the last global model, which both saved; it is the ServerApp's final model.
    let mut rows = Vec::new();
    for &i in &nodes[1..] {
        let replies = json_lines(&procs.0[i].out);
        let trains: Vec<&serde_json::Value> = replies.iter().filter(|r| r["type"] == "train").collect();
        assert_eq!(trains.len(), 3, "{}", procs.0[i].out.text());
        for r in &trains {
            assert!(r["error"].is_null(), "{r}");
            assert_eq!(
                r["metrics"]["train_samples_seen"],
                2 * r["num_examples"].as_u64().unwrap()
            );
            rows.push((
                procs.0[i].name.clone(),
                r["round"].as_i64().unwrap(),
                r["ms"].clone(),
                r["bytes_in"].clone(),
            ));
        }
        assert!(replies.iter().any(|r| r["type"] == "evaluate" && r["round"] == 3));
    }
    let b = privpkt_nn::load_model(&dir.join("global-b.safetensors")).unwrap();
    let c = privpkt_nn::load_model(&dir.join("global-c.safetensors")).unwrap();
    assert_eq!(b.params().values, c.params().values);
    for (t, v) in b.params().values.iter().enumerate() {
        let (info, bytes) =
            privpkt_dataset::npy::read_bytes(&final_dir.join(format!("{t}.npy")), privpkt_dataset::npy::Dtype::F32)
                .unwrap();
        assert_eq!(info.shape.iter().product::<u64>() as usize, v.len());
        let fin: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(&fin, v, "tensor {t} differs from the ServerApp's final arrays");
    }
    let eval = privpkt()
        .args(["eval"])
        .arg(dir.join("global-b.safetensors"))
        .arg(dir.join("b"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let (f1, acc) = (
        eval["report"]["macro_f1"].as_f64().unwrap(),
        eval["report"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        f1 > 0.6 && acc > 0.6,
        "global model: macro-F1 {f1}, accuracy {acc} (chance 1/3)"
    );

    // Ctrl-C: the survivors sign off (deactivate, unregister) and exit 0.
    for &i in &nodes[1..] {
        procs.signal(i, libc::SIGINT);
    }
    for &i in &nodes[1..] {
        let end = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = procs.0[i].child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "{} did not stop after Ctrl-C", procs.0[i].name);
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "{}: {status}\n{}",
            procs.0[i].name,
            procs.0[i].err.text()
        );
        procs.0[i].err.wait_for("sign-off line", Duration::from_secs(5), |l| {
            l.contains("left the federation")
        });
    }

    eprintln!(
        "flower e2e: venv {:.1} s, federation {:.1} s (3 rounds, 4 nodes, one killed), total {:.1} s; macro-F1 {f1:.3}",
        setup.as_secs_f64(),
        fed_time.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    eprintln!("node round  train ms  flower ms  (pull decode convert encode push)  MB in");
    for (n, r, ms, bytes) in rows {
        let f = |k: &str| ms[k].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "{n:>4} {r:>5} {:>9.0} {:>10.0}  ({:.0} {:.0} {:.0} {:.0} {:.0})  {:.1}",
            f("compute"),
            f("overhead"),
            f("pull"),
            f("decode"),
            f("convert"),
            f("encode"),
            f("push"),
            bytes.as_f64().unwrap_or(0.0) / 1e6
        );
    }
}

/// A private CA and a certificate for 127.0.0.1 signed by it, made with the venv's
/// `cryptography` (a flwr dependency), so the test needs no openssl.
const MAKE_CERTS: &str = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
def cert(subject, key, issuer, issuer_key, ca):
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = (b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return b.sign(issuer_key, hashes.SHA256())
pem = serialization.Encoding.PEM
for ca_name in ("ca", "other-ca"):
    k = ec.generate_private_key(ec.SECP256R1())
    c = cert(ca_name, k, ca_name, k, True)
    open(f"{ca_name}.pem", "wb").write(c.public_bytes(pem))
    if ca_name == "ca":
        sk = ec.generate_private_key(ec.SECP256R1())
        open("server.pem", "wb").write(cert("superlink", sk, "ca", k, False).public_bytes(pem))
        open("server.key", "wb").write(sk.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;

/// Runs `MAKE_CERTS` in `dir`.
fn make_certs(venv: &Path, dir: &Path) {
    let o = Command::new(venv.join("bin/python"))
        .args(["-c", MAKE_CERTS])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// HTTPS: a node trusting the SuperLink's private CA joins and signs off; one trusting
/// another CA is refused with the certificate error.
#[test]
fn https_with_a_private_ca() {
    let Some(venv) = venv() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    make_certs(&venv, dir);
    write_dataset(&dir.join("ds"), Kind::DeepPacket, 3, 20, 1);
    let port = free_port();
    let home = flwr_home(dir, port, Some(&dir.join("ca.pem")));
    let mut procs = Procs::default();
    start_superlink(&mut procs, &venv, &home, dir, port, &TLS_ARGS);
    let node = |ca: &str| {
        let mut c = privpkt();
        c.args(["flower-client", "--data"])
            .arg(dir.join("ds"))
            .args(["--superlink", &format!("127.0.0.1:{port}"), "--root-certificates"])
            .arg(dir.join(ca))
            .args(["--retries", "1"]);
        c
    };
    let good = procs.start("node", &mut node("ca.pem"), false);
    wait_joined(&procs, good, "https");
    interrupt(&mut procs, good);
    assert!(procs.0[good].child.wait().unwrap().success());
    procs.0[good]
        .err
        .wait_for("sign-off line", Duration::from_secs(5), |l| {
            l.contains("left the federation")
        });

    let o = node("other-ca.pem").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn unreachable_superlink_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    write_dataset(&d.path().join("ds"), Kind::DeepPacket, 3, 20, 1);
    let port = free_port();
    let t = Instant::now();
    let o = privpkt()
        .args(["flower-client", "--data"])
        .arg(d.path().join("ds"))
        .args([
            "--superlink",
            &format!("127.0.0.1:{port}"),
            "--insecure",
            "--retries",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    assert!(
        err.contains(&format!(
            "cannot reach the SuperLink at http://127.0.0.1:{port} (register-node) after 3 attempts"
        )),
        "{err}"
    );
}

#[test]
fn bad_settings_are_refused_before_connecting() {
    let d = tempfile::tempdir().unwrap();
    write_dataset(&d.path().join("ds"), Kind::DeepPacket, 3, 20, 1);
    let run = |extra: &[&str]| {
        let o = privpkt()
            .args(["flower-client", "--data"])
            .arg(d.path().join("ds"))
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{extra:?} was accepted");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    assert!(run(&["--superlink", "localhost", "--insecure"]).contains("expected HOST:PORT"));
    assert!(run(&["--superlink", "127.0.0.1:1", "--insecure", "--dp", "--epsilon", "4"]).contains("--rounds"));
    assert!(run(&["--superlink", "127.0.0.1:1", "--epsilon", "4"]).contains("add --dp"));
    assert!(run(&["--superlink", "127.0.0.1:1", "--insecure", "--heartbeat-interval", "5"]).contains("10–1800"));
    assert!(run(&["--superlink", "127.0.0.1:1", "--insecure", "--eval-split", "train"]).contains("test or val"));
    assert!(run(&["--insecure"]).contains("--superlink"));
    assert!(
        run(&["--superlink", "127.0.0.1:1", "--insecure", "--request-timeout", "inf"])
            .contains("--request-timeout must be a finite number of seconds > 0")
    );
    assert!(
        run(&["--superlink", "127.0.0.1:1", "--insecure", "--give-up-after", "0"])
            .contains("--give-up-after must be a finite number of seconds > 0")
    );
    assert!(run(&["--superlink", "127.0.0.1:1", "--insecure", "--rounds", "3"]).contains("add --dp"));
}

/// Starts `flwr run` of the app with `run_config`; returns the run id.
fn start_run(venv: &Path, home: &Path, run_config: &str) -> String {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flower");
    let o = flwr(
        venv,
        home,
        &[
            "run",
            app.to_str().unwrap(),
            "e2e",
            "--run-config",
            run_config,
            "--format",
            "json",
        ],
    );
    let started: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "flwr run: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert_eq!(started["success"], true, "{started}");
    started["run-id"].as_str().expect("run-id").to_string()
}

/// Waits (at most 240 s) for the run's final status; returns it with the ServerApp's log.
fn wait_run(venv: &Path, home: &Path, run_id: &str, procs: &Procs) -> (String, String) {
    let t = Instant::now();
    let status = loop {
        let o = flwr(venv, home, &["ls", "e2e", "--run-id", run_id, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let s = v["runs"][0]["status"].as_str().unwrap_or("").to_string();
        if s.starts_with("finished:") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "run {run_id} still `{s}` after 240 s:\n{}",
            procs.dump()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = flwr(venv, home, &["log", run_id, "e2e", "--show"]);
    (status, String::from_utf8_lossy(&log.stdout).to_string())
}

/// Starts a run and waits for its final status and log.
fn run_to_end(venv: &Path, home: &Path, run_config: &str, procs: &Procs) -> (String, String) {
    let run_id = start_run(venv, home, run_config);
    wait_run(venv, home, &run_id, procs)
}

/// Flower's own DP wrappers around privpkt nodes: with client-side fixed clipping every update
/// the ServerApp receives is within `clipping_norm` (a norm probe inside the wrapper measures
/// it); with adaptive clipping each reply's `norm_bit` says whether the node's update was
/// above the norm; a round in which every node replies with an error fails the run.
#[test]
fn flower_dp_wrappers_receive_clipped_updates() {
    let Some(venv) = venv() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for (i, name) in ["a", "b"].iter().enumerate() {
        write_dataset(&dir.join(name), Kind::DeepPacket, 3, 60, 30 + i as u64);
    }
    write_dataset(&dir.join("four"), Kind::DeepPacket, 4, 30, 40);
    export_initial(dir, "a", "init");
    export_initial(dir, "four", "init4");
    let port = free_port();
    let home = flwr_home(dir, port, None);
    let mut procs = Procs::default();
    start_superlink(&mut procs, &venv, &home, dir, port, &[]);
    let nodes = join_nodes(&mut procs, dir, port, &["a", "b"]);

    // 1. Client-side fixed clipping at 0.01: unclipped updates are ~100× larger.
    let probe = dir.join("fixed.jsonl");
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=2 min-nodes=2 dp=\"client-fixed\" dp-clipping-norm=0.01 \
         dp-noise-multiplier=0.5 norm-probe=\"{}\"",
        dir.join("init").display(),
        probe.display()
    );
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    assert!(log.contains("central DP noise with"), "{log}");
    let seen: Vec<serde_json::Value> = std::fs::read_to_string(&probe)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), 4, "2 rounds × 2 nodes: {seen:?}");
    for s in &seen {
        let norm = s["norm"].as_f64().unwrap();
        assert!(
            norm <= 0.01 * (1.0 + 1e-4) && norm > 0.0095,
            "update norm {norm} with clipping_norm 0.01"
        );
        assert_eq!(s["norm_bit"], 1, "{s}");
    }
    for &i in &nodes {
        let trains: Vec<serde_json::Value> = json_lines(&procs.0[i].out)
            .into_iter()
            .filter(|r| r["type"] == "train")
            .collect();
        assert_eq!(trains.len(), 2);
        for r in &trains {
            let before = r["clip"]["norm_before"].as_f64().unwrap();
            assert!(before > 0.1, "the node's update before clipping: {before}");
            assert!(r["clip"]["norm_after"].as_f64().unwrap() <= 0.01 * (1.0 + 1e-9));
        }
        procs.0[i].err.wait_for("clipping line", Duration::from_secs(5), |l| {
            l.contains("update norm") && l.contains("(clipping_norm 0.01)")
        });
    }

    // 2. Adaptive clipping from a norm above the updates: norm_bit 0 where the node's update
    //    was within the norm, and the probe sees the update unclipped.
    let probe = dir.join("adaptive.jsonl");
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=1 min-nodes=2 dp=\"client-adaptive\" dp-clipping-norm=1000.0 \
         dp-noise-multiplier=0.5 dp-clipped-count-stddev=1.0 norm-probe=\"{}\"",
        dir.join("init").display(),
        probe.display()
    );
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    let seen: Vec<serde_json::Value> = std::fs::read_to_string(&probe)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s["norm_bit"], 0, "{s}");
        assert!(s["norm"].as_f64().unwrap() < 1000.0);
    }

    // 3. Initial arrays of a 4-class model: every node refuses, and the run fails instead of
    //    "completing" on the initial weights.
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=2 min-nodes=2",
        dir.join("init4").display()
    );
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:failed", "{log}\n{}", procs.dump());
    assert!(log.contains("every node's train reply was an error (2 of 2)"), "{log}");
    assert!(log.contains("does not fit this node"), "{log}");
}

/// The SuperLink's TLS settings with the certificates `MAKE_CERTS` writes.
const TLS_ARGS: [&str; 6] = [
    "--ssl-ca-certfile",
    "ca.pem",
    "--ssl-certfile",
    "server.pem",
    "--ssl-keyfile",
    "server.key",
];

/// Starts a SuperLink on `port` with `args` (plain HTTP unless they set up TLS), in `dir`, and
/// waits for its port.
fn start_superlink(procs: &mut Procs, venv: &Path, home: &Path, dir: &Path, port: u16, args: &[&str]) -> usize {
    let mut cmd = Command::new(venv.join("bin/flower-superlink"));
    if !args.contains(&"--ssl-certfile") {
        cmd.arg("--insecure");
    }
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg("--disable-runtime-dependency-installation")
        .envs(flwr_env(venv, home))
        .current_dir(dir);
    let link = procs.start("superlink", &mut cmd, true);
    wait_for_port(port, procs, link);
    link
}

/// Kills the SuperLink (its whole process group) and waits until it is gone.
fn kill_superlink(procs: &mut Procs, link: usize) {
    procs.signal(link, libc::SIGKILL);
    let _ = procs.0[link].child.wait();
}

/// A SuperLink restarted with `--database` keeps its nodes; one restarted without it has
/// forgotten them, and the node registers again and goes on. Both times a run completes.
#[test]
fn nodes_survive_superlink_restarts() {
    let Some(venv) = venv() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_dataset(&dir.join("a"), Kind::DeepPacket, 3, 40, 50);
    export_initial(dir, "a", "init");
    let port = free_port();
    let home = flwr_home(dir, port, None);
    let db = dir.join("superlink.db");
    let with_db = ["--database", db.to_str().unwrap()];
    let mut procs = Procs::default();
    let link = start_superlink(&mut procs, &venv, &home, dir, port, &with_db);
    let node = procs.start("a", &mut client(dir, "a", port, &["--give-up-after", "90"]), false);
    wait_joined(&procs, node, "http");
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=1 min-nodes=1",
        dir.join("init").display()
    );

    // Restarted with its database: the node is still known.
    kill_superlink(&mut procs, link);
    let link = start_superlink(&mut procs, &venv, &home, dir, port, &with_db);
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    assert!(
        !procs.0[node].err.text().contains("registered again"),
        "{}",
        procs.dump()
    );

    // Restarted without it: the node is forgotten, says so, registers again and trains.
    kill_superlink(&mut procs, link);
    start_superlink(&mut procs, &venv, &home, dir, port, &[]);
    procs.0[node]
        .err
        .wait_for("re-registration line", Duration::from_secs(60), |l| {
            l.contains("no longer knows node") && l.contains("registered again as node")
        });
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    let trains = json_lines(&procs.0[node].out)
        .into_iter()
        .filter(|r| r["type"] == "train" && r["error"].is_null())
        .count();
    assert_eq!(trains, 2, "{}", procs.0[node].out.text());
}

/// A SuperLink that accepts connections and never answers: the node gives up after
/// --give-up-after with an error that says so, instead of hanging for many minutes.
#[test]
fn silent_superlink_is_an_error_in_bounded_time() {
    let d = tempfile::tempdir().unwrap();
    write_dataset(&d.path().join("a"), Kind::DeepPacket, 3, 20, 60);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for c in listener.incoming().take(64) {
            open.push(c);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let t = Instant::now();
    let o = client(
        d.path(),
        "a",
        port,
        &["--request-timeout", "0.5", "--give-up-after", "2"],
    )
    .output()
    .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}: {err}");
    assert!(
        err.contains(&format!("cannot reach the SuperLink at http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("timeout") || err.contains("timed out"), "{err}");
}

/// A SuperLink with `--enable-supernode-auth` (which needs TLS) admits only keys the operator
/// registered with `flwr supernode register`: a node with a registered `--node-key` joins and
/// leaves it registered; one with another key is refused with an error that says how to
/// register it; a key file others can read is refused before connecting.
#[test]
fn only_registered_node_keys_join() {
    let Some(venv) = venv() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    make_certs(&venv, dir);
    write_dataset(&dir.join("ds"), Kind::DeepPacket, 3, 20, 2);
    for key in ["admitted.key", "stranger.key"] {
        let o = privpkt().arg("flower-key").arg(dir.join(key)).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("flwr supernode register"));
    }
    let again = privpkt()
        .arg("flower-key")
        .arg(dir.join("admitted.key"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let port = free_port();
    let home = flwr_home(dir, port, Some(&dir.join("ca.pem")));
    let mut procs = Procs::default();
    let args = [&TLS_ARGS[..], &["--enable-supernode-auth"]].concat();
    start_superlink(&mut procs, &venv, &home, dir, port, &args);
    let reg = flwr(
        &venv,
        &home,
        &[
            "supernode",
            "register",
            dir.join("admitted.key.pub").to_str().unwrap(),
            "e2e",
        ],
    );
    assert!(
        reg.status.success(),
        "flwr supernode register: {}{}",
        String::from_utf8_lossy(&reg.stdout),
        String::from_utf8_lossy(&reg.stderr)
    );
    let node = |key: &str| {
        let mut c = privpkt();
        c.args(["flower-client", "--data"])
            .arg(dir.join("ds"))
            .args(["--superlink", &format!("127.0.0.1:{port}"), "--root-certificates"])
            .arg(dir.join("ca.pem"))
            .arg("--node-key")
            .arg(dir.join(key))
            .args(["--retries", "1"]);
        c
    };
    let good = procs.start("admitted", &mut node("admitted.key"), false);
    wait_joined(&procs, good, "https");
    interrupt(&mut procs, good);
    procs.0[good]
        .err
        .wait_for("sign-off line", Duration::from_secs(5), |l| {
            l.contains("left the federation (deactivated; its key stays registered)")
        });

    let o = node("stranger.key").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("admits only registered nodes, and this node's key is not registered")
            && err.contains("flwr supernode register"),
        "{err}"
    );

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("stranger.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = node("stranger.key").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("can be read by other users (mode 640)"), "{err}");
}

/// The newest flwr the registry serves here, 1.42.0: two privpkt nodes join (and report the
/// SuperLink's own version), train and evaluate two rounds of the app's FedAvg, and the run
/// completes.
#[test]
fn federation_on_flwr_1_42() {
    let Some(venv) = venv_with("1.42.0") else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for (i, name) in ["a", "b"].iter().enumerate() {
        write_dataset(&dir.join(name), Kind::DeepPacket, 3, 40, 70 + i as u64);
    }
    export_initial(dir, "a", "init");
    let port = free_port();
    let home = flwr_home(dir, port, None);
    let mut procs = Procs::default();
    start_superlink(&mut procs, &venv, &home, dir, port, &[]);
    let nodes = join_nodes(&mut procs, dir, port, &["a", "b"]);
    for &i in &nodes {
        let joined = procs.0[i].err.text();
        assert!(joined.contains("SuperLink flwr 1.42.0"), "{joined}");
    }
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=2 min-nodes=2",
        dir.join("init").display()
    );
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    for &i in &nodes {
        let replies = json_lines(&procs.0[i].out);
        let ok = |t: &str| {
            replies
                .iter()
                .filter(|r| r["type"] == t && r["error"].is_null())
                .count()
        };
        assert_eq!((ok("train"), ok("evaluate")), (2, 2), "{}", procs.0[i].out.text());
    }
}

/// The final global arrays a run saved (`save-final`), flattened.
fn saved_arrays(dir: &Path) -> Vec<Vec<f32>> {
    let desc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    desc["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let (_, data) = privpkt_dataset::npy::read_bytes(
                &dir.join(t["file"].as_str().unwrap()),
                privpkt_dataset::npy::Dtype::F32,
            )
            .unwrap();
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Flower's SecAgg+ (`SecAggPlusWorkflow`) with three privpkt nodes: the four stages run, the
/// server's unmasked aggregate equals plain FedAvg of the same nodes' updates within the
/// quantisation error, and a node killed after share-keys is recovered by the threshold (its
/// masks rebuilt from the others' shares of its key, the aggregate that of the survivors).
#[test]
fn secaggplus_sums_match_fedavg_and_survive_a_dropout() {
    let Some(venv) = venv() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let names = ["a", "b", "c"];
    for (i, name) in names.iter().enumerate() {
        write_dataset(&dir.join(name), Kind::DeepPacket, 3, 40 + 10 * i, 60 + i as u64);
    }
    export_initial(dir, "a", "init");
    let port = free_port();
    let home = flwr_home(dir, port, None);
    let mut procs = Procs::default();
    start_superlink(&mut procs, &venv, &home, dir, port, &[]);
    let init = dir.join("init");
    let run = |procs: &Procs, out: &str, extra: &str| {
        let cfg = format!(
            "initial-arrays=\"{}\" {}min-nodes=3 fraction-evaluate=0.0 save-final=\"{}\" {extra}",
            init.display(),
            if extra.contains("num-server-rounds") {
                ""
            } else {
                "num-server-rounds=1 "
            },
            dir.join(out).display()
        );
        run_to_end(&venv, &home, &cfg, procs)
    };
    // Each node has < 200 training flows: a max weight near that keeps the quantisation fine.
    let secagg = "secaggplus-shares=3 secaggplus-threshold=2 secaggplus-max-weight=200.0";

    // 1. SecAgg+ over fresh nodes a, b, c.
    let nodes = join_nodes(&mut procs, dir, port, &names);
    let (status, log) = run(&procs, "secagg", secagg);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    assert!(
        log.contains("aggregate_fit: received 3 results and 0 failures"),
        "{log}"
    );
    for &i in &nodes {
        let stages: Vec<String> = json_lines(&procs.0[i].out)
            .iter()
            .filter_map(|r| r["secagg_stage"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            stages,
            ["setup", "share_keys", "collect_masked_vectors", "unmask"],
            "{}",
            procs.dump()
        );
    }

    // 1b. Two rounds with Flower's client-side DP (no noise here, to see the clipping): each
    //     node clips its update to 0.01 before masking and weighs 1, so each global step is
    //     ≤ 0.01; the second round starts from the first's dequantised aggregate.
    let dp = format!("{secagg} dp=\"client-fixed\" dp-clipping-norm=0.01 dp-noise-multiplier=0.0 num-server-rounds=2");
    let (status, log) = run(&procs, "dp-secagg", &dp);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    let step: f64 = saved_arrays(&dir.join("dp-secagg"))
        .iter()
        .zip(saved_arrays(&init))
        .flat_map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .collect::<Vec<_>>()
        })
        .sum::<f64>()
        .sqrt();
    eprintln!("SecAgg+ with client-side clipping at 0.01: two global steps {step}");
    assert!(step > 0.005 && step <= 0.02 * (1.0 + 1e-3), "two global steps: {step}");
    assert_eq!(
        log.matches("aggregate_fit: received 3 results and 0 failures").count(),
        2,
        "{log}"
    );
    for &i in &nodes {
        procs.0[i].err.wait_for("clipping line", Duration::from_secs(5), |l| {
            l.contains("(clipping_norm 0.01)") && l.contains("sent masked (SecAgg+)")
        });
        interrupt(&mut procs, i);
    }

    // 2. Plain FedAvg over fresh nodes with the same data and seeds: the same average.
    let nodes = join_nodes(&mut procs, dir, port, &names);
    let (status, log) = run(&procs, "plain", "");
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    let (masked, plain) = (saved_arrays(&dir.join("secagg")), saved_arrays(&dir.join("plain")));
    let diff = max_abs_diff(&masked, &plain);
    let moved = max_abs_diff(&plain, &saved_arrays(&init));
    eprintln!("SecAgg+ vs FedAvg: max |Δ| {diff}; training moved the weights by up to {moved}");
    assert!(
        diff > 0.0 && diff < 1e-3 && moved > 20.0 * diff,
        "SecAgg+ vs FedAvg: max |Δ| {diff}, moved {moved}"
    );
    for &i in &nodes {
        interrupt(&mut procs, i);
    }

    // 3. Node c dies right after share-keys: a and b's shares of its key remove its masks, and
    //    the aggregate is theirs alone (plain FedAvg of a and b).
    let mut nodes: Vec<usize> = ["a", "b"]
        .iter()
        .map(|n| procs.start(n, &mut client(dir, n, port, &[]), false))
        .collect();
    nodes.push(procs.start("c", &mut client(dir, "c", port, &["--poll-interval", "3"]), false));
    for &i in &nodes {
        wait_joined(&procs, i, "http");
    }
    let run_id = start_run(
        &venv,
        &home,
        &format!(
            "initial-arrays=\"{}\" num-server-rounds=1 min-nodes=3 fraction-evaluate=0.0 round-timeout=10.0 \
             save-final=\"{}\" {secagg}",
            init.display(),
            dir.join("dropped").display()
        ),
    );
    procs.0[nodes[2]]
        .out
        .wait_for("share_keys reply", Duration::from_secs(60), |l| {
            l.contains("\"secagg_stage\":\"share_keys\"")
        });
    procs.signal(nodes[2], libc::SIGKILL);
    let (status, log) = wait_run(&venv, &home, &run_id, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    assert!(log.contains("aggregate_fit: received 2 results and "), "{log}");
    for &i in &nodes[..2] {
        interrupt(&mut procs, i);
    }
    let nodes = join_nodes(&mut procs, dir, port, &["a", "b"]);
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=1 min-nodes=2 fraction-evaluate=0.0 save-final=\"{}\"",
        init.display(),
        dir.join("plain-ab").display()
    );
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    let plain_ab = saved_arrays(&dir.join("plain-ab"));
    let diff = max_abs_diff(&saved_arrays(&dir.join("dropped")), &plain_ab);
    eprintln!("SecAgg+ with c dropped vs FedAvg of a and b: max |Δ| {diff}");
    assert!(
        diff < 1e-3,
        "SecAgg+ with c dropped vs FedAvg of a and b: max |Δ| {diff}"
    );
    let examples: Vec<f64> = nodes
        .iter()
        .map(|&i| {
            json_lines(&procs.0[i].out)
                .iter()
                .find(|r| r["type"] == "train")
                .and_then(|r| r["num_examples"].as_f64())
                .expect("a train reply")
        })
        .collect();
    for &i in &nodes {
        interrupt(&mut procs, i);
    }

    // 4. A mixed federation: a and b beside a Python SuperNode running Flower's own
    //    secaggplus_mod (the app's reference ClientApp: received weights + 0.01, 50 examples).
    //    Keys, encrypted shares and masks cross between the two implementations; the aggregate
    //    is the example-weighted average of a and b's updates and the reference's.
    let nodes = join_nodes(&mut procs, dir, port, &["a", "b"]);
    let mut py = Command::new(venv.join("bin/flower-supernode"));
    py.args(["--insecure", "--superlink", &format!("127.0.0.1:{port}")])
        .args(["--port", &free_port().to_string()])
        .envs(flwr_env(&venv, &home))
        .current_dir(dir);
    procs.start("python-supernode", &mut py, true);
    let cfg = format!(
        "initial-arrays=\"{}\" num-server-rounds=1 min-nodes=3 fraction-evaluate=0.0 save-final=\"{}\" \
         python-reference-node=true reference-offset=0.01 reference-examples=50 {secagg}",
        init.display(),
        dir.join("mixed").display()
    );
    let (status, log) = run_to_end(&venv, &home, &cfg, &procs);
    assert_eq!(status, "finished:completed", "{log}\n{}", procs.dump());
    assert!(
        log.contains("aggregate_fit: received 3 results and 0 failures"),
        "{log}"
    );
    let (n_ab, n_py) = (examples[0] + examples[1], 50.0);
    let want: Vec<Vec<f32>> = plain_ab
        .iter()
        .zip(saved_arrays(&init))
        .map(|(ab, w0)| {
            ab.iter()
                .zip(w0)
                .map(|(&x, y)| ((n_ab * x as f64 + n_py * (y as f64 + 0.01)) / (n_ab + n_py)) as f32)
                .collect()
        })
        .collect();
    let diff = max_abs_diff(&saved_arrays(&dir.join("mixed")), &want);
    eprintln!("SecAgg+ with a Python secaggplus_mod node vs the expected average: max |Δ| {diff}");
    assert!(diff < 1e-3, "mixed SecAgg+ round: max |Δ| {diff}");

    drop(nodes);
}
