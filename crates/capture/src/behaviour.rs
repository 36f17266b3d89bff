//! Flow behaviour: what a flow *does* rather than what its bytes say.
//!
//! On honest splits (flows never cross train and test, ports and addresses masked) the
//! sizes, directions and gaps of a flow's first packets and its statistics carry what
//! generalises across captures; payload-byte models mostly learn flows (see the evaluation
//! notes). One sample per flow, of up to two parts, laid out one after the other as `f32`:
//!
//! - **series**: the flow's first N packets (default 30) in arrival order, one row of
//!   [`SERIES_CHANNELS`] values per packet — presence mask, direction (+1 forward, −1
//!   backward), IP length, transport payload length, gap to the flow's previous packet (µs),
//!   and the FIN, SYN, RST, PSH, ACK, URG flags — followed, optionally, by the first K bytes of
//!   the packet's transport payload for the flow's first few payload-carrying packets (the
//!   hybrid of series and bytes; headers are never included, so addresses and ports stay out).
//!   Rows past the flow's end are all zero.
//! - **statistics** ([`STATS`]): packet and byte counts, durations, per-direction size and gap
//!   moments and percentiles, TCP flag counts, bursts and ratios, over the whole flow, its
//!   first T seconds, or the series' packets only. Names follow nfstream's where the meaning is
//!   the same (`src2dst` is the direction of the flow's first packet).
//!
//! Values are stored raw (bytes, µs, ms, counts); models scale them with fixed,
//! data-independent transforms, so no statistic of private data is needed to normalise them.
//! No IP address, port or absolute timestamp enters a sample.
//!
//! A flow is *decided* (its sample emitted) as soon as what the sample needs has arrived: the
//! N-th packet for a series alone or with statistics over the series, the end of the first T
//! seconds, or the flow's end (timeouts, TCP close, end of capture) for whole-flow statistics.

use serde::{Deserialize, Serialize};

use crate::decode::{Decoded, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::flow::Direction;

/// Values per packet of a series, before its payload bytes.
pub const SERIES_CHANNELS: usize = 11;
/// Names of the series channels, in order.
pub const SERIES_CHANNEL_NAMES: [&str; SERIES_CHANNELS] = [
    "mask",
    "direction",
    "ip_bytes",
    "payload_bytes",
    "iat_us",
    "fin",
    "syn",
    "rst",
    "psh",
    "ack",
    "urg",
];
/// Packets per direction whose sizes and gaps the percentiles are taken over: bounded memory
/// per flow, and the first packets are the ones that tell a flow apart.
pub const PERCENTILE_PACKETS: usize = 256;

const TCP_PSH: u8 = 0x08;
const TCP_URG: u8 = 0x20;
const TCP_ECE: u8 = 0x40;
const TCP_CWR: u8 = 0x80;

/// Over what the statistics are taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "over", rename_all = "kebab-case")]
pub enum StatsScope {
    /// The whole flow, as the flow table cuts it (idle/active timeouts, TCP close).
    Flow,
    /// The flow's first `seconds` seconds.
    Seconds { seconds: f64 },
    /// The packets of the series only (decided with the series).
    Series,
}

fn default_payload_packets() -> u32 {
    4
}

/// Settings of the behaviour representation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BehaviourConfig {
    /// Packets in the series (0: no series).
    pub packets: u32,
    /// Payload bytes kept per series packet (0: none).
    pub payload_bytes: u32,
    /// Only the first this many packets *that carry payload* keep their bytes (the handshake's,
    /// where protocols show themselves; later payload is ciphertext, noise to a model); the
    /// other rows' bytes are zero.
    #[serde(default = "default_payload_packets")]
    pub payload_packets: u32,
    /// Flow statistics and their scope (`None`: no statistics).
    pub stats: Option<StatsScope>,
    /// Flows with fewer packets give no sample.
    pub min_packets: u32,
}

impl BehaviourConfig {
    /// `series`: the first 30 packets, no statistics.
    pub fn series() -> Self {
        BehaviourConfig {
            packets: 30,
            payload_bytes: 0,
            payload_packets: default_payload_packets(),
            stats: None,
            min_packets: 1,
        }
    }

    /// `flowstats`: statistics of the whole flow, no series.
    pub fn flowstats() -> Self {
        BehaviourConfig {
            packets: 0,
            payload_bytes: 0,
            payload_packets: default_payload_packets(),
            stats: Some(StatsScope::Flow),
            min_packets: 1,
        }
    }

    /// `behaviour`: the first 30 packets and the statistics of the whole flow.
    pub fn behaviour() -> Self {
        BehaviourConfig {
            stats: Some(StatsScope::Flow),
            ..Self::series()
        }
    }

    /// The dataset's name of this representation.
    pub fn name(&self) -> &'static str {
        match (self.packets > 0, self.stats.is_some()) {
            (true, false) => "series",
            (false, true) => "flowstats",
            _ => "behaviour",
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.packets == 0 && self.stats.is_none() {
            return Err("a behaviour sample needs a series (packets ≥ 1), statistics, or both".into());
        }
        if self.packets > 4096 {
            return Err(format!(
                "a series of {} packets is too long (at most 4096)",
                self.packets
            ));
        }
        if self.payload_bytes > 1500 {
            return Err(format!(
                "at most 1500 payload bytes per packet, got {}",
                self.payload_bytes
            ));
        }
        if self.payload_bytes > 0 && self.packets == 0 {
            return Err("payload bytes are kept per series packet: give a series (packets ≥ 1)".into());
        }
        if self.stats == Some(StatsScope::Series) && self.packets == 0 {
            return Err("statistics over the series need a series (packets ≥ 1)".into());
        }
        if let Some(StatsScope::Seconds { seconds }) = self.stats {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(format!(
                    "the statistics window must be a number of seconds > 0, got {seconds}"
                ));
            }
        }
        if self.min_packets == 0 {
            return Err("the minimum packets per flow must be ≥ 1".into());
        }
        Ok(())
    }

    /// Values per series packet (channels and payload bytes).
    pub fn channels(&self) -> usize {
        SERIES_CHANNELS + self.payload_bytes as usize
    }

    /// Values of the series part.
    pub fn series_len(&self) -> usize {
        self.packets as usize * self.channels()
    }

    /// Values of the statistics part.
    pub fn stats_len(&self) -> usize {
        if self.stats.is_some() {
            STATS.len()
        } else {
            0
        }
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.series_len() + self.stats_len()
    }
}

/// How a statistic is measured: what its fixed scaling is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatKind {
    /// A number of packets or bursts.
    Count,
    /// A number of bytes.
    Bytes,
    /// A packet size in bytes (IP length).
    Size,
    /// A duration in milliseconds.
    Millis,
    /// A share in [0, 1].
    Share,
    /// The IP protocol number (6 TCP, 17 UDP).
    Protocol,
}

/// One flow statistic: its name (nfstream's where the meaning is the same) and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatFeature {
    pub name: String,
    pub kind: StatKind,
    /// Whether nfstream has a feature of this name and meaning.
    pub nfstream: bool,
}

/// The statistics, in sample order.
pub static STATS: std::sync::LazyLock<Vec<StatFeature>> = std::sync::LazyLock::new(|| {
    let mut names = Vec::new();
    FlowStats::default().visit(&mut |name, kind, nfstream, _| {
        names.push(StatFeature {
            name: name.to_string(),
            kind,
            nfstream,
        })
    });
    names
});

/// Running mean and variance (Welford), minimum and maximum.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        if self.n == 1 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Sample standard deviation (n − 1), 0 below two values: nfstream's definition.
    fn stddev(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }
}

/// Percentile `p` (0–100) of `v` by linear interpolation between closest ranks (numpy's
/// default); 0 for no values. Sorts `v`.
fn percentile(v: &mut [f32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f32::total_cmp);
    let h = (v.len() - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let (a, b) = (v[lo] as f64, v[hi] as f64);
    a + (h - lo as f64) * (b - a)
}

/// Statistics of one direction (or both).
#[derive(Debug, Clone, Default)]
struct DirStats {
    packets: u64,
    bytes: u64,
    payload_bytes: u64,
    zero_payload: u64,
    first_ns: Option<i64>,
    last_ns: i64,
    ps: Moments,
    piat: Moments,
    /// syn, cwr, ece, urg, ack, psh, rst, fin (nfstream's order).
    flags: [u64; 8],
    /// Sizes and gaps (ms) of the first [`PERCENTILE_PACKETS`] packets, for percentiles.
    sizes: Vec<f32>,
    gaps: Vec<f32>,
}

impl DirStats {
    fn push(&mut self, ts_ns: i64, size: u32, payload: u32, flags: u8) {
        if let Some(_first) = self.first_ns {
            let gap_ms = (ts_ns - self.last_ns).max(0) as f64 / 1e6;
            self.piat.push(gap_ms);
            if self.gaps.len() < PERCENTILE_PACKETS {
                self.gaps.push(gap_ms as f32);
            }
        } else {
            self.first_ns = Some(ts_ns);
        }
        self.last_ns = self.last_ns.max(ts_ns);
        self.packets += 1;
        self.bytes += size as u64;
        self.payload_bytes += payload as u64;
        self.zero_payload += (payload == 0) as u64;
        self.ps.push(size as f64);
        if self.sizes.len() < PERCENTILE_PACKETS {
            self.sizes.push(size as f32);
        }
        for (i, bit) in [TCP_SYN, TCP_CWR, TCP_ECE, TCP_URG, TCP_ACK, TCP_PSH, TCP_RST, TCP_FIN]
            .into_iter()
            .enumerate()
        {
            self.flags[i] += (flags & bit != 0) as u64;
        }
    }

    fn duration_ms(&self) -> f64 {
        self.first_ns.map_or(0.0, |f| (self.last_ns - f).max(0) as f64 / 1e6)
    }
}

/// Statistics of a flow, updated packet by packet.
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    /// Both directions, forward (`src2dst`), backward (`dst2src`).
    dirs: [DirStats; 3],
    protocol: u8,
    /// Direction of the current burst (a maximal run of packets in one direction).
    burst_dir: Option<Direction>,
    burst_bytes: u64,
    /// Per direction: bursts, packets in bursts, largest burst in bytes.
    bursts: [u64; 2],
    burst_packets: [u64; 2],
    max_burst_bytes: [u64; 2],
}

impl FlowStats {
    /// Add a packet of `size` IP bytes and `payload` transport payload bytes.
    pub fn push(&mut self, ts_ns: i64, dir: Direction, size: u32, payload: u32, l4: L4, flags: u8) {
        self.protocol = l4 as u8;
        self.dirs[0].push(ts_ns, size, payload, flags);
        self.dirs[1 + dir as usize].push(ts_ns, size, payload, flags);
        let d = dir as usize;
        if self.burst_dir != Some(dir) {
            self.burst_dir = Some(dir);
            self.burst_bytes = 0;
            self.bursts[d] += 1;
        }
        self.burst_packets[d] += 1;
        self.burst_bytes += size as u64;
        self.max_burst_bytes[d] = self.max_burst_bytes[d].max(self.burst_bytes);
    }

    /// Packets seen.
    pub fn packets(&self) -> u64 {
        self.dirs[0].packets
    }

    /// Append the statistics, in [`STATS`] order, to `out`.
    pub fn write(&self, out: &mut Vec<f32>) {
        self.visit(&mut |_, _, _, v| out.push(v as f32));
    }

    /// Every statistic as (name, kind, whether nfstream has it, value): the one place that
    /// defines them, so names and values cannot drift apart.
    fn visit(&self, f: &mut dyn FnMut(&str, StatKind, bool, f64)) {
        use StatKind::*;
        const DIRS: [&str; 3] = ["bidirectional", "src2dst", "dst2src"];
        const FLAGS: [&str; 8] = ["syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin"];
        let mut name = String::new();
        let mut put =
            |f: &mut dyn FnMut(&str, StatKind, bool, f64), dir: &str, what: &str, kind: StatKind, nf: bool, v: f64| {
                name.clear();
                name.push_str(dir);
                name.push('_');
                name.push_str(what);
                f(&name, kind, nf, v);
            };
        for (d, dir) in DIRS.iter().enumerate() {
            let s = &self.dirs[d];
            put(f, dir, "duration_ms", Millis, true, s.duration_ms());
            put(f, dir, "packets", Count, true, s.packets as f64);
            put(f, dir, "bytes", Bytes, true, s.bytes as f64);
            put(f, dir, "min_ps", Size, true, s.ps.min);
            put(f, dir, "mean_ps", Size, true, s.ps.mean);
            put(f, dir, "stddev_ps", Size, true, s.ps.stddev());
            put(f, dir, "max_ps", Size, true, s.ps.max);
            put(f, dir, "min_piat_ms", Millis, true, s.piat.min);
            put(f, dir, "mean_piat_ms", Millis, true, s.piat.mean);
            put(f, dir, "stddev_piat_ms", Millis, true, s.piat.stddev());
            put(f, dir, "max_piat_ms", Millis, true, s.piat.max);
            for (i, flag) in FLAGS.iter().enumerate() {
                put(f, dir, &format!("{flag}_packets"), Count, true, s.flags[i] as f64);
            }
        }
        // Beyond nfstream: payload volume, percentiles, bursts, shares and rates.
        for (d, dir) in DIRS.iter().enumerate() {
            let s = &self.dirs[d];
            put(f, dir, "payload_bytes", Bytes, false, s.payload_bytes as f64);
            put(f, dir, "zero_payload_packets", Count, false, s.zero_payload as f64);
            let mut sizes = s.sizes.clone();
            for p in [10, 25, 50, 75, 90] {
                put(
                    f,
                    dir,
                    &format!("p{p}_ps"),
                    Size,
                    false,
                    percentile(&mut sizes, p as f64),
                );
            }
            let mut gaps = s.gaps.clone();
            for p in [50, 90] {
                put(
                    f,
                    dir,
                    &format!("p{p}_piat_ms"),
                    Millis,
                    false,
                    percentile(&mut gaps, p as f64),
                );
            }
        }
        let all = &self.dirs[0];
        put(
            f,
            "bidirectional",
            "bursts",
            Count,
            false,
            (self.bursts[0] + self.bursts[1]) as f64,
        );
        for (d, dir) in ["src2dst", "dst2src"].iter().enumerate() {
            let mean = if self.bursts[d] == 0 {
                0.0
            } else {
                self.burst_packets[d] as f64 / self.bursts[d] as f64
            };
            put(f, dir, "mean_burst_packets", Count, false, mean);
            put(f, dir, "max_burst_bytes", Bytes, false, self.max_burst_bytes[d] as f64);
        }
        let share = |x: u64, of: u64| if of == 0 { 0.0 } else { x as f64 / of as f64 };
        put(
            f,
            "dst2src",
            "bytes_share",
            Share,
            false,
            share(self.dirs[2].bytes, all.bytes),
        );
        put(
            f,
            "dst2src",
            "packets_share",
            Share,
            false,
            share(self.dirs[2].packets, all.packets),
        );
        let secs = all.duration_ms() / 1e3;
        let rate = |x: u64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
        put(f, "bidirectional", "packets_per_s", Count, false, rate(all.packets));
        put(f, "bidirectional", "bytes_per_s", Bytes, false, rate(all.bytes));
        f("protocol", Protocol, true, self.protocol as f64);
    }
}

/// A flow's behaviour sample in the making.
#[derive(Debug, Clone, Default)]
pub struct BehaviourState {
    /// Series rows so far (`packets × channels` when complete).
    series: Vec<f32>,
    stats: FlowStats,
    packets: u64,
    /// Series packets with payload so far (those whose bytes were kept).
    payload_rows: u32,
    first_ns: i64,
    last_ns: i64,
    /// The statistics window is closed (no further packet counts).
    stats_closed: bool,
    decided: bool,
}

impl BehaviourState {
    /// Add a packet; returns the finished sample (and the packet it was decided at) when this
    /// packet completes it.
    pub fn add(&mut self, cfg: &BehaviourConfig, ts_ns: i64, dir: Direction, p: &Decoded<'_>) -> Option<Vec<f32>> {
        if self.decided {
            return None;
        }
        if self.packets == 0 {
            self.first_ns = ts_ns;
            self.last_ns = ts_ns;
        }
        let n = self.packets as usize;
        if n < cfg.packets as usize {
            self.push_row(cfg, ts_ns, dir, p);
        }
        if let Some(scope) = cfg.stats {
            let open = match scope {
                StatsScope::Flow => true,
                StatsScope::Series => n < cfg.packets as usize,
                StatsScope::Seconds { seconds } => {
                    let inside = ((ts_ns - self.first_ns) as f64) < seconds * 1e9;
                    if !inside {
                        self.stats_closed = true;
                    }
                    inside && !self.stats_closed
                }
            };
            if open {
                self.stats
                    .push(ts_ns, dir, p.ip_len as u32, p.payload_len as u32, p.l4, p.tcp_flags);
            }
        }
        self.packets += 1;
        self.last_ns = self.last_ns.max(ts_ns);
        let series_done = self.packets >= cfg.packets as u64;
        let stats_done = match cfg.stats {
            None | Some(StatsScope::Series) => true,
            Some(StatsScope::Flow) => false,
            Some(StatsScope::Seconds { .. }) => self.stats_closed,
        };
        if series_done && stats_done && self.packets >= cfg.min_packets as u64 {
            return Some(self.take(cfg));
        }
        None
    }

    /// The flow ended: its sample, if it was not decided yet and has enough packets.
    pub fn finish(&mut self, cfg: &BehaviourConfig) -> Option<Vec<f32>> {
        if self.decided || self.packets < cfg.min_packets as u64 {
            return None;
        }
        Some(self.take(cfg))
    }

    /// Packets of the flow seen so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn push_row(&mut self, cfg: &BehaviourConfig, ts_ns: i64, dir: Direction, p: &Decoded<'_>) {
        let iat_us = if self.packets == 0 {
            0.0
        } else {
            (ts_ns - self.last_ns).max(0) as f64 / 1e3
        };
        let flag = |b: u8| (p.tcp_flags & b != 0) as u8 as f32;
        self.series.extend_from_slice(&[
            1.0,
            if dir == Direction::Forward { 1.0 } else { -1.0 },
            p.ip_len as f32,
            p.payload_len as f32,
            iat_us as f32,
            flag(TCP_FIN),
            flag(TCP_SYN),
            flag(TCP_RST),
            flag(TCP_PSH),
            flag(TCP_ACK),
            flag(TCP_URG),
        ]);
        let k = cfg.payload_bytes as usize;
        if k > 0 {
            // The captured payload (the snap length may have cut it), zero-padded to K; only for
            // the first payload-carrying packets.
            let start = (p.l4_offset + p.l4_header_len).min(p.ip.len());
            let payload = &p.ip[start..];
            let mut take = payload.len().min(k).min(p.payload_len);
            if p.payload_len > 0 {
                if self.payload_rows >= cfg.payload_packets {
                    take = 0;
                }
                self.payload_rows += 1;
            }
            self.series.extend(payload[..take].iter().map(|&b| b as f32));
            self.series.extend(std::iter::repeat_n(0.0, k - take));
        }
    }

    fn take(&mut self, cfg: &BehaviourConfig) -> Vec<f32> {
        self.decided = true;
        let mut out = std::mem::take(&mut self.series);
        out.resize(cfg.series_len(), 0.0);
        if cfg.stats.is_some() {
            out.reserve(STATS.len());
            self.stats.write(&mut out);
        }
        self.stats = FlowStats::default();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4, 10], [10, 25, 50, 75, 90]) = [1.4, 2.0, 3.0, 4.0, 7.6]
        let mut v = vec![4.0, 1.0, 10.0, 3.0, 2.0];
        let got: Vec<f64> = [10.0, 25.0, 50.0, 75.0, 90.0]
            .iter()
            .map(|&p| percentile(&mut v, p))
            .collect();
        for (g, w) in got.iter().zip([1.4, 2.0, 3.0, 4.0, 7.6]) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
        assert_eq!(percentile(&mut [], 50.0), 0.0);
        assert_eq!(percentile(&mut [7.0], 90.0), 7.0);
    }

    #[test]
    fn moments_are_sample_moments() {
        let mut m = Moments::default();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.push(x);
        }
        assert_eq!((m.min, m.max), (2.0, 9.0));
        assert!((m.mean - 5.0).abs() < 1e-12);
        // Σ(x − 5)² = 32, over n − 1 = 7
        assert!((m.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn names_are_unique_and_match_the_values() {
        let names: std::collections::HashSet<&str> = STATS.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), STATS.len());
        let mut v = Vec::new();
        FlowStats::default().write(&mut v);
        assert_eq!(v.len(), STATS.len());
        assert!(names.contains("bidirectional_stddev_piat_ms"));
        assert!(names.contains("dst2src_fin_packets"));
    }
}
