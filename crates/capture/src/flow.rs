//! Bidirectional 5-tuple flows.
//!
//! A flow is keyed by (L4 protocol, unordered pair of endpoints). It ends when
//! - it has been idle for `idle_timeout` (default 120 s, CICFlowMeter's flow timeout),
//! - it has been active for `active_timeout` (default 3600 s; long flows are cut into pieces),
//! - TCP: a RST was seen, or a FIN was seen in both directions. Packets that still arrive for a
//!   closed TCP connection (final ACKs, retransmissions) stay with it for `closed_linger`
//!   (default 5 s); a new SYN on the same tuple starts a new flow at once.
//!
//! The forward direction is that of the flow's first packet. Flow ids count up from 0 in the
//! order flows start within a capture, so they are stable for the same file and settings.

use crate::decode::{Decoded, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use serde::{Deserialize, Serialize};

/// Flow-table settings; all times in seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct FlowConfig {
    pub idle_timeout: f64,
    pub active_timeout: f64,
    pub closed_linger: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            idle_timeout: 120.0,
            active_timeout: 3600.0,
            closed_linger: 5.0,
        }
    }
}

impl FlowConfig {
    /// Timeouts must be numbers of seconds > 0: an infinite or NaN one could not be written to a
    /// manifest and read back.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("idle timeout", self.idle_timeout),
            ("active timeout", self.active_timeout),
            ("closed-connection linger", self.closed_linger),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!(
                    "the flow {name} must be a finite number of seconds > 0, got {v}"
                ));
            }
        }
        Ok(())
    }
}

/// One side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// IPv4 addresses use the first four bytes.
    pub addr: [u8; 16],
    pub v6: bool,
    pub port: u16,
}

impl Endpoint {
    pub fn ip(&self) -> std::net::IpAddr {
        if self.v6 {
            std::net::IpAddr::from(self.addr)
        } else {
            std::net::IpAddr::from([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])
        }
    }
}

impl std::fmt::Display for Endpoint {
    /// `ip:port`, IPv6 as `[addr]:port` — the format of the labels CSV.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.v6 {
            write!(f, "[{}]:{}", self.ip(), self.port)
        } else {
            write!(f, "{}:{}", self.ip(), self.port)
        }
    }
}

/// Direction-free flow key: the smaller endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    pub l4: L4,
    pub a: Endpoint,
    pub b: Endpoint,
}

impl FlowKey {
    /// Key of a packet and whether the packet goes from `a` to `b`.
    pub fn of(p: &Decoded<'_>) -> (FlowKey, bool) {
        let v6 = p.ip_version == 6;
        let s = Endpoint {
            addr: p.src,
            v6,
            port: p.src_port,
        };
        let d = Endpoint {
            addr: p.dst,
            v6,
            port: p.dst_port,
        };
        if s <= d {
            (FlowKey { l4: p.l4, a: s, b: d }, true)
        } else {
            (FlowKey { l4: p.l4, a: d, b: s }, false)
        }
    }

    pub fn new(l4: L4, x: Endpoint, y: Endpoint) -> FlowKey {
        if x <= y {
            FlowKey { l4, a: x, b: y }
        } else {
            FlowKey { l4, a: y, b: x }
        }
    }
}

/// Direction of a packet within its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Same direction as the flow's first packet.
    Forward = 0,
    Backward = 1,
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    Idle,
    Active,
    TcpClose,
    NewSyn,
    EndOfCapture,
}

/// Summary of a finished flow.
#[derive(Debug, Clone)]
pub struct FlowEnd<S> {
    pub id: u64,
    pub key: FlowKey,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    pub packets: u64,
    pub reason: EndReason,
    pub state: S,
}

struct Entry<S> {
    id: u64,
    forward_is_a: bool,
    first_ns: i64,
    last_ns: i64,
    packets: u64,
    fin_a: bool,
    fin_b: bool,
    closed_at: Option<i64>,
    state: S,
}

/// FxHash: flow keys are not attacker-chosen hash-flooding targets in an offline tool, and the
/// table lookup is on the per-packet hot path.
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// A flow table carrying per-flow user state `S` (labels, FlowPic blocks, counters).
pub struct FlowTable<S> {
    cfg: FlowConfig,
    map: FxMap<FlowKey, Entry<S>>,
    next_id: u64,
    last_sweep_ns: i64,
    now_ns: i64,
    ended: Vec<FlowEnd<S>>,
}

/// Where a packet landed: its flow id, direction and the flow's user state.
pub struct Placed<'t, S> {
    pub flow_id: u64,
    pub direction: Direction,
    pub key: FlowKey,
    /// True for the flow's first packet.
    pub new_flow: bool,
    pub state: &'t mut S,
}

impl<S> FlowTable<S> {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            map: FxMap::default(),
            next_id: 0,
            last_sweep_ns: i64::MIN,
            now_ns: i64::MIN,
            ended: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Flows created so far.
    pub fn flows_started(&self) -> u64 {
        self.next_id
    }

    /// Flows that ended since the last call (timeouts noticed while placing packets, or a flow
    /// replaced by a new SYN), in the order they ended.
    pub fn drain_ended(&mut self) -> std::vec::Drain<'_, FlowEnd<S>> {
        self.ended.drain(..)
    }

    /// Put a packet into its flow; `init` makes the state of a new flow. Flows that end on the
    /// way are queued for [`FlowTable::drain_ended`].
    pub fn place<'t>(
        &'t mut self,
        p: &Decoded<'_>,
        ts_ns: i64,
        init: impl FnOnce(u64, &FlowKey) -> S,
    ) -> Placed<'t, S> {
        let s = |x: f64| (x * 1e9) as i64;
        // Captures are not always in time order; the clock only moves forward.
        if ts_ns > self.now_ns {
            self.now_ns = ts_ns;
        }
        let now = self.now_ns;
        if self.last_sweep_ns == i64::MIN {
            self.last_sweep_ns = now;
        } else if now - self.last_sweep_ns >= 1_000_000_000 {
            self.sweep(now);
            self.last_sweep_ns = now;
        }
        let (key, a_to_b) = FlowKey::of(p);
        let syn_only = p.l4 == L4::Tcp && p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        // Does the existing entry end before this packet?
        let end_reason = self.map.get(&key).and_then(|e| {
            if ts_ns - e.last_ns > s(self.cfg.idle_timeout) {
                Some(EndReason::Idle)
            } else if ts_ns - e.first_ns > s(self.cfg.active_timeout) {
                Some(EndReason::Active)
            } else if e.closed_at.is_some() && syn_only {
                Some(EndReason::NewSyn)
            } else {
                None
            }
        });
        if let Some(reason) = end_reason {
            if let Some(e) = self.map.remove(&key) {
                self.ended.push(finish(key, e, reason));
            }
        }
        let mut new_flow = false;
        let next_id = &mut self.next_id;
        let e = self.map.entry(key).or_insert_with(|| {
            new_flow = true;
            let id = *next_id;
            *next_id += 1;
            Entry {
                id,
                forward_is_a: a_to_b,
                first_ns: ts_ns,
                last_ns: ts_ns,
                packets: 0,
                fin_a: false,
                fin_b: false,
                closed_at: None,
                state: init(id, &key),
            }
        });
        e.packets += 1;
        e.last_ns = e.last_ns.max(ts_ns);
        if p.l4 == L4::Tcp && e.closed_at.is_none() {
            if p.tcp_flags & TCP_RST != 0 {
                e.closed_at = Some(ts_ns);
            }
            if p.tcp_flags & TCP_FIN != 0 {
                if a_to_b {
                    e.fin_a = true;
                } else {
                    e.fin_b = true;
                }
                if e.fin_a && e.fin_b {
                    e.closed_at = Some(ts_ns);
                }
            }
        }
        let direction = if a_to_b == e.forward_is_a {
            Direction::Forward
        } else {
            Direction::Backward
        };
        Placed {
            flow_id: e.id,
            direction,
            key,
            new_flow,
            state: &mut e.state,
        }
    }

    /// End flows that timed out by `now`, in flow-id order so output is deterministic.
    fn sweep(&mut self, now: i64) {
        let s = |x: f64| (x * 1e9) as i64;
        let (idle, active, linger) = (
            s(self.cfg.idle_timeout),
            s(self.cfg.active_timeout),
            s(self.cfg.closed_linger),
        );
        let mut done: Vec<(u64, FlowKey, EndReason)> = self
            .map
            .iter()
            .filter_map(|(k, e)| {
                if let Some(c) = e.closed_at {
                    if now - c.max(e.last_ns) > linger {
                        return Some((e.id, *k, EndReason::TcpClose));
                    }
                }
                if now - e.last_ns > idle {
                    Some((e.id, *k, EndReason::Idle))
                } else if now - e.first_ns > active {
                    Some((e.id, *k, EndReason::Active))
                } else {
                    None
                }
            })
            .collect();
        done.sort_unstable_by_key(|d| d.0);
        for (_, k, reason) in done {
            if let Some(e) = self.map.remove(&k) {
                self.ended.push(finish(k, e, reason));
            }
        }
    }

    /// End every remaining flow (end of capture), in flow-id order, after any already queued.
    pub fn finish_all(&mut self) -> Vec<FlowEnd<S>> {
        let mut all: Vec<(FlowKey, Entry<S>)> = self.map.drain().collect();
        all.sort_unstable_by_key(|(_, e)| e.id);
        for (k, e) in all {
            let reason = if e.closed_at.is_some() {
                EndReason::TcpClose
            } else {
                EndReason::EndOfCapture
            };
            self.ended.push(finish(k, e, reason));
        }
        std::mem::take(&mut self.ended)
    }
}

fn finish<S>(key: FlowKey, e: Entry<S>, reason: EndReason) -> FlowEnd<S> {
    FlowEnd {
        id: e.id,
        key,
        first_ts_ns: e.first_ns,
        last_ts_ns: e.last_ns,
        packets: e.packets,
        reason,
        state: e.state,
    }
}
