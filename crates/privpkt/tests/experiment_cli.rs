//! `privpkt experiment` and `privpkt demo` as a user runs them: the outputs, resuming, and
//! refusing bad plans with the reason.

mod common;

use common::{fails, ok_all as ok, privpkt, synth_caps, TINY_PLAN as PLAN};

#[test]
fn experiment_writes_table_plot_report_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("plan.toml"), PLAN).unwrap();
    // Half the sweep, then the rest: an interrupted sweep continues where it stopped.
    let first = ok(&privpkt(&["experiment", "plan.toml", "--limit", "4"], p));
    assert!(first.contains("8 cells, 0 done before, 8 to run"), "{first}");
    assert!(first.contains("4 cells still to run"), "{first}");
    let partial: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("plan/results.json")).unwrap()).unwrap();
    assert_eq!(partial["cells"].as_array().unwrap().len(), 4);
    let list = ok(&privpkt(&["experiment", "plan.toml", "--list"], p));
    assert_eq!(list.matches("done  ").count(), 4, "{list}");
    assert_eq!(list.matches("to do ").count(), 4, "{list}");
    let second = ok(&privpkt(&["experiment", "plan.toml"], p));
    assert!(second.contains("8 cells, 4 done before, 4 to run"), "{second}");
    let out = p.join("plan");
    for f in [
        "results.json",
        "results.csv",
        "privacy-utility.png",
        "privacy-utility.svg",
        "report.html",
        "data/dataset/manifest.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 8);
    for c in cells {
        let f1 = c["utility"]["macro_f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1), "{c}");
        let auc = c["attacks"][0]["auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{c}");
        match c["epsilon_target"].as_f64() {
            // The accountant never spends more than the budget.
            Some(target) => assert!(c["privacy"]["epsilon"].as_f64().unwrap() <= target + 1e-9, "{c}"),
            None => assert!(c["privacy"].is_null(), "{c}"),
        }
        assert!(out.join(c["model_file"].as_str().unwrap()).exists());
        // Every organisation's share adds up to the train split (a centralised cell has one).
        let orgs = c["organisations_data"].as_array().unwrap();
        let flows: u64 = orgs.iter().map(|o| o["flows"].as_u64().unwrap()).sum();
        assert_eq!(flows, r["data"]["flows"][0].as_u64().unwrap(), "{c}");
    }
    // Centralised (2 ε × 2 seeds) and FedAvg (2 ε × 2 seeds): four configurations over two seeds.
    let summary = r["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 4);
    assert!(summary.iter().all(|s| s["seeds"] == serde_json::json!([1, 2])));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(csv.lines().next().unwrap().contains("auc_loss"));
    // A rerun reuses every cell and gives the same results.
    let third = ok(&privpkt(&["experiment", "plan.toml"], p));
    assert!(third.contains("8 cells, 8 done before, 0 to run"), "{third}");
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(again["cells"], r["cells"]);
    // Another seed joins without rerunning the others.
    std::fs::write(p.join("plan.toml"), PLAN.replace("seed = [1, 2]", "seed = [1, 2, 3]")).unwrap();
    let list = ok(&privpkt(&["experiment", "plan.toml", "--list"], p));
    assert_eq!(list.matches("done  ").count(), 8, "{list}");
    assert_eq!(list.matches("to do ").count(), 4, "{list}");
}

#[test]
fn same_plan_same_seed_same_numbers() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let plan = PLAN
        .replace("setting = [\"centralised\", \"fedavg\"]", "setting = [\"fedavg\"]")
        .replace("epsilon = [\"none\", 8]", "epsilon = [8]")
        .replace("seed = [1, 2]", "seed = [5]");
    std::fs::write(p.join("plan.toml"), &plan).unwrap();
    ok(&privpkt(&["experiment", "plan.toml", "--out", "a"], p));
    ok(&privpkt(&["experiment", "plan.toml", "--out", "b"], p));
    let cells = |dir: &str| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join(dir).join("results.json")).unwrap()).unwrap();
        for c in v["cells"].as_array_mut().unwrap() {
            // Timings vary; ids and paths key on the dataset's manifest, which names its folder.
            for k in ["train_seconds", "attack_seconds", "id", "model_file"] {
                c[k] = serde_json::Value::Null;
            }
        }
        v["cells"].clone()
    };
    assert_eq!(cells("a"), cells("b"), "DP noise, partition and attack are all seeded");
}

#[test]
fn bad_plans_name_the_file_and_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("typo.toml"), "[data]\nsynthetic = {}\n[sweep]\nepsilons = [1]\n").unwrap();
    let err = fails(&privpkt(&["experiment", "typo.toml"], p));
    assert!(err.contains("typo.toml") && err.contains("epsilons"), "{err}");
    assert!(fails(&privpkt(&["experiment", "missing.toml"], p)).contains("missing.toml"));
    std::fs::write(p.join("nodata.toml"), "[data]\ndataset = \"nowhere\"\n").unwrap();
    assert!(fails(&privpkt(&["experiment", "nodata.toml"], p)).contains("nowhere"));
}

#[test]
fn demo_on_a_small_default_writes_the_report() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let out = ok(&privpkt(
        &[
            "demo",
            "--out",
            "demo",
            "--flows-per-capture",
            "6",
            "--epochs",
            "1",
            "--rounds",
            "1",
            "--dp-rounds",
            "2",
            "--batch-size",
            "8",
        ],
        p,
    ));
    assert!(out.contains("demo finished"), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("demo/results.json")).unwrap()).unwrap();
    let labels: Vec<&str> = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "centralised, series-cnn, no DP",
            "FedAvg, 3 orgs (iid), series-cnn, no DP",
            "FedAvg, 3 orgs (iid), series-cnn + public pre-training, ε = 1",
            "FedAvg, 3 orgs (iid), series-cnn + public pre-training, ε = 8",
            "FedAvg, 3 orgs (iid), logistic, ε = 1",
            "FedAvg, 3 orgs (iid), logistic, ε = 8"
        ]
    );
    assert!(p.join("demo/report.html").exists());
    // The pre-trained cells record where their starting weights came from, and that only the
    // output layer saw the private flows.
    let cell = &r["cells"][2];
    let model = std::fs::read(p.join("demo").join(cell["model_file"].as_str().unwrap())).unwrap();
    let header_len = u64::from_le_bytes(model[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&model[8..8 + header_len]).unwrap();
    let meta: serde_json::Value = serde_json::from_str(header["__metadata__"]["privpkt"].as_str().unwrap()).unwrap();
    assert_eq!(
        meta["pretraining"]["layers_trained"],
        serde_json::json!(["out"]),
        "{meta}"
    );
    assert!(
        meta["pretraining"]["privacy"].is_null(),
        "the public model was trained without DP"
    );
    assert!(meta["pretraining"]["model"].as_str().unwrap().contains("public"));
}

#[test]
fn demo_on_captures_of_ones_own() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    synth_caps(p, "chat,voip,streaming", false, 2, 8);
    let out = ok(&privpkt(
        &[
            "demo",
            "--data",
            "caps",
            "--out",
            "mine",
            "--epochs",
            "1",
            "--rounds",
            "1",
            "--dp-rounds",
            "2",
            "--batch-size",
            "4",
            "--epsilon",
            "2",
        ],
        p,
    ));
    assert!(out.contains("demo finished"), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("mine/results.json")).unwrap()).unwrap();
    assert_eq!(r["data"]["source"], "caps");
    // The background DNS flows are labelled `dns` and are flows like any other.
    assert_eq!(
        r["data"]["classes"],
        serde_json::json!(["chat", "dns", "streaming", "voip"])
    );
    // Centralised, FedAvg, and at the one budget given FedAvg after public pre-training and from scratch.
    assert_eq!(r["cells"].as_array().unwrap().len(), 4);
    assert!(
        !p.join("mine/data/captures").exists(),
        "one's own captures are read where they are"
    );
}

/// The full demo as the README runs it (release build: `cargo test --release -- --ignored demo_full`):
/// it must finish within its 2-minute promise on 2 cores, and meet the flow-level goals: macro-F1
/// ≥ 0.97 centralised, ≥ 0.95 FedAvg, ≥ 0.90 at ε = 8 and ≥ 0.75 at ε = 1 per flow and organisation.
#[test]
#[ignore]
fn demo_full_within_two_minutes() {
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let out = ok(&privpkt(&["demo", "--out", "demo"], d.path()));
    let s = t.elapsed().as_secs_f64();
    assert!(s < 120.0, "the demo took {s:.0} s\n{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("demo/results.json")).unwrap()).unwrap();
    let f1 = |label: &str| {
        r["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == label)
            .unwrap_or_else(|| panic!("no cell {label}"))["utility"]["flow_macro_f1"]
            .as_f64()
            .unwrap()
    };
    assert!(f1("centralised, series-cnn, no DP") >= 0.97);
    assert!(f1("FedAvg, 3 orgs (iid), series-cnn, no DP") >= 0.95);
    assert!(f1("FedAvg, 3 orgs (iid), series-cnn + public pre-training, ε = 8") >= 0.90);
    assert!(f1("FedAvg, 3 orgs (iid), series-cnn + public pre-training, ε = 1") >= 0.75);
}
