//! Container parsing on hand-made files: both byte orders, µs/ns, pcapng with several
//! interfaces, and every kind of damage (truncation, corrupt headers, garbage, bogus link types).

use std::path::Path;

use privpkt_capture::{read_capture, CaptureError, CaptureFormat};

fn pcap_header(be: bool, ns: bool, linktype: u32) -> Vec<u8> {
    let magic: u32 = if ns { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut h = Vec::new();
    h.extend(w32(magic));
    h.extend(w16(2));
    h.extend(w16(4));
    h.extend(w32(0));
    h.extend(w32(0));
    h.extend(w32(65535));
    h.extend(w32(linktype));
    h
}

fn pcap_record(be: bool, sec: u32, frac: u32, data: &[u8], orig: u32) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut r = Vec::new();
    r.extend(w32(sec));
    r.extend(w32(frac));
    r.extend(w32(data.len() as u32));
    r.extend(w32(orig));
    r.extend_from_slice(data);
    r
}

fn block(btype: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = (12 + body.len()) as u32;
    let mut b = Vec::new();
    b.extend(btype.to_le_bytes());
    b.extend(len.to_le_bytes());
    b.extend(body);
    b.extend(len.to_le_bytes());
    b
}

fn shb() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(0x1a2b_3c4du32.to_le_bytes());
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend((-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &body)
}

fn idb(linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(linktype.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend(65535u32.to_le_bytes());
    if let Some(r) = tsresol {
        body.extend(9u16.to_le_bytes()); // if_tsresol
        body.extend(1u16.to_le_bytes());
        body.extend([r, 0, 0, 0]);
        body.extend([0u8; 4]); // opt_endofopt
    }
    block(1, &body)
}

fn epb(iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(iface.to_le_bytes());
    body.extend(((ts >> 32) as u32).to_le_bytes());
    body.extend((ts as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    block(6, &body)
}

/// A raw-IP UDP packet of `n` payload bytes.
fn ip_udp(n: usize) -> Vec<u8> {
    let total = 28 + n;
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ];
    p.extend([0x30, 0x39, 0x01, 0xbb, ((8 + n) >> 8) as u8, (8 + n) as u8, 0, 0]);
    p.extend(std::iter::repeat_n(0xab, n));
    p
}

fn read_all(path: &Path) -> (privpkt_capture::ReadReport, Vec<(i64, u32, usize, u64)>) {
    let mut got = Vec::new();
    let rep = read_capture(path, |p| got.push((p.ts_ns, p.linktype, p.data.len(), p.offset))).unwrap();
    (rep, got)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn classic_pcap_all_magics() {
    let d = tempfile::tempdir().unwrap();
    for (be, ns) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut f = pcap_header(be, ns, 101);
        f.extend(pcap_record(be, 1_700_000_000, 123_456, &ip_udp(10), 38));
        f.extend(pcap_record(be, 1_700_000_001, 5, &ip_udp(3), 31));
        // named .pcapng on purpose: the extension must not matter
        let p = write(d.path(), &format!("x-{be}-{ns}.pcapng"), &f);
        let (rep, got) = read_all(&p);
        assert_eq!(
            rep.format,
            Some(CaptureFormat::Pcap {
                big_endian: be,
                nanos: ns,
                modified: false
            })
        );
        assert_eq!(rep.records, 2);
        let frac_ns = if ns { 123_456 } else { 123_456_000 };
        assert_eq!(got[0], (1_700_000_000_000_000_000 + frac_ns, 101, 38, 24));
        assert_eq!(got[1].3, 24 + 16 + 38);
        assert!(rep.skipped.is_empty() && rep.stopped_early.is_none());
    }
}

#[test]
fn pcapng_interfaces_with_own_linktype_and_resolution() {
    let d = tempfile::tempdir().unwrap();
    let mut f = shb();
    f.extend(idb(101, None)); // µs
    f.extend(idb(1, Some(9))); // ns, Ethernet
    f.extend(epb(0, 1_700_000_000_000_001, &ip_udp(4)));
    let mut eth = vec![0u8; 12];
    eth.extend([0x08, 0x00]);
    eth.extend(ip_udp(5));
    f.extend(epb(1, 1_700_000_000_000_000_007, &eth));
    f.extend(epb(7, 0, &ip_udp(1))); // undefined interface
    let p = write(d.path(), "multi.pcap", &f);
    let (rep, got) = read_all(&p);
    assert_eq!(rep.format, Some(CaptureFormat::PcapNg));
    assert_eq!(rep.records, 2);
    assert_eq!(got[0].0, 1_700_000_000_000_001_000);
    assert_eq!((got[0].1, got[0].2), (101, 32));
    assert_eq!(got[1].0, 1_700_000_000_000_000_007);
    assert_eq!((got[1].1, got[1].2), (1, 47));
    assert_eq!(rep.linktypes, vec![101, 1]);
    assert_eq!(rep.skipped["packet for an undefined interface"].count, 1);
}

#[test]
fn truncated_record_keeps_what_came_before() {
    let d = tempfile::tempdir().unwrap();
    let mut f = pcap_header(false, false, 101);
    for i in 0..3 {
        f.extend(pcap_record(false, 100 + i, 0, &ip_udp(20), 48));
    }
    let cut = f.len() - 10;
    let p = write(d.path(), "trunc.pcap", &f[..cut]);
    let (rep, got) = read_all(&p);
    assert_eq!(got.len(), 2);
    let why = rep.stopped_early.unwrap();
    assert!(why.contains("ends inside the record at byte 152"), "{why}");
    // cut inside a record header
    let p = write(d.path(), "trunc2.pcap", &f[..24 + 64 + 5]);
    let (rep, got) = read_all(&p);
    assert_eq!(got.len(), 1);
    assert!(rep.stopped_early.unwrap().contains("record header"));
}

#[test]
fn snaplen_cut_packets_are_counted_not_dropped() {
    let d = tempfile::tempdir().unwrap();
    let mut f = pcap_header(false, false, 101);
    f.extend(pcap_record(false, 1, 0, &ip_udp(100)[..60], 128));
    let p = write(d.path(), "snap.pcap", &f);
    let (rep, got) = read_all(&p);
    assert_eq!(got.len(), 1);
    assert_eq!(rep.snaplen_cut, 1);
}

#[test]
fn corrupt_record_header_resyncs() {
    let d = tempfile::tempdir().unwrap();
    let mut f = pcap_header(false, false, 101);
    f.extend(pcap_record(false, 1000, 0, &ip_udp(10), 38));
    let bad_at = f.len();
    // a record header claiming 3 GB, followed by junk, then good records
    f.extend(pcap_record(false, 1000, 0, &[], 0)[..8].iter());
    f.extend(3_000_000_000u32.to_le_bytes());
    f.extend(3_000_000_000u32.to_le_bytes());
    f.extend([0x11; 37]);
    for i in 0..3 {
        f.extend(pcap_record(false, 1001 + i, 0, &ip_udp(10), 38));
    }
    let p = write(d.path(), "corrupt.pcap", &f);
    let (rep, got) = read_all(&p);
    assert_eq!(got.len(), 4, "{rep:?}");
    let s = rep
        .skipped
        .iter()
        .find(|(k, _)| k.contains("corrupt record header"))
        .unwrap()
        .1;
    assert_eq!(s.first_offset, bad_at as u64);
    assert!(rep.resync_bytes >= 16 + 37);
    assert!(rep.stopped_early.is_none());
}

#[test]
fn corrupt_pcapng_block_resyncs() {
    let d = tempfile::tempdir().unwrap();
    let mut f = shb();
    f.extend(idb(101, None));
    f.extend(epb(0, 1, &ip_udp(4)));
    let mut broken = epb(0, 2, &ip_udp(4));
    let n = broken.len();
    broken[n - 4..].copy_from_slice(&999u32.to_le_bytes()); // trailer disagrees
    f.extend(broken);
    f.extend(epb(0, 3, &ip_udp(4)));
    let p = write(d.path(), "broken.pcapng", &f);
    let (rep, got) = read_all(&p);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1000, 3000]);
    assert!(rep.skipped.contains_key("block trailer length does not match header"));
}

#[test]
fn not_a_capture_and_empty_are_errors_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "notes.txt", b"this is not a capture at all");
    let e = read_capture(&p, |_| {}).unwrap_err();
    assert!(matches!(e, CaptureError::NotACapture { .. }));
    assert!(
        e.to_string().contains("notes.txt") && e.to_string().contains("74686973"),
        "{e}"
    );
    let p = write(d.path(), "empty.pcap", b"");
    let e = read_capture(&p, |_| {}).unwrap_err();
    assert!(e.to_string().contains("empty.pcap"), "{e}");
    let e = read_capture(&d.path().join("missing.pcap"), |_| {}).unwrap_err();
    assert!(e.to_string().contains("missing.pcap"));
}

#[test]
fn garbage_after_header_never_panics() {
    // Deterministic pseudo-random garbage of many lengths after valid headers.
    let d = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x1234_5678;
    for len in (0..2000).step_by(37) {
        for ng in [false, true] {
            let mut f = if ng {
                [shb(), idb(1, None)].concat()
            } else {
                pcap_header(false, false, 1)
            };
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f.push(x as u8);
            }
            let p = write(d.path(), "g.bin", &f);
            let r = read_capture(&p, |pkt| {
                let _ = privpkt_capture::decode(pkt.linktype, pkt.data);
            });
            assert!(r.is_ok());
        }
    }
}

/// pcapng blocks in either byte order, with raw IDB options.
fn block_in(be: bool, btype: u32, body: &[u8]) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = (12 + body.len()) as u32;
    [&w32(btype)[..], &w32(len), &body, &w32(len)].concat()
}

fn ng_file(be: bool, options: &[(u16, Vec<u8>)], ts: u64) -> Vec<u8> {
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut shb = w32(0x1a2b_3c4d).to_vec();
    shb.extend(w16(1));
    shb.extend(w16(0));
    shb.extend([0xff; 8]);
    let mut idb = [&w16(101)[..], &w16(0), &w32(65535)].concat();
    for (code, val) in options {
        idb.extend(w16(*code));
        idb.extend(w16(val.len() as u16));
        idb.extend(val);
        while !idb.len().is_multiple_of(4) {
            idb.push(0);
        }
    }
    idb.extend([0u8; 4]);
    let data = ip_udp(2);
    let mut epb = [
        &w32(0)[..],
        &w32((ts >> 32) as u32),
        &w32(ts as u32),
        &w32(data.len() as u32),
        &w32(data.len() as u32),
    ]
    .concat();
    epb.extend(&data);
    [
        block_in(be, 0x0a0d_0d0a, &shb),
        block_in(be, 1, &idb),
        block_in(be, 6, &epb),
    ]
    .concat()
}

#[test]
fn pcapng_power_of_two_resolution_and_offset_in_both_byte_orders() {
    let d = tempfile::tempdir().unwrap();
    // 2^20 units per second; 3 × 2^20 units = 3 s, plus a 100 s offset
    for be in [false, true] {
        let off: i64 = 100;
        let off_bytes = if be { off.to_be_bytes() } else { off.to_le_bytes() }.to_vec();
        let f = ng_file(be, &[(9, vec![0x80 | 20]), (14, off_bytes)], 3 << 20);
        let p = write(d.path(), &format!("p2-{be}.pcapng"), &f);
        let (rep, got) = read_all(&p);
        assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 103_000_000_000, "big-endian: {be}");
    }
    // an impossible resolution (10^20) is reported and µs assumed
    let f = ng_file(false, &[(9, vec![20])], 5);
    let p = write(d.path(), "bad.pcapng", &f);
    let (rep, got) = read_all(&p);
    assert_eq!(got[0].0, 5_000);
    assert!(rep.skipped.keys().any(|k| k.contains("invalid time resolution")));
}
