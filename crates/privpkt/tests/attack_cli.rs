//! `privpkt attack` and `privpkt audit` as scripts use them: JSON shapes, plots, refusals.

mod common;

use common::{fails, ok, privpkt, synth_caps};

#[test]
fn attack_and_audit_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "chat,voip", true, 2, 6);
    ok(&privpkt(
        &[
            "prepare",
            "caps",
            "--out",
            "ds",
            "--repr",
            "deeppacket",
            "--max-per-flow",
            "8",
        ],
        p,
    ));
    ok(&privpkt(
        &[
            "train",
            "ds",
            "--out",
            "m.safetensors",
            "--arch",
            "sae",
            "--pretrain-epochs",
            "0",
            "--epochs",
            "3",
        ],
        p,
    ));
    let out = ok(&privpkt(
        &[
            "attack",
            "--model",
            "m.safetensors",
            "--data",
            "ds",
            "--attack",
            "loss",
            "--json",
            "-",
            "--roc",
            "roc.svg",
            "--seed",
            "5",
        ],
        p,
    ));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((r["attack"].as_str(), r["seed"].as_u64()), (Some("loss"), Some(5)));
    assert_eq!(r["members"], r["non_members"]);
    let auc = r["metrics"]["auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc));
    assert_eq!(r["per_class"].as_array().unwrap().len(), 2);
    let svg = std::fs::read_to_string(p.join("roc.svg")).unwrap();
    assert!(svg.contains("false-positive rate") && svg.contains("chance"));
    // Human summary with the table.
    let text = ok(&privpkt(
        &["attack", "--model", "m.safetensors", "--data", "ds", "--attack", "loss"],
        p,
    ));
    assert!(
        text.contains("AUC") && text.contains("TPR@1%FPR") && text.contains("chat"),
        "{text}"
    );
    // Refusals name the problem.
    let o = privpkt(
        &[
            "attack",
            "--model",
            "m.safetensors",
            "--data",
            "ds",
            "--attack",
            "loss",
            "--unit",
            "capture",
        ],
        p,
    );
    assert!(fails(&o).contains("members and non-members would overlap"));
    let o = privpkt(
        &[
            "attack",
            "--model",
            "m.safetensors",
            "--data",
            "ds",
            "--attack",
            "shokri",
            "--shadow-data",
            "ds",
        ],
        p,
    );
    assert!(fails(&o).contains("overlaps the target's training data"));

    // The audit: DP-SGD with noise switched off is caught.
    let out = ok(&privpkt(
        &[
            "audit",
            "--data",
            "ds",
            "--arch",
            "sae",
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--epsilon",
            "1",
            "--canaries",
            "200",
            "--break",
            "noise",
            "--json",
            "audit.json",
        ],
        p,
    ));
    assert!(
        out.contains("empirical ε ≥") && out.contains("vs accountant ε ="),
        "{out}"
    );
    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(p.join("audit.json")).unwrap()).unwrap();
    assert_eq!(a["broken"], "noise");
    assert!(a["epsilon_lower_bound"].as_f64().unwrap() > a["accountant_epsilon"].as_f64().unwrap());
    assert!(
        !p.join("ds.audit-work").exists(),
        "the audit's work directory is cleaned up"
    );
}
