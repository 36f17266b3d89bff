//! Membership inference end to end on tiny datasets: every attack finds the members of a
//! model that memorised its flows, none finds members a model never saw, shadow models resume
//! from the work directory, and bad inputs are refused by name.

mod common;
// The model tests' writer: its samples of one flow lie in several splits, as a split by packet.
#[path = "../../nn/tests/common/mod.rs"]
mod nn_common;

use common::{overfit_config, write_flows, Flows};
use privpkt_attack::members::{build_universe, MemberSource, Origin};
use privpkt_attack::{run_attack, AttackConfig, AttackError, AttackKind, MemberUnit, Target};
use privpkt_nn::{manifest_sha256, train, Model};

fn attack(
    model: &Model,
    ds: &privpkt_dataset::Dataset,
    cfg: &AttackConfig,
    work: Option<&std::path::Path>,
) -> privpkt_attack::AttackReport {
    let t = Target {
        model,
        dataset: ds,
        shadow_data: None,
    };
    run_attack(&t, cfg, work, &|_| {}).unwrap()
}

fn cfg(kind: AttackKind, shadows: usize) -> AttackConfig {
    AttackConfig {
        shadows,
        seed: 7,
        ..AttackConfig::new(kind)
    }
}

#[test]
fn attacks_find_memorised_flows_and_not_unseen_ones() {
    let d = tempfile::tempdir().unwrap();
    // 60 train flows (members), 100 test flows: with shadows, 50 non-members and 50 for them.
    let ds = write_flows(&d.path().join("a"), &Flows::noise(60, 0, 100), 1);
    let other = write_flows(
        &d.path().join("b"),
        &Flows {
            tag: "b",
            ..Flows::noise(60, 0, 100)
        },
        2,
    );
    let tcfg = overfit_config(30);
    let target = train(&ds, &tcfg, &d.path().join("wa"), false, &|_| {}).unwrap().model;
    // The same settings on other flows, presented as if trained on `ds`: it never saw a member.
    let mut unseen = train(&other, &tcfg, &d.path().join("wb"), false, &|_| {})
        .unwrap()
        .model;
    unseen.meta_mut().dataset_manifest_sha256 = manifest_sha256(&ds).unwrap();

    let loss = attack(&target, &ds, &cfg(AttackKind::Loss, 0), None);
    // The loss attack needs no shadow pool: every test flow is a non-member.
    assert_eq!((loss.members, loss.non_members), (60, 60));
    assert!(
        loss.metrics.auc > 0.9,
        "loss attack on a memorising model: AUC {}",
        loss.metrics.auc
    );
    assert!(loss.metrics.advantage > 0.5);
    let blind = attack(&unseen, &ds, &cfg(AttackKind::Loss, 0), None);
    assert!(
        (blind.metrics.auc - 0.5).abs() < 0.15,
        "unseen members: AUC {}",
        blind.metrics.auc
    );

    // LiRA online: shadows are kept in the work directory and reused for the second target.
    let work = d.path().join("shadows");
    let lira = attack(&target, &ds, &cfg(AttackKind::Lira, 4), Some(&work));
    assert!(lira.metrics.auc > 0.9, "LiRA online AUC {}", lira.metrics.auc);
    assert_eq!((lira.shadow_training.trained, lira.shadow_training.reused), (4, 0));
    let info = lira.lira.as_ref().unwrap();
    assert!(info.online && info.in_per_candidate == 2);
    let lira_blind = attack(&unseen, &ds, &cfg(AttackKind::Lira, 4), Some(&work));
    assert_eq!(
        (lira_blind.shadow_training.trained, lira_blind.shadow_training.reused),
        (0, 4)
    );
    assert!(
        (lira_blind.metrics.auc - 0.5).abs() < 0.15,
        "LiRA, unseen members: AUC {}",
        lira_blind.metrics.auc
    );

    let offline = attack(
        &target,
        &ds,
        &AttackConfig {
            offline: true,
            ..cfg(AttackKind::Lira, 4)
        },
        None,
    );
    assert!(offline.metrics.auc > 0.85, "LiRA offline AUC {}", offline.metrics.auc);
    let shokri = attack(&target, &ds, &cfg(AttackKind::Shokri, 2), None);
    assert!(shokri.metrics.auc > 0.85, "Shokri AUC {}", shokri.metrics.auc);
    assert_eq!(shokri.shadow_pool, 50);
    eprintln!(
        "AUC: loss {:.3} (unseen {:.3}), LiRA online {:.3} (unseen {:.3}), offline {:.3}, Shokri {:.3}",
        loss.metrics.auc,
        blind.metrics.auc,
        lira.metrics.auc,
        lira_blind.metrics.auc,
        offline.metrics.auc,
        shokri.metrics.auc
    );
    // Reports carry the seed, per-class slices and a ROC from (0, 0) to (1, 1).
    for r in [&loss, &lira, &offline, &shokri] {
        assert_eq!(r.seed, 7);
        assert_eq!(r.per_class.len(), 3);
        assert_eq!(r.per_class.iter().map(|c| c.members).sum::<usize>(), r.members);
        assert_eq!((r.roc.fpr[0], r.roc.tpr[0]), (0.0, 0.0));
        assert_eq!((*r.roc.fpr.last().unwrap(), *r.roc.tpr.last().unwrap()), (1.0, 1.0));
    }
}

fn err_of(r: Result<privpkt_attack::AttackReport, AttackError>) -> String {
    match r {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn overlapping_sets_and_foreign_models_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_flows(&d.path().join("a"), &Flows::noise(20, 4, 20), 3);
    let model = train(&ds, &overfit_config(1), &d.path().join("w"), false, &|_| {})
        .unwrap()
        .model;
    let run = |cfg: &AttackConfig, shadow: Option<&privpkt_dataset::Dataset>| {
        run_attack(
            &Target {
                model: &model,
                dataset: &ds,
                shadow_data: shadow,
            },
            cfg,
            None,
            &|_| {},
        )
    };
    // Every capture holds train and test flows: capture-level members and non-members overlap.
    let msg = err_of(run(
        &AttackConfig {
            unit: Some(MemberUnit::Capture),
            ..cfg(AttackKind::Loss, 0)
        },
        None,
    ));
    assert!(
        msg.contains("members and non-members would overlap") && msg.contains("4 captures"),
        "{msg}"
    );
    // A dataset whose flows straddle the splits (split by packet): refused at flow level too.
    let by_packet = nn_common::write_dataset(&d.path().join("p"), nn_common::Kind::FlowPicDense(16), 2, 60, 1);
    let mut tc = overfit_config(1);
    tc.arch = privpkt_nn::Arch::FlowPicMini;
    let pm = train(&by_packet, &tc, &d.path().join("wp"), false, &|_| {})
        .unwrap()
        .model;
    let msg = err_of(run_attack(
        &Target {
            model: &pm,
            dataset: &by_packet,
            shadow_data: None,
        },
        &cfg(AttackKind::Loss, 0),
        None,
        &|_| {},
    ));
    assert!(
        msg.contains("would overlap") && msg.contains("flows have samples in both"),
        "{msg}"
    );
    // Shadow data that is the target's own dataset (its train split included).
    let msg = err_of(run(&cfg(AttackKind::Shokri, 1), Some(&ds)));
    assert!(msg.contains("overlaps the target's training data"), "{msg}");
    // Another dataset cut from the same captures that shares flow 5, a training flow.
    let shared = write_flows(
        &d.path().join("shared"),
        &Flows {
            first_flow: 5,
            ..Flows::noise(6, 0, 6)
        },
        4,
    );
    let msg = err_of(run(&cfg(AttackKind::Shokri, 1), Some(&shared)));
    assert!(
        msg.contains("overlaps the target's training data") && msg.contains("flow 5"),
        "{msg}"
    );
    // Disjoint attacker data is accepted, and the pool grows by it.
    let own = write_flows(
        &d.path().join("own"),
        &Flows {
            tag: "z",
            ..Flows::noise(6, 0, 6)
        },
        5,
    );
    let r = run(&cfg(AttackKind::Shokri, 1), Some(&own)).unwrap();
    assert_eq!((r.members, r.shadow_pool), (20, 12));
    // A model of another dataset: membership is unknown.
    let other = write_flows(
        &d.path().join("o"),
        &Flows {
            tag: "o",
            ..Flows::noise(20, 4, 20)
        },
        6,
    );
    let msg = err_of(run_attack(
        &Target {
            model: &model,
            dataset: &other,
            shadow_data: None,
        },
        &cfg(AttackKind::Loss, 0),
        None,
        &|_| {},
    ));
    assert!(msg.contains("trained on another dataset"), "{msg}");
    let msg = err_of(run(
        &AttackConfig {
            members: Some(21),
            ..cfg(AttackKind::Loss, 0)
        },
        None,
    ));
    assert!(msg.contains("at most 20"), "{msg}");
    let msg = err_of(run(&cfg(AttackKind::Lira, 3), None));
    assert!(msg.contains("at least 4 shadow"), "{msg}");
    let msg = "packet".parse::<MemberUnit>().unwrap_err().to_string();
    assert!(msg.contains("not measured"), "{msg}");
    // Members come from the train split only, non-members from test, by flow.
    let u = build_universe(&MemberSource {
        dataset: &ds,
        meta: model.meta(),
        unit: MemberUnit::Flow,
        federated_client: None,
        shadow_data: None,
    })
    .unwrap();
    let count = |o| u.groups.iter().filter(|g| g.origin == o).count();
    assert_eq!((count(Origin::TargetTrain), count(Origin::HeldOut)), (20, 20));
    assert!(u.groups.iter().all(|g| g.samples.len() == 4));
}

#[test]
fn federated_targets_are_attacked_per_organisation() {
    use privpkt_dataset::partition::Scheme;
    use privpkt_federated::{simulate, Aggregation, FedConfig};
    let d = tempfile::tempdir().unwrap();
    let ds = write_flows(&d.path().join("a"), &Flows::noise(60, 0, 40), 8);
    let fed = FedConfig {
        clients: 3,
        partition: Scheme::Iid,
        rounds: 3,
        fraction: 1.0,
        local_epochs: 3,
        prox_mu: 0.0,
        aggregation: Aggregation::Mean,
        train: overfit_config(1),
        client_dp: None,
    };
    let out = simulate(&ds, &fed, &|_| {}).unwrap();
    // The members reconstructed for each organisation are the flows `simulate` gave it.
    for (c, info) in out.clients.iter().enumerate() {
        let u = build_universe(&MemberSource {
            dataset: &ds,
            meta: out.model.meta(),
            unit: MemberUnit::Flow,
            federated_client: Some(c),
            shadow_data: None,
        })
        .unwrap();
        let mine: Vec<_> = u.groups.iter().filter(|g| g.origin == Origin::TargetTrain).collect();
        assert_eq!(mine.len(), info.flows, "organisation {c}: flows");
        assert_eq!(mine.iter().map(|g| g.samples.len()).sum::<usize>(), info.samples);
        let mut counts = vec![0u64; 3];
        for g in &mine {
            for &i in &g.samples {
                counts[u.samples.labels[i] as usize] += 1;
            }
        }
        assert_eq!(counts, info.class_counts, "organisation {c}: classes");
    }
    let target = Target {
        model: &out.model,
        dataset: &ds,
        shadow_data: None,
    };
    let r = run_attack(
        &target,
        &AttackConfig {
            federated_client: Some(1),
            ..cfg(AttackKind::Loss, 0)
        },
        None,
        &|_| {},
    )
    .unwrap();
    assert_eq!(r.members, out.clients[1].flows.min(40));
    assert!(r.target.federated && r.target.federated_client == Some(1));
    let msg = err_of(run_attack(
        &target,
        &AttackConfig {
            federated_client: Some(3),
            ..cfg(AttackKind::Loss, 0)
        },
        None,
        &|_| {},
    ));
    assert!(msg.contains("3 clients"), "{msg}");
    let msg = err_of(run_attack(&target, &cfg(AttackKind::Lira, 4), None, &|_| {}));
    assert!(msg.contains("only the loss attack"), "{msg}");
}
