//! Gaussian noise: distribution, determinism across thread counts, stream separation.

use privpkt_privacy::noise::streams_needed;
use privpkt_privacy::{add_gaussian_noise, NoiseGenerator, PrivacyError, SeedSource, NOISE_CHUNK};

fn seed(b: u8) -> [u8; 32] {
    [b; 32]
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn mean_and_variance_within_five_standard_errors() {
    let n = 1_000_000;
    let std = 2.5f32;
    let mut buf = vec![0.0f32; n];
    add_gaussian_noise(&mut buf, std, &seed(7), 0).unwrap();
    let nf = n as f64;
    let mean = buf.iter().map(|&x| f64::from(x)).sum::<f64>() / nf;
    let var = buf.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let s2 = f64::from(std).powi(2);
    // SE(mean) = σ/√n; SE(s²) = σ²√(2/(n−1)) for a Gaussian.
    assert!(mean.abs() < 5.0 * f64::from(std) / nf.sqrt(), "mean {mean}");
    assert!((var - s2).abs() < 5.0 * s2 * (2.0 / (nf - 1.0)).sqrt(), "var {var}");
    // Shape: P(|Z| ≤ 1) = 0.682689…, binomial SE √(p(1−p)/n).
    let p = 0.682_689_492_137_085_9;
    let frac = buf.iter().filter(|&&x| x.abs() <= std).count() as f64 / nf;
    assert!(
        (frac - p).abs() < 5.0 * (p * (1.0 - p) / nf).sqrt(),
        "P(|Z|≤1) = {frac}"
    );
    // Fourth moment E[Z⁴] = 3, SE ≈ √(96/n).
    let k = buf
        .iter()
        .map(|&x| (f64::from(x) / f64::from(std)).powi(4))
        .sum::<f64>()
        / nf;
    assert!((k - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(), "E[Z^4] = {k}");
}

#[test]
fn independent_of_thread_count() {
    // Not a multiple of the chunk size, so the last chunk is partial.
    let n = 5 * NOISE_CHUNK + 1234;
    let run = |threads: usize| {
        in_pool(threads, || {
            let mut buf: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3).collect();
            add_gaussian_noise(&mut buf, 1.0, &seed(42), 17).unwrap();
            buf
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn noise_is_added_not_written() {
    let mut base = vec![100.0f32; 1000];
    let mut zero = vec![0.0f32; 1000];
    add_gaussian_noise(&mut base, 0.5, &seed(1), 0).unwrap();
    add_gaussian_noise(&mut zero, 0.5, &seed(1), 0).unwrap();
    for (b, z) in base.iter().zip(&zero) {
        assert!((b - 100.0 - z).abs() < 1e-4, "{b} {z}");
    }
    let mut same = vec![3.0f32; 10];
    add_gaussian_noise(&mut same, 0.0, &seed(1), 0).unwrap();
    assert!(same.iter().all(|&x| x == 3.0));
}

#[test]
fn seeds_and_streams_separate_noise() {
    let draw = |s: [u8; 32], base: u64| {
        let mut buf = vec![0.0f32; 3 * NOISE_CHUNK];
        add_gaussian_noise(&mut buf, 1.0, &s, base).unwrap();
        buf
    };
    let a = draw(seed(1), 0);
    assert_ne!(a, draw(seed(2), 0));
    assert_ne!(a, draw(seed(1), 3));
    // Chunk i uses stream base + i: shifting the base by one shifts the chunks.
    let shifted = draw(seed(1), 1);
    assert_eq!(&a[NOISE_CHUNK..], &shifted[..2 * NOISE_CHUNK]);
    // Chunks within one buffer are different streams.
    assert_ne!(&a[..NOISE_CHUNK], &a[NOISE_CHUNK..2 * NOISE_CHUNK]);
}

#[test]
fn generator_advances_streams_and_records_its_source() {
    let mut g = NoiseGenerator::from_u64(2024);
    assert_eq!(g.source(), SeedSource::Fixed(2024));
    let mut first = vec![0.0f32; NOISE_CHUNK + 1];
    g.add_noise(&mut first, 1.0).unwrap();
    assert_eq!(g.next_stream(), 2);
    assert_eq!(streams_needed(NOISE_CHUNK + 1), 2);
    let mut second = vec![0.0f32; NOISE_CHUNK + 1];
    g.add_noise(&mut second, 1.0).unwrap();
    assert_ne!(first, second, "successive steps must not reuse noise");
    // Same u64 ⇒ same noise; resuming at a stream reproduces the later call.
    let mut again = NoiseGenerator::from_u64(2024);
    again.set_next_stream(2);
    let mut resumed = vec![0.0f32; NOISE_CHUNK + 1];
    again.add_noise(&mut resumed, 1.0).unwrap();
    assert_eq!(resumed, second);
    assert_ne!(NoiseGenerator::from_u64(2025).source(), g.source());

    let mut a = NoiseGenerator::from_os_entropy().unwrap();
    let mut b = NoiseGenerator::from_os_entropy().unwrap();
    assert_eq!(a.source(), SeedSource::Os);
    let (mut x, mut y) = (vec![0.0f32; 64], vec![0.0f32; 64]);
    a.add_noise(&mut x, 1.0).unwrap();
    b.add_noise(&mut y, 1.0).unwrap();
    assert_ne!(x, y);
    // The key never shows up in logs.
    let dbg = format!("{:?}", NoiseGenerator::from_seed([0xAB; 32]));
    assert!(!dbg.contains("171") && !dbg.to_lowercase().contains("ab, "), "{dbg}");
    assert!(dbg.contains("Explicit"));
}

#[test]
fn bad_std_or_stream_overflow_are_errors() {
    let mut buf = vec![0.0f32; 4];
    for bad in [-1.0f32, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            add_gaussian_noise(&mut buf, bad, &seed(0), 0),
            Err(PrivacyError::InvalidParameter { name: "noise std", .. })
        ));
    }
    assert!(add_gaussian_noise(&mut buf, 1.0, &seed(0), u64::MAX).is_err());
    assert_eq!(buf, vec![0.0; 4], "nothing written on error");
}

#[test]
fn run_keys_are_distinct_seeded_or_fresh() {
    let (n1, s1) = privpkt_privacy::run_keys(Some(7)).unwrap();
    assert_ne!(n1, s1, "noise and sampling keys differ");
    assert_eq!(
        privpkt_privacy::run_keys(Some(7)).unwrap(),
        (n1, s1),
        "a seed reproduces them"
    );
    assert_ne!(privpkt_privacy::run_keys(Some(8)).unwrap().0, n1);
    let os = privpkt_privacy::run_keys(None).unwrap();
    assert_ne!(os, privpkt_privacy::run_keys(None).unwrap(), "OS keys are fresh");
}
