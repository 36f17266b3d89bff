//! Independent reader used by the tests: pcap-parser for the containers,
//! etherparse for the packets, so the generator is checked by code it does
//! not share.

#![allow(dead_code)]

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};
use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub struct Pkt {
    pub linktype: u32,
    pub iface: u32,
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct CaptureInfo {
    pub pcapng: bool,
    pub big_endian: bool,
    pub nanosecond: bool,
    /// (linktype, if_tsresol) per pcapng interface.
    pub ifaces: Vec<(u32, u8)>,
}

pub fn read_capture(path: &Path) -> (CaptureInfo, Vec<Pkt>) {
    let f = File::open(path).unwrap();
    let mut reader = create_reader(1 << 16, f).unwrap();
    let mut info = CaptureInfo::default();
    let mut legacy_lt = 0u32;
    let mut pkts = Vec::new();
    loop {
        match reader.next() {
            Ok((off, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_lt = h.network.0 as u32;
                        info.big_endian = h.is_bigendian();
                        info.nanosecond = h.is_nanosecond_precision();
                        assert_eq!(h.snaplen, 65535);
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let mult = if info.nanosecond { 1 } else { 1000 };
                        pkts.push(Pkt {
                            linktype: legacy_lt,
                            iface: 0,
                            ts_ns: u64::from(b.ts_sec) * 1_000_000_000 + u64::from(b.ts_usec) * mult,
                            data: b.data[..b.caplen as usize].to_vec(),
                        });
                        assert_eq!(b.caplen, b.origlen);
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        info.pcapng = true;
                        info.big_endian = shb.big_endian();
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        assert_eq!(idb.snaplen, 65535);
                        info.ifaces.push((idb.linktype.0 as u32, idb.if_tsresol));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let (lt, res) = info.ifaces[epb.if_id as usize];
                        let units = 10u64.pow(u32::from(res));
                        let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        assert_eq!(epb.caplen, epb.origlen);
                        pkts.push(Pkt {
                            linktype: lt,
                            iface: epb.if_id,
                            ts_ns: ts * (1_000_000_000 / units),
                            data: epb.data[..epb.caplen as usize].to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(other) => panic!("unexpected block {other:?}"),
                }
                reader.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
            Err(e) => panic!("{}: {e:?}", path.display()),
        }
    }
    (info, pkts)
}

#[derive(Clone, Debug)]
pub struct TcpInfo {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub seq: u32,
    pub ack_no: u32,
}

#[derive(Clone, Debug)]
pub struct Decoded {
    pub l4: &'static str,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ip_len: usize,
    pub ttl: u8,
    pub payload: Vec<u8>,
    pub tcp: Option<TcpInfo>,
    pub vlan_tags: usize,
    /// Ethernet trailer padding present.
    pub padded: bool,
}

/// Parses a frame and asserts the IPv4 header and TCP/UDP checksums.
pub fn decode(linktype: u32, data: &[u8]) -> Decoded {
    let sp = match linktype {
        1 => SlicedPacket::from_ethernet(data),
        113 => SlicedPacket::from_linux_sll(data),
        101 => SlicedPacket::from_ip(data),
        lt => panic!("unexpected linktype {lt}"),
    }
    .unwrap_or_else(|e| panic!("unparsable packet: {e:?}"));
    let vlan_tags = sp.vlan_ids().len();
    let (src_ip, dst_ip, ip_len, ttl, v4, v6): (IpAddr, IpAddr, usize, u8, _, _) = match &sp.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "IPv4 header checksum"
            );
            assert!(h.dont_fragment());
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                usize::from(h.total_len()),
                h.ttl(),
                Some((h.source(), h.destination())),
                None,
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                40 + usize::from(h.payload_length()),
                h.hop_limit(),
                None,
                Some((h.source(), h.destination())),
            )
        }
        other => panic!("not IP: {other:?}"),
    };
    // Whole packet captured, nothing after the IP packet.
    let link_len = data.len() - ip_len;
    let expect = match (linktype, vlan_tags) {
        (1, n) => 14 + 4 * n,
        (113, _) => 16,
        _ => 0,
    };
    if link_len != expect {
        // Received Ethernet frames are padded to 60 bytes with zeros.
        assert_eq!(linktype, 1, "only Ethernet frames carry padding");
        assert_eq!(data.len(), 60, "padding only up to the minimum frame");
        assert!(expect + ip_len < 60);
        assert!(data[expect + ip_len..].iter().all(|&b| b == 0));
    }
    match &sp.transport {
        Some(TransportSlice::Tcp(t)) => {
            let c = match (v4, v6) {
                (Some((s, d)), _) => t.calc_checksum_ipv4(s, d).unwrap(),
                (_, Some((s, d))) => t.calc_checksum_ipv6(s, d).unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(t.checksum(), c, "TCP checksum");
            Decoded {
                l4: "TCP",
                src: SocketAddr::new(src_ip, t.source_port()),
                dst: SocketAddr::new(dst_ip, t.destination_port()),
                ip_len,
                ttl,
                payload: t.payload().to_vec(),
                tcp: Some(TcpInfo {
                    syn: t.syn(),
                    ack: t.ack(),
                    fin: t.fin(),
                    rst: t.rst(),
                    seq: t.sequence_number(),
                    ack_no: t.acknowledgment_number(),
                }),
                vlan_tags,
                padded: link_len != expect,
            }
        }
        Some(TransportSlice::Udp(u)) => {
            let h = u.to_header();
            let c = match (v4, v6) {
                (Some((s, d)), _) => h.calc_checksum_ipv4_raw(s, d, u.payload()).unwrap(),
                (_, Some((s, d))) => h.calc_checksum_ipv6_raw(s, d, u.payload()).unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(u.checksum(), c, "UDP checksum");
            assert_eq!(usize::from(u.length()), 8 + u.payload().len());
            Decoded {
                l4: "UDP",
                src: SocketAddr::new(src_ip, u.source_port()),
                dst: SocketAddr::new(dst_ip, u.destination_port()),
                ip_len,
                ttl,
                payload: u.payload().to_vec(),
                tcp: None,
                vlan_tags,
                padded: link_len != expect,
            }
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub file: String,
    pub flow_idx: u32,
    pub l4: String,
    pub a: SocketAddr,
    pub b: SocketAddr,
    pub ndpi_proto: String,
    pub pkts: u64,
    pub bytes: u64,
    pub app_family: String,
    pub category: String,
    pub vpn: String,
}

pub const HEADER: &str = "file,flow_idx,l4,endpoint_a,endpoint_b,ndpi_proto,ndpi_app,ndpi_category,encrypted,pkts,bytes,ndpi_confidence,sni,app_family,category,vpn,label_source";

pub fn read_labels(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.lines().next().unwrap(), HEADER);
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (cf, ci, cl, ca, cb, cp, cpk, cby, capp, ccat, cvpn) = (
        col("file"),
        col("flow_idx"),
        col("l4"),
        col("endpoint_a"),
        col("endpoint_b"),
        col("ndpi_proto"),
        col("pkts"),
        col("bytes"),
        col("app_family"),
        col("category"),
        col("vpn"),
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), 17);
            Row {
                file: rec[cf].to_string(),
                flow_idx: rec[ci].parse().unwrap(),
                l4: rec[cl].to_string(),
                a: rec[ca].parse().unwrap(),
                b: rec[cb].parse().unwrap(),
                ndpi_proto: rec[cp].to_string(),
                pkts: rec[cpk].parse().unwrap(),
                bytes: rec[cby].parse().unwrap(),
                app_family: rec[capp].to_string(),
                category: rec[ccat].to_string(),
                vpn: rec[cvpn].to_string(),
            }
        })
        .collect()
}

pub type FlowKey = (String, String, SocketAddr, SocketAddr);

pub fn key(file: &str, l4: &str, x: SocketAddr, y: SocketAddr) -> FlowKey {
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    (file.to_string(), l4.to_string(), lo, hi)
}

/// Packets of every labelled flow, in file order, keyed like the label join.
pub struct Dataset {
    pub rows: Vec<Row>,
    pub by_key: HashMap<FlowKey, usize>,
    /// Per row: (timestamp, decoded packet).
    pub flows: Vec<Vec<(u64, Decoded)>>,
    pub infos: HashMap<String, CaptureInfo>,
    pub linktypes: Vec<u32>,
}

/// Reads every capture in `dir`, decoding (and checksum-checking) every
/// packet and joining it to exactly one label row.
pub fn load(dir: &Path) -> Dataset {
    let rows = read_labels(&dir.join("flows_labels.csv"));
    let mut by_key = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        assert!(
            by_key.insert(key(&r.file, &r.l4, r.a, r.b), i).is_none(),
            "duplicate endpoint pair in labels: {r:?}"
        );
    }
    let mut flows: Vec<Vec<(u64, Decoded)>> = vec![Vec::new(); rows.len()];
    let mut infos = HashMap::new();
    let mut linktypes = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    names.sort();
    for name in names {
        let (info, pkts) = read_capture(&dir.join(&name));
        assert_eq!(info.pcapng, name.ends_with(".pcapng"), "{name}: extension");
        let mut last = 0;
        for p in pkts {
            assert!(p.ts_ns >= last, "{name}: timestamps go backwards");
            last = p.ts_ns;
            linktypes.push(p.linktype);
            let d = decode(p.linktype, &p.data);
            let k = key(&name, d.l4, d.src, d.dst);
            let i = *by_key
                .get(&k)
                .unwrap_or_else(|| panic!("{name}: packet {:?} has no label row", k));
            flows[i].push((p.ts_ns, d));
        }
        infos.insert(name, info);
    }
    Dataset {
        rows,
        by_key,
        flows,
        infos,
        linktypes,
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
