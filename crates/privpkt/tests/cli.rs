//! The `privpkt` binary as scripts use it: exit codes, JSON shapes, error messages.

mod common;

use common::{json, privpkt, synth_caps};

#[test]
fn synth_prepare_inspect_json() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let s = synth_caps(p, "chat,voip", true, 2, 3);
    assert_eq!(s["files"], 8);
    let r = json(&privpkt(
        &[
            "prepare",
            "caps",
            "--out",
            "ds",
            "--label-column",
            "category+vpn",
            "--repr",
            "deeppacket",
            "--json",
        ],
        p,
    ));
    assert_eq!(r["representation"], "deeppacket");
    let classes = r["classes"].as_object().unwrap();
    for c in ["chat", "voip", "vpn_chat", "vpn_voip"] {
        assert!(classes.contains_key(c), "{c} missing: {classes:?}");
    }
    // the background DNS flows are labelled `dns`, but Deep Packet drops DNS: no such class
    assert!(!classes.contains_key("dns"));
    assert!(r["mb_per_s"].as_f64().unwrap() > 0.0);
    // A federation's fixed class list: its order, and a class this site lacks, kept.
    let f = json(&privpkt(
        &[
            "prepare",
            "caps",
            "--out",
            "fixed",
            "--label-column",
            "category",
            "--classes",
            "voip,streaming,chat",
            "--json",
        ],
        p,
    ));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("fixed/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["classes"], serde_json::json!(["voip", "streaming", "chat"]), "{f}");
    assert_eq!(m["class_counts"][1], 0);
    let i = json(&privpkt(
        &["inspect", "ds", "--json", "--plots", "plots", "--format", "svg"],
        p,
    ));
    assert_eq!(i["classes"]["chat"]["samples"], classes["chat"]);
    assert!(i["classes"]["chat"]["flows"].as_u64().unwrap() >= 2);
    assert!(i["captures"].as_array().unwrap().len() == 8);
    assert!(p.join("plots/packet_sizes.svg").exists());
    let svg = std::fs::read_to_string(p.join("plots/packet_sizes.svg")).unwrap();
    assert!(svg.contains("vpn_voip"));
    // FlowPic, sparse (R > 64) and dense (mini)
    for (extra, name) in [(&["--resolution", "100"][..], "fp100"), (&["--mini"][..], "fpmini")] {
        let mut args = vec!["prepare", "caps", "--out", name, "--repr", "flowpic", "--json"];
        args.extend_from_slice(extra);
        json(&privpkt(&args, p));
        let i = json(&privpkt(
            &["inspect", name, "--json", "--plots", &format!("{name}-plots")],
            p,
        ));
        assert_eq!(i["representation"], "flowpic");
        assert!(p.join(format!("{name}-plots/flowpics.png")).exists());
    }
}

#[test]
fn errors_are_clear_and_nonzero() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let o = privpkt(&["prepare", "missing-dir", "--out", "ds", "--labels", "nope.csv"], p);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nope.csv"), "{e}");
    std::fs::create_dir(p.join("empty")).unwrap();
    let o = privpkt(&["prepare", "empty", "--out", "ds"], p);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("no label source"), "{e}");
    let o = privpkt(&["inspect", "empty"], p);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("not a privpkt dataset"), "{e}");
    let o = privpkt(&["privacy", "--q", "0", "--sigma", "1", "--steps", "10"], p);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("q = 0"), "{e}");
}

#[test]
fn privacy_json_has_a_key_per_accountant() {
    let d = tempfile::tempdir().unwrap();
    let v = json(&privpkt(
        &[
            "privacy", "--q", "0.0064", "--sigma", "1.0", "--steps", "1000", "--delta", "1e-5", "--json",
        ],
        d.path(),
    ));
    // golden values (Opacus 1.6): RDP 1.428798 at α 9.2, PRV 1.1382
    let rdp = v["rdp"]["epsilon"].as_f64().unwrap();
    assert!((rdp - 1.428798).abs() < 1e-4 * 1.428798, "{rdp}");
    let prv = &v["prv"];
    assert!(prv["eps_lower"].as_f64().unwrap() <= 1.1382 && 1.1382 <= prv["eps_upper"].as_f64().unwrap() + 1e-4);
    let c = json(&privpkt(
        &[
            "privacy",
            "--q",
            "0.0064",
            "--epsilon",
            "1.5",
            "--steps",
            "1000",
            "--json",
        ],
        d.path(),
    ));
    let s = c["rdp"]["sigma"].as_f64().unwrap();
    assert!(s < 1.0 && c["rdp"]["epsilon"].as_f64().unwrap() <= 1.5);
}

#[test]
fn train_eval_classify_roundtrip() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "voip,file_transfer", false, 3, 4);
    json(&privpkt(
        &[
            "prepare",
            "caps",
            "--out",
            "ds",
            "--repr",
            "flowpic",
            "--mini",
            "--min-packets",
            "5",
            "--json",
        ],
        p,
    ));
    let t = json(&privpkt(
        &[
            "train",
            "ds",
            "--out",
            "m.safetensors",
            "--epochs",
            "4",
            "--batch-size",
            "16",
            "--lr",
            "0.003",
            "--json",
        ],
        p,
    ));
    assert_eq!(t["arch"], "flowpic-mini");
    assert!(p.join("m.safetensors").exists());
    let e = json(&privpkt(&["eval", "m.safetensors", "ds", "--json", "--plots", "ev"], p));
    // VoIP and bulk transfer look nothing alike in size × time: the model must separate them
    let f1 = e["report"]["macro_f1"].as_f64().unwrap();
    assert!(f1 > 0.8, "macro-F1 {f1}: {}", e["report"]);
    assert!(e["baseline"]["macro_f1"].as_f64().is_some());
    assert!(p.join("ev/confusion.png").exists() && p.join("ev/confusion_flows.png").exists());
    let o = privpkt(&["classify", "m.safetensors", "caps", "--format", "json"], p);
    let flows = json(&o);
    let flows = flows.as_array().unwrap();
    assert!(flows.len() >= 8, "{} flows", flows.len());
    let voip_ok = flows
        .iter()
        .filter(|f| f["capture"].as_str().unwrap().contains("voip_") && f["predicted"] == "voip")
        .count();
    assert!(voip_ok > 0, "{flows:?}");
    // a model and a dataset of different representations are refused with a clear error
    json(&privpkt(&["prepare", "caps", "--out", "dp", "--json"], p));
    let o = privpkt(&["eval", "m.safetensors", "dp"], p);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.to_lowercase().contains("flowpic") || err.contains("representation"),
        "{err}"
    );
    // a corrupt model file
    std::fs::write(p.join("bad.safetensors"), b"not a model").unwrap();
    let o = privpkt(&["eval", "bad.safetensors", "ds"], p);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.safetensors"));

    // DP-SGD: flow-level, calibrated to the budget, recorded in the model file
    let base = ["train", "ds", "--out", "dp.safetensors", "--epochs", "2", "--force"];
    let run = |extra: &[&str]| privpkt(&[&base[..], extra].concat(), p);
    let private = [
        "--batch-size",
        "4",
        "--dp",
        "--epsilon",
        "6",
        "--delta",
        "1e-5",
        "--seed",
        "5",
        "--json",
    ];
    let t = json(&run(&private));
    let pr = &t["privacy"];
    assert_eq!(pr["unit"], "flow");
    assert_eq!(pr["accountant"], "rdp");
    let eps = pr["epsilon"].as_f64().unwrap();
    assert!(eps <= 6.0 && eps > 5.9, "{pr}");
    for key in ["sigma", "clip", "q", "steps"] {
        assert!(pr[key].as_f64().is_some(), "{key} missing: {pr}");
    }
    assert!(pr["noise"].as_str().unwrap().contains("seed 5"));
    assert!(t["history"][1]["epsilon"].as_f64().unwrap() > t["history"][0]["epsilon"].as_f64().unwrap());
    let e = json(&privpkt(&["eval", "dp.safetensors", "ds", "--json"], p));
    assert!(e["report"]["macro_f1"].as_f64().is_some());
    assert_eq!(e["privacy"]["epsilon"], pr["epsilon"], "eval shows what training spent");
    // the same command with the same seed gives the same model (same losses, same predictions)
    let t2 = json(&run(&private));
    let losses = |t: &serde_json::Value| -> Vec<f64> {
        t["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["train_loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(losses(&t), losses(&t2));
    let e2 = json(&privpkt(&["eval", "dp.safetensors", "ds", "--json"], p));
    assert_eq!(e["report"]["confusion"], e2["report"]["confusion"]);
    // federated: 2 organisations, whole flows each, the global model usable by eval
    let f = json(&privpkt(
        &[
            "federate",
            "ds",
            "--out",
            "fed.safetensors",
            "--clients",
            "2",
            "--rounds",
            "2",
            "--batch-size",
            "16",
            "--lr",
            "0.003",
            "--plot",
            "fed.png",
            "--json",
        ],
        p,
    ));
    assert_eq!(f["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(f["clients"].as_array().unwrap().len(), 2);
    assert!(p.join("fed.png").exists());
    json(&privpkt(&["eval", "fed.safetensors", "ds", "--json"], p));
    let o = privpkt(
        &[
            "federate",
            "ds",
            "--out",
            "x.safetensors",
            "--partition",
            "dirichlet:-1",
        ],
        p,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("dirichlet:-1"));

    // refusals: never a silent non-private run, never an impossible budget
    for (extra, want) in [
        (&["--epsilon", "2"][..], "add --dp"),
        (&["--dp"][..], "--epsilon"),
        (&["--dp", "--epsilon", "0"][..], "ε must be a finite number > 0"),
        (&["--dp", "--epsilon=-3"][..], "ε must be a finite number > 0"),
        (&["--dp", "--epsilon", "2", "--delta", "1"][..], "δ must be in (0, 1)"),
        (&["--dp", "--epsilon", "2", "--batch-size", "100000"][..], "q ="),
        (&["--dp", "--epsilon", "2", "--class-weights"][..], "class weights"),
    ] {
        let o = run(extra);
        assert!(!o.status.success(), "{extra:?} should be refused");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{extra:?}: expected `{want}` in {err}");
    }
}

/// The default representation end to end: one behaviour sample per flow, the split a peer tool
/// reads, the default model, flows decided at their N-th packet, public → private training.
#[test]
fn behaviour_default_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "voip,file_transfer", false, 3, 12);
    let r = json(&privpkt(&["prepare", "caps", "--out", "ds", "--json"], p));
    assert_eq!(r["representation"], "behaviour");
    let i = json(&privpkt(
        &[
            "inspect",
            "ds",
            "--json",
            "--export-split",
            "split.csv",
            "--plots",
            "plots",
        ],
        p,
    ));
    assert_eq!(i["samples"], i["flows"], "one sample per flow");
    let split = std::fs::read_to_string(p.join("split.csv")).unwrap();
    let mut lines = split.lines();
    assert_eq!(lines.next(), Some("file,l4,endpoint_a,endpoint_b,split"));
    assert_eq!(lines.count() as u64, i["flows"].as_u64().unwrap());
    assert!(split.contains(".pcap,TCP,") || split.contains(".pcap,UDP,"));
    for f in ["packet_sizes.png", "series.png", "flow_stats.png"] {
        assert!(p.join("plots").join(f).exists(), "{f}");
    }
    let t = json(&privpkt(
        &[
            "train",
            "ds",
            "--out",
            "m.safetensors",
            "--epochs",
            "20",
            "--patience",
            "0",
            "--batch-size",
            "8",
            "--ema",
            "0.9",
            "--augment",
            "--json",
        ],
        p,
    ));
    assert_eq!(t["arch"], "series-cnn");
    let e = json(&privpkt(&["eval", "m.safetensors", "ds", "--json"], p));
    let f1 = e["report"]["flow_level"]["macro_f1"].as_f64().unwrap();
    assert!(
        f1 > 0.85,
        "DNS, VoIP and bulk transfer behave nothing alike: flow macro-F1 {f1}"
    );
    // A series alone is decided at its N-th packet (or the flow's end).
    json(&privpkt(
        &[
            "prepare",
            "caps",
            "--out",
            "s8",
            "--repr",
            "series",
            "--packets",
            "8",
            "--json",
        ],
        p,
    ));
    json(&privpkt(
        &["train", "s8", "--out", "s8.safetensors", "--epochs", "2", "--json"],
        p,
    ));
    let flows = json(&privpkt(&["classify", "s8.safetensors", "caps", "--format", "json"], p));
    let flows = flows.as_array().unwrap();
    assert!(flows.len() >= 12);
    for f in flows {
        let at = f["decided_at_packet"].as_u64().unwrap();
        assert!((1..=8).contains(&at), "{f}");
    }
    assert!(flows.iter().any(|f| f["decided_at_packet"] == 8));
    // Public pre-training (other synthetic traffic), then private training of the output layer only.
    std::fs::create_dir(p.join("pub")).unwrap();
    synth_caps(&p.join("pub"), "voip,file_transfer", false, 2, 6);
    json(&privpkt(&["prepare", "pub/caps", "--out", "pubds", "--json"], p));
    json(&privpkt(
        &["train", "pubds", "--out", "pub.safetensors", "--epochs", "4", "--json"],
        p,
    ));
    let t = json(&privpkt(
        &[
            "train",
            "ds",
            "--out",
            "priv.safetensors",
            "--init",
            "pub.safetensors",
            "--train-layers",
            "head",
            "--dp",
            "--epsilon",
            "2",
            "--batch-size",
            "full",
            "--optimizer",
            "sgd",
            "--lr",
            "1",
            "--epochs",
            "5",
            "--seed",
            "3",
            "--json",
        ],
        p,
    ));
    assert_eq!(t["privacy"]["q"], 1.0);
    assert!(t["privacy"]["epsilon"].as_f64().unwrap() <= 2.0 + 1e-9);
    let m = std::fs::read(p.join("priv.safetensors")).unwrap();
    let n = u64::from_le_bytes(m[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&m[8..8 + n]).unwrap();
    let meta: serde_json::Value = serde_json::from_str(header["__metadata__"]["privpkt"].as_str().unwrap()).unwrap();
    assert_eq!(meta["pretraining"]["layers_trained"], serde_json::json!(["out"]));
    assert_eq!(meta["pretraining"]["model"], "pub.safetensors");
    // Refused with the reason: --train-layers without --init, a full batch without DP.
    let o = privpkt(&["train", "ds", "--out", "x.safetensors", "--train-layers", "out"], p);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--init"), "{o:?}");
    let o = privpkt(&["train", "ds", "--out", "x.safetensors", "--batch-size", "full"], p);
    assert!(String::from_utf8_lossy(&o.stderr).contains("full"), "{o:?}");
    let o = privpkt(&["train", "ds", "--out", "x.safetensors", "--batch-size", "many"], p);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`many` is not a batch size"),
        "{o:?}"
    );
}

#[test]
fn plot_draws_line_charts_and_rejects_bad_specs() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let spec = r#"{"title": "t", "x_label": "ε", "y_label": "macro-F1", "x": ["1", "8", "∞"],
        "series": [{"name": "a", "mean": [0.1, null, 0.5], "std": [0.01, null, 0.02]}],
        "reference": {"y": 0.6, "label": "baseline"}}"#;
    std::fs::write(p.join("c.json"), spec).unwrap();
    for out in ["c.png", "c.svg"] {
        let o = privpkt(&["plot", "c.json", "--out", out], p);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::metadata(p.join(out)).unwrap().len() > 1000);
    }
    assert!(std::fs::read_to_string(p.join("c.svg")).unwrap().contains("baseline"));
    std::fs::write(p.join("bad.json"), spec.replace("[0.1, null, 0.5]", "[0.1]")).unwrap();
    let o = privpkt(&["plot", "bad.json", "--out", "b.png"], p);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.json") && err.contains("series `a`"), "{err}");
}
