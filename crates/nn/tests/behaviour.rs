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
    assert_eq!(
        p["expected_units_per_step"], p["units"],
        "a full batch expects every flow"
    );
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

/// Piecewise-linear bins are the model's choice: the same dataset trains a model seeing each
/// number through 4 bins, whose file records them, and which classifies the dataset's samples;
/// a pre-trained model's bins carry over to the private run; bad counts are refused.
#[test]
fn piecewise_linear_bins_are_the_models_choice() {
    use privpkt_nn::arch::PLE_BINS;
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::Behaviour, 2, 150, 4);
    let coarse = TrainConfig {
        ple_bins: Some(4),
        ..cfg(Arch::Logistic)
    };
    let out = train(&ds, &coarse, &d.path().join("w4"), false, &quiet).unwrap();
    let input = out.model.meta().input;
    assert_eq!(input.bins(), 4);
    let default = InputSpec::of_behaviour(&behaviour_config());
    assert_eq!(default.bins(), PLE_BINS);
    let (packets, _, stats) = default.behaviour_layout().unwrap();
    assert_eq!(
        default.features() - input.features(),
        (packets * 3 + stats) * (PLE_BINS - 4),
        "three binned numbers per packet and every statistic lose 12 inputs each"
    );
    assert!(input.to_string().contains("numbers in 4 bins"), "{input}");
    assert_eq!(test_accuracy(&out.model, &ds), 1.0);
    let path = d.path().join("m4.safetensors");
    save_model(&path, &out.model).unwrap();
    let back = load_model(&path).unwrap();
    assert_eq!(back.meta().input, input);
    assert_eq!(back.meta().format_version, 2, "a v1 reader would assume 16 bins");
    check_compatible(back.meta(), &ds.manifest).unwrap();
    // A file claiming 0 bins is refused as corrupt, never sliced by.
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(8)
        .position(|w| w == br#"bins\":4"#)
        .expect("bins in the header");
    let mut bad = bytes.clone();
    bad[at + 7] = b'0';
    let bad_path = d.path().join("bad.safetensors");
    std::fs::write(&bad_path, bad).unwrap();
    let e = load_model(&bad_path).unwrap_err();
    assert!(e.to_string().contains("0 bins per number"), "{e}");
    assert_eq!(test_accuracy(&back, &ds), 1.0);
    // Model files from before the setting read as the default bins.
    let old: InputSpec =
        serde_json::from_str(r#"{"kind":"behaviour","packets":10,"payload_bytes":0,"stats":94}"#).unwrap();
    assert_eq!(old.bins(), PLE_BINS);

    // 4 bins of width 0.4 are the 16 bins of width 0.1 summed four at a time, over 4.
    let raw: Vec<f32> = {
        let test = load_split(&ds, Split::Test).unwrap();
        match test.data {
            privpkt_nn::SampleData::F32(v) => v[..default.stored_len()].to_vec(),
            _ => unreachable!("behaviour samples are f32"),
        }
    };
    let (mut fine, mut four) = (vec![0f32; default.features()], vec![0f32; input.features()]);
    privpkt_nn::data::scale_behaviour(&default, &raw, &mut fine);
    privpkt_nn::data::scale_behaviour(&input, &raw, &mut four);
    let fine_stats = &fine[fine.len() - stats * PLE_BINS..];
    let four_stats = &four[four.len() - stats * 4..];
    for (f, c) in fine_stats.chunks(4).zip(four_stats) {
        let s: f32 = f.iter().sum();
        assert!((s / 4.0 - c).abs() < 1e-6, "{f:?} vs {c}");
    }
    assert!(four_stats.iter().any(|&v| v > 0.0 && v < 1.0), "some bin partly filled");

    // A private run from that model keeps its bins; asking for others is refused by name.
    let mut dp = DpConfig::new(4.0);
    dp.seeded = true;
    let private = TrainConfig {
        dp: Some(dp),
        init: Some(InitFrom::new(&path, vec!["head".into()]).unwrap()),
        ..cfg(Arch::Logistic)
    };
    let out = train(&ds, &private, &d.path().join("wp"), false, &quiet).unwrap();
    assert_eq!(out.model.meta().input.bins(), 4);
    let other = TrainConfig {
        ple_bins: Some(16),
        ..private.clone()
    };
    let e = train(&ds, &other, &d.path().join("wo"), false, &quiet).unwrap_err();
    assert!(e.to_string().contains("numbers in 4 bins, this run asks for 16"), "{e}");
    for (bins, arch, want) in [
        (0, Arch::Logistic, "1..=64"),
        (65, Arch::Logistic, "1..=64"),
        (4, Arch::Sae, "flow-behaviour models"),
    ] {
        let c = TrainConfig {
            ple_bins: Some(bins),
            ..cfg(arch)
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains(want), "{bins} {arch}: {e}");
    }
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
        bins: privpkt_nn::arch::PLE_BINS,
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
