//! Deep Packet packet vectors (Lotfollahi et al., "Deep Packet", Soft Computing 2020, §4.1).
//!
//! Paper steps, in order: the link-layer header is gone (we start at the IP header); the UDP
//! header is zero-padded to 20 bytes so UDP and TCP payloads start at the same offset; TCP
//! segments with SYN, ACK or FIN set and no payload are dropped, and so is DNS; the IP packet is
//! cut or zero-padded to 1500 bytes; IP addresses are masked (zeroed).
//!
//! Beyond the paper (`Masking::Honest`, the default): every header field that identifies a
//! flow or a host rather than the traffic is zeroed too — ports, IPv4 ID, TTL / hop limit,
//! IPv6 flow label, IP and TCP/UDP checksums, TCP sequence and acknowledgement numbers and TCP
//! timestamp option values. Without this a classifier can learn flows instead of applications
//! (see the evaluation notes: ports alone identify most ISCX apps).

use serde::{Deserialize, Serialize};

use crate::decode::{Decoded, L4, TCP_ACK, TCP_FIN, TCP_SYN};

/// Length of a Deep Packet vector.
pub const VECTOR_LEN: usize = 1500;
/// Zero bytes inserted after the 8-byte UDP header to reach TCP's 20.
const UDP_PAD: usize = 12;

/// Which header fields are zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Masking {
    /// IP addresses only: the paper's exact steps (`--paper`).
    Paper,
    /// IP addresses plus every flow/host identifying field (default).
    #[default]
    Honest,
}

/// Settings of the Deep Packet step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeepPacketConfig {
    pub masking: Masking,
}

/// Why the paper's rules drop a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DpDrop {
    /// TCP with SYN, ACK or FIN set and no payload (handshake, pure ACKs, teardown).
    TcpNoPayload,
    /// DNS (port 53, either transport).
    Dns,
}

impl DpDrop {
    pub fn describe(self) -> &'static str {
        match self {
            DpDrop::TcpNoPayload => "TCP SYN/ACK/FIN segment without payload (Deep Packet rule)",
            DpDrop::Dns => "DNS (Deep Packet rule)",
        }
    }
}

/// The paper's drop rules, separate from vectorisation so counts can be reported.
pub fn drop_reason(p: &Decoded<'_>) -> Option<DpDrop> {
    if p.src_port == 53 || p.dst_port == 53 {
        return Some(DpDrop::Dns);
    }
    if p.l4 == L4::Tcp && p.payload_len == 0 && p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_FIN) != 0 {
        return Some(DpDrop::TcpNoPayload);
    }
    None
}

/// Write the vector of `p` into `out` (1500 bytes). Returns `Err` with the drop reason for
/// packets the paper's rules remove; `out` is then unspecified.
pub fn vectorize(p: &Decoded<'_>, cfg: &DeepPacketConfig, out: &mut [u8; VECTOR_LEN]) -> Result<(), DpDrop> {
    if let Some(d) = drop_reason(p) {
        return Err(d);
    }
    let ip = p.ip;
    let l4_end = (p.l4_offset + p.l4_header_len).min(ip.len());
    let copied;
    match p.l4 {
        L4::Tcp => {
            copied = ip.len().min(VECTOR_LEN);
            out[..copied].copy_from_slice(&ip[..copied]);
        }
        L4::Udp => {
            // IP header + 8-byte UDP header, 12 zero bytes, then the payload.
            let head = l4_end.min(VECTOR_LEN);
            out[..head].copy_from_slice(&ip[..head]);
            let pad_end = (head + UDP_PAD).min(VECTOR_LEN);
            out[head..pad_end].fill(0);
            let room = VECTOR_LEN - pad_end;
            let rest = (ip.len() - l4_end).min(room);
            out[pad_end..pad_end + rest].copy_from_slice(&ip[l4_end..l4_end + rest]);
            copied = pad_end + rest;
        }
    }
    out[copied..].fill(0);
    mask(p, cfg.masking, out);
    Ok(())
}

/// Zero the fields of `masking` in a vector built from `p` (offsets are those of `p.ip`; the
/// UDP padding comes after all masked fields, so no shift is needed).
fn mask(p: &Decoded<'_>, masking: Masking, out: &mut [u8; VECTOR_LEN]) {
    let z = |out: &mut [u8; VECTOR_LEN], a: usize, b: usize| {
        let (a, b) = (a.min(VECTOR_LEN), b.min(VECTOR_LEN));
        out[a..b].fill(0);
    };
    let honest = masking == Masking::Honest;
    if p.ip_version == 4 {
        z(out, 12, 20); // source and destination address
        if honest {
            z(out, 4, 6); // identification
            z(out, 8, 9); // TTL
            z(out, 10, 12); // header checksum
        }
    } else {
        z(out, 8, 40); // source and destination address
        if honest {
            out[1] &= 0xf0; // flow label (low nibble of byte 1 and bytes 2..4)
            z(out, 2, 4);
            z(out, 7, 8); // hop limit
        }
    }
    if !honest {
        return;
    }
    let l4 = p.l4_offset;
    z(out, l4, l4 + 4); // ports
    match p.l4 {
        L4::Udp => z(out, l4 + 6, l4 + 8), // checksum
        L4::Tcp => {
            z(out, l4 + 4, l4 + 12); // sequence and acknowledgement numbers
            z(out, l4 + 16, l4 + 18); // checksum
            mask_tcp_timestamps(p, out);
        }
    }
}

/// Zero TSval/TSecr of the TCP timestamp option: they count per host and identify flows.
fn mask_tcp_timestamps(p: &Decoded<'_>, out: &mut [u8; VECTOR_LEN]) {
    let start = p.l4_offset + 20;
    let end = (p.l4_offset + p.l4_header_len).min(p.ip.len()).min(VECTOR_LEN);
    let mut i = start;
    while i < end {
        match p.ip[i] {
            0 => break,
            1 => i += 1,
            kind => {
                if i + 1 >= end {
                    break;
                }
                let len = p.ip[i + 1] as usize;
                if len < 2 {
                    break;
                }
                if kind == 8 && len == 10 && i + 10 <= end {
                    out[i + 2..i + 10].fill(0);
                }
                i += len;
            }
        }
    }
}
