//! Flow behaviour samples of hand-built flows: the series checked value by value, every
//! statistic against an independent numpy computation (`data/behaviour_reference.py`), and when
//! each flow is decided.

use std::collections::HashMap;
use std::path::Path;

use privpkt_capture::behaviour::{BehaviourConfig, StatsScope, SERIES_CHANNELS, STATS};
use privpkt_capture::{
    extract_from, ExtractConfig, FlowConfig, FlowKey, FlowPicImage, Representation, SampleMeta, SampleSink, VECTOR_LEN,
};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

/// The TCP flow of the reference: (ms, backward?, payload bytes, flags).
const TCP_FLOW: [(f64, bool, usize, u8); 11] = [
    (0.0, false, 0, SYN),
    (10.0, true, 0, SYN | ACK),
    (20.0, false, 0, ACK),
    (25.0, false, 100, PSH | ACK),
    (60.0, true, 0, ACK),
    (70.0, true, 1000, PSH | ACK),
    (71.5, true, 400, PSH | ACK),
    (90.0, false, 0, ACK),
    (500.0, false, 0, FIN | ACK),
    (510.0, true, 0, FIN | ACK),
    (520.0, false, 0, ACK),
];
/// The UDP flow of the reference, starting 2 s later.
const UDP_FLOW: [(f64, bool, usize, u8); 3] = [(0.0, false, 10, 0), (1000.0, true, 20, 0), (1002.0, false, 30, 0)];

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], body: &[u8]) -> Vec<u8> {
    let total = 20 + body.len();
    let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(body);
    h
}

/// Payload byte i of every packet is `(i + 1) as u8`: the series' payload bytes are checkable.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i + 1) as u8).collect()
}

fn tcp_packet(backward: bool, n: usize, flags: u8) -> Vec<u8> {
    let (sp, dp) = if backward { (443u16, 50000u16) } else { (50000, 443) };
    let mut t = vec![
        (sp >> 8) as u8,
        sp as u8,
        (dp >> 8) as u8,
        dp as u8,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        1,
    ];
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload(n));
    let (a, b) = ([10, 0, 0, 1], [192, 0, 2, 7]);
    if backward {
        ipv4(6, b, a, &t)
    } else {
        ipv4(6, a, b, &t)
    }
}

fn udp_packet(backward: bool, n: usize, sport: u16) -> Vec<u8> {
    let (sp, dp) = if backward { (9000u16, sport) } else { (sport, 9000) };
    let len = 8 + n;
    let mut u = vec![
        (sp >> 8) as u8,
        sp as u8,
        (dp >> 8) as u8,
        dp as u8,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
    ];
    u.extend(payload(n));
    let (a, b) = ([10, 0, 0, 2], [198, 51, 100, 9]);
    if backward {
        ipv4(17, b, a, &u)
    } else {
        ipv4(17, a, b, &u)
    }
}

/// A classic little-endian pcap of raw IP packets at (µs since the epoch, bytes).
fn pcap(packets: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (us, p) in packets {
        f.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    f
}

/// The reference capture: the TCP flow from t = 1000 s, the UDP flow from t = 1002 s, and a
/// one-packet UDP flow at t = 1010 s.
fn reference_capture() -> Vec<u8> {
    let t0 = 1_000_000_000i64;
    let mut pk: Vec<(i64, Vec<u8>)> = TCP_FLOW
        .iter()
        .map(|&(ms, back, n, fl)| (t0 + (ms * 1000.0) as i64, tcp_packet(back, n, fl)))
        .collect();
    pk.extend(
        UDP_FLOW
            .iter()
            .map(|&(ms, back, n, _)| (t0 + 2_000_000 + (ms * 1000.0) as i64, udp_packet(back, n, 4000))),
    );
    pk.push((t0 + 10_000_000, udp_packet(false, 5, 4001)));
    pk.sort_by_key(|p| p.0);
    pcap(&pk)
}

#[derive(Default)]
struct Collect {
    samples: Vec<(SampleMeta, Vec<f32>)>,
}

impl SampleSink for Collect {
    fn label(&mut self, _: &FlowKey) -> Option<u32> {
        Some(0)
    }
    fn packet(&mut self, _: &SampleMeta, _: &[u8; VECTOR_LEN]) {
        panic!("behaviour extraction produced a packet vector");
    }
    fn flowpic(&mut self, _: &SampleMeta, _: &FlowPicImage) {
        panic!("behaviour extraction produced a FlowPic");
    }
    fn behaviour(&mut self, meta: &SampleMeta, sample: &[f32]) {
        self.samples.push((*meta, sample.to_vec()));
    }
}

/// Samples by the flow's transport and first packet's source port.
fn extract(b: BehaviourConfig) -> HashMap<(&'static str, u16), (SampleMeta, Vec<f32>)> {
    let cfg = ExtractConfig {
        repr: Representation::Behaviour(b),
        flow: FlowConfig::default(),
        max_per_flow: 0,
    };
    let bytes = reference_capture();
    let mut sink = Collect::default();
    extract_from(Path::new("reference.pcap"), &bytes[..], &cfg, &mut sink).unwrap();
    sink.samples
        .into_iter()
        .map(|(m, s)| {
            assert_eq!(s.len(), b.sample_len(), "every sample has the configured length");
            ((m.l4.name(), m.src_port), (m, s))
        })
        .collect()
}

fn reference() -> serde_json::Value {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/behaviour_reference.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_statistic_matches_the_numpy_reference() {
    let got = extract(BehaviourConfig::flowstats());
    let want = reference();
    for (key, name) in [(("TCP", 50000), "tcp"), (("UDP", 4000), "udp")] {
        let (meta, s) = &got[&key];
        let reference = want[name].as_object().unwrap();
        assert_eq!(reference.len(), STATS.len(), "the reference covers every statistic");
        for (f, &v) in STATS.iter().zip(s) {
            let w = reference[&f.name]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no reference for {}", f.name));
            assert!(
                (v as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{name} {}: privpkt {v}, numpy {w}",
                f.name
            );
        }
        // Whole-flow statistics: decided at the flow's end.
        let n = if name == "tcp" { TCP_FLOW.len() } else { UDP_FLOW.len() };
        assert_eq!(meta.flow_packets, n as u64, "{name}");
    }
}

#[test]
fn series_rows_by_hand() {
    let cfg = BehaviourConfig {
        packets: 4,
        payload_bytes: 3,
        payload_packets: 4,
        stats: None,
        min_packets: 1,
    };
    let got = extract(cfg);
    let c = SERIES_CHANNELS + 3;
    let (meta, s) = &got[&("TCP", 50000)];
    // A series alone is decided at its 4th packet, not at the flow's end.
    assert_eq!(meta.flow_packets, 4);
    // mask, direction, IP bytes, payload bytes, gap µs, FIN SYN RST PSH ACK URG, payload bytes
    #[rustfmt::skip]
    let want: [f32; 4 * 14] = [
        1.0, 1.0, 40.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        1.0, -1.0, 40.0, 0.0, 10_000.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        1.0, 1.0, 40.0, 0.0, 10_000.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        1.0, 1.0, 140.0, 100.0, 5_000.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 2.0, 3.0,
    ];
    assert_eq!(s.len(), 4 * c);
    assert_eq!(&s[..], &want[..]);

    // A flow shorter than the series: decided at its end, missing rows all zero.
    let (meta, s) = &got[&("UDP", 4000)];
    assert_eq!(meta.flow_packets, 3);
    #[rustfmt::skip]
    let udp: [f32; 4 * 14] = [
        1.0, 1.0, 38.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0,
        1.0, -1.0, 48.0, 20.0, 1_000_000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0,
        1.0, 1.0, 58.0, 30.0, 2_000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(&s[..], &udp[..]);

    // Only the first payload-carrying packets keep their bytes: the first one, here.
    let got = extract(BehaviourConfig {
        payload_packets: 1,
        ..cfg
    });
    let (_, s) = &got[&("UDP", 4000)];
    assert_eq!(&s[11..14], &[1.0, 2.0, 3.0]);
    assert_eq!(&s[c + 11..c + 14], &[0.0, 0.0, 0.0]);
    assert_eq!(&s[2 * c + 11..2 * c + 14], &[0.0, 0.0, 0.0]);
    let (_, s) = &got[&("TCP", 50000)];
    assert_eq!(
        &s[3 * c + 11..3 * c + 14],
        &[1.0, 2.0, 3.0],
        "the handshake carries no payload"
    );
    let got = extract(cfg);

    // A one-packet flow is a sample too.
    let (meta, s) = &got[&("UDP", 4001)];
    assert_eq!(meta.flow_packets, 1);
    assert_eq!(&s[..5], &[1.0, 1.0, 33.0, 5.0, 0.0]);
    assert!(s[c..].iter().all(|&v| v == 0.0));
}

#[test]
fn one_packet_flow_statistics_are_zero_where_undefined() {
    let got = extract(BehaviourConfig::flowstats());
    let (_, s) = &got[&("UDP", 4001)];
    let value = |name: &str| s[STATS.iter().position(|f| f.name == name).unwrap()];
    assert_eq!(value("bidirectional_packets"), 1.0);
    assert_eq!(value("bidirectional_bytes"), 33.0);
    assert_eq!(value("src2dst_min_ps"), 33.0);
    assert_eq!(value("dst2src_packets"), 0.0);
    for zero in [
        "bidirectional_duration_ms",
        "bidirectional_stddev_ps",
        "bidirectional_mean_piat_ms",
        "dst2src_max_ps",
        "bidirectional_packets_per_s",
        "dst2src_bytes_share",
    ] {
        assert_eq!(value(zero), 0.0, "{zero}");
    }
    assert_eq!(value("protocol"), 17.0);
}

#[test]
fn decision_points_follow_the_scope() {
    // Statistics over the first 50 ms: the TCP flow is decided at its 5th packet (t = 60 ms),
    // the first outside the window, and its statistics count the 4 packets before it.
    let window = BehaviourConfig {
        stats: Some(StatsScope::Seconds { seconds: 0.05 }),
        ..BehaviourConfig::flowstats()
    };
    let got = extract(window);
    let (meta, s) = &got[&("TCP", 50000)];
    assert_eq!(meta.flow_packets, 5);
    let value = |name: &str| s[STATS.iter().position(|f| f.name == name).unwrap()];
    assert_eq!(value("bidirectional_packets"), 4.0);
    assert_eq!(value("bidirectional_duration_ms"), 25.0);
    assert_eq!(value("src2dst_bytes"), 40.0 + 40.0 + 140.0);
    // The UDP flow's second packet comes 1 s later: decided there, on its first packet alone.
    let (meta, s) = &got[&("UDP", 4000)];
    assert_eq!(meta.flow_packets, 2);
    assert_eq!(
        s[STATS.iter().position(|f| f.name == "bidirectional_packets").unwrap()],
        1.0
    );

    // Statistics over the series: decided with the series.
    let series = BehaviourConfig {
        packets: 6,
        stats: Some(StatsScope::Series),
        ..BehaviourConfig::series()
    };
    let got = extract(series);
    let (meta, s) = &got[&("TCP", 50000)];
    assert_eq!(meta.flow_packets, 6);
    let stats = &s[6 * SERIES_CHANNELS..];
    assert_eq!(
        stats[STATS.iter().position(|f| f.name == "bidirectional_packets").unwrap()],
        6.0
    );
    assert_eq!(
        stats[STATS.iter().position(|f| f.name == "dst2src_bytes").unwrap()],
        40.0 + 40.0 + 1040.0
    );

    // Fewer packets than the minimum: no sample at all.
    let min = BehaviourConfig {
        min_packets: 4,
        ..BehaviourConfig::flowstats()
    };
    let got = extract(min);
    assert!(got.contains_key(&("TCP", 50000)));
    assert!(!got.contains_key(&("UDP", 4000)));
    assert!(!got.contains_key(&("UDP", 4001)));
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let ok = BehaviourConfig::behaviour();
    assert!(ok.validate().is_ok());
    for bad in [
        BehaviourConfig {
            packets: 0,
            stats: None,
            ..ok
        },
        BehaviourConfig {
            packets: 0,
            payload_bytes: 8,
            ..ok
        },
        BehaviourConfig { min_packets: 0, ..ok },
        BehaviourConfig {
            stats: Some(StatsScope::Seconds { seconds: f64::NAN }),
            ..ok
        },
        BehaviourConfig {
            stats: Some(StatsScope::Seconds { seconds: 0.0 }),
            ..ok
        },
        BehaviourConfig {
            packets: 0,
            stats: Some(StatsScope::Series),
            ..ok
        },
        BehaviourConfig {
            payload_bytes: 2000,
            ..ok
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}
