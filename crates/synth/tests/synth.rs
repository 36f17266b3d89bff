mod common;

use common::{decode, load, median, read_capture, Dataset};
use privpkt_synth::writer::{linktype, PcapNgWriter, PcapWriter};
use privpkt_synth::{
    generate, CaptureFormat, Category, LinkKind, SynthConfig, SynthError, SynthSummary, WriterOptions,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        seed,
        captures_per_class: 1,
        flows_per_capture: 3,
        max_packets_per_flow: 60,
        link: LinkKind::Mixed,
        ..SynthConfig::default()
    }
}

fn run(cfg: &SynthConfig, dir: &Path) -> SynthSummary {
    generate(cfg, dir, &|_| {}).unwrap()
}

fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_seed_is_byte_identical_across_thread_counts() {
    // Enough files that the 4-thread pool really spreads them.
    let cfg = SynthConfig {
        captures_per_class: 3,
        flows_per_capture: 4,
        max_packets_per_flow: 150,
        ..small(42)
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let sa = one.install(|| run(&cfg, a.path()));
    let sb = four.install(|| run(&cfg, b.path()));
    let da = dir_contents(a.path());
    let db = dir_contents(b.path());
    assert!(da.len() > 10);
    assert_eq!(da.keys().collect::<Vec<_>>(), db.keys().collect::<Vec<_>>());
    for (name, bytes) in &da {
        assert!(bytes == &db[name], "{name} differs between runs");
    }
    assert_eq!(sa.bytes, sb.bytes);
    assert_eq!(sa.packets, sb.packets);

    run(
        &SynthConfig {
            seed: 43,
            ..cfg.clone()
        },
        c.path(),
    );
    let dc = dir_contents(c.path());
    let differing = da
        .iter()
        .filter(|(n, _)| n.ends_with("pcap") || n.ends_with("pcapng"))
        .filter(|(n, bytes)| dc.get(*n) != Some(*bytes))
        .count();
    let captures = da.keys().filter(|n| n.contains(".pcap")).count();
    assert_eq!(differing, captures, "another seed must change every capture");
}

/// Checks every packet of a generated set against its labels and the
/// protocol shapes it claims to have.
fn check_dataset(ds: &Dataset, summary: &SynthSummary, dir: &Path) {
    // Labels ↔ packets: exact counts and IP bytes.
    let mut total_pkts = 0;
    for (i, r) in ds.rows.iter().enumerate() {
        let f = &ds.flows[i];
        assert!(!f.is_empty(), "label row without packets: {r:?}");
        assert_eq!(r.pkts, f.len() as u64, "{r:?}");
        assert_eq!(r.bytes, f.iter().map(|p| p.1.ip_len as u64).sum::<u64>(), "{r:?}");
        total_pkts += f.len() as u64;
        assert!(matches!(r.vpn.as_str(), "yes" | "no"));
        let valid = ["chat", "streaming", "voip", "file_transfer", "browsing", "dns"];
        assert!(valid.contains(&r.category.as_str()), "{r:?}");
        for (ts, _) in f {
            let year_2024 = 1_704_067_200_000_000_000..1_735_689_600_000_000_000;
            assert!(year_2024.contains(ts), "timestamp outside 2024");
        }
    }
    assert_eq!(summary.packets, total_pkts);
    assert_eq!(summary.flows, ds.rows.len() as u64);
    let disk: u64 = summary
        .files
        .iter()
        .map(|f| std::fs::metadata(&f.path).unwrap().len())
        .sum();
    assert_eq!(summary.bytes, disk);
    assert_eq!(ds.infos.len(), summary.files.len());

    // classes.csv covers every file with its class.
    let classes = std::fs::read_to_string(dir.join("classes.csv")).unwrap();
    let mut lines = classes.lines();
    assert_eq!(lines.next(), Some("file,class"));
    let map: HashMap<&str, &str> = lines.map(|l| l.split_once(',').unwrap()).collect();
    assert_eq!(map.len(), summary.files.len());
    for f in &summary.files {
        let name = f.path.file_name().unwrap().to_str().unwrap();
        assert_eq!(map[name], f.class);
        assert!(name.starts_with(&format!("{}_", f.class)));
    }

    // Per-flow checks.
    for (i, r) in ds.rows.iter().enumerate() {
        let f = &ds.flows[i];
        let class = map[r.file.as_str()];
        let c2s = |d: &common::Decoded| d.src == r.a;
        for (_, d) in f {
            if c2s(d) {
                assert!(d.ttl == 64 || d.ttl == 128, "client TTL {}", d.ttl);
            }
        }
        if r.category == "dns" {
            assert_eq!((r.l4.as_str(), r.b.port(), r.vpn.as_str()), ("UDP", 53, "no"));
            check_dns(f);
            continue;
        }
        assert_eq!(class.starts_with("vpn_"), r.vpn == "yes", "{r:?}");
        assert_eq!(class.trim_start_matches("vpn_"), r.category);
        if r.vpn == "yes" {
            check_vpn(r, f);
            continue;
        }
        match (r.l4.as_str(), r.ndpi_proto.as_str()) {
            ("TCP", "TLS") => check_tcp_tls(r, f),
            ("UDP", "QUIC") => check_quic(r, f),
            ("UDP", "RTP") => check_rtp(r, f),
            other => panic!("unexpected flow kind {other:?}"),
        }
    }
}

fn check_tcp_tls(r: &common::Row, f: &[(u64, common::Decoded)]) {
    let t: Vec<&common::TcpInfo> = f.iter().map(|p| p.1.tcp.as_ref().unwrap()).collect();
    assert!(
        t[0].syn && !t[0].ack && f[0].1.src == r.a,
        "first packet is the client's SYN"
    );
    if f.len() >= 3 {
        assert!(t[1].syn && t[1].ack && f[1].1.src == r.b);
        assert_eq!(t[1].ack_no, t[0].seq.wrapping_add(1));
        assert!(!t[2].syn && t[2].ack && f[2].1.payload.is_empty());
    }
    // Sequence numbers continue exactly per direction.
    let mut next: HashMap<bool, u32> = HashMap::new();
    for (_, d) in f {
        let tcp = d.tcp.as_ref().unwrap();
        let from_client = d.src == r.a;
        if let Some(&n) = next.get(&from_client) {
            assert_eq!(tcp.seq, n, "seq continuity in {r:?}");
        }
        let used = d.payload.len() as u32 + u32::from(tcp.syn) + u32::from(tcp.fin);
        next.insert(from_client, tcp.seq.wrapping_add(used));
    }
    let mut c = f.iter().filter(|p| !p.1.payload.is_empty());
    if let Some((_, ch)) = c.find(|p| p.1.src == r.a) {
        assert_eq!(&ch.payload[..3], &[0x16, 0x03, 0x01], "ClientHello record");
        assert_eq!(ch.payload[5], 1);
        let len = u16::from_be_bytes([ch.payload[3], ch.payload[4]]) as usize;
        assert_eq!(len + 5, ch.payload.len());
        // Handshake length and cipher suite list parse.
        let hs = u32::from_be_bytes([0, ch.payload[6], ch.payload[7], ch.payload[8]]) as usize;
        assert_eq!(hs + 9, ch.payload.len());
        assert_eq!(ch.payload[43], 32, "session id length");
    }
    if let Some((_, sh)) = f.iter().find(|p| p.1.src == r.b && !p.1.payload.is_empty()) {
        assert_eq!(&sh.payload[..3], &[0x16, 0x03, 0x03], "ServerHello record");
        assert_eq!(sh.payload[5], 2);
    }
}

fn check_quic(r: &common::Row, f: &[(u64, common::Decoded)]) {
    let first = &f[0].1;
    assert_eq!(first.src, r.a);
    assert_eq!(r.b.port(), 443);
    assert_eq!(first.payload[0] & 0xf0, 0xc0, "client Initial long header");
    assert_eq!(&first.payload[1..5], &[0, 0, 0, 1], "QUIC v1");
    assert!(first.payload.len() >= 1200, "client Initial is padded");
    let mut short = 0;
    for (_, d) in f {
        let b0 = d.payload[0];
        assert!(b0 & 0x40 != 0, "fixed bit set");
        if b0 & 0x80 == 0 {
            short += 1;
        }
    }
    if f.len() > 8 {
        assert!(short > 0, "short-header packets after the handshake");
    }
}

fn check_rtp(r: &common::Row, f: &[(u64, common::Decoded)]) {
    let mut last: HashMap<bool, (u16, u32, u32)> = HashMap::new();
    let mut step: HashMap<bool, u32> = HashMap::new();
    let mut rtp = 0;
    for (_, d) in f {
        let p = &d.payload;
        if p[0] != 0x80 || (200..=204).contains(&p[1]) {
            continue; // STUN / RTCP
        }
        rtp += 1;
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        let dir = d.src == r.a;
        if let Some(&(s0, t0, ss0)) = last.get(&dir) {
            assert_eq!(seq, s0.wrapping_add(1), "RTP seq increments");
            assert_eq!(ssrc, ss0, "SSRC constant");
            let dt = ts.wrapping_sub(t0);
            assert_eq!(*step.entry(dir).or_insert(dt), dt, "RTP timestamp step");
        }
        last.insert(dir, (seq, ts, ssrc));
    }
    if f.len() >= 20 {
        assert!(rtp * 10 >= f.len() * 8, "mostly RTP");
    }
    assert!(r.a.port() >= 10000 && r.b.port() >= 10000);
}

fn check_dns(f: &[(u64, common::Decoded)]) {
    let mut ids = Vec::new();
    for (_, d) in f {
        let p = &d.payload;
        let id = u16::from_be_bytes([p[0], p[1]]);
        let resp = p[2] & 0x80 != 0;
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 1, "one question");
        let an = u16::from_be_bytes([p[6], p[7]]) as usize;
        let mut i = 12;
        let mut labels = Vec::new();
        while p[i] != 0 {
            let l = p[i] as usize;
            labels.push(String::from_utf8(p[i + 1..i + 1 + l].to_vec()).unwrap());
            i += 1 + l;
        }
        assert_eq!(labels.last().map(String::as_str), Some("example"));
        i += 1 + 4;
        if resp {
            assert!(an >= 1);
            assert!(ids.contains(&id), "response id matches a query");
            for _ in 0..an {
                assert_eq!(&p[i..i + 2], &[0xc0, 0x0c]);
                let rdlen = u16::from_be_bytes([p[i + 10], p[i + 11]]) as usize;
                assert!(rdlen == 4 || rdlen == 16);
                i += 12 + rdlen;
            }
        } else {
            assert_eq!(an, 0);
            ids.push(id);
        }
        assert_eq!(i, p.len(), "DNS message length");
    }
}

fn check_vpn(r: &common::Row, f: &[(u64, common::Decoded)]) {
    assert_eq!(r.l4, "UDP");
    match r.ndpi_proto.as_str() {
        "WireGuard" => {
            assert_eq!(r.b.port(), 51820);
            assert_eq!((f[0].1.payload[0], f[0].1.payload.len()), (1, 148));
            if f.len() > 1 {
                assert_eq!((f[1].1.payload[0], f[1].1.payload.len()), (2, 92));
            }
            for (_, d) in f.iter().skip(2) {
                assert_eq!(d.payload[0], 4);
                assert_eq!((d.payload.len() - 32) % 16, 0, "padded ciphertext + tag");
            }
        }
        "OpenVPN" => {
            assert_eq!(r.b.port(), 1194);
            assert_eq!(f[0].1.payload[0] >> 3, 7, "P_CONTROL_HARD_RESET_CLIENT_V2");
            let data = f.iter().filter(|p| p.1.payload[0] == 0x48).count();
            if f.len() > 20 {
                assert!(data > f.len() / 2);
            }
        }
        p => panic!("unexpected tunnel {p}"),
    }
    let servers: HashSet<_> = f
        .iter()
        .map(|p| if p.1.src == r.a { p.1.dst } else { p.1.src })
        .collect();
    assert_eq!(servers.len(), 1);
}

#[test]
fn every_packet_parses_verifies_and_joins_labels() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 7,
        captures_per_class: 2,
        flows_per_capture: 4,
        max_packets_per_flow: 80,
        link: LinkKind::Mixed,
        format: CaptureFormat::Mixed,
        ipv6_fraction: 0.3,
        ..SynthConfig::default()
    };
    let summary = run(&cfg, dir.path());
    assert_eq!(summary.classes.len(), 10);
    assert!(summary.classes.contains(&"vpn_file_transfer".to_string()));
    let ds = load(dir.path());
    check_dataset(&ds, &summary, dir.path());

    // The mixed settings really exercise every container and link variant.
    let lts: HashSet<u32> = ds.linktypes.iter().copied().collect();
    assert_eq!(lts, HashSet::from([1, 101, 113]));
    let tags: HashSet<usize> = ds.flows.iter().flatten().map(|p| p.1.vlan_tags).collect();
    assert!(tags.contains(&1) && tags.contains(&2), "802.1Q and QinQ");
    let padded = ds.flows.iter().flatten().filter(|p| p.1.padded).count();
    assert!(padded > 0, "short received Ethernet frames are padded");
    let ng: Vec<_> = ds.infos.values().filter(|i| i.pcapng).collect();
    assert!(!ng.is_empty() && ng.len() < ds.infos.len());
    assert!(ng.iter().all(|i| i.ifaces.len() == 2 && i.ifaces[0].0 != i.ifaces[1].0));
    let res: HashSet<u8> = ng.iter().flat_map(|i| i.ifaces.iter().map(|x| x.1)).collect();
    assert_eq!(res, HashSet::from([6, 9]));
    let v6 = ds.rows.iter().filter(|r| r.a.is_ipv6()).count();
    assert!(v6 > 0 && v6 < ds.rows.len());
    let tunnels: HashSet<&str> = ds.rows.iter().map(|r| r.ndpi_proto.as_str()).collect();
    for p in ["TLS", "QUIC", "RTP", "DNS", "OpenVPN", "WireGuard"] {
        assert!(tunnels.contains(p), "{p} missing");
    }
    // Every VPN capture has several tunnel flows, and every file some DNS.
    for name in ds.infos.keys() {
        let rows: Vec<_> = ds.rows.iter().filter(|r| &r.file == name).collect();
        assert!(rows.iter().any(|r| r.category == "dns"), "{name}: no DNS");
        if name.starts_with("vpn_") {
            assert!(rows.iter().filter(|r| r.vpn == "yes").count() >= 2, "{name}");
        }
        let mut idx: Vec<u32> = rows.iter().map(|r| r.flow_idx).collect();
        idx.sort();
        assert_eq!(idx, (0..rows.len() as u32).collect::<Vec<_>>());
    }
}

#[test]
fn classes_behave_like_their_apps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 3,
        categories: vec![
            Category::Voip,
            Category::FileTransfer,
            Category::Streaming,
            Category::Chat,
        ],
        vpn: false,
        captures_per_class: 1,
        flows_per_capture: 6,
        format: CaptureFormat::Pcap,
        ..SynthConfig::default()
    };
    let summary = run(&cfg, dir.path());
    let ds = load(dir.path());
    check_dataset(&ds, &summary, dir.path());
    let flows = |cat: &'static str| {
        ds.rows
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.category == cat)
            .map(|(i, r)| (r, &ds.flows[i]))
    };

    // VoIP: small packets every ~20 ms in each direction.
    let (mut n, mut bytes) = (0usize, 0usize);
    let mut iat_medians = Vec::new();
    for (r, f) in flows("voip") {
        n += f.len();
        bytes += f.iter().map(|p| p.1.ip_len).sum::<usize>();
        for up in [true, false] {
            let ts: Vec<u64> = f.iter().filter(|p| (p.1.src == r.a) == up).map(|p| p.0).collect();
            let mut gaps: Vec<f64> = ts.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6).collect();
            iat_medians.push(median(&mut gaps));
        }
    }
    assert!(n > 500);
    assert!((bytes as f64 / n as f64) < 300.0, "voip mean size");
    let m = median(&mut iat_medians);
    assert!((17.0..23.0).contains(&m), "voip median inter-arrival {m} ms");

    // File transfer: payload packets are mostly MTU-sized.
    let payload: Vec<usize> = flows("file_transfer")
        .flat_map(|(_, f)| f.iter().filter(|p| !p.1.payload.is_empty()).map(|p| p.1.ip_len))
        .collect();
    let big = payload.iter().filter(|&&l| l >= 1400).count();
    assert!(big * 2 > payload.len(), "{big} of {} >= 1400 B", payload.len());

    // Streaming: downstream dominates.
    let (mut down, mut up) = (0u64, 0u64);
    for (r, f) in flows("streaming") {
        for p in f.iter() {
            if p.1.src == r.a {
                up += p.1.ip_len as u64;
            } else {
                down += p.1.ip_len as u64;
            }
        }
    }
    assert!(down > 8 * up, "streaming down {down} vs up {up}");

    // Chat: small records with human think times between them.
    let mut sizes = Vec::new();
    let mut gaps = Vec::new();
    for (r, f) in flows("chat") {
        // Records, not segments of an occasional image upload.
        let data: Vec<_> = f
            .iter()
            .filter(|p| (1..1000).contains(&p.1.payload.len()) && p.1.src == r.a)
            .collect();
        sizes.extend(data.iter().map(|p| p.1.payload.len() as f64));
        gaps.extend(data.windows(2).map(|w| (w[1].0 - w[0].0) as f64 / 1e9));
    }
    let (ms, mg) = (median(&mut sizes), median(&mut gaps));
    assert!(ms < 400.0, "chat median record {ms}");
    assert!(mg > 0.3, "chat gaps are human-scale: median {mg} s");
}

#[test]
fn target_bytes_is_met_from_tiny_to_medium() {
    for target in [50_000u64, 200_000, 5_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            seed: 11,
            target_bytes: Some(target),
            link: LinkKind::Mixed,
            ..SynthConfig::default()
        };
        let s = run(&cfg, dir.path());
        let ratio = s.bytes as f64 / target as f64;
        assert!((0.9..=1.1).contains(&ratio), "target {target}: got {} bytes", s.bytes);
        let classes: HashSet<&str> = s.files.iter().map(|f| f.class.as_str()).collect();
        assert_eq!(classes.len(), 10, "every class present at {target}");
        // Each class still has real (non-DNS) flows.
        let rows = common::read_labels(&dir.path().join("flows_labels.csv"));
        for f in &s.files {
            let name = f.path.file_name().unwrap().to_str().unwrap();
            let main = rows.iter().filter(|r| r.file == name && r.category != "dns").count();
            assert!(main >= 1, "{name} has no main flow");
        }
        if target == 5_000_000 {
            let ds = load(dir.path());
            check_dataset(&ds, &s, dir.path());
        }
    }
}

#[test]
fn files_roll_over_at_max_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 5,
        categories: vec![Category::FileTransfer],
        vpn: false,
        captures_per_class: 1,
        flows_per_capture: 8,
        max_file_bytes: 256 * 1024,
        ..SynthConfig::default()
    };
    let s = run(&cfg, dir.path());
    assert!(s.files.len() >= 3, "{} files", s.files.len());
    for f in &s.files {
        assert!(f.bytes <= cfg.max_file_bytes);
    }
    let ds = load(dir.path());
    check_dataset(&ds, &s, dir.path());
}

#[test]
fn extreme_settings_still_produce_valid_labelled_captures() {
    let cases = [
        SynthConfig {
            max_packets_per_flow: 1,
            flows_per_capture: 1,
            ..small(21)
        },
        SynthConfig {
            max_packets_per_flow: 3,
            ipv6_fraction: 1.0,
            ..small(22)
        },
        SynthConfig {
            ipv6_fraction: 0.0,
            format: CaptureFormat::PcapNg,
            link: LinkKind::Vlan,
            ..small(23)
        },
        SynthConfig {
            target_bytes: Some(10_000),
            ..small(24)
        },
        SynthConfig {
            target_bytes: Some(1_000_000),
            max_file_bytes: privpkt_synth::MIN_FILE_BYTES,
            link: LinkKind::RawIp,
            ..small(25)
        },
    ];
    for cfg in cases {
        let dir = tempfile::tempdir().unwrap();
        let s = run(&cfg, dir.path());
        assert!(!s.files.is_empty());
        for f in &s.files {
            assert!(f.bytes <= cfg.max_file_bytes);
        }
        let ds = load(dir.path());
        check_dataset(&ds, &s, dir.path());
        if cfg.ipv6_fraction == 1.0 {
            assert!(ds.rows.iter().all(|r| r.a.is_ipv6()));
        }
        if cfg.ipv6_fraction == 0.0 {
            assert!(ds.rows.iter().all(|r| r.a.is_ipv4()));
        }
        if cfg.max_packets_per_flow == 1 {
            // The cap is per flow (per inner flow for VPN tunnels, and
            // background DNS is not capped).
            let plain = ds.rows.iter().filter(|r| r.vpn == "no" && r.category != "dns");
            assert!(plain.clone().count() > 0);
            assert!(plain.clone().all(|r| r.pkts == 1), "cap of 1 packet");
        }
    }
}

#[test]
fn progress_reports_every_byte() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let seen = AtomicU64::new(0);
    let s = generate(&small(1), dir.path(), &|n| {
        seen.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), s.bytes);
}

#[test]
fn pcap_writer_variants_round_trip() {
    let stamps = [
        1_717_171_717_000_000_001u64,
        1_717_171_717_123_456_789,
        1_717_171_718_999_999_999,
    ];
    for (be, ns) in [(false, false), (true, false), (false, true), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let opts = WriterOptions {
            big_endian: be,
            nanosecond: ns,
        };
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap(), linktype::RAW, opts).unwrap();
        for (i, &t) in stamps.iter().enumerate() {
            w.write_packet(t, &vec![0x45; 20 + i]).unwrap();
        }
        w.finish().unwrap();
        let (info, pkts) = read_capture(&path);
        assert_eq!((info.big_endian, info.nanosecond), (be, ns));
        assert_eq!(pkts.len(), 3);
        for (i, p) in pkts.iter().enumerate() {
            let want = if ns { stamps[i] } else { stamps[i] / 1000 * 1000 };
            assert_eq!(p.ts_ns, want);
            assert_eq!(p.linktype, 101);
            assert_eq!(p.data.len(), 20 + i);
        }
    }
}

#[test]
fn pcapng_writer_multi_interface_round_trip() {
    for be in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcapng");
        let opts = WriterOptions {
            big_endian: be,
            nanosecond: false,
        };
        let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap(), opts).unwrap();
        let ifs = [
            w.add_interface(linktype::ETHERNET, 6).unwrap(),
            w.add_interface(linktype::RAW, 9).unwrap(),
            w.add_interface(linktype::LINUX_SLL, 9).unwrap(),
        ];
        assert_eq!(ifs, [0, 1, 2]);
        let mut want = Vec::new();
        for k in 0..9u64 {
            let iface = (k % 3) as u32;
            let ts = 1_720_000_000_000_000_000 + k * 1_234_567_891;
            w.write_packet(iface, ts, &vec![k as u8; 17 + k as usize]).unwrap();
            let lt = [1, 101, 113][iface as usize];
            let exp = if iface == 0 { ts / 1000 * 1000 } else { ts };
            want.push((iface, lt, exp, 17 + k as usize));
        }
        w.finish().unwrap();
        let (info, pkts) = read_capture(&path);
        assert!(info.pcapng);
        assert_eq!(info.big_endian, be);
        assert_eq!(info.ifaces, vec![(1, 6), (101, 9), (113, 9)]);
        let got: Vec<_> = pkts
            .iter()
            .map(|p| (p.iface, p.linktype, p.ts_ns, p.data.len()))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn generated_big_endian_nanosecond_files_read_back() {
    for format in [CaptureFormat::Pcap, CaptureFormat::PcapNg] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            format,
            link: LinkKind::Sll,
            vpn: false,
            writer: WriterOptions {
                big_endian: true,
                nanosecond: true,
            },
            ..small(9)
        };
        let s = run(&cfg, dir.path());
        let mut sub_us = 0;
        for f in &s.files {
            let (info, pkts) = read_capture(&f.path);
            assert!(info.big_endian);
            assert_eq!(info.pcapng, format == CaptureFormat::PcapNg);
            if format == CaptureFormat::Pcap {
                assert!(info.nanosecond);
            }
            for p in &pkts {
                assert_eq!(p.linktype, 113);
                decode(p.linktype, &p.data);
                sub_us += usize::from(p.ts_ns % 1000 != 0);
            }
        }
        assert!(sub_us > 0, "nanosecond timestamps survive");
        let ds = load(dir.path());
        check_dataset(&ds, &s, dir.path());
    }
}

#[test]
fn bad_config_and_bad_paths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        SynthConfig {
            categories: vec![],
            ..SynthConfig::default()
        },
        SynthConfig {
            categories: vec![Category::Chat, Category::Chat],
            ..SynthConfig::default()
        },
        SynthConfig {
            ipv6_fraction: 1.5,
            ..SynthConfig::default()
        },
        SynthConfig {
            max_file_bytes: 1000,
            ..SynthConfig::default()
        },
        SynthConfig {
            target_bytes: Some(0),
            ..SynthConfig::default()
        },
        SynthConfig {
            flows_per_capture: 0,
            ..SynthConfig::default()
        },
    ];
    for cfg in bad {
        assert!(matches!(
            generate(&cfg, dir.path(), &|_| {}),
            Err(SynthError::InvalidConfig(_))
        ));
    }
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = generate(&small(1), &file.join("out"), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn names_parse_and_display() {
    for c in Category::ALL {
        assert_eq!(c.to_string().parse::<Category>().unwrap(), c);
    }
    assert_eq!("File-Transfer".parse::<Category>().unwrap(), Category::FileTransfer);
    assert!("email".parse::<Category>().is_err());
    for f in [CaptureFormat::Pcap, CaptureFormat::PcapNg, CaptureFormat::Mixed] {
        assert_eq!(f.to_string().parse::<CaptureFormat>().unwrap(), f);
    }
    for l in [
        LinkKind::Ethernet,
        LinkKind::Vlan,
        LinkKind::Sll,
        LinkKind::RawIp,
        LinkKind::Mixed,
    ] {
        assert_eq!(l.to_string().parse::<LinkKind>().unwrap(), l);
    }
    let cfg = SynthConfig::default();
    assert_eq!(cfg.class_names().len(), 10);
    assert_eq!(cfg.class_names()[5], "vpn_chat");
}
