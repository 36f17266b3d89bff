//! The flow-behaviour models: they learn two behaviours perfectly, private runs use full batches,
//! weight averaging and augmented views, public → private training keeps the public layers
//! exactly and records where they came from, and bad input gets a clear error.

mod common;

use common::{behaviour_config, write_dataset, Kind};
use privpkt_dataset::{Dataset, Split};
use privpkt_nn::augment::Augment;
use privpkt_nn::dp::FULL_BATCH;
use privpkt_nn::init::InitFrom;
use privpkt_nn::{
    check_compatible, load_model, load_split, save_model, train, Arch, DpConfig, InputSpec, Model, RawBatch,
    TrainConfig, TrainEvent,
};

fn quiet(_: TrainEvent) {}

fn test_accuracy(model: &Model, ds: &Dataset) -> f64 {
    let test = load_split(ds, Split::Test).unwrap();
    let probs = model.predict_samples(&test).unwrap();
    let right = probs
        .iter()
        .zip(&test.labels)
        .filter(|(p, &y)| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 == y as usize)
        .count();
    right as f64 / test.len() as f64
}

fn cfg(arch: Arch) -> TrainConfig {
    TrainConfig {
        epochs: 15,
        batch_size: 16,
        lr: 3e-3,
        patience: None,
        seed: 1,
        ..TrainConfig::new(arch)
    }
}

#[test]
fn tiny_models_separate_two_behaviours_perfectly() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::Behaviour, 2, 200, 4);
    for arch in [Arch::Logistic, Arch::Mlp, Arch::SeriesCnn] {
        let out = train(&ds, &cfg(arch), &d.path().join(format!("w-{arch}")), false, &quiet).unwrap();
        assert_eq!(test_accuracy(&out.model, &ds), 1.0, "{arch}");
        // What the model file records: the behaviour input and its fixed scaling.
        let path = d.path().join(format!("{arch}.safetensors"));
        save_model(&path, &out.model).unwrap();
        let back = load_model(&path).unwrap();
        assert_eq!(back.meta().input, InputSpec::of_behaviour(&behaviour_config()));
        assert_eq!(back.meta().scaling, privpkt_nn::Scaling::Behaviour);
    }
}

#[test]
fn private_full_batch_with_averaging_and_views() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::Behaviour, 4, 200, 5);
    let mut dp = DpConfig::new(8.0);
    dp.seeded = true;
    let c = TrainConfig {
        epochs: 30,
        batch_size: FULL_BATCH,
        lr: 1.0,
        optimizer: privpkt_nn::Optimizer::Sgd { momentum: 0.0 },
        ema: Some(0.9),
        augment: Some(Augment {
            views: 2,
            ..Augment::default()
        }),
        dp: Some(dp),
        ..cfg(Arch::Logistic)
    };
    let out = train(&ds, &c, &d.path().join("w"), false, &quiet).unwrap();
    let p = out.model.meta().privacy.clone().unwrap();
    assert_eq!(p["q"], 1.0, "full batch: every flow in every step");
    assert_eq!(p["steps"], 30);
    assert!(p["epsilon"].as_f64().unwrap() <= 8.0 + 1e-9);
    assert!(
        test_accuracy(&out.model, &ds) >= 0.9,
        "{}",
        test_accuracy(&out.model, &ds)
    );
    // A full batch without DP is refused: it only means something as DP gradient descent.
    let plain = TrainConfig { dp: None, ..c.clone() };
    assert!(plain.validate().unwrap_err().to_string().contains("full"));
}

#[test]
fn public_then_private_keeps_public_layers_and_records_provenance() {
    let d = tempfile::tempdir().unwrap();
    let public = write_dataset(&d.path().join("public"), Kind::Behaviour, 2, 150, 6);
    let private = write_dataset(&d.path().join("private"), Kind::Behaviour, 2, 150, 7);
    let pre = train(&public, &cfg(Arch::Mlp), &d.path().join("wp"), false, &quiet).unwrap();
    let public_path = d.path().join("public.safetensors");
    save_model(&public_path, &pre.model).unwrap();
    let mut dp = DpConfig::new(2.0);
    dp.seeded = true;
    let c = TrainConfig {
        dp: Some(dp),
        batch_size: 16,
        init: Some(InitFrom::new(&public_path, vec!["head".into()]).unwrap()),
        ..cfg(Arch::Mlp)
    };
    let out = train(&private, &c, &d.path().join("wq"), false, &quiet).unwrap();
    let meta = out.model.meta();
    let prov = meta.pretraining.as_ref().expect("provenance recorded");
    assert_eq!(prov.layers_trained, ["out"]);
    assert_eq!(prov.layers_kept, ["fc1", "fc2"]);
    assert!(prov.layers_reinitialised.is_empty());
    assert!(prov.privacy.is_none(), "the public model was trained without DP");
    assert_eq!(prov.model_sha256, c.init.as_ref().unwrap().model_sha256);
    assert!(meta.privacy.is_some());
    // The kept layers are exactly the public model's; the output layer moved.
    for (i, s) in out.model.params().specs.iter().enumerate() {
        let same = out.model.params().values[i] == pre.model.params().values[i];
        assert_eq!(same, !s.name.starts_with("out."), "{}", s.name);
    }
    assert!(test_accuracy(&out.model, &private) >= 0.9);

    // Other classes: the output layer starts fresh, and must then be trained.
    let other = write_dataset(&d.path().join("other"), Kind::Behaviour, 3, 150, 8);
    let out = train(&other, &c, &d.path().join("wo"), false, &quiet).unwrap();
    assert_eq!(
        out.model.meta().pretraining.as_ref().unwrap().layers_reinitialised,
        ["out"]
    );
    let frozen_out = TrainConfig {
        init: Some(InitFrom::new(&public_path, vec!["fc2".into()]).unwrap()),
        ..c.clone()
    };
    let e = train(&other, &frozen_out, &d.path().join("wf"), false, &quiet).unwrap_err();
    assert!(e.to_string().contains("add it to --train-layers"), "{e}");
    // An unknown layer, and a changed public file, are refused by name.
    let typo = TrainConfig {
        init: Some(InitFrom::new(&public_path, vec!["fc9".into()]).unwrap()),
        ..c.clone()
    };
    let e = train(&private, &typo, &d.path().join("wt"), false, &quiet).unwrap_err();
    assert!(e.to_string().contains("no layer `fc9`"), "{e}");
    std::fs::write(&public_path, b"changed").unwrap();
    let e = train(&private, &c, &d.path().join("wc"), false, &quiet).unwrap_err();
    assert!(e.to_string().contains("changed since"), "{e}");
}

#[test]
fn bad_behaviour_input_is_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::Behaviour, 2, 60, 9);
    let out = train(&ds, &cfg(Arch::Mlp), &d.path().join("w"), false, &quiet).unwrap();
    let input = out.model.meta().input;
    // NaN features: named, never predicted.
    let mut values = vec![1.0f32; input.stored_len()];
    values[3] = f32::NAN;
    let e = out
        .model
        .predict_proba(RawBatch::Behaviour { input, values: &values })
        .unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    // A batch of another series length.
    let other = InputSpec::Behaviour {
        packets: 20,
        payload_bytes: 0,
        stats: privpkt_capture::STATS.len(),
    };
    let values = vec![0.0f32; other.stored_len()];
    let e = out
        .model
        .predict_proba(RawBatch::Behaviour {
            input: other,
            values: &values,
        })
        .unwrap_err();
    assert!(e.to_string().contains("10-packet series"), "{e}");
    // A dataset of another series length.
    let mut m = ds.manifest.clone();
    m.extract.repr = privpkt_capture::Representation::Behaviour(privpkt_capture::BehaviourConfig {
        packets: 20,
        ..behaviour_config()
    });
    if let privpkt_dataset::Storage::Dense { row_shape, .. } = &mut m.storage {
        row_shape[0] = other.stored_len() as u64;
    }
    let e = check_compatible(out.model.meta(), &m).unwrap_err();
    assert!(e.to_string().contains("20-packet series"), "{e}");
    // Weights that are not numbers never make a model (a diverged run writes nothing).
    let mut params = out.model.params().clone();
    params.values[0][0] = f32::NAN;
    let e = Model::new(out.model.meta().clone(), params).unwrap_err();
    assert!(
        e.to_string().contains("non-finite") && e.to_string().contains("fc1.weight"),
        "{e}"
    );
    // Augmentation is for behaviour samples only.
    let dpds = write_dataset(&d.path().join("dp"), Kind::DeepPacket, 2, 20, 1);
    let c = TrainConfig {
        augment: Some(Augment::default()),
        ..cfg(Arch::Sae)
    };
    let e = train(&dpds, &c, &d.path().join("wa"), false, &quiet).unwrap_err();
    assert!(e.to_string().contains("augmentation"), "{e}");
}
