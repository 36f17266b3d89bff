//! Packet schedules: what each flow sends, when, and how big, with no bytes.
//!
//! Flows are first described as a list of [`Ev`] (time, direction, TCP kind,
//! payload length, payload shape). Sizes are therefore known before any byte
//! is produced, which lets the planner hit a byte budget exactly and lets the
//! writer build each packet just before it goes to disk.

use crate::rng::{lognormal, ms, Rng};
use rand::Rng as _;

/// Direction relative to the capturing client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    C2s = 0,
    S2c = 1,
}

impl Dir {
    pub(crate) fn idx(self) -> usize {
        self as usize
    }
    pub(crate) fn other(self) -> Dir {
        match self {
            Dir::C2s => Dir::S2c,
            Dir::S2c => Dir::C2s,
        }
    }
}

/// Transport-level packet kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Syn,
    SynAck,
    /// ACK, with PSH when it carries payload.
    Ack,
    /// FIN|ACK.
    Fin,
    /// RST|ACK.
    Rst,
    Udp,
}

impl Kind {
    /// Transport header length (SYNs carry 12 bytes of options).
    pub(crate) fn l4_header_len(self) -> usize {
        match self {
            Kind::Syn | Kind::SynAck => 32,
            Kind::Ack | Kind::Fin | Kind::Rst => 20,
            Kind::Udp => 8,
        }
    }
}

/// How the payload bytes look; the writer fills them accordingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No payload.
    None,
    /// Opaque ciphertext (also TLS record continuation segments).
    Random,
    TlsClientHello,
    /// First server flight; `aux` = 1 for TLS 1.3, 0 for TLS 1.2.
    TlsServerHello,
    /// Client's last handshake flight; `aux` as above.
    TlsClientFinish,
    /// TLS 1.2 server ChangeCipherSpec + Finished.
    TlsServerFinish,
    /// Application-data record header; `aux` = record length field.
    TlsApp,
    /// QUIC long header; `aux` = packet type (0 Initial, 2 Handshake).
    QuicLong,
    QuicShort,
    Rtp,
    Rtcp,
    StunReq,
    StunResp,
    /// DNS message; `aux` = query index within the flow.
    DnsQuery,
    DnsResp,
    /// OpenVPN control-channel packets; `aux` = opcode.
    OvpnCtrl,
    OvpnData,
    WgInit,
    WgResp,
    WgData,
}

/// One scheduled packet. `t` is relative to the flow start until the file
/// writer rebases it; `unit` is the flow's index within its file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ev {
    pub t: u64,
    pub unit: u32,
    pub aux: u32,
    pub len: u16,
    pub dir: Dir,
    pub kind: Kind,
    pub shape: Shape,
}

/// Schedule under construction plus the knobs shared by all TCP models.
pub(crate) struct Sched<'r> {
    pub rng: &'r mut Rng,
    pub ev: Vec<Ev>,
    /// Packet budget for the flow (`max_packets_per_flow`).
    pub cap: usize,
    /// Round-trip time as seen from the client, ns.
    pub rtt: u64,
    /// Maximum segment / datagram payload for this flow.
    pub mss: u16,
    /// Latest timestamp scheduled so far.
    pub t_max: u64,
    /// Index in `ev` where the teardown starts, if the flow was closed.
    teardown: Option<usize>,
}

/// Packets kept back for the TCP teardown so a capped flow still closes.
pub(crate) const TEARDOWN_RESERVE: usize = 3;

impl<'r> Sched<'r> {
    pub(crate) fn new(rng: &'r mut Rng, cap: usize, mss: u16) -> Self {
        let rtt = ms(lognormal(rng, 35.0, 0.6).clamp(3.0, 350.0));
        Self {
            rng,
            ev: Vec::with_capacity(cap.min(4096) + 8),
            cap,
            rtt,
            mss,
            t_max: 0,
            teardown: None,
        }
    }

    /// Whether the application phase must stop to leave room for teardown.
    pub(crate) fn full(&self) -> bool {
        self.ev.len() + TEARDOWN_RESERVE >= self.cap
    }

    pub(crate) fn push(&mut self, t: u64, dir: Dir, kind: Kind, shape: Shape, len: usize, aux: u32) {
        debug_assert!(len <= usize::from(u16::MAX));
        self.t_max = self.t_max.max(t);
        self.ev.push(Ev {
            t,
            unit: 0,
            aux,
            len: len as u16,
            dir,
            kind,
            shape,
        });
    }

    pub(crate) fn udp(&mut self, t: u64, dir: Dir, shape: Shape, len: usize, aux: u32) {
        self.push(t, dir, Kind::Udp, shape, len, aux);
    }

    /// Small client-side processing delay (capture sits on the client).
    pub(crate) fn local_delay(&mut self) -> u64 {
        ms(lognormal(self.rng, 0.15, 0.6).clamp(0.02, 2.0))
    }

    /// Receive-side ACK time for a segment seen at `t` going `dir`: the client
    /// ACKs right away, the server's ACK reaches the client an RTT later.
    fn ack_time(&mut self, t: u64, dir: Dir) -> u64 {
        match dir {
            Dir::S2c => t + self.local_delay(),
            Dir::C2s => t + self.rtt + self.local_delay(),
        }
    }

    /// SYN, SYN/ACK, ACK. Returns the time the client may send data.
    pub(crate) fn handshake(&mut self, t: u64) -> u64 {
        self.push(t, Dir::C2s, Kind::Syn, Shape::None, 0, 0);
        let t1 = t + self.rtt;
        self.push(t1, Dir::S2c, Kind::SynAck, Shape::None, 0, 0);
        let t2 = t1 + self.local_delay();
        self.push(t2, Dir::C2s, Kind::Ack, Shape::None, 0, 0);
        t2 + self.local_delay()
    }

    /// TLS handshake shapes. Returns when application data may start.
    pub(crate) fn tls(&mut self, t: u64, tls13: bool) -> u64 {
        let ch = if self.rng.random_bool(0.5) {
            517
        } else {
            self.rng.random_range(240..=700)
        }
        .min(usize::from(self.mss));
        self.push(t, Dir::C2s, Kind::Ack, Shape::TlsClientHello, ch, 0);
        let think = ms(lognormal(self.rng, 2.0, 0.7).clamp(0.2, 40.0));
        let t_sh = t + self.rtt + think;
        let flight = if tls13 {
            lognormal(self.rng, 3000.0, 0.4).clamp(1200.0, 9000.0)
        } else {
            lognormal(self.rng, 3800.0, 0.4).clamp(1500.0, 9000.0)
        } as u64;
        let end = self.send(
            t_sh,
            Dir::S2c,
            flight,
            2e8,
            Shape::TlsServerHello,
            ((flight as u32) << 1) | u32::from(tls13),
            false,
        );
        let t_cf = end + self.local_delay();
        if tls13 {
            let len = if self.rng.random_bool(0.7) { 64 } else { 80 };
            self.push(t_cf, Dir::C2s, Kind::Ack, Shape::TlsClientFinish, len, 1);
            // NewSessionTicket(s) arrive one RTT later.
            let tk = self.rng.random_range(230..=560);
            let t_tk = t_cf + self.rtt;
            self.push(t_tk, Dir::S2c, Kind::Ack, Shape::TlsApp, tk, (tk - 5) as u32);
            let ack = self.ack_time(t_tk, Dir::S2c);
            self.push(ack, Dir::C2s, Kind::Ack, Shape::None, 0, 0);
            t_cf + self.local_delay()
        } else {
            self.push(t_cf, Dir::C2s, Kind::Ack, Shape::TlsClientFinish, 93, 0);
            let t_sf = t_cf + self.rtt;
            self.push(t_sf, Dir::S2c, Kind::Ack, Shape::TlsServerFinish, 51, 0);
            t_sf + self.local_delay()
        }
    }

    /// Sends `bytes` from `dir` as MSS-sized segments at about `rate_bps`,
    /// with delayed ACKs every second segment from the receiver and, when
    /// `slow_start`, initial-window flights separated by an RTT. The first
    /// segment gets `first_shape`/`aux`; later ones are opaque. Stops early
    /// when the packet budget runs out. Returns the last segment's time.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &mut self,
        t: u64,
        dir: Dir,
        bytes: u64,
        rate_bps: f64,
        first_shape: Shape,
        aux: u32,
        slow_start: bool,
    ) -> u64 {
        let mss = u64::from(self.mss);
        let seg_gap = (mss as f64 * 8.0 / rate_bps * 1e9) as u64;
        let mut remaining = bytes.max(1);
        let mut t = t;
        let mut last = t;
        let mut cwnd: u64 = if slow_start { 10 } else { u64::MAX };
        let mut first = true;
        let mut unacked = 0;
        while remaining > 0 && !self.full() {
            let flight_start = t;
            let mut n = 0;
            while remaining > 0 && n < cwnd && !self.full() {
                let seg = remaining.min(mss);
                let (shape, a) = if first { (first_shape, aux) } else { (Shape::Random, 0) };
                first = false;
                self.push(t, dir, Kind::Ack, shape, seg as usize, a);
                last = t;
                remaining -= seg;
                n += 1;
                unacked += 1;
                if unacked == 2 || remaining == 0 {
                    unacked = 0;
                    let at = self.ack_time(t, dir);
                    self.push(at, dir.other(), Kind::Ack, Shape::None, 0, 0);
                }
                let jitter = self.rng.random_range(0.7..1.4);
                t += (seg_gap as f64 * jitter) as u64 + 1000;
            }
            if slow_start && cwnd != u64::MAX {
                if t - flight_start < self.rtt {
                    t = flight_start + self.rtt;
                    cwnd *= 2;
                } else {
                    cwnd = u64::MAX;
                }
            }
        }
        last
    }

    /// One TLS record of `len` bytes (split if above the MSS); the receiver
    /// ACKs it unless `piggyback` (a reply follows quickly).
    pub(crate) fn record(&mut self, t: u64, dir: Dir, len: usize, piggyback: bool) -> u64 {
        if len > usize::from(self.mss) {
            let rec = (len - 5).min(16_401) as u32;
            return self.send(t, dir, len as u64, 5e7, Shape::TlsApp, rec, false);
        }
        self.push(t, dir, Kind::Ack, Shape::TlsApp, len, (len.max(5) - 5) as u32);
        if !piggyback {
            // Delayed ACK: up to ~40 ms on the client, an RTT away for the server.
            let at = match dir {
                Dir::S2c => t + ms(self.rng.random_range(0.1..40.0)),
                Dir::C2s => t + self.rtt + ms(self.rng.random_range(0.05..5.0)),
            };
            self.push(at, dir.other(), Kind::Ack, Shape::None, 0, 0);
        }
        t
    }

    /// FIN/ACK exchange started by `first` (or a single RST), `gap` plus a
    /// little after everything scheduled so far.
    pub(crate) fn close(&mut self, first: Dir, rst: bool, gap: u64) {
        let t = self.t_max + gap + ms(lognormal(self.rng, 5.0, 1.0).clamp(0.05, 3000.0));
        self.teardown = Some(self.ev.len());
        if rst {
            self.push(t, first, Kind::Rst, Shape::None, 0, 0);
            return;
        }
        self.push(t, first, Kind::Fin, Shape::None, 0, 0);
        match first {
            Dir::C2s => {
                let t1 = t + self.rtt;
                self.push(t1, Dir::S2c, Kind::Fin, Shape::None, 0, 0);
                let t2 = t1 + self.local_delay();
                self.push(t2, Dir::C2s, Kind::Ack, Shape::None, 0, 0);
            }
            Dir::S2c => {
                let t1 = t + self.local_delay();
                self.push(t1, Dir::C2s, Kind::Fin, Shape::None, 0, 0);
                let t2 = t1 + self.rtt;
                self.push(t2, Dir::S2c, Kind::Ack, Shape::None, 0, 0);
            }
        }
    }

    /// Sorts by time (stable, so same-time packets keep causal order) and
    /// applies the packet cap. A closed flow that overshot the cap loses its
    /// latest application packets rather than its FIN/RST, so capped flows
    /// still end like real connections.
    pub(crate) fn finish(mut self) -> Vec<Ev> {
        if let Some(td) = self.teardown {
            let n_td = self.ev.len() - td;
            if self.ev.len() > self.cap && n_td < self.cap {
                let tail = self.ev.split_off(td);
                self.ev.sort_by_key(|e| e.t);
                self.ev.truncate(self.cap - n_td);
                self.ev.extend(tail);
            }
        }
        self.ev.sort_by_key(|e| e.t);
        self.ev.truncate(self.cap);
        self.ev
    }
}
