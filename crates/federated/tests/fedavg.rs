//! FedAvg simulation: aggregation against hand computations, bad updates rejected by name,
//! whole-flow partitions, and a federation that learns a separable dataset.

// The synthetic dataset writer of the model tests (written straight in privpkt's format).
#[path = "../../nn/tests/common/mod.rs"]
mod common;

use common::{write_dataset, Kind};
use privpkt_dataset::partition::Scheme;
use privpkt_dataset::Split;
use privpkt_federated::{aggregate, client_samples, simulate, Aggregation, ClientDp, FedConfig, FedError};
use privpkt_nn::{load_split, Arch, Network, Params, TrainConfig};

fn like() -> Params {
    let net = Network::new(Arch::FlowPicMini, privpkt_nn::InputSpec::FlowPic { resolution: 16 }, 2).unwrap();
    net.init_params(0)
}

/// Weights with every value of client k equal to `v[k]`.
fn constant(p: &Params, v: f32) -> Vec<Vec<f32>> {
    p.values.iter().map(|t| vec![v; t.len()]).collect()
}

#[test]
fn aggregation_matches_hand_computations() {
    let p = like();
    let ups = vec![
        (0, constant(&p, 1.0), 10),
        (1, constant(&p, 2.0), 30),
        (2, constant(&p, 9.0), 60),
    ];
    // Every tensor is aggregated, not only the last one.
    let mean = aggregate(&ups, &p, Aggregation::Mean).unwrap();
    let want = (1.0 * 10.0 + 2.0 * 30.0 + 9.0 * 60.0) / 100.0;
    assert!(
        mean.iter().flatten().all(|&v| (v - want).abs() < 1e-5),
        "weighted mean {want}"
    );
    let med = aggregate(&ups, &p, Aggregation::Median).unwrap();
    assert!(med.iter().flatten().all(|&v| v == 2.0));
    let four: Vec<_> = ups.iter().cloned().chain([(3, constant(&p, -100.0), 5)]).collect();
    let med4 = aggregate(&four, &p, Aggregation::Median).unwrap();
    assert!(med4.iter().flatten().all(|&v| v == 1.5));
    let trimmed = aggregate(&four, &p, Aggregation::TrimmedMean { trim: 0.25 }).unwrap();
    assert!(trimmed.iter().flatten().all(|&v| v == 1.5), "drops -100 and 9");
}

#[test]
fn bad_updates_are_rejected_naming_the_client() {
    let p = like();
    let mut nan = constant(&p, 1.0);
    nan[3][7] = f32::NAN;
    let ups = vec![(0, constant(&p, 1.0), 5), (4, nan, 5)];
    match aggregate(&ups, &p, Aggregation::Mean) {
        Err(FedError::BadUpdate { client: 4, reason }) => assert!(reason.contains("non-finite"), "{reason}"),
        r => panic!("expected client 4 to be rejected, got {r:?}"),
    }
    let mut short = constant(&p, 1.0);
    short[0].pop();
    let err = aggregate(&[(2, short, 1)], &p, Aggregation::Median)
        .unwrap_err()
        .to_string();
    assert!(err.contains("client 2") && err.contains("conv1.weight"), "{err}");
    let mut missing = constant(&p, 1.0);
    missing.pop();
    assert!(matches!(
        aggregate(&[(1, missing, 1)], &p, Aggregation::Mean),
        Err(FedError::BadUpdate { client: 1, .. })
    ));
    assert!("trimmed:0.5".parse::<Aggregation>().is_err());
    assert_eq!("trimmed:0.1".parse::<Aggregation>().unwrap().to_string(), "trimmed:0.1");
}

fn cfg(clients: usize, partition: Scheme) -> FedConfig {
    FedConfig {
        clients,
        partition,
        rounds: 4,
        fraction: 1.0,
        local_epochs: 2,
        prox_mu: 0.0,
        aggregation: Aggregation::Mean,
        train: TrainConfig {
            batch_size: 16,
            lr: 3e-3,
            seed: 7,
            ..TrainConfig::new(Arch::FlowPicMini)
        },
        client_dp: None,
    }
}

#[test]
fn partitions_keep_flows_whole() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 400, 3);
    let train = load_split(&ds, Split::Train).unwrap();
    for scheme in [Scheme::Iid, Scheme::Dirichlet { alpha: 0.5 }, Scheme::ByCapture] {
        let parts = client_samples(&train, 3, scheme, 1).unwrap();
        let mut owner = std::collections::HashMap::new();
        let mut total = 0;
        for (c, idx) in parts.iter().enumerate() {
            assert!(!idx.is_empty(), "{scheme}: client {c} is empty");
            total += idx.len();
            for &i in idx {
                let key = if scheme == Scheme::ByCapture {
                    (train.capture[i], 0)
                } else {
                    (train.capture[i], train.flow[i])
                };
                assert_eq!(
                    *owner.entry(key).or_insert(c),
                    c,
                    "{scheme}: {key:?} split between clients"
                );
            }
        }
        assert_eq!(total, train.len(), "{scheme}: every sample goes to one client");
    }
}

#[test]
fn a_federation_learns_and_is_reproducible() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 400, 3);
    let c = cfg(3, Scheme::Iid);
    let out = simulate(&ds, &c, &|_| {}).unwrap();
    assert_eq!(out.rounds.len(), 4);
    let last = out.rounds.last().unwrap();
    assert!(last.test_macro_f1 >= 0.9, "rounds {:?}", out.rounds);
    assert_eq!(out.clients.iter().map(|c| c.samples).sum::<usize>(), 240);
    let again = simulate(&ds, &c, &|_| {}).unwrap();
    assert_eq!(out.model.params(), again.model.params(), "same seed, same global model");
    let fed = out.model.meta().federated.as_ref().unwrap();
    assert_eq!(fed["config"]["clients"], 3);
    // FedProx, partial participation and robust aggregation run too.
    let mut prox = cfg(4, Scheme::ByCapture);
    prox.prox_mu = 0.1;
    prox.fraction = 0.5;
    prox.aggregation = Aggregation::Median;
    let out = simulate(&ds, &prox, &|_| {}).unwrap();
    assert!(out.rounds.iter().all(|r| r.clients.len() == 2));
    // Impossible settings are refused.
    let mut bad = cfg(3, Scheme::Iid);
    bad.fraction = 0.0;
    assert!(matches!(simulate(&ds, &bad, &|_| {}), Err(FedError::Config(_))));
    let err = simulate(&ds, &cfg(5, Scheme::ByCapture), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("4 captures"), "{err}");
}

#[test]
fn client_level_dp_spends_its_budget_per_round() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 400, 3);
    let mut c = cfg(10, Scheme::Iid);
    c.fraction = 0.5;
    c.rounds = 3;
    c.local_epochs = 1;
    c.client_dp = Some(ClientDp {
        clip: 0.01,
        sigma: None,
        epsilon: Some(8.0),
        delta: 1e-5,
        seeded: true,
    });
    let out = simulate(&ds, &c, &|_| {}).unwrap();
    let eps: Vec<f64> = out.rounds.iter().map(|r| r.epsilon.unwrap()).collect();
    assert!(eps.windows(2).all(|w| w[0] < w[1]), "{eps:?}");
    assert!(
        *eps.last().unwrap() <= 8.0 + 1e-9 && *eps.last().unwrap() > 7.9,
        "{eps:?}"
    );
    let p = out.model.meta().privacy.clone().unwrap();
    assert_eq!(p["unit"], "client");
    assert_eq!(p["mechanism"], "DP-FedAvg");
    // Local training moves the weights further than 0.01: every update is clipped.
    assert!(
        out.rounds.iter().all(|r| r.clipped == Some(r.clients.len())),
        "{:?}",
        out.rounds
    );
    // Poisson sampling: the rounds' client counts vary around q·N = 5.
    assert!(out.rounds.iter().all(|r| r.clients.len() <= 10));
    let again = simulate(&ds, &c, &|_| {}).unwrap();
    assert_eq!(out.model.params(), again.model.params(), "seeded: reproducible");
    // The sensitivity bound is for the mean: robust aggregation is refused, as are bad budgets.
    let mut med = c.clone();
    med.aggregation = Aggregation::Median;
    assert!(matches!(simulate(&ds, &med, &|_| {}), Err(FedError::Config(m)) if m.contains("median")));
    let mut zero = c.clone();
    zero.client_dp.as_mut().unwrap().epsilon = Some(0.0);
    assert!(simulate(&ds, &zero, &|_| {}).is_err());
    let mut tight = c.clone();
    let dp = tight.client_dp.as_mut().unwrap();
    dp.sigma = Some(0.3);
    dp.epsilon = Some(1.0);
    let err = simulate(&ds, &tight, &|_| {}).unwrap_err().to_string();
    assert!(err.contains("spends ε"), "{err}");
}

#[test]
fn local_dp_sgd_keeps_one_accountant_per_organisation() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 400, 3);
    let mut c = cfg(3, Scheme::Iid);
    c.rounds = 3;
    c.local_epochs = 1;
    c.train.batch_size = 8;
    let mut dp = privpkt_nn::DpConfig::new(4.0);
    dp.seeded = true;
    c.train.dp = Some(dp);
    let out = simulate(&ds, &c, &|_| {}).unwrap();
    let eps: Vec<f64> = out.rounds.iter().map(|r| r.local_epsilon.unwrap()).collect();
    assert!(eps.windows(2).all(|w| w[0] < w[1]), "ε grows round by round: {eps:?}");
    // Every organisation trained in every round, as σ's calibration assumed: the budget is spent.
    assert!(
        *eps.last().unwrap() <= 4.0 + 1e-9 && *eps.last().unwrap() > 3.8,
        "{eps:?}"
    );
    let p = out.model.meta().privacy.clone().unwrap();
    assert_eq!(p["unit"], "flow");
    let per = p["per_client"].as_array().unwrap();
    assert_eq!(per.len(), 3);
    for (i, v) in per.iter().enumerate() {
        let e = v["epsilon"].as_f64().unwrap();
        assert!(e > 0.0 && e <= 4.0 + 1e-9, "client {i}: ε {e}");
        // Each organisation's q is its own batch over its own flows.
        assert_eq!(v["units"].as_u64().unwrap() as usize, out.clients[i].flows);
    }
    let again = simulate(&ds, &c, &|_| {}).unwrap();
    assert_eq!(out.model.params(), again.model.params(), "seeded: reproducible");

    // A σ too small for the budget: organisations stop once it is spent and sit out the rest.
    let mut short = c.clone();
    short.rounds = 4;
    let dp = short.train.dp.as_mut().unwrap();
    dp.sigma = Some(1.3);
    let out = simulate(&ds, &short, &|_| {}).unwrap();
    assert!(
        out.rounds.iter().all(|r| r.local_epsilon.unwrap() <= 4.0 + 1e-9),
        "{:?}",
        out.rounds
    );
    assert_eq!(out.rounds.last().unwrap().examples, 0, "budget spent: {:?}", out.rounds);

    // FedProx's proximal step would bypass the noise: refused.
    let mut prox = c.clone();
    prox.prox_mu = 0.1;
    assert!(matches!(simulate(&ds, &prox, &|_| {}), Err(FedError::Config(m)) if m.contains("FedProx")));
}
