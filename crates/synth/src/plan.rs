//! Decides, before any byte is written, which files exist and which flows
//! (unit ordinals, packet caps) go into each.
//!
//! Schedules carry sizes, so the planner knows every file's exact size. That
//! is what makes `target_bytes` precise from kilobytes to gigabytes and lets
//! files roll over at `max_file_bytes` on flow boundaries.

use crate::apps::{gen_dns, gen_unit, Tunnel, Unit, UnitParams};
use crate::build::{ip_len, Link};
use crate::rng::{self, rng_for};
use crate::sched::Dir;
use crate::writer::{pcap_record_len, pcapng_epb_len, pcapng_idb_len, PCAPNG_SHB_LEN, PCAP_HEADER_LEN};
use crate::{CaptureFormat, Category, LinkKind, SynthConfig};
use rand::Rng as _;

/// One output class (category, optionally VPN-wrapped).
#[derive(Clone, Debug)]
pub(crate) struct ClassDef {
    /// Position in the class list; drives format/link alternation.
    pub pos: usize,
    pub name: String,
    pub category: Category,
    pub vpn: bool,
    /// Stable hash of the name, mixed into every seed of this class.
    pub key: u64,
}

/// Container format of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fmt {
    Pcap,
    PcapNg,
}

/// Per-file choices that influence sizes (so they are fixed at planning).
#[derive(Clone, Debug)]
pub(crate) struct FileLayout {
    pub fmt: Fmt,
    /// One entry per interface (classic pcap: exactly one).
    pub links: Vec<Link>,
    /// pcapng if_tsresol exponent per interface.
    pub tsresol: Vec<u8>,
    pub tunnel: Tunnel,
    pub n_dns: u32,
}

impl FileLayout {
    pub(crate) fn new(cfg: &SynthConfig, class: &ClassDef, file_idx: u32) -> Self {
        let mut r = rng_for(cfg.seed, &[rng::S_FILE_PLAN, class.key, u64::from(file_idx)]);
        let k = class.pos + file_idx as usize;
        let fmt = match cfg.format {
            CaptureFormat::Pcap => Fmt::Pcap,
            CaptureFormat::PcapNg => Fmt::PcapNg,
            CaptureFormat::Mixed if k % 2 == 0 => Fmt::Pcap,
            CaptureFormat::Mixed => Fmt::PcapNg,
        };
        let qinq = r.random_bool(0.3);
        let cycle = [Link::Ethernet, Link::Vlan { qinq }, Link::Sll, Link::Raw];
        let c = k / 2;
        let links = match cfg.link {
            LinkKind::Ethernet => vec![Link::Ethernet],
            LinkKind::Vlan => vec![Link::Vlan { qinq }],
            LinkKind::Sll => vec![Link::Sll],
            LinkKind::RawIp => vec![Link::Raw],
            // pcapng files get two interfaces of different link types, the
            // way an "any"-style capture mixes them.
            LinkKind::Mixed if fmt == Fmt::PcapNg => vec![cycle[c % 4], cycle[(c + 2) % 4]],
            LinkKind::Mixed => vec![cycle[c % 4]],
        };
        let tsresol = (0..links.len()).map(|i| if (c + i) % 2 == 0 { 6 } else { 9 }).collect();
        let tunnel = if r.random_bool(0.5) {
            Tunnel::OpenVpn
        } else {
            Tunnel::WireGuard
        };
        let n_dns = r.random_range(1..=3);
        Self {
            fmt,
            links,
            tsresol,
            tunnel,
            n_dns,
        }
    }

    pub(crate) fn header_len(&self) -> u64 {
        match self.fmt {
            Fmt::Pcap => PCAP_HEADER_LEN as u64,
            Fmt::PcapNg => (PCAPNG_SHB_LEN + self.tsresol.iter().map(|&r| pcapng_idb_len(r)).sum::<usize>()) as u64,
        }
    }

    pub(crate) fn record_len(&self, iface: u32, dir: Dir, ip_len: usize) -> u64 {
        let caplen = self.links[iface as usize].frame_len(dir, ip_len);
        (match self.fmt {
            Fmt::Pcap => pcap_record_len(caplen),
            Fmt::PcapNg => pcapng_epb_len(caplen),
        }) as u64
    }

    /// On-disk bytes of each packet of `unit` written on `iface`.
    pub(crate) fn unit_sizes<'a>(&'a self, unit: &'a Unit, iface: u32) -> impl Iterator<Item = u64> + 'a {
        unit.ev
            .iter()
            .map(move |e| self.record_len(iface, e.dir, ip_len(unit.spec.ipv6, e)))
    }
}

/// A flow placed in a file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UnitPlan {
    pub ordinal: u64,
    pub inner_limit: u32,
    /// Packets kept (a prefix of the schedule).
    pub keep: u32,
    pub iface: u32,
}

/// One output file.
#[derive(Clone, Debug)]
pub(crate) struct FilePlan {
    pub class: usize,
    pub file_idx: u32,
    pub layout: FileLayout,
    pub cap: usize,
    pub units: Vec<UnitPlan>,
    /// Exact size on disk.
    pub bytes: u64,
}

pub(crate) fn unit_params(
    cfg: &SynthConfig,
    class: &ClassDef,
    cap: usize,
    inner_limit: u32,
    tunnel: Tunnel,
) -> UnitParams {
    UnitParams {
        seed: cfg.seed,
        class_key: class.key,
        category: class.category,
        vpn: class.vpn,
        cap,
        inner_limit,
        tunnel,
        ipv6_fraction: cfg.ipv6_fraction,
    }
}

/// Background DNS units of a file.
pub(crate) fn dns_units(cfg: &SynthConfig, class: &ClassDef, file_idx: u32, n: u32) -> Vec<Unit> {
    (0..n)
        .map(|j| {
            gen_dns(
                cfg.seed,
                class.key,
                u64::from(file_idx),
                u64::from(j),
                cfg.ipv6_fraction,
            )
        })
        .collect()
}

/// Most inner flows one VPN tunnel carries, so that a capture of
/// `per_capture` inner flows has several tunnel flows (several labels).
fn tunnel_max(per_capture: usize) -> u32 {
    (per_capture / 3).clamp(1, 4) as u32
}

/// Smallest per-flow packet cap the byte-budget scaling may use.
const MIN_CAP: usize = 8;
/// Units sampled to estimate a class's mean flow size.
const SAMPLE: u64 = 6;

fn new_file(cfg: &SynthConfig, class: &ClassDef, idx: usize, file_idx: u32, cap: usize) -> FilePlan {
    let layout = FileLayout::new(cfg, class, file_idx);
    let dns: u64 = dns_units(cfg, class, file_idx, layout.n_dns)
        .iter()
        .map(|u| layout.unit_sizes(u, 0).sum::<u64>())
        .sum();
    FilePlan {
        class: idx,
        file_idx,
        bytes: layout.header_len() + dns,
        layout,
        cap,
        units: Vec::new(),
    }
}

/// Picks packet cap and inner flows per capture so a class fills `budget`
/// with a sensible shape: shorter flows for tiny budgets (so every class
/// still has several flows), more flows per capture for huge ones.
fn scale(cfg: &SynthConfig, class: &ClassDef, idx: usize, budget: u64) -> (usize, usize) {
    let fpc = cfg.flows_per_capture;
    let min_inner = fpc.min(4) as u64;
    let first = new_file(cfg, class, idx, 0, cfg.max_packets_per_flow);
    let overhead = first.bytes;
    let mean_at = |cap: usize| -> u64 {
        let p = unit_params(cfg, class, cap, tunnel_max(fpc), first.layout.tunnel);
        let (bytes, inner) = (0..SAMPLE).fold((0u64, 0u64), |(b, n), o| {
            let u = gen_unit(&p, o);
            (b + first.layout.unit_sizes(&u, 0).sum::<u64>(), n + u64::from(u.inner))
        });
        (bytes / inner.max(1)).max(1)
    };
    let mut cap = cfg.max_packets_per_flow;
    let mut mean = mean_at(cap);
    while cap > MIN_CAP && overhead + min_inner * mean > budget {
        cap = (cap * 2 / 3).max(MIN_CAP);
        mean = mean_at(cap);
    }
    let n_est = budget.saturating_sub(overhead) / mean;
    let default_total = (cfg.captures_per_class * fpc) as u64;
    let per_capture = if n_est > default_total {
        let r = n_est as f64 / default_total as f64;
        ((fpc as f64 * r.sqrt()).round() as usize).max(fpc)
    } else {
        fpc
    };
    (cap, per_capture)
}

/// Plans all files of one class. With `budget`, files are added until the
/// class's bytes reach it (the last flow is cut to land on it); otherwise
/// `captures_per_class` captures of `flows_per_capture` flows are made.
pub(crate) fn plan_class(cfg: &SynthConfig, class: &ClassDef, idx: usize, budget: Option<u64>) -> Vec<FilePlan> {
    let (cap, per_capture) = match budget {
        Some(b) => scale(cfg, class, idx, b),
        None => (cfg.max_packets_per_flow, cfg.flows_per_capture),
    };
    let mut files: Vec<FilePlan> = Vec::new();
    let mut closed = 0u64; // bytes of finished files
    let mut ordinal = 0u64;
    let mut captures = 0;
    loop {
        if budget.is_none() && captures == cfg.captures_per_class {
            return files;
        }
        let file_idx = files.len() as u32;
        let mut cur = new_file(cfg, class, idx, file_idx, cap);
        if let Some(b) = budget {
            if !files.is_empty() && closed + cur.bytes + 256 > b {
                return files;
            }
        }
        let mut inner_used = 0usize;
        while inner_used < per_capture {
            let iface = (cur.units.len() % cur.layout.links.len()) as u32;
            let inner_limit = ((per_capture - inner_used) as u32).min(tunnel_max(per_capture));
            let p = unit_params(cfg, class, cap, inner_limit, cur.layout.tunnel);
            let unit = gen_unit(&p, ordinal);
            let size: u64 = cur.layout.unit_sizes(&unit, iface).sum();
            if !cur.units.is_empty() && cur.bytes + size > cfg.max_file_bytes {
                // Roll over: the capture continues in a new file.
                closed += cur.bytes;
                files.push(cur);
                cur = new_file(cfg, class, idx, files.len() as u32, cap);
                if let Some(b) = budget {
                    if closed + cur.bytes + 256 > b {
                        return files;
                    }
                }
                continue;
            }
            let mut limit = cfg.max_file_bytes.saturating_sub(cur.bytes);
            if let Some(b) = budget {
                limit = limit.min(b.saturating_sub(closed + cur.bytes));
            }
            let (keep, add) = if size <= limit {
                (unit.ev.len(), size)
            } else {
                let mut acc = 0;
                let mut n = 0;
                for s in cur.layout.unit_sizes(&unit, iface) {
                    if acc + s > limit {
                        break;
                    }
                    acc += s;
                    n += 1;
                }
                (n, acc)
            };
            if keep > 0 {
                cur.units.push(UnitPlan {
                    ordinal,
                    inner_limit,
                    keep: keep as u32,
                    iface,
                });
                cur.bytes += add;
            }
            ordinal += 1;
            inner_used += unit.inner as usize;
            let budget_done = budget.is_some_and(|b| keep < unit.ev.len() || closed + cur.bytes + 64 >= b);
            if budget_done {
                files.push(cur);
                return files;
            }
        }
        closed += cur.bytes;
        files.push(cur);
        captures += 1;
    }
}
