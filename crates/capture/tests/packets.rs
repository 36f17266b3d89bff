//! Hand-built packets through decoding, flows, Deep Packet vectors and FlowPic bins.
//! Expected bytes are written out by hand from the header layouts (RFC 791/8200/793/768),
//! not derived from the code under test.

use privpkt_capture::deeppacket::{drop_reason, vectorize, DpDrop};
use privpkt_capture::{
    decode, DecodeSkip, DeepPacketConfig, Direction, FlowConfig, FlowTable, Masking, L4, VECTOR_LEN,
};

const MAC: [u8; 12] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb];

/// IPv4 header (20 bytes, or 24 with a NOP×4 options word) with every field distinct.
fn ipv4(proto: u8, payload_len: usize, options: bool) -> Vec<u8> {
    let ihl = if options { 6 } else { 5 };
    let total = ihl * 4 + payload_len;
    let mut h = vec![
        0x40 | ihl as u8,
        0x00,
        (total >> 8) as u8,
        total as u8,
        0xab,
        0xcd, // identification
        0x40,
        0x00, // DF, offset 0
        64,   // TTL
        proto,
        0x12,
        0x34, // checksum (not verified by the decoder)
        10,
        0,
        0,
        1, // src
        192,
        0,
        2,
        7, // dst
    ];
    if options {
        h.extend_from_slice(&[1, 1, 1, 0]);
    }
    h
}

fn ipv6(next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![
        0x60,
        0x0a,
        0xbc,
        0xde,
        (payload_len >> 8) as u8,
        payload_len as u8,
        next,
        57,
    ];
    h.extend((1..=16).map(|i| 0x20 + i as u8)); // src
    h.extend((1..=16).map(|i| 0x40 + i as u8)); // dst
    h
}

/// TCP header with a timestamp option (NOP NOP TS) when `ts` is set.
fn tcp(flags: u8, ts: bool) -> Vec<u8> {
    let doff = if ts { 8 } else { 5 };
    let mut h = vec![
        0xc3,
        0x50, // sport 50000
        0x01,
        0xbb, // dport 443
        0x11,
        0x22,
        0x33,
        0x44, // seq
        0x55,
        0x66,
        0x77,
        0x88, // ack
        (doff << 4) as u8,
        flags,
        0xff,
        0xff, // window
        0x9a,
        0xbc, // checksum
        0x00,
        0x00, // urgent
    ];
    if ts {
        h.extend_from_slice(&[1, 1, 8, 10, 0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed, 0xfa, 0xce]);
    }
    h
}

fn udp(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let len = 8 + payload_len;
    vec![
        (sport >> 8) as u8,
        sport as u8,
        (dport >> 8) as u8,
        dport as u8,
        (len >> 8) as u8,
        len as u8,
        0x77,
        0x88,
    ]
}

fn eth(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn ipv4_tcp_packet(flags: u8, payload: &[u8], ts: bool) -> Vec<u8> {
    let t = tcp(flags, ts);
    let mut p = ipv4(6, t.len() + payload.len(), false);
    p.extend(t);
    p.extend_from_slice(payload);
    p
}

const PSH_ACK: u8 = 0x18;

#[test]
fn ethernet_ipv4_tcp_decodes() {
    let ip = ipv4_tcp_packet(PSH_ACK, b"hello", false);
    let mut f = eth(0x0800, &ip);
    f.extend_from_slice(&[0; 6]); // Ethernet padding must not count
    let d = decode(1, &f).unwrap();
    assert_eq!(d.ip_version, 4);
    assert_eq!(d.l4, L4::Tcp);
    assert_eq!((d.src_port, d.dst_port), (50000, 443));
    assert_eq!(d.l4_offset, 20);
    assert_eq!(d.l4_header_len, 20);
    assert_eq!(d.payload_len, 5);
    assert_eq!(d.ip, &ip[..], "IP bytes cut at the IP total length");
    assert_eq!(&d.src[..4], &[10, 0, 0, 1]);
    assert!(!d.truncated);
}

#[test]
fn every_link_type() {
    let ip = ipv4_tcp_packet(PSH_ACK, b"x", false);
    let ip6 = {
        let u = udp(5000, 6000, 3);
        let mut p = ipv6(17, u.len() + 3);
        p.extend(u);
        p.extend_from_slice(b"abc");
        p
    };
    let vlan = {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        f.extend_from_slice(&ip);
        f
    };
    let qinq = {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x01, 0x81, 0x00, 0x00, 0x02, 0x08, 0x00]);
        f.extend_from_slice(&ip);
        f
    };
    let sll = {
        let mut f = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        f.extend_from_slice(&ip);
        f
    };
    let sll2 = {
        let mut f = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        f.extend_from_slice(&ip6);
        f
    };
    let null_le = [&[2u8, 0, 0, 0][..], &ip].concat();
    let loop_be = [&[0u8, 0, 0, 30][..], &ip6].concat();
    let ppp = [&[0xffu8, 0x03, 0x00, 0x21][..], &ip].concat();
    let chdlc = [&[0x0fu8, 0x00, 0x08, 0x00][..], &ip].concat();
    let ppi = {
        let mut f = vec![0, 0, 8, 0, 1, 0, 0, 0];
        f.extend(eth(0x0800, &ip));
        f
    };
    let cases: Vec<(u32, Vec<u8>, u8)> = vec![
        (1, vlan, 4),
        (1, qinq, 4),
        (113, sll, 4),
        (276, sll2, 6),
        (0, null_le, 4),
        (108, loop_be, 6),
        (101, ip.clone(), 4),
        (228, ip.clone(), 4),
        (229, ip6.clone(), 6),
        (9, ppp, 4),
        (104, chdlc, 4),
        (192, ppi, 4),
    ];
    for (lt, frame, v) in cases {
        let d = decode(lt, &frame).unwrap_or_else(|e| panic!("link type {lt}: {e:?}"));
        assert_eq!(d.ip_version, v, "link type {lt}");
        assert_eq!(d.ip, if v == 4 { &ip[..] } else { &ip6[..] }, "link type {lt}");
    }
    assert_eq!(decode(1_073_741_824, &ip).unwrap_err(), DecodeSkip::UnsupportedLinkType);
    assert_eq!(decode(113, &[0; 5]).unwrap_err(), DecodeSkip::TruncatedLinkHeader);
}

#[test]
fn skips_are_classified() {
    let arp = eth(0x0806, &[0; 28]);
    assert_eq!(decode(1, &arp).unwrap_err(), DecodeSkip::NotIp);
    let mut icmp = ipv4(1, 8, false);
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode(101, &icmp).unwrap_err(), DecodeSkip::NotTcpUdp);
    // non-first fragment: offset 185 (×8 bytes)
    let mut frag = ipv4_tcp_packet(PSH_ACK, b"abc", false);
    frag[6] = 0x00;
    frag[7] = 185;
    assert_eq!(decode(101, &frag).unwrap_err(), DecodeSkip::NonFirstFragment);
    // first fragment (MF set, offset 0) is kept
    let mut first = ipv4_tcp_packet(PSH_ACK, b"abc", false);
    first[6] = 0x20;
    assert!(decode(101, &first).is_ok());
    // IPv6 non-first fragment: fragment header offset 100
    let u = udp(1, 2, 0);
    let mut v6 = ipv6(44, 8 + u.len());
    v6.extend_from_slice(&[17, 0, (100u16 << 3 >> 8) as u8, (100u16 << 3) as u8, 0, 0, 0, 1]);
    v6.extend(u);
    assert_eq!(decode(229, &v6).unwrap_err(), DecodeSkip::NonFirstFragment);
    // TCP header cut by the snap length
    let p = ipv4_tcp_packet(PSH_ACK, b"", false);
    assert_eq!(decode(101, &p[..30]).unwrap_err(), DecodeSkip::TruncatedL4Header);
    // garbage
    assert!(decode(101, &[0x45, 1, 2]).is_err());
    assert!(decode(1, &[1, 2, 3]).is_err());
}

#[test]
fn ipv6_extension_headers_are_walked() {
    // hop-by-hop (8 bytes) then destination options (16 bytes) then UDP
    let u = udp(1234, 443, 4);
    let mut p = ipv6(0, 8 + 16 + u.len() + 4);
    p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    p.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.extend(u);
    p.extend_from_slice(b"data");
    let d = decode(229, &p).unwrap();
    assert_eq!(d.l4, L4::Udp);
    assert_eq!(d.l4_offset, 40 + 24);
    assert_eq!((d.src_port, d.dst_port), (1234, 443));
    assert_eq!(d.payload_len, 4);
}

#[test]
fn drop_rules() {
    for (flags, payload, want) in [
        (0x02, &b""[..], Some(DpDrop::TcpNoPayload)), // SYN
        (0x12, b"", Some(DpDrop::TcpNoPayload)),      // SYN/ACK
        (0x10, b"", Some(DpDrop::TcpNoPayload)),      // pure ACK
        (0x11, b"", Some(DpDrop::TcpNoPayload)),      // FIN/ACK
        (0x18, b"x", None),                           // data
        (0x11, b"x", None),                           // FIN with data is kept
        (0x04, b"", None),                            // RST without SYN/ACK/FIN: not in the paper's rule
    ] {
        let p = ipv4_tcp_packet(flags, payload, false);
        let d = decode(101, &p).unwrap();
        assert_eq!(drop_reason(&d), want, "flags {flags:#x}");
    }
    for (s, dport) in [(53, 40000), (40000, 53)] {
        let u = udp(s, dport, 10);
        let mut p = ipv4(17, u.len() + 10, false);
        p.extend(u);
        p.extend_from_slice(&[0; 10]);
        assert_eq!(drop_reason(&decode(101, &p).unwrap()), Some(DpDrop::Dns));
    }
    let mut p = ipv4_tcp_packet(PSH_ACK, b"q", false);
    p[22] = 0;
    p[23] = 53; // TCP to port 53
    assert_eq!(drop_reason(&decode(101, &p).unwrap()), Some(DpDrop::Dns));
}

fn vec_of(frame: &[u8], lt: u32, masking: Masking) -> [u8; VECTOR_LEN] {
    let d = decode(lt, frame).unwrap();
    let mut out = [0xeeu8; VECTOR_LEN];
    vectorize(&d, &DeepPacketConfig { masking }, &mut out).unwrap();
    out
}

#[test]
fn tcp_vector_paper_masks_addresses_only() {
    let ip = ipv4_tcp_packet(PSH_ACK, b"payload!", true);
    let v = vec_of(&ip, 101, Masking::Paper);
    let mut want = ip.clone();
    want[12..20].fill(0);
    assert_eq!(&v[..want.len()], &want[..]);
    assert!(v[want.len()..].iter().all(|&b| b == 0), "zero padded to 1500");
}

#[test]
fn tcp_vector_honest_masks_every_shortcut() {
    let ip = ipv4_tcp_packet(PSH_ACK, b"payload!", true);
    let v = vec_of(&ip, 101, Masking::Honest);
    let mut want = ip.clone();
    want[4..6].fill(0); // IP ID
    want[8] = 0; // TTL
    want[10..12].fill(0); // IP checksum
    want[12..20].fill(0); // addresses
    want[20..24].fill(0); // ports
    want[24..32].fill(0); // seq, ack
    want[36..38].fill(0); // TCP checksum
    want[44..52].fill(0); // TSval, TSecr (after NOP NOP kind len)
    assert_eq!(&v[..want.len()], &want[..]);
    // untouched: version/IHL, TOS, length, flags, protocol, data offset, flags, window, option kinds, payload
    assert_eq!(&v[0..4], &ip[0..4]);
    assert_eq!(v[9], 6);
    assert_eq!(&v[32..36], &ip[32..36]);
    assert_eq!(&v[40..44], &[1, 1, 8, 10]);
    assert_eq!(&v[52..60], b"payload!");
}

#[test]
fn udp_header_padded_to_twenty_bytes() {
    let u = udp(40000, 443, 6);
    let mut ip = ipv4(17, u.len() + 6, true); // with IPv4 options: UDP at 24
    ip.extend(u.clone());
    ip.extend_from_slice(b"quic!!");
    let v = vec_of(&eth(0x0800, &ip), 1, Masking::Paper);
    let mut want = ip[..24].to_vec();
    want[12..20].fill(0);
    want.extend_from_slice(&u);
    want.extend_from_slice(&[0; 12]);
    want.extend_from_slice(b"quic!!");
    assert_eq!(&v[..want.len()], &want[..]);
    assert!(v[want.len()..].iter().all(|&b| b == 0));
    let h = vec_of(&eth(0x0800, &ip), 1, Masking::Honest);
    assert_eq!(&h[24..28], &[0, 0, 0, 0], "ports");
    assert_eq!(&h[28..30], &u[4..6], "UDP length kept");
    assert_eq!(&h[30..32], &[0, 0], "UDP checksum");
    assert_eq!(&h[44..50], b"quic!!");
}

#[test]
fn ipv6_vector_masks() {
    let t = tcp(PSH_ACK, false);
    let mut ip = ipv6(6, t.len() + 3);
    ip.extend(t);
    ip.extend_from_slice(b"abc");
    let paper = vec_of(&ip, 229, Masking::Paper);
    let mut want = ip.clone();
    want[8..40].fill(0);
    assert_eq!(&paper[..want.len()], &want[..]);
    let honest = vec_of(&ip, 229, Masking::Honest);
    assert_eq!(
        &honest[0..8],
        &[0x60, 0x00, 0x00, 0x00, ip[4], ip[5], 6, 0],
        "flow label, hop limit zeroed"
    );
    assert!(honest[8..40].iter().all(|&b| b == 0));
    assert!(honest[40..44].iter().all(|&b| b == 0), "ports");
    assert_eq!(&honest[60..63], b"abc");
}

#[test]
fn long_packets_cut_at_1500_and_snaplen_cut_padded() {
    let payload = vec![0x5a; 2000];
    let ip = ipv4_tcp_packet(PSH_ACK, &payload, false);
    let v = vec_of(&ip, 101, Masking::Paper);
    assert_eq!(&v[40..], &payload[..1460]);
    // snap length 100: what was captured, then zeros
    let cut = &ip[..100];
    let d = decode(101, cut).unwrap();
    assert!(d.truncated);
    assert_eq!(d.payload_len, 2000, "payload length from the headers");
    let v = vec_of(cut, 101, Masking::Paper);
    assert_eq!(&v[40..100], &payload[..60]);
    assert!(v[100..].iter().all(|&b| b == 0));
}

#[test]
fn flows_are_bidirectional_and_end_on_fin_rst_and_timeouts() {
    let mut table: FlowTable<u32> = FlowTable::new(FlowConfig::default());
    let fwd = ipv4_tcp_packet(PSH_ACK, b"a", false);
    let mut rev = fwd.clone();
    // swap addresses and ports
    let (s, d) = (rev[12..16].to_vec(), rev[16..20].to_vec());
    rev[12..16].copy_from_slice(&d);
    rev[16..20].copy_from_slice(&s);
    let (sp, dp) = (rev[20..22].to_vec(), rev[22..24].to_vec());
    rev[20..22].copy_from_slice(&dp);
    rev[22..24].copy_from_slice(&sp);
    let sec = 1_000_000_000i64;
    let p1 = table.place(&decode(101, &rev).unwrap(), 0, |_, _| 0);
    assert!(p1.new_flow);
    assert_eq!(
        (p1.flow_id, p1.direction),
        (0, Direction::Forward),
        "first packet sets forward"
    );
    let p2 = table.place(&decode(101, &fwd).unwrap(), sec, |_, _| 0);
    assert_eq!((p2.flow_id, p2.direction, p2.new_flow), (0, Direction::Backward, false));
    // FIN both ways closes; a late ACK stays; a new SYN starts flow 1
    let fin_f = ipv4_tcp_packet(0x11, b"", false);
    let mut fin_r = rev.clone();
    fin_r[33] = 0x11;
    table.place(&decode(101, &fin_f).unwrap(), 2 * sec, |_, _| 0);
    table.place(&decode(101, &fin_r).unwrap(), 2 * sec, |_, _| 0);
    let late = table.place(
        &decode(101, &ipv4_tcp_packet(0x10, b"", false)).unwrap(),
        2 * sec + 1,
        |_, _| 0,
    );
    assert_eq!(late.flow_id, 0);
    let syn = table.place(
        &decode(101, &ipv4_tcp_packet(0x02, b"", false)).unwrap(),
        3 * sec,
        |_, _| 0,
    );
    assert_eq!((syn.flow_id, syn.new_flow), (1, true));
    let ended: Vec<_> = table.drain_ended().collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].packets, 5);
    // RST ends flow 1; idle timeout ends the next one
    table.place(
        &decode(101, &ipv4_tcp_packet(0x04, b"", false)).unwrap(),
        3 * sec,
        |_, _| 0,
    );
    let again = table.place(
        &decode(101, &ipv4_tcp_packet(0x02, b"", false)).unwrap(),
        4 * sec,
        |_, _| 0,
    );
    assert_eq!(again.flow_id, 2);
    let idle = table.place(&decode(101, &fwd).unwrap(), 4 * sec + 121 * sec, |_, _| 0);
    assert_eq!(idle.flow_id, 3, "idle timeout of 120 s starts a new flow");
    let all = table.finish_all();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    // UDP: different ports are different flows
    let mut t2: FlowTable<()> = FlowTable::new(FlowConfig::default());
    for (i, port) in [1000u16, 1000, 1001].iter().enumerate() {
        let u = udp(*port, 443, 1);
        let mut p = ipv4(17, 9, false);
        p.extend(u);
        p.push(0);
        let pl = t2.place(&decode(101, &p).unwrap(), i as i64, |_, _| ());
        assert_eq!(pl.flow_id, [0, 0, 1][i]);
    }
}

#[test]
fn flowpic_bins_by_hand() {
    use privpkt_capture::FlowPicConfig;
    let cfg = FlowPicConfig::mini(); // 15 s, 32 bins
                                     // size 0 at t=0 → (0,0); size 1500 at t just below 15 s → (31,31)
    assert_eq!(cfg.bin(0, 0), 0);
    assert_eq!(cfg.bin(1500, 14_999_999_999), 31 * 32 + 31);
    // size 750 → row 750*32/1501 = 15; t = 7.5 s → col 16
    assert_eq!(cfg.bin(750, 7_500_000_000), 15 * 32 + 16);
    // sizes above 1500 go to the last row
    assert_eq!(cfg.bin(9000, 0) / 32, 31);
    let p = FlowPicConfig::paper();
    assert_eq!(
        p.bin(1, 50_000_000),
        1,
        "1 byte, 50 ms of 60 s in 1500 bins → row 0, col 1"
    );
}
