//! The audit hook of DP-SGD: gradient canaries are stepped with every private step, refused
//! where they cannot be honest, and a deliberately broken run says so in its privacy record.

mod common;

use common::{private_flowpic, write_dataset, Kind};
use privpkt_dataset::Split;
use privpkt_nn::dp::{BrokenDp, Canaries};
use privpkt_nn::{load_split, train_samples, NnError, TrainConfig, TrainData};

#[test]
fn canaries_step_with_private_training_and_are_refused_elsewhere() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 200, 2);
    let train = load_split(&ds, Split::Train).unwrap();
    let val = load_split(&ds, Split::Val).unwrap();
    let data = TrainData {
        dataset: &ds,
        train: &train,
        val: &val,
        data_id: "canary-test".into(),
    };
    let coords = vec![0, 5, 77, 1000];
    let make = || Canaries::new(coords.clone(), vec![true, false, true, false], 100.0, 9).unwrap();

    // Noise off: only the (clipped) gradients are left, and the record says ε does not hold.
    let mut c = make().break_dp(BrokenDp::Noise);
    let out = train_samples(
        &data,
        &private_flowpic(2.0, 2),
        &d.path().join("w1"),
        false,
        &|_| {},
        Some(&mut c),
    )
    .unwrap();
    let p = out.model.meta().privacy.clone().unwrap();
    assert_eq!(c.steps(), p["steps"].as_u64().unwrap());
    assert!(c.scores().iter().all(|s| s.is_finite()) && c.scores().iter().any(|&s| s != 0.0));
    assert!(p["broken_for_audit_validation"].as_str().unwrap().contains("noise off"));

    // An honest run records nothing of the kind, and the same seed gives the same scores.
    let mut a = make();
    let mut b = make();
    let honest = train_samples(
        &data,
        &private_flowpic(2.0, 2),
        &d.path().join("w2"),
        false,
        &|_| {},
        Some(&mut a),
    )
    .unwrap();
    train_samples(
        &data,
        &private_flowpic(2.0, 2),
        &d.path().join("w3"),
        false,
        &|_| {},
        Some(&mut b),
    )
    .unwrap();
    assert_eq!(a.scores(), b.scores());
    assert!(honest
        .model
        .meta()
        .privacy
        .clone()
        .unwrap()
        .get("broken_for_audit_validation")
        .is_none());

    let refused = |cfg: TrainConfig, resume: bool, mut c: Canaries, what: &str| match train_samples(
        &data,
        &cfg,
        &d.path().join("w4"),
        resume,
        &|_| {},
        Some(&mut c),
    ) {
        Err(NnError::Config(m)) => assert!(m.contains(what), "expected `{what}` in: {m}"),
        Err(e) => panic!("expected a configuration error with `{what}`, got {e}"),
        Ok(_) => panic!("expected a refusal with `{what}`"),
    };
    refused(
        TrainConfig {
            dp: None,
            ..private_flowpic(2.0, 2)
        },
        false,
        make(),
        "DP-SGD run",
    );
    refused(private_flowpic(2.0, 2), true, make(), "from scratch");
    let far = Canaries::new(vec![1 << 30], vec![true], 1.0, 0).unwrap();
    refused(private_flowpic(2.0, 2), false, far, "outside the model");
    for (coords, inc, norm, what) in [
        (vec![1, 1], vec![true, false], 1.0, "share a coordinate"),
        (vec![1, 2], vec![true], 1.0, "inclusion flags"),
        (vec![1], vec![true], 0.0, "norm must be a finite number > 0"),
    ] {
        let msg = Canaries::new(coords, inc, norm, 0).unwrap_err().to_string();
        assert!(msg.contains(what), "{msg}");
    }
}
