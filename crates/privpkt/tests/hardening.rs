//! Bad input that once hung, deleted the user's files, leaked test flows into training or was
//! accepted silently: each case as a user would meet it, with the answer it must get now.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fails, json, ok, privpkt, synth_caps};

/// `privpkt ARGS` that must end within `secs` seconds (a hang is a failure, not a stuck CI).
fn within(secs: u64, args: &[&str], cwd: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_privpkt"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let t = Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("privpkt {args:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The first capture of `caps/` whose name starts with `prefix`.
fn first(p: &Path, prefix: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(p.join("caps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names.remove(0)
}

fn manifest(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p.join("manifest.json")).unwrap()).unwrap()
}

fn warnings(m: &serde_json::Value) -> String {
    m["warnings"].to_string()
}

#[cfg(unix)]
#[test]
fn link_loops_end_and_each_capture_is_read_once() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "chat,voip", false, 2, 4);
    let l = p.join("L");
    std::fs::create_dir(&l).unwrap();
    for f in [first(p, "chat_"), first(p, "voip_"), "flows_labels.csv".into()] {
        std::fs::copy(p.join("caps").join(&f), l.join(&f)).unwrap();
    }
    std::os::unix::fs::symlink(".", l.join("a")).unwrap();
    std::os::unix::fs::symlink(".", l.join("b")).unwrap();
    std::os::unix::fs::symlink("nowhere", l.join("dangling")).unwrap();
    ok(&within(60, &["prepare", "L", "--out", "x"], p));
    let m = manifest(&p.join("x"));
    assert_eq!(m["captures"].as_array().unwrap().len(), 2, "{m}");
    let w = warnings(&m);
    assert!(w.contains("reached again") && w.contains("a link to nothing"), "{w}");
    // classify walks the same way.
    ok(&within(
        60,
        &["train", "x", "--out", "m.safetensors", "--epochs", "1"],
        p,
    ));
    ok(&within(60, &["classify", "m.safetensors", "L"], p));
}

#[test]
fn the_same_capture_twice_is_read_once_and_flows_never_straddle_splits() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "chat,voip", false, 2, 6);
    // The same file under three names, and a backup copy (same bytes, another file).
    let chat = first(p, "chat_");
    std::fs::create_dir(p.join("caps/backup")).unwrap();
    std::fs::copy(p.join("caps").join(&chat), p.join("caps/backup").join(&chat)).unwrap();
    let named = format!("caps/{chat}");
    let r = json(&privpkt(
        &["prepare", "caps", "caps", &named, "--out", "d", "--json"],
        p,
    ));
    let m = manifest(&p.join("d"));
    let caps = m["captures"].as_array().unwrap();
    assert_eq!(caps.len(), 4, "four distinct captures: {r}");
    let mut shas: Vec<&str> = caps.iter().map(|c| c["sha256"].as_str().unwrap()).collect();
    shas.sort();
    shas.dedup();
    assert_eq!(shas.len(), 4);
    let w = warnings(&m);
    assert!(w.contains("reached again") && w.contains("the same content as"), "{w}");
    // Every flow sits in exactly one split.
    let flows = std::fs::read_to_string(p.join("d/flows.csv")).unwrap();
    assert!(!flows.contains(",mixed,"), "{flows}");
}

#[test]
fn nothing_the_user_had_is_deleted_or_overwritten() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "chat,voip", false, 2, 4);
    let count = |dir: &str| std::fs::read_dir(p.join(dir)).unwrap().count();
    let before = count("caps");
    // --out the inputs' own folder, or a parent of an input: refused, even with --force.
    for out in ["caps", "."] {
        let e = fails(&privpkt(&["prepare", "caps", "--out", out, "--force"], p));
        assert!(e.contains("holds the input"), "{out}: {e}");
    }
    assert_eq!(count("caps"), before, "the captures are all there");
    // --force replaces only a privpkt dataset: not a folder of other files, not a file.
    std::fs::create_dir(p.join("notes")).unwrap();
    std::fs::write(p.join("notes/todo.txt"), "keep me").unwrap();
    let e = fails(&privpkt(&["prepare", "caps", "--out", "notes", "--force"], p));
    assert!(e.contains("not a privpkt dataset"), "{e}");
    std::fs::write(p.join("file.txt"), "keep me too").unwrap();
    let e = fails(&privpkt(&["prepare", "caps", "--out", "file.txt"], p));
    assert!(e.contains("is a file"), "{e}");
    assert_eq!(std::fs::read_to_string(p.join("notes/todo.txt")).unwrap(), "keep me");
    // A dataset with a user's file inside is not replaced either.
    ok(&privpkt(&["prepare", "caps", "--out", "ds"], p));
    std::fs::write(p.join("ds/analysis.md"), "mine").unwrap();
    let e = fails(&privpkt(&["prepare", "caps", "--out", "ds", "--force"], p));
    assert!(e.contains("analysis.md"), "{e}");
    std::fs::remove_file(p.join("ds/analysis.md")).unwrap();
    ok(&privpkt(&["prepare", "caps", "--out", "ds", "--force"], p));
    // train: an existing model needs --force, and --force replaces only a model.
    let train = |out: &str, extra: &[&str]| {
        privpkt(
            &[&["train", "ds", "--out", out, "--epochs", "1"][..], extra].concat(),
            p,
        )
    };
    ok(&train("m.safetensors", &[]));
    let e = fails(&train("m.safetensors", &[]));
    assert!(e.contains("already exists"), "{e}");
    ok(&train("m.safetensors", &["--force"]));
    let e = fails(&train("file.txt", &["--force"]));
    assert!(e.contains("not a privpkt model file"), "{e}");
    assert_eq!(std::fs::read_to_string(p.join("file.txt")).unwrap(), "keep me too");
    // A learning rate no network survives is refused before training; the model stays.
    let model = std::fs::read(p.join("m.safetensors")).unwrap();
    let e = fails(&train("m.safetensors", &["--force", "--lr", "1e30"]));
    assert!(e.contains("learning rate"), "{e}");
    assert_eq!(std::fs::read(p.join("m.safetensors")).unwrap(), model);
}

#[test]
fn what_is_written_can_be_read_back_and_warnings_are_true() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "chat,voip", true, 2, 4);
    for (flag, v) in [
        ("--idle-timeout", "inf"),
        ("--idle-timeout", "nan"),
        ("--active-timeout", "nan"),
    ] {
        let e = fails(&privpkt(&["prepare", "caps", "--out", "t", flag, v], p));
        assert!(e.contains(flag) && e.contains("finite"), "{flag} {v}: {e}");
    }
    // A default prepare of synth output: no false "(kept, empty)".
    let r = json(&privpkt(&["prepare", "caps", "--out", "ds", "--json"], p));
    assert!(!r["warnings"].to_string().contains("kept, empty"), "{r}");
    // Labels whose rows disagree: reported with counts; one class left: refused.
    let labels = std::fs::read_to_string(p.join("caps/flows_labels.csv")).unwrap();
    let mut lines = labels.lines();
    let header = lines.next().unwrap();
    let col = header.split(',').position(|c| c == "category").unwrap();
    let mut out = vec![header.to_string()];
    for l in lines {
        out.push(l.to_string());
        let mut f: Vec<&str> = l.split(',').collect();
        if f[col] == "chat" {
            f[col] = "voip";
            out.push(f.join(","));
        }
    }
    std::fs::write(p.join("conflict.csv"), out.join("\n") + "\n").unwrap();
    let prepare_mapped = || {
        fails(&privpkt(
            &[
                "prepare",
                "caps",
                "--labels",
                "conflict.csv",
                "--class-map",
                "map.csv",
                "--out",
                "c",
            ],
            p,
        ))
    };
    let e = prepare_mapped();
    assert!(e.contains("map.csv"), "a missing class map is named: {e}");
    std::fs::write(p.join("map.csv"), "from,to\ndns,\nvpn_dns,\nvpn_chat,\nvpn_voip,\n").unwrap();
    let e = prepare_mapped();
    assert!(e.contains("only one class") && e.contains("disagree"), "{e}");
    // A file named explicitly that is not a capture is blamed on itself, not on the labels.
    std::fs::write(p.join("notes.txt"), "hello").unwrap();
    std::fs::write(p.join("empty.pcap"), "").unwrap();
    for (f, want) in [("notes.txt", "notes.txt"), ("empty.pcap", "empty.pcap")] {
        let e = fails(&privpkt(
            &["prepare", f, "--labels", "caps/flows_labels.csv", "--out", "n"],
            p,
        ));
        assert!(e.contains(want) && !e.contains("no labelled samples"), "{f}: {e}");
    }
    // classify over files none of which is a capture: an error, not an empty CSV.
    ok(&privpkt(&["train", "ds", "--out", "m.safetensors", "--epochs", "1"], p));
    let e = fails(&privpkt(&["classify", "m.safetensors", "notes.txt"], p));
    assert!(e.contains("none of the 1 inputs"), "{e}");
}

#[test]
fn plans_are_checked_before_anything_trains() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for (bad, want) in [
        ("[train]\ndelta = 1.5\n[sweep]\nepsilon = [4]\n", "δ must be in (0, 1)"),
        ("[train]\nlr = nan\n", "learning rate"),
        ("[train]\nlr = 1e30\n", "learning rate"),
        ("[sweep]\nseed = [1, 1]\n", "given twice"),
    ] {
        std::fs::write(p.join("plan.toml"), format!("[data]\nsynthetic = {{}}\n{bad}")).unwrap();
        let e = fails(&privpkt(&["experiment", "plan.toml", "--list"], p));
        assert!(e.contains("plan.toml") && e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn privacy_takes_one_accountant() {
    let d = tempfile::tempdir().unwrap();
    let r = json(&privpkt(
        &[
            "privacy",
            "--q",
            "0.5",
            "--sigma",
            "0.3",
            "--steps",
            "200",
            "--accountant",
            "rdp",
            "--json",
        ],
        d.path(),
    ));
    assert!(r["rdp"]["epsilon"].as_f64().unwrap() > 0.0);
    assert!(r.get("prv").is_none(), "{r}");
}

#[test]
fn absurd_sizes_damaged_datasets_and_model_records_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // A synthetic set far too large: an estimate and a question, not hours of writing.
    let e = fails(&within(
        30,
        &[
            "synth",
            "--out",
            "big",
            "--captures-per-class",
            "1000",
            "--flows-per-capture",
            "100000",
        ],
        p,
    ));
    assert!(e.contains("--yes") && e.contains("TiB"), "{e}");
    assert!(!p.join("big").exists());
    // A dataset whose index was tampered with: a flow in two splits, an unknown label.
    synth_caps(p, "chat,voip", false, 2, 6);
    ok(&privpkt(&["prepare", "caps", "--out", "ds", "--repr", "deeppacket"], p));
    let index = std::fs::read_to_string(p.join("ds/index.csv")).unwrap();
    let mut rows: Vec<String> = index.lines().map(String::from).collect();
    let cols: Vec<&str> = rows[0].split(',').collect();
    let (split, label) = (
        cols.iter().position(|c| *c == "split").unwrap(),
        cols.iter().position(|c| *c == "label").unwrap(),
    );
    // Rows 1 and 2 are packets of the same flow (Deep Packet: several samples per flow).
    let mut f: Vec<String> = rows[2].split(',').map(String::from).collect();
    f[split] = if f[split] == "test" {
        "train".into()
    } else {
        "test".into()
    };
    let moved = rows
        .clone()
        .into_iter()
        .enumerate()
        .map(|(i, r)| if i == 2 { f.join(",") } else { r });
    std::fs::write(p.join("ds/index.csv"), moved.collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let e = fails(&privpkt(&["inspect", "ds"], p));
    assert!(e.contains("sits in both"), "{e}");
    let mut f: Vec<String> = rows[1].split(',').map(String::from).collect();
    f[label] = "ghost".into();
    rows[1] = f.join(",");
    std::fs::write(p.join("ds/index.csv"), rows.join("\n") + "\n").unwrap();
    let e = fails(&privpkt(&["inspect", "ds"], p));
    assert!(
        e.contains("ghost") && e.contains("not among the manifest's classes"),
        "{e}"
    );
    // A model whose privacy record says nothing checkable.
    std::fs::write(p.join("ds/index.csv"), index).unwrap();
    ok(&privpkt(
        &[
            "train",
            "ds",
            "--out",
            "dp.safetensors",
            "--arch",
            "sae",
            "--pretrain-epochs",
            "0",
            "--epochs",
            "1",
            "--dp",
            "--epsilon",
            "4",
            "--batch-size",
            "4",
            "--seed",
            "1",
        ],
        p,
    ));
    let bytes = std::fs::read(p.join("dp.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["privpkt"].as_str().unwrap()).unwrap();
    meta["privacy"]["epsilon"] = "small".into();
    header["__metadata__"]["privpkt"] = meta.to_string().into();
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(p.join("bad-record.safetensors"), out).unwrap();
    let e = fails(&privpkt(&["eval", "bad-record.safetensors", "ds"], p));
    assert!(
        e.contains("bad-record.safetensors") && e.contains("privacy record"),
        "{e}"
    );
}
