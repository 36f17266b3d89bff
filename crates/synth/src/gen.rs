//! Writes one planned capture file: regenerates its flows from their seeds,
//! gives them addresses and start times, merges all packets by time and
//! builds each packet's bytes just before writing it.

use crate::apps::{gen_unit, PortSel, Unit, L4};
use crate::build::{build_packet, doc_v4, doc_v6, pick_port, Host, UnitState};
use crate::plan::{dns_units, unit_params, ClassDef, FilePlan, Fmt};
use crate::rng::{self, ms, rng_for, secs};
use crate::sched::Ev;
use crate::writer::{PcapNgWriter, PcapWriter};
use crate::{SynthConfig, SynthError, SynthFile};
use rand::{Rng as _, RngCore};
use std::collections::HashSet;
use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// 2024-01-01T00:00:00Z in seconds.
const EPOCH_2024: u64 = 1_704_067_200;
/// How often (bytes) the progress callback is fed.
const PROGRESS_STEP: u64 = 1 << 20;

/// One row of `flows_labels.csv`.
#[derive(Clone, Debug)]
pub(crate) struct LabelRow {
    pub file: String,
    pub flow_idx: u32,
    pub l4: &'static str,
    pub a: SocketAddr,
    pub b: SocketAddr,
    pub ndpi_proto: &'static str,
    pub app: &'static str,
    pub ndpi_category: &'static str,
    pub encrypted: bool,
    pub pkts: u64,
    pub bytes: u64,
    pub category: &'static str,
    pub vpn: bool,
}

enum Sink {
    Pcap(PcapWriter<BufWriter<File>>),
    Ng(PcapNgWriter<BufWriter<File>>),
}

fn addr(ipv6: bool, a: &[u8; 16]) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&a);
    o
}

/// Writes the file described by `plan`; returns its summary and label rows.
pub(crate) fn write_file(
    cfg: &SynthConfig,
    class: &ClassDef,
    plan: &FilePlan,
    out_dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(SynthFile, Vec<LabelRow>), SynthError> {
    let ext = match plan.layout.fmt {
        Fmt::Pcap => "pcap",
        Fmt::PcapNg => "pcapng",
    };
    let name = format!("{}_{:04}.{ext}", class.name, plan.file_idx);
    let path = out_dir.join(&name);
    let fidx = u64::from(plan.file_idx);
    let mut frng = rng_for(cfg.seed, &[rng::S_FILE_RT, class.key, fidx]);
    let mut prng = rng_for(cfg.seed, &[rng::S_BYTES, class.key, fidx]);

    // Capture-wide identity: one client host behind one gateway.
    let epoch = EPOCH_2024 * 1_000_000_000 + frng.random_range(0..secs(358.0 * 86_400.0));
    let mut mac_client = [0u8; 6];
    frng.fill_bytes(&mut mac_client);
    mac_client[0] = (mac_client[0] & 0xfc) | 0x02;
    let mut mac_gw = [0u8; 6];
    frng.fill_bytes(&mut mac_gw);
    mac_gw[0] &= 0xfc;
    let host = Host {
        mac_client,
        mac_gw,
        vlan: [frng.random_range(2..4094), frng.random_range(2..4094)],
    };
    let client_v4 = match frng.random_range(0..3) {
        0 => [192, 168, frng.random(), frng.random_range(2..=254)],
        1 => [10, frng.random(), frng.random(), frng.random_range(2..=254)],
        _ => [
            172,
            frng.random_range(16..32),
            frng.random(),
            frng.random_range(2..=254),
        ],
    };
    let mut client_v6 = doc_v6(&mut frng);
    client_v6[8..].fill(0);
    let mut iid = [0u8; 8];
    frng.fill_bytes(&mut iid);
    client_v6[8..].copy_from_slice(&iid);
    let client_ttl = if frng.random_bool(0.6) { 64 } else { 128 };
    let dns_v4 = if frng.random_bool(0.5) {
        [client_v4[0], client_v4[1], client_v4[2], 1]
    } else {
        doc_v4(&mut frng)
    };
    let dns_v6 = doc_v6(&mut frng);
    let vpn_v4 = doc_v4(&mut frng);
    let vpn_v6 = doc_v6(&mut frng);

    // Regenerate the planned flows exactly as the planner saw them.
    let mut units: Vec<Unit> = Vec::with_capacity(plan.units.len() + 3);
    let mut ifaces: Vec<u32> = Vec::with_capacity(plan.units.len() + 3);
    for up in &plan.units {
        let p = unit_params(cfg, class, plan.cap, up.inner_limit, plan.layout.tunnel);
        let mut u = gen_unit(&p, up.ordinal);
        u.ev.truncate(up.keep as usize);
        units.push(u);
        ifaces.push(up.iface);
    }
    let n_main = units.len();
    for u in dns_units(cfg, class, plan.file_idx, plan.layout.n_dns) {
        units.push(u);
        ifaces.push(0);
    }

    // Start times: flows overlap within a window; browsing flows come in
    // page-load clusters; DNS lookups just precede a flow.
    let window = secs(20.0 + 2.0 * n_main as f64);
    let mut starts = vec![0u64; units.len()];
    let mut page = (0u64, 0u32);
    for (i, u) in units.iter().enumerate().take(n_main) {
        starts[i] = if u.spec.clustered {
            if page.1 == 0 {
                page = (frng.random_range(0..window), frng.random_range(3..=8));
            }
            page.1 -= 1;
            page.0 + ms(frng.random_range(0.0..400.0))
        } else {
            frng.random_range(0..window)
        };
    }
    for i in n_main..units.len() {
        starts[i] = if n_main > 0 {
            let j = frng.random_range(0..n_main);
            starts[j].saturating_sub(ms(frng.random_range(2.0..80.0)))
        } else {
            frng.random_range(0..window)
        };
    }

    // Addresses and per-flow state; endpoint pairs unique per (file, l4).
    let mut used: HashSet<(L4, u16, [u8; 16], u16)> = HashSet::with_capacity(units.len());
    let mut ephemeral: u16 = frng.random_range(32768..=50000);
    let mut states: Vec<UnitState> = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        let spec = &u.spec;
        let link = plan.layout.links[ifaces[i] as usize];
        let mut st = UnitState::new(spec, link, ifaces[i], &mut frng);
        st.ttl[0] = client_ttl;
        st.client = if spec.ipv6 { client_v6 } else { v4(client_v4) };
        st.server = match (spec.dns.is_some(), spec.vpn, spec.ipv6) {
            (true, _, false) => v4(dns_v4),
            (true, _, true) => dns_v6,
            (_, true, false) => v4(vpn_v4),
            (_, true, true) => vpn_v6,
            (_, false, false) => v4(doc_v4(&mut frng)),
            (_, false, true) => doc_v6(&mut frng),
        };
        st.sport = pick_port(spec.server_port, &mut ephemeral, &mut frng);
        st.cport = pick_port(spec.client_port, &mut ephemeral, &mut frng);
        while !used.insert((spec.l4, st.cport, st.server, st.sport)) {
            st.cport = if st.cport == u16::MAX { 1024 } else { st.cport + 1 };
            if spec.client_port == PortSel::Ephemeral {
                ephemeral = st.cport;
            }
        }
        states.push(st);
    }

    // flow_idx follows order of first appearance, as a flow reader sees it.
    let first: Vec<u64> = units
        .iter()
        .zip(&starts)
        .map(|(u, s)| s + u.ev.first().map_or(0, |e| e.t))
        .collect();
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (first[i], i));

    let mut evs: Vec<Ev> = Vec::with_capacity(units.iter().map(|u| u.ev.len()).sum());
    for (i, u) in units.iter().enumerate() {
        let base = epoch + starts[i];
        evs.extend(u.ev.iter().map(|e| Ev {
            t: base + e.t,
            unit: i as u32,
            ..*e
        }));
    }
    evs.sort_by_key(|e| e.t);

    let io_err = |source| SynthError::Write {
        path: path.clone(),
        source,
    };
    let file = File::create(&path).map_err(io_err)?;
    let bw = BufWriter::with_capacity(1 << 20, file);
    let mut sink = match plan.layout.fmt {
        Fmt::Pcap => Sink::Pcap(PcapWriter::new(bw, plan.layout.links[0].linktype(), cfg.writer).map_err(io_err)?),
        Fmt::PcapNg => {
            let mut w = PcapNgWriter::new(bw, cfg.writer).map_err(io_err)?;
            for (l, &r) in plan.layout.links.iter().zip(&plan.layout.tsresol) {
                w.add_interface(l.linktype(), r).map_err(io_err)?;
            }
            Sink::Ng(w)
        }
    };
    let mut written = plan.layout.header_len();
    let mut pending = written;
    let mut buf = Vec::with_capacity(2048);
    for e in &evs {
        let i = e.unit as usize;
        let st = &mut states[i];
        let ip = build_packet(&mut buf, &host, &units[i].spec, st, e, &mut prng);
        st.pkts += 1;
        st.ip_bytes += ip as u64;
        match &mut sink {
            Sink::Pcap(w) => w.write_packet(e.t, &buf),
            Sink::Ng(w) => w.write_packet(st.iface, e.t, &buf),
        }
        .map_err(io_err)?;
        let rec = plan.layout.record_len(st.iface, e.dir, ip);
        written += rec;
        pending += rec;
        if pending >= PROGRESS_STEP {
            progress(pending);
            pending = 0;
        }
    }
    match sink {
        Sink::Pcap(w) => w.finish().map(drop),
        Sink::Ng(w) => w.finish().map(drop),
    }
    .map_err(io_err)?;
    if pending > 0 {
        progress(pending);
    }
    debug_assert_eq!(written, plan.bytes, "planned and written size differ for {name}");

    let mut rows = Vec::with_capacity(units.len());
    for (rank, &i) in order.iter().enumerate() {
        let (u, st) = (&units[i], &states[i]);
        rows.push(LabelRow {
            file: name.clone(),
            flow_idx: rank as u32,
            l4: match u.spec.l4 {
                L4::Tcp => "TCP",
                L4::Udp => "UDP",
            },
            a: SocketAddr::new(addr(u.spec.ipv6, &st.client), st.cport),
            b: SocketAddr::new(addr(u.spec.ipv6, &st.server), st.sport),
            ndpi_proto: u.spec.ndpi_proto,
            app: u.spec.app,
            ndpi_category: u.spec.ndpi_category,
            encrypted: u.spec.encrypted,
            pkts: st.pkts,
            bytes: st.ip_bytes,
            category: u.spec.category,
            vpn: u.spec.vpn,
        });
    }
    let packets = evs.len() as u64;
    Ok((
        SynthFile {
            path,
            class: class.name.clone(),
            packets,
            bytes: written,
            flows: rows.len() as u64,
        },
        rows,
    ))
}
