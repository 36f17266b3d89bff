//! Traffic models: one function per behaviour, two app variants per category,
//! VPN tunnelling and background DNS.
//!
//! Every model draws its own parameters (RTT, rates, sizes, think times) per
//! flow, so a classifier has to learn the shape of a category rather than a
//! constant. A unit is what becomes one labelled flow: a plain flow, a DNS
//! exchange, or a VPN tunnel carrying a few inner flows.

use crate::rng::{self, exp, lognormal, ms, normal, rng_for, secs, size_ln, Rng};
use crate::sched::{Dir, Ev, Kind, Sched, Shape};
use crate::Category;
use rand::Rng as _;

/// Transport protocol of a labelled flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum L4 {
    Tcp,
    Udp,
}

/// VPN tunnel flavour, fixed per capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tunnel {
    OpenVpn,
    WireGuard,
}

impl Tunnel {
    pub(crate) fn port(self) -> u16 {
        match self {
            Tunnel::OpenVpn => 1194,
            Tunnel::WireGuard => 51820,
        }
    }
    /// Outer UDP payload length carrying an inner IP packet of `inner` bytes:
    /// header + ciphertext (WireGuard pads to 16) + 16-byte AEAD tag.
    fn wrap_len(self, inner: usize) -> usize {
        match self {
            Tunnel::OpenVpn => 8 + inner + 16,
            Tunnel::WireGuard => 16 + inner.div_ceil(16) * 16 + 16,
        }
    }
}

/// How a port is chosen when the file writer assigns endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortSel {
    Fixed(u16),
    /// Random even port in 10000..=65000 (RTP media).
    RandomHigh,
    /// Next port from the capture's ephemeral allocator.
    Ephemeral,
}

/// Static description of a synthetic app (one behaviour variant).
pub(crate) struct App {
    pub family: &'static str,
    pub ndpi_proto: &'static str,
    pub ndpi_category: &'static str,
}

const CHAT_A: App = App {
    family: "chat-a",
    ndpi_proto: "TLS",
    ndpi_category: "Chat",
};
const CHAT_B: App = App {
    family: "chat-b",
    ndpi_proto: "TLS",
    ndpi_category: "Chat",
};
const STREAM_A: App = App {
    family: "stream-a",
    ndpi_proto: "TLS",
    ndpi_category: "Media",
};
const STREAM_B: App = App {
    family: "stream-b",
    ndpi_proto: "QUIC",
    ndpi_category: "Media",
};
const VOIP_A: App = App {
    family: "voip-a",
    ndpi_proto: "RTP",
    ndpi_category: "VoIP",
};
const VOIP_B: App = App {
    family: "voip-b",
    ndpi_proto: "RTP",
    ndpi_category: "VoIP",
};
const FT_A: App = App {
    family: "transfer-a",
    ndpi_proto: "TLS",
    ndpi_category: "Download",
};
const FT_B: App = App {
    family: "transfer-b",
    ndpi_proto: "TLS",
    ndpi_category: "Download",
};
const WEB_A: App = App {
    family: "web-a",
    ndpi_proto: "TLS",
    ndpi_category: "Web",
};
const WEB_B: App = App {
    family: "web-b",
    ndpi_proto: "TLS",
    ndpi_category: "Web",
};

/// DNS question set of a background DNS flow (sizes depend on it).
#[derive(Clone, Debug)]
pub(crate) struct DnsSpec {
    /// Query name in wire format (length-prefixed labels, terminating zero).
    pub qname: Vec<u8>,
    /// (QTYPE, number of answers) per query sent on this flow.
    pub queries: Vec<(u16, u8)>,
}

pub(crate) const QTYPE_A: u16 = 1;
pub(crate) const QTYPE_AAAA: u16 = 28;

/// Everything about a labelled flow except its addresses and byte contents.
#[derive(Clone, Debug)]
pub(crate) struct UnitSpec {
    pub category: &'static str,
    pub app: &'static str,
    pub ndpi_proto: &'static str,
    pub ndpi_category: &'static str,
    pub encrypted: bool,
    pub vpn: bool,
    pub l4: L4,
    pub ipv6: bool,
    pub client_port: PortSel,
    pub server_port: PortSel,
    /// RTP payload type and timestamp increment per packet.
    pub rtp: (u8, u32),
    /// IPv4 TOS / IPv6 traffic class on client packets (EF for some VoIP).
    pub tos: u8,
    pub dns: Option<DnsSpec>,
    /// Browsing flows are started in page-load clusters by the file writer.
    pub clustered: bool,
    /// TCP MSS the schedule used (announced in the SYN options).
    pub mss: u16,
}

/// A labelled flow's spec and packet schedule.
pub(crate) struct Unit {
    pub spec: UnitSpec,
    pub ev: Vec<Ev>,
    /// Inner flows carried (1 unless a VPN tunnel).
    pub inner: u32,
}

/// Per-flow parameters returned by a model besides its events.
struct FlowInfo {
    app: &'static App,
    l4: L4,
    client_port: PortSel,
    server_port: PortSel,
    rtp: (u8, u32),
    tos: u8,
    clustered: bool,
    mss: u16,
}

impl FlowInfo {
    fn tls(app: &'static App) -> Self {
        Self {
            app,
            l4: L4::Tcp,
            client_port: PortSel::Ephemeral,
            server_port: PortSel::Fixed(443),
            rtp: (0, 0),
            tos: 0,
            clustered: false,
            mss: 0,
        }
    }
}

/// Inputs that fix a unit; identical at planning and writing time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UnitParams {
    pub seed: u64,
    pub class_key: u64,
    pub category: Category,
    pub vpn: bool,
    pub cap: usize,
    /// Most inner flows this VPN tunnel may carry (it carries 1..=limit).
    pub inner_limit: u32,
    pub tunnel: Tunnel,
    pub ipv6_fraction: f64,
}

/// Generates unit `ordinal` of a class.
pub(crate) fn gen_unit(p: &UnitParams, ordinal: u64) -> Unit {
    let mut rng = rng_for(p.seed, &[rng::S_UNIT, p.class_key, ordinal]);
    let ipv6 = rng.random_bool(p.ipv6_fraction);
    let variant_b = rng.random_bool(0.5);
    if p.vpn {
        return vpn_unit(&mut rng, p, ipv6, variant_b);
    }
    let mtu = if rng.random_bool(0.1) { 1492 } else { 1500 };
    let (info, ev) = gen_flow(&mut rng, p.category, variant_b, p.cap, mtu, ipv6);
    Unit {
        spec: UnitSpec {
            category: p.category.as_str(),
            app: info.app.family,
            ndpi_proto: info.app.ndpi_proto,
            ndpi_category: info.app.ndpi_category,
            encrypted: true,
            vpn: false,
            l4: info.l4,
            ipv6,
            client_port: info.client_port,
            server_port: info.server_port,
            rtp: info.rtp,
            tos: info.tos,
            dns: None,
            clustered: info.clustered,
            mss: info.mss,
        },
        ev,
        inner: 1,
    }
}

/// Runs the model of `cat` for one flow over an IP MTU of `mtu`.
fn gen_flow(rng: &mut Rng, cat: Category, b: bool, cap: usize, mtu: usize, ipv6: bool) -> (FlowInfo, Vec<Ev>) {
    let ip = if ipv6 { 40 } else { 20 };
    let quic = cat == Category::Streaming && b;
    let udp = cat == Category::Voip || quic;
    let mss = (mtu - ip - if udp { 8 } else { 20 }) as u16;
    let mut s = Sched::new(rng, cap, mss);
    let mut info = match cat {
        Category::Chat => chat(&mut s, b),
        Category::Streaming if quic => stream_quic(&mut s),
        Category::Streaming => stream_tcp(&mut s),
        Category::Voip => voip(&mut s, b),
        Category::FileTransfer => bulk(&mut s, b),
        Category::Browsing => web(&mut s, b),
    };
    info.mss = mss;
    (info, s.finish())
}

/// Chat: small TLS records both ways separated by seconds of think time,
/// typing indicators, read receipts, keepalives, occasional media.
fn chat(s: &mut Sched, b: bool) -> FlowInfo {
    let tls13 = b || s.rng.random_bool(0.3);
    let (msg_med, think_med, typing_p, image_p, image_med) = if b {
        (110.0, 1.6, 0.5, 0.03, 160e3)
    } else {
        (190.0, 3.0, 0.25, 0.06, 70e3)
    };
    let mut t = s.handshake(0);
    t = s.tls(t, tls13);
    // Login / sync burst.
    for _ in 0..s.rng.random_range(1..=3) {
        let len = size_ln(s.rng, 220.0, 0.5, 40, 1200) as usize;
        s.record(t, Dir::C2s, len, true);
        t += s.local_delay();
    }
    t += s.rtt;
    for _ in 0..s.rng.random_range(1..=4) {
        let len = size_ln(s.rng, 450.0, 0.9, 40, 6000) as usize;
        s.record(t, Dir::S2c, len, false);
        t += ms(s.rng.random_range(0.1..3.0));
    }
    while !s.full() {
        let think = lognormal(s.rng, think_med, 1.0).clamp(0.2, 90.0);
        if think > 20.0 {
            // App-level keepalive during long silences.
            let tk = t + secs(s.rng.random_range(10.0..think * 0.8));
            let len = s.rng.random_range(35..=60);
            s.record(tk, Dir::C2s, len, true);
            let len = s.rng.random_range(35..=60);
            s.record(tk + s.rtt, Dir::S2c, len, false);
        }
        t += secs(think);
        let dir = if s.rng.random_bool(0.45) { Dir::C2s } else { Dir::S2c };
        if s.rng.random_bool(typing_p) {
            for _ in 0..s.rng.random_range(1..=3) {
                let len = s.rng.random_range(33..=52);
                s.record(t, dir, len, false);
                t += secs(s.rng.random_range(0.3..2.5));
            }
        }
        if s.rng.random_bool(image_p) {
            let size = size_ln(s.rng, image_med, 0.8, 8_000, 900_000);
            let rate = lognormal(s.rng, 12e6, 0.6).clamp(1e6, 100e6);
            let rec = (size - 5).min(16_401) as u32;
            t = s.send(t, dir, size, rate, Shape::TlsApp, rec, true);
        } else {
            let mut len = size_ln(s.rng, msg_med, 0.6, 40, 2500) as usize;
            if b {
                len = len.div_ceil(16) * 16 + 5; // padded records
            }
            s.record(t, dir, len, false);
        }
        // Delivery receipt, sometimes followed by a read receipt.
        let tr = t + s.rtt + ms(lognormal(s.rng, 150.0, 0.8).clamp(5.0, 3000.0));
        let len = s.rng.random_range(35..=75);
        s.record(tr, dir.other(), len, false);
        if s.rng.random_bool(0.4) {
            let len = s.rng.random_range(35..=75);
            let tr2 = tr + secs(s.rng.random_range(0.5..8.0));
            s.record(tr2, dir.other(), len, false);
        }
    }
    let first = if s.rng.random_bool(0.5) { Dir::C2s } else { Dir::S2c };
    let rst = s.rng.random_bool(0.1);
    s.close(first, rst, 0);
    FlowInfo::tls(if b { &CHAT_B } else { &CHAT_A })
}

/// DASH-like streaming over TCP: a request, then a large downstream chunk
/// (slow-start flights, then line rate), a few chunks back to back to fill
/// the buffer, then one chunk every segment duration.
fn stream_tcp(s: &mut Sched) -> FlowInfo {
    let tls13 = s.rng.random_bool(0.7);
    let mut t = s.handshake(0);
    t = s.tls(t, tls13);
    let rate = lognormal(s.rng, 40e6, 0.5).clamp(6e6, 400e6);
    let seg_dur = [2.0, 4.0, 6.0][s.rng.random_range(0..3)];
    let chunk_med = lognormal(s.rng, 130e3, 0.35);
    let mut n = 0;
    while !s.full() {
        let t0 = t;
        let req = s.rng.random_range(300..=800);
        s.record(t, Dir::C2s, req, true);
        let tr = t + s.rtt + ms(lognormal(s.rng, 3.0, 0.8).clamp(0.2, 200.0));
        let size = size_ln(s.rng, chunk_med, 0.35, 15_000, 3_000_000);
        let rec = (size - 5).min(16_401) as u32;
        let end = s.send(tr, Dir::S2c, size, rate, Shape::TlsApp, rec, true);
        n += 1;
        t = if n < 3 {
            end + ms(s.rng.random_range(5.0..120.0))
        } else {
            end.max(t0 + secs(seg_dur * s.rng.random_range(0.85..1.15)))
        };
    }
    let rst = s.rng.random_bool(0.15);
    s.close(Dir::C2s, rst, 0);
    FlowInfo::tls(&STREAM_A)
}

/// Server-to-client QUIC data at `rate_bps` in packets of `max_pl`, client
/// ACK every `ack_every` packets. Returns the last packet's time.
fn quic_send(s: &mut Sched, t: u64, bytes: u64, rate_bps: f64, max_pl: usize, ack_every: u32) -> u64 {
    let gap = (max_pl as f64 * 8.0 / rate_bps * 1e9) as u64;
    let mut remaining = bytes;
    let mut t = t;
    let mut last = t;
    let mut since_ack = 0;
    while remaining > 0 && s.ev.len() + 2 <= s.cap {
        let pl = if remaining >= max_pl as u64 {
            max_pl
        } else {
            (remaining as usize + 30).min(max_pl)
        };
        s.udp(t, Dir::S2c, Shape::QuicShort, pl, 0);
        last = t;
        remaining = remaining.saturating_sub(pl as u64 - 30);
        since_ack += 1;
        if since_ack >= ack_every || remaining == 0 {
            since_ack = 0;
            let at = t + s.local_delay();
            let len = s.rng.random_range(30..=52);
            s.udp(at, Dir::C2s, Shape::QuicShort, len, 0);
        }
        t += (gap as f64 * s.rng.random_range(0.8..1.25)) as u64 + 1000;
    }
    last
}

/// Streaming over QUIC: long-header handshake packets, then short-header
/// request/response chunks with paced downstream data and sparse ACKs.
fn stream_quic(s: &mut Sched) -> FlowInfo {
    let max_pl = [1232usize, 1252, 1350][s.rng.random_range(0..3)].min(usize::from(s.mss));
    let ci = s.rng.random_range(1250..=1357).min(usize::from(s.mss));
    s.udp(0, Dir::C2s, Shape::QuicLong, ci, 0);
    let t1 = s.rtt + ms(lognormal(s.rng, 1.0, 0.6).clamp(0.1, 30.0));
    s.udp(t1, Dir::S2c, Shape::QuicLong, max_pl, 0);
    let hs = s.rng.random_range(400..=1100).min(max_pl);
    s.udp(t1 + 40_000, Dir::S2c, Shape::QuicLong, hs, 2);
    let t2 = t1 + 40_000 + s.local_delay();
    let len = s.rng.random_range(80..=160);
    s.udp(t2, Dir::C2s, Shape::QuicLong, len, 2);
    let mut t = t2 + s.local_delay();
    let rate = lognormal(s.rng, 35e6, 0.5).clamp(5e6, 400e6);
    let seg_dur = [2.0, 4.0, 5.0][s.rng.random_range(0..3)];
    let chunk_med = lognormal(s.rng, 110e3, 0.35);
    let ack_every = s.rng.random_range(2..=10);
    let mut n = 0;
    while s.ev.len() + 3 <= s.cap {
        let t0 = t;
        let req = s.rng.random_range(60..=220);
        s.udp(t, Dir::C2s, Shape::QuicShort, req, 0);
        let tr = t + s.rtt + ms(lognormal(s.rng, 3.0, 0.8).clamp(0.2, 200.0));
        let size = size_ln(s.rng, chunk_med, 0.35, 15_000, 3_000_000);
        let end = quic_send(s, tr, size, rate, max_pl, ack_every);
        n += 1;
        t = if n < 3 {
            end + ms(s.rng.random_range(5.0..120.0))
        } else {
            end.max(t0 + secs(seg_dur * s.rng.random_range(0.85..1.15)))
        };
    }
    if s.ev.len() < s.cap && s.rng.random_bool(0.5) {
        let len = s.rng.random_range(30..=60);
        let t = s.t_max + ms(s.rng.random_range(1.0..500.0));
        s.udp(t, Dir::C2s, Shape::QuicShort, len, 0);
    }
    FlowInfo {
        client_port: PortSel::Ephemeral,
        server_port: PortSel::Fixed(443),
        ..FlowInfo::tls(&STREAM_B)
    }
    .udp()
}

impl FlowInfo {
    fn udp(mut self) -> Self {
        self.l4 = L4::Udp;
        self
    }
}

/// VoIP: RTP every 20 ms both ways (talkspurts and quieter silence), network
/// jitter on the downstream, RTCP multiplexed every few seconds; variant b
/// starts with a STUN check and uses a constant-size G.711-like codec.
fn voip(s: &mut Sched, b: bool) -> FlowInfo {
    let ptime = ms(20.0);
    let (pt, step) = if b {
        if s.rng.random_bool(0.8) {
            (0u8, 160u32)
        } else {
            (9, 160)
        }
    } else {
        (111, 960)
    };
    let jitter_sd = lognormal(s.rng, 2.0, 0.6).clamp(0.3, 12.0);
    let mut t0 = 0;
    if b {
        let req = 20 + 4 * s.rng.random_range(4..=20);
        s.udp(0, Dir::C2s, Shape::StunReq, req, 0);
        let resp = 20 + 4 * s.rng.random_range(6..=15);
        s.udp(s.rtt, Dir::S2c, Shape::StunResp, resp, 0);
        t0 = s.rtt + ms(s.rng.random_range(5.0..60.0));
    }
    let s2c_offset = s.rtt / 2 + ms(s.rng.random_range(0.0..20.0));
    let mut talk = [s.rng.random_bool(0.5), s.rng.random_bool(0.5)];
    let mut switch = [0u64; 2];
    let mut next_rtcp = t0 + secs(s.rng.random_range(1.0..5.0));
    let mut k: u64 = 0;
    while s.ev.len() + 2 <= s.cap {
        let base = t0 + k * ptime;
        for d in [Dir::C2s, Dir::S2c] {
            let i = d.idx();
            if base >= switch[i] {
                talk[i] = !talk[i];
                let mean = if talk[i] { 2.0 } else { 1.2 };
                switch[i] = base + secs(exp(s.rng, mean).clamp(0.3, 10.0));
            }
            let len = match (b, talk[i]) {
                (true, _) => 160 + if s.rng.random_bool(0.02) { 4 } else { 0 },
                (false, true) => size_ln(s.rng, 95.0, 0.25, 45, 200) as usize,
                (false, false) => size_ln(s.rng, 48.0, 0.15, 30, 70) as usize,
            } + 12;
            let t = match d {
                Dir::C2s => base + normal(s.rng, 0.0, 0.2e6).abs() as u64,
                Dir::S2c => base + s2c_offset + normal(s.rng, 0.0, jitter_sd * 1e6).abs() as u64,
            };
            s.udp(t, d, Shape::Rtp, len, 0);
        }
        if base >= next_rtcp && s.ev.len() + 2 <= s.cap {
            let len = 4 * s.rng.random_range(13..=25);
            s.udp(base + 50_000, Dir::C2s, Shape::Rtcp, len, 0);
            let len = 4 * s.rng.random_range(13..=25);
            s.udp(base + s2c_offset + 70_000, Dir::S2c, Shape::Rtcp, len, 0);
            next_rtcp = base + secs(s.rng.random_range(4.0..6.0));
        }
        k += 1;
    }
    FlowInfo {
        app: if b { &VOIP_B } else { &VOIP_A },
        l4: L4::Udp,
        client_port: PortSel::RandomHigh,
        server_port: PortSel::RandomHigh,
        rtp: (pt, step),
        tos: if s.rng.random_bool(0.5) { 0xb8 } else { 0 },
        clustered: false,
        mss: 0,
    }
}

/// Bulk transfer: MTU-size segments one way (download for a, upload for b)
/// with slow start, occasional stalls, ACKs the other way.
fn bulk(s: &mut Sched, upload: bool) -> FlowInfo {
    let tls13 = s.rng.random_bool(0.6);
    let mut t = s.handshake(0);
    t = s.tls(t, tls13);
    let rate = if upload {
        lognormal(s.rng, 20e6, 0.6).clamp(2e6, 300e6)
    } else {
        lognormal(s.rng, 60e6, 0.6).clamp(5e6, 900e6)
    };
    let req = s.rng.random_range(350..=900);
    s.record(t, Dir::C2s, req, true);
    let dir = if upload {
        t += s.local_delay();
        Dir::C2s
    } else {
        t += s.rtt + ms(lognormal(s.rng, 5.0, 0.8).clamp(0.2, 300.0));
        Dir::S2c
    };
    let mut remaining = size_ln(s.rng, 20e6, 1.0, 200_000, 4_000_000_000);
    let mut first = true;
    while remaining > 0 && !s.full() {
        let piece = remaining.min(size_ln(s.rng, 2e6, 1.0, 100_000, 50_000_000));
        remaining -= piece;
        let (shape, rec) = if first {
            (Shape::TlsApp, 16_401)
        } else {
            (Shape::Random, 0)
        };
        let end = s.send(t, dir, piece, rate, shape, rec, first);
        first = false;
        t = end
            + if s.rng.random_bool(0.25) {
                ms(s.rng.random_range(30.0..400.0))
            } else {
                ms(0.05)
            };
    }
    if upload && !s.full() {
        let len = s.rng.random_range(100..=400);
        s.record(s.t_max + s.rtt, Dir::S2c, len, false);
    }
    let rst = s.rng.random_bool(0.05);
    s.close(Dir::C2s, rst, 0);
    FlowInfo::tls(if upload { &FT_B } else { &FT_A })
}

/// Browsing: one connection of a page load. Variant a is HTTP/1.1-like
/// (few sequential request/response pairs), b HTTP/2-like (bursts of small
/// requests, interleaved responses). Some connections close early.
fn web(s: &mut Sched, h2: bool) -> FlowInfo {
    let mut info = FlowInfo::tls(if h2 { &WEB_B } else { &WEB_A });
    info.clustered = true;
    let mut t = s.handshake(0);
    if s.rng.random_bool(0.08) {
        // Preconnect never used: closed after the handshake.
        let gap = secs(s.rng.random_range(0.2..10.0));
        let rst = s.rng.random_bool(0.5);
        s.close(Dir::C2s, rst, gap);
        return info;
    }
    let tls13 = h2 || s.rng.random_bool(0.5);
    t = s.tls(t, tls13);
    if h2 {
        let len = s.rng.random_range(60..=140);
        s.record(t, Dir::C2s, len, true);
        let len = s.rng.random_range(40..=90);
        s.record(t + s.rtt, Dir::S2c, len, false);
    }
    let rate = lognormal(s.rng, 30e6, 0.7).clamp(2e6, 500e6);
    let mean_req = if h2 { 8.0 } else { 3.0 };
    let n_req = (exp(s.rng, mean_req).ceil() as usize).clamp(1, 40);
    let mut done = 0;
    while done < n_req && !s.full() {
        let burst = if h2 {
            s.rng.random_range(1..=6).min(n_req - done)
        } else {
            1
        };
        let mut tr = t;
        for _ in 0..burst {
            let len = if h2 {
                s.rng.random_range(45..=320)
            } else {
                s.rng.random_range(350..=1100)
            };
            s.record(tr, Dir::C2s, len, true);
            tr += s.local_delay();
        }
        let mut tresp = tr + s.rtt + ms(lognormal(s.rng, 25.0, 1.0).clamp(1.0, 1500.0));
        for _ in 0..burst {
            let size = if h2 {
                size_ln(s.rng, 8e3, 1.4, 100, 2_000_000)
            } else {
                size_ln(s.rng, 15e3, 1.3, 150, 3_000_000)
            };
            let rec = (size.max(5) - 5).min(16_401) as u32;
            tresp = s.send(tresp, Dir::S2c, size, rate, Shape::TlsApp, rec, true) + 1000;
            if s.rng.random_bool(0.04) {
                // User navigated away mid-response.
                s.close(Dir::C2s, true, 0);
                return info;
            }
        }
        done += burst;
        let idle = if s.rng.random_bool(0.15) {
            secs(s.rng.random_range(2.0..20.0))
        } else {
            ms(lognormal(s.rng, 120.0, 1.0).clamp(5.0, 2000.0))
        };
        t = tresp + idle;
    }
    let (first, gap) = if s.rng.random_bool(0.6) {
        (Dir::S2c, secs(s.rng.random_range(4.0..16.0)))
    } else {
        (Dir::C2s, ms(s.rng.random_range(1.0..3000.0)))
    };
    let rst = s.rng.random_bool(0.1);
    s.close(first, rst, gap);
    info
}

/// A VPN tunnel (one UDP 5-tuple) carrying 1..=4 inner flows of the class's
/// category: tunnel handshake, then each inner IPv4 packet encrypted
/// (random bytes of the same length plus header and tag), plus keepalives.
fn vpn_unit(rng: &mut Rng, p: &UnitParams, ipv6: bool, b: bool) -> Unit {
    let k = rng.random_range(1..=p.inner_limit.max(1));
    let inner_mtu = [1360usize, 1380, 1400][rng.random_range(0..3)];
    let tunnel = p.tunnel;
    let mut s = Sched::new(rng, usize::MAX, 1400);
    let t_data = match tunnel {
        Tunnel::WireGuard => {
            s.udp(0, Dir::C2s, Shape::WgInit, 148, 0);
            s.udp(s.rtt, Dir::S2c, Shape::WgResp, 92, 0);
            let t = s.rtt + s.local_delay();
            s.udp(t, Dir::C2s, Shape::WgData, 32, 0);
            t
        }
        Tunnel::OpenVpn => openvpn_handshake(&mut s),
    };
    let mut app = None;
    let mut start = t_data + s.local_delay();
    for j in 0..k {
        if j > 0 {
            start += secs(exp(s.rng, 3.0).min(30.0));
        }
        let (info, ev) = gen_flow(s.rng, p.category, b, p.cap, inner_mtu, false);
        app = Some(info.app);
        for e in ev {
            let inner_len = 20 + e.kind.l4_header_len() + usize::from(e.len);
            let shape = match tunnel {
                Tunnel::OpenVpn => Shape::OvpnData,
                Tunnel::WireGuard => Shape::WgData,
            };
            s.udp(start + e.t, e.dir, shape, tunnel.wrap_len(inner_len), 0);
        }
    }
    s.ev.sort_by_key(|e| e.t);
    // Keepalives in idle gaps: OpenVPN pings both ways every 10 s,
    // WireGuard persistent keepalive every 25 s.
    let (every, both, len) = match tunnel {
        Tunnel::OpenVpn => (secs(10.0), true, tunnel.wrap_len(16)),
        Tunnel::WireGuard => (secs(25.0), false, tunnel.wrap_len(0)),
    };
    let mut extra = Vec::new();
    for w in s.ev.windows(2) {
        let mut t = w[0].t + every;
        while t < w[1].t {
            extra.push((t, Dir::C2s));
            if both {
                extra.push((t + s.rtt, Dir::S2c));
            }
            t += every;
        }
    }
    let shape = match tunnel {
        Tunnel::OpenVpn => Shape::OvpnData,
        Tunnel::WireGuard => Shape::WgData,
    };
    for (t, d) in extra {
        s.udp(t, d, shape, len, 0);
    }
    let ev = s.finish();
    let app = app.unwrap_or(&CHAT_A);
    Unit {
        spec: UnitSpec {
            category: p.category.as_str(),
            app: app.family,
            ndpi_proto: match tunnel {
                Tunnel::OpenVpn => "OpenVPN",
                Tunnel::WireGuard => "WireGuard",
            },
            ndpi_category: "VPN",
            encrypted: true,
            vpn: true,
            l4: L4::Udp,
            ipv6,
            client_port: PortSel::Ephemeral,
            server_port: PortSel::Fixed(tunnel.port()),
            rtp: (0, 0),
            tos: 0,
            dns: None,
            clustered: false,
            mss: 0,
        },
        ev,
        inner: k,
    }
}

/// OpenVPN control channel: hard reset exchange, TLS over P_CONTROL with
/// P_ACKs, push request/reply. Returns when the data channel may start.
fn openvpn_handshake(s: &mut Sched) -> u64 {
    const RESET_C: u32 = 7;
    const RESET_S: u32 = 8;
    const CONTROL: u32 = 4;
    const ACK: u32 = 5;
    // (direction, opcode, min len, max len, wait one RTT before this packet)
    let steps: [(Dir, u32, usize, usize, bool); 13] = [
        (Dir::C2s, RESET_C, 54, 90, false),
        (Dir::S2c, RESET_S, 54, 102, true),
        (Dir::C2s, ACK, 22, 60, false),
        (Dir::C2s, CONTROL, 300, 420, false),
        (Dir::S2c, CONTROL, 1100, 1250, true),
        (Dir::S2c, CONTROL, 1100, 1250, false),
        (Dir::S2c, CONTROL, 300, 900, false),
        (Dir::C2s, ACK, 22, 60, false),
        (Dir::C2s, CONTROL, 1100, 1250, false),
        (Dir::C2s, CONTROL, 300, 700, false),
        (Dir::S2c, CONTROL, 100, 350, true),
        (Dir::C2s, CONTROL, 80, 120, false),
        (Dir::S2c, CONTROL, 300, 500, true),
    ];
    let mut t = 0;
    for (d, op, lo, hi, wait) in steps {
        if wait {
            t += s.rtt;
        } else if t > 0 {
            t += s.local_delay();
        }
        let len = s.rng.random_range(lo..=hi);
        s.udp(t, d, Shape::OvpnCtrl, len, op);
    }
    t += s.local_delay();
    s.udp(t, Dir::C2s, Shape::OvpnCtrl, 22, ACK);
    t + s.local_delay()
}

/// Background DNS flow `j` of a file: one or two queries (A / AAAA) for a
/// made-up name under `.example` and their answers.
pub(crate) fn gen_dns(seed: u64, class_key: u64, file_idx: u64, j: u64, ipv6_fraction: f64) -> Unit {
    const WORDS: [&str; 8] = ["api", "cdn", "media", "chat", "files", "static", "edge", "img"];
    let mut rng = rng_for(seed, &[rng::S_DNS, class_key, file_idx, j]);
    let ipv6 = rng.random_bool(ipv6_fraction);
    let mut qname = Vec::with_capacity(40);
    let l1 = rng.random_range(3..=12);
    qname.push(l1 as u8);
    for _ in 0..l1 {
        let c = rng.random_range(0..36u8);
        qname.push(if c < 26 { b'a' + c } else { b'0' + c - 26 });
    }
    let w = WORDS[rng.random_range(0..WORDS.len())];
    let digits = rng.random_range(0..100u32);
    let l2 = format!("{w}{digits}");
    qname.push(l2.len() as u8);
    qname.extend_from_slice(l2.as_bytes());
    qname.push(7);
    qname.extend_from_slice(b"example");
    qname.push(0);
    let mut queries = vec![(QTYPE_A, rng.random_range(1..=3u8))];
    if rng.random_bool(0.5) {
        queries.push((QTYPE_AAAA, rng.random_range(1..=2u8)));
    } else if rng.random_bool(0.2) {
        queries[0] = (QTYPE_AAAA, rng.random_range(1..=2u8));
    }
    let rtt = ms(lognormal(&mut rng, 8.0, 0.9).clamp(0.4, 250.0));
    let mut ev = Vec::with_capacity(4);
    let qlen = 12 + qname.len() + 4;
    for (i, &(qtype, answers)) in queries.iter().enumerate() {
        let tq = i as u64 * rng.random_range(10_000..200_000);
        let rd = if qtype == QTYPE_A { 4 } else { 16 };
        let rlen = qlen + usize::from(answers) * (12 + rd);
        let tr = tq + rtt + rng.random_range(0..500_000);
        for (t, dir, shape, len) in [
            (tq, Dir::C2s, Shape::DnsQuery, qlen),
            (tr, Dir::S2c, Shape::DnsResp, rlen),
        ] {
            ev.push(Ev {
                t,
                unit: 0,
                aux: i as u32,
                len: len as u16,
                dir,
                kind: Kind::Udp,
                shape,
            });
        }
    }
    ev.sort_by_key(|e| e.t);
    Unit {
        spec: UnitSpec {
            category: "dns",
            app: "dns",
            ndpi_proto: "DNS",
            ndpi_category: "Network",
            encrypted: false,
            vpn: false,
            l4: L4::Udp,
            ipv6,
            client_port: PortSel::Ephemeral,
            server_port: PortSel::Fixed(53),
            rtp: (0, 0),
            tos: 0,
            dns: Some(DnsSpec { qname, queries }),
            clustered: false,
            mss: 0,
        },
        ev,
        inner: 0,
    }
}
