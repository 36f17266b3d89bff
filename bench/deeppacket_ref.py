#!/usr/bin/env python3
"""Python/dpkt reference implementation of privpkt's Deep Packet step.

    python bench/deeppacket_ref.py <captures or dirs> --labels flows_labels.csv \
        --label-column category --out DIR [--decoder raw|dpkt] [--paper] [--max-per-flow N]

Writes DIR/vectors.npy ((N, 1500) uint8), DIR/index.csv (one row per vector: capture, flow
id, label, ...) and DIR/summary.json, and prints a JSON summary (decoder, files, bytes, packets,
samples, seconds, MB/s, packets/s, peak RSS, skip counters).

The spec is privpkt's Rust code (crates/capture/src/{reader,decode,flow,extract,deeppacket}.rs,
crates/dataset/src/labels.rs); every rule below names the place it mirrors. One process, files one
after the other in file-name order, no multiprocessing, no deliberately slow code.

Two decoders feed the same flow table, labels, per-flow cap, drop rules, UDP padding, masking and
output:

--decoder raw (default): the correctness check. An independent second implementation whose vectors
must be byte-identical to privpkt's. dpkt only parses the classic pcap file header here; the
per-record loops and the frame -> IP -> TCP/UDP decoding are written on raw bytes with `struct`,
because the stock dpkt paths would change the output: dpkt.pcapng.Reader applies the first
interface's link type and time resolution to every packet (the nDPI corpus mixes ns and us
interfaces in one file), dpkt's iterators cannot skip a corrupt or truncated record, and dpkt's
protocol classes decode things privpkt does not (MPLS, bad IPv4 version nibbles) and rewrite
fields when re-serialised.

--decoder dpkt: the throughput baseline, "what a researcher would write with dpkt":
dpkt.pcap.Reader / dpkt.pcapng.Reader iteration and dpkt's protocol classes (dpkt_packets below).
Its vectors equal privpkt's on ordinary captures and differ, by design, where dpkt decides
differently (see bench/README.md).
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import os
import resource
import struct
import sys
import time

import dpkt
import numpy as np

VECTOR_LEN = 1500
UDP_PAD = 12
TCP, UDP = dpkt.ip.IP_PROTO_TCP, dpkt.ip.IP_PROTO_UDP  # 6, 17
FIN, SYN, RST, ACK = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK
# reader.rs
MAX_RECORD = 262_144
MAX_BLOCK = 16 * 1024 * 1024
RESYNC_WINDOW = 8 << 20
I64_MAX, I64_MIN, U64_MASK = (1 << 63) - 1, -(1 << 63), (1 << 64) - 1

PCAP_LE = {b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x34\xcd\xb2\xa1"}
PCAP_BE = {b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d", b"\xa1\xb2\xcd\x34"}
PCAP_NANO = {b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
PCAP_MODIFIED = {b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
ALL_MAGICS = PCAP_LE | PCAP_BE | {PCAPNG_MAGIC}

Z2, Z4, Z8, Z10, Z12, Z32 = bytes(2), bytes(4), bytes(8), bytes(10), bytes(12), bytes(32)


class Stats:
    """Per-file counters (a subset of privpkt's ReadReport / ExtractReport)."""

    __slots__ = ("records", "skipped", "stopped_early", "tcp_udp", "flows", "labelled_flows",
                 "labelled_packets", "dropped_by_rule", "capped", "samples", "interfaces")

    def __init__(self):
        self.interfaces = []  # pcapng, raw decoder: [link type, units per second, offset s]
        self.records = 0
        self.skipped = {}
        self.stopped_early = None
        self.tcp_udp = 0
        self.flows = 0
        self.labelled_flows = 0
        self.labelled_packets = 0
        self.dropped_by_rule = 0
        self.capped = 0
        self.samples = 0

    def skip(self, why):
        self.skipped[why] = self.skipped.get(why, 0) + 1


# --------------------------------------------------------------------------------------------
# Capture reading (reader.rs): generators of (ts_ns, linktype, frame bytes)
# --------------------------------------------------------------------------------------------

def iter_pcap(f, head, st):
    """Classic pcap. ts_ns = sec * 1e9 + (frac % limit) * (1 or 1000), as reader.rs."""
    f.seek(0)
    hdr = dpkt.pcap.Reader(f)  # validates the magic, parses the 24-byte file header
    magic = head[:4]
    e = ">" if magic in PCAP_BE else "<"
    nanos = magic in PCAP_NANO
    rec = 24 if magic in PCAP_MODIFIED else 16
    # the top bits of the link type field carry FCS information: masked (reader.rs)
    linktype = hdr.datalink() & 0x0FFFFFFF
    frac_limit = 1_000_000_000 if nanos else 1_000_000
    mult = 1 if nanos else 1000
    unpack = struct.Struct(e + "IIII").unpack_from
    f.seek(24)
    read = f.read
    last_ts = None
    pos = 24
    while True:
        h = read(rec)
        if len(h) < rec:
            if h:
                st.skip("truncated record header at end of file")
                st.stopped_early = f"file ends inside a record header at byte {pos}"
            return
        sec, frac, caplen, _orig = unpack(h)
        if caplen > MAX_RECORD:
            st.skip("corrupt record header")
            new = resync_pcap(f, pos, rec, unpack, last_ts, frac_limit, st)
            if new is None:
                st.stopped_early = f"no readable record found after corrupt header at byte {pos}"
                return
            pos = new
            f.seek(pos)
            continue
        data = read(caplen)
        if len(data) < caplen:
            st.skip("truncated record at end of file")
            st.stopped_early = f"file ends inside the record at byte {pos}"
            return
        pos += rec + caplen
        last_ts = sec
        yield sec * 1_000_000_000 + (frac % frac_limit) * mult, linktype, data


def resync_pcap(f, pos, rec, unpack, last_ts, frac_limit, st):
    """reader.rs resync_pcap: scan forward byte by byte for a plausible record header that is
    followed by another plausible one (or by the exact end of the file)."""
    f.seek(pos)
    want = RESYNC_WINDOW + 2 * (rec + MAX_RECORD)
    buf = f.read(want)
    at_eof = len(buf) < want
    n = len(buf)

    def plausible(o):
        ts, frac, cap, orig = unpack(buf, o)
        return (cap <= MAX_RECORD and orig <= MAX_RECORD and cap <= orig and orig > 0
                and frac < frac_limit and (last_ts is None or abs(ts - last_ts) <= 86_400))

    i = 1
    while i < RESYNC_WINDOW:
        if n - i < rec:
            break
        if plausible(i):
            nxt = rec + unpack(buf, i)[2]
            if n - i >= nxt + rec:
                ok = plausible(i + nxt)
            else:
                ok = at_eof and n - i == nxt
            if ok:
                return pos + i
        i += 1
    return None


def iter_pcapng(f, st):
    """pcapng with per-interface link types, time resolutions and offsets, several sections,
    simple packet blocks, and resynchronisation after corrupt blocks (reader.rs read_pcapng)."""
    f.seek(0)
    read = f.read
    be = False
    ifaces = []  # (linktype, units per second, offset in ns)
    pos = 0
    u32 = struct.Struct("<I").unpack_from
    hdr = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIII").unpack_from
    while True:
        h = read(12)
        if len(h) < 12:
            if h:
                st.skip("truncated block header at end of file")
                st.stopped_early = f"file ends inside a block header at byte {pos}"
            return
        if h[:4] == PCAPNG_MAGIC:
            be = h[8:12] == b"\x1a\x2b\x3c\x4d"
            e = ">" if be else "<"
            u32 = struct.Struct(e + "I").unpack_from
            hdr = struct.Struct(e + "II").unpack_from
            epb = struct.Struct(e + "IIIII").unpack_from
        btype, blen = hdr(h)
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            st.skip("corrupt block length")
            new = resync_pcapng(f, pos, u32, st)
            if new is None:
                st.stopped_early = f"no readable block found after corrupt block at byte {pos}"
                return
            pos = new
            f.seek(pos)
            continue
        body = read(blen - 12)
        if len(body) < blen - 12:
            st.skip("truncated block at end of file")
            st.stopped_early = f"file ends inside a block at byte {pos}"
            return
        block = h + body
        if u32(block, blen - 4)[0] != blen:
            st.skip("block trailer length does not match header")
            new = resync_pcapng(f, pos, u32, st)
            if new is None:
                st.stopped_early = f"no readable block found after corrupt block at byte {pos}"
                return
            pos = new
            f.seek(pos)
            continue
        pos += blen
        if btype == 6:  # enhanced packet block
            if blen < 32:
                st.skip("unparseable block")
                continue
            if_id, ts_hi, ts_lo, caplen, _orig = epb(block, 8)
            if ((caplen + 3) & ~3) > blen - 32:
                st.skip("unparseable block")
                continue
            if if_id >= len(ifaces):
                st.skip("packet for an undefined interface")
                continue
            lt, res, off_ns = ifaces[if_id]
            ns = ((ts_hi << 32) | ts_lo) * 1_000_000_000 // res
            if ns > I64_MAX:  # reader.rs: `as i64` keeps the low 64 bits
                ns &= U64_MASK
                if ns > I64_MAX:
                    ns -= 1 << 64
            ns += off_ns
            if ns > I64_MAX or ns < I64_MIN:  # saturating_add
                ns = I64_MAX if ns > 0 else I64_MIN
            yield ns, lt, block[28:28 + caplen]
        elif btype == 0x0A0D0D0A:  # section header block
            if blen >= 28:
                ifaces = []
            else:
                st.skip("unparseable block")
        elif btype == 1:  # interface description block
            if blen < 20:
                st.skip("unparseable block")
                continue
            lt = struct.unpack_from(">H" if be else "<H", block, 8)[0] & 0x0FFFFFFF
            tsresol, offset_s = 6, 0
            o, end = 16, blen - 4
            oh = struct.Struct(">HH" if be else "<HH").unpack_from
            # lenient option walk, as pcap-parser's many0(complete(parse_option)); the two time
            # options are decoded from the raw bytes as reader.rs idb_time_options does
            while o + 4 <= end:
                code, olen = oh(block, o)
                padded = (olen + 3) & ~3
                if o + 4 + padded > end:
                    break
                val = block[o + 4:o + 4 + padded]
                if code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and olen >= 1:
                    tsresol = val[0]
                elif code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and olen >= 8:
                    # in the section's byte order
                    offset_s = struct.unpack_from(">q" if be else "<q", val)[0]
                o += 4 + padded
            res = ts_units(tsresol)
            if res is None:
                st.skip("interface with invalid time resolution (us assumed)")
                res = 1_000_000
            # i64 nanoseconds of the offset, saturating as in reader.rs
            off_ns = min(max(offset_s * 1_000_000_000, I64_MIN), I64_MAX)
            ifaces.append((lt, res, off_ns))
            st.interfaces.append([lt, res, offset_s])
        elif btype == 3:  # simple packet block
            if blen < 16:
                st.skip("unparseable block")
                continue
            if not ifaces:
                st.skip("simple packet before any interface")
                continue
            origlen = u32(block, 8)[0]
            data = block[12:blen - 4]
            yield 0, ifaces[0][0], data[:origlen]


def ts_units(v):
    """reader.rs ts_units: units per second of an if_tsresol value, 10^v, or 2^(v & 0x7f) when
    the high bit is set; None when it does not fit in a u64. (pcap-parser 0.17, which privpkt
    used before, rejected every power-of-2 resolution; the reference copied that and is fixed.)"""
    if v & 0x80 == 0:
        return 10 ** v if v <= 19 else None
    e = v & 0x7F
    return 1 << e if e <= 63 else None


def resync_pcapng(f, pos, u32, st):
    """reader.rs resync_pcapng: 4-byte aligned scan for a known block type whose two lengths
    agree."""
    known = {0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0x0000000A, 0x00000BAD}
    f.seek(pos)
    want = RESYNC_WINDOW + MAX_BLOCK + 16
    buf = f.read(want)
    n = len(buf)
    skipped = 0
    i = 0
    while skipped < RESYNC_WINDOW:
        i += 4
        skipped += 4
        if n - i < 12:
            break
        t, ln = u32(buf, i)[0], u32(buf, i + 4)[0]
        if t in known and ln >= 12 and ln % 4 == 0 and ln <= MAX_BLOCK:
            if n - i >= ln and u32(buf, i + ln - 4)[0] == ln:
                return pos + i
    return None


# --------------------------------------------------------------------------------------------
# Frame -> TCP/UDP (decode.rs, with etherparse 0.21's lax slicing rules)
# --------------------------------------------------------------------------------------------

def network_start(lt, f):
    """decode.rs network_start for non-Ethernet link types: (ethertype, offset) or None."""
    n = len(f)
    if lt in (101, 12, 14, 228, 229):
        if n < 1:
            return None
        v = f[0] >> 4
        return (0x0800, 0) if v == 4 else (0x86DD, 0) if v == 6 else None
    if lt == 113:  # Linux SLL
        if n < 16:
            return None
        return (f[14] << 8) | f[15], 16
    if lt == 0 or lt == 108:  # BSD NULL / LOOP
        if n < 4:
            return None
        le = f[0] | (f[1] << 8) | (f[2] << 16) | (f[3] << 24)
        fam = le if le < 256 else (f[0] << 24) | (f[1] << 16) | (f[2] << 8) | f[3]
        if fam == 2:
            return 0x0800, 4
        if fam in (24, 28, 30):
            return 0x86DD, 4
        return None
    if lt == 276:  # Linux SLL2
        if n < 20:
            return None
        return (f[0] << 8) | f[1], 20
    if lt == 9 or lt == 50:  # PPP
        off = 2 if n >= 2 and f[0] == 0xFF and f[1] == 0x03 else 0
        if n < off + 1:
            return None
        if f[off] & 1:
            proto, ln = f[off], 1
        else:
            if n < off + 2:
                return None
            proto, ln = (f[off] << 8) | f[off + 1], 2
        if proto == 0x21:
            return 0x0800, off + ln
        if proto == 0x57:
            return 0x86DD, off + ln
        return None
    if lt == 104:  # Cisco HDLC
        if n < 4:
            return None
        return (f[2] << 8) | f[3], 4
    if lt == 192:  # PPI
        if n < 8:
            return None
        hlen = f[2] | (f[3] << 8)
        dlt = f[4] | (f[5] << 8) | (f[6] << 16) | (f[7] << 24)
        if hlen < 8 or hlen > n or dlt == 192:
            return None
        inner = f[hlen:]
        r = ethernet_type(inner) if dlt == 1 else network_start(dlt, inner)
        if r is None:
            return None
        return r[0], hlen + r[1]
    return None


def ethernet_type(f):
    """decode.rs ethernet_type (PPI only): any number of 802.1Q/802.1ad tags."""
    if len(f) < 14:
        return None
    off = 12
    et = (f[12] << 8) | f[13]
    while et in (0x8100, 0x88A8, 0x9100):
        if len(f) < off + 6:
            return None
        et = (f[off + 4] << 8) | f[off + 5]
        off += 4
    return et, off + 2


def decode(lt, f):
    """One frame -> (ip bytes, ip_version, l4_offset, l4, l4_header_len, ip_len, tcp_flags,
    src, dst, src_port, dst_port) or None when it gives no TCP/UDP packet."""
    n = len(f)
    if lt == 1:
        # etherparse LaxSlicedPacket::from_ethernet: Ethernet II, up to 3 VLAN tags
        if n < 14:
            return None
        et = (f[12] << 8) | f[13]
        o = 14
        tags = 0
        while et == 0x8100 or et == 0x88A8 or et == 0x9100:
            if tags == 3 or n < o + 4:
                return None
            et = (f[o + 2] << 8) | f[o + 3]
            o += 4
            tags += 1
        # MACsec (0x88e5) is not followed: counted as not IP
        if et != 0x0800 and et != 0x86DD:
            return None
    else:
        r = network_start(lt, f)
        if r is None:
            return None
        et, o = r
        if et != 0x0800 and et != 0x86DD:
            return None
    # etherparse LaxIpSlice::from_slice: the version nibble decides, not the ethertype
    if o >= n:
        return None
    v = f[o] >> 4
    if v == 4:
        ihl = f[o] & 0x0F
        hl = ihl * 4
        if ihl < 5 or n - o < hl:
            return None
        total = (f[o + 2] << 8) | f[o + 3]
        if ((f[o + 6] << 8) | f[o + 7]) & 0x1FFF:
            return None  # non-first fragment
        proto = f[o + 9]
        l4s = o + hl
        if proto == 51:
            # IPv4 authentication header (etherparse Ipv4Extensions), on the lax payload
            pend = o + total if hl <= total <= n - o else n
            if pend - l4s >= 12 and f[l4s + 1] >= 1 and pend - l4s >= (f[l4s + 1] + 2) * 4:
                proto = f[l4s]
                l4s += (f[l4s + 1] + 2) * 4
        if proto != TCP and proto != UDP:
            return None
        ip_len = total
        src = f[o + 12:o + 16]
        dst = f[o + 16:o + 20]
    elif v == 6:
        if n - o < 40:
            return None
        plen = (f[o + 4] << 8) | f[o + 5]
        if plen == 0 and n - o > 40:
            pend = n
        elif n - o - 40 < plen:
            pend = n
        else:
            pend = o + 40 + plen
        nh = f[o + 6]
        p = o + 40
        frag_off = None
        fragmented = False
        # etherparse Ipv6ExtensionsSlice::from_slice_lax
        if nh == 0:
            if pend - p < 8 or pend - p < (f[p + 1] + 1) * 8:
                return None  # payload ip_number stays 0: not TCP/UDP
            nh, p = f[p], p + (f[p + 1] + 1) * 8
        while True:
            if nh == 60 or nh == 43:
                if pend - p < 8 or pend - p < (f[p + 1] + 1) * 8:
                    return None
                nh, p = f[p], p + (f[p + 1] + 1) * 8
            elif nh == 44:
                if pend - p < 8:
                    return None
                fo = (f[p + 2] << 8) | f[p + 3]
                if frag_off is None:
                    frag_off = fo >> 3
                if fo & 0xFFF9:  # offset != 0 or more fragments
                    fragmented = True
                nh, p = f[p], p + 8
            elif nh == 51:
                if pend - p < 12 or f[p + 1] < 1 or pend - p < (f[p + 1] + 2) * 4:
                    return None
                nh, p = f[p], p + (f[p + 1] + 2) * 4
            else:
                break  # includes hop-by-hop not at start (an error: ip_number 0)
        if fragmented and frag_off:
            return None  # non-first fragment
        if nh != TCP and nh != UDP:
            return None
        proto = nh
        l4s = p
        ip_len = 40 + plen
        src = f[o + 8:o + 24]
        dst = f[o + 24:o + 40]
    else:
        return None
    # decode.rs: cut at the IP length (Ethernet padding), never beyond what was captured
    ip_end = o + ip_len
    if ip_end > n:
        ip_end = n
    if l4s > ip_end:
        return None
    ip = f[o:ip_end]
    l4off = l4s - o
    avail = ip_end - l4s
    if proto == TCP:
        if avail < 20:
            return None
        l4hl = (f[l4s + 12] >> 4) * 4
        if l4hl < 20:
            return None
        flags = f[l4s + 13]
    else:
        if avail < 8:
            return None
        l4hl = 8
        flags = 0
    sport = (f[l4s] << 8) | f[l4s + 1]
    dport = (f[l4s + 2] << 8) | f[l4s + 3]
    return ip, v, l4off, proto, l4hl, ip_len, flags, src, dst, sport, dport


def raw_packets(f, st):
    """--decoder raw: the capture's TCP/UDP packets as (ts_ns, decode() tuple), through the
    hand-written reader and decoder above (byte-exact with privpkt)."""
    head = f.read(24)
    if len(head) < 12:
        st.stopped_early = "file is empty or shorter than a capture header"
        return
    magic = head[:4]
    if magic == PCAPNG_MAGIC:
        records = iter_pcapng(f, st)
    elif magic in PCAP_LE or magic in PCAP_BE:
        if len(head) < 24:
            st.stopped_early = "file is shorter than a pcap header"
            return
        records = iter_pcap(f, head, st)
    else:
        st.stopped_early = f"not a pcap or pcapng file (magic bytes {magic.hex()})"
        return
    for ts, lt, frame in records:
        st.records += 1
        p = decode(lt, frame)
        if p is not None:
            yield ts, p


# --------------------------------------------------------------------------------------------
# --decoder dpkt: the same packets the way dpkt's documentation and research code read them
# --------------------------------------------------------------------------------------------

def _raw_ip(buf):
    """Raw-IP link types carry IPv4 or IPv6: dpkt.ip.IP does not check the version itself."""
    return dpkt.ip6.IP6(buf) if buf and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


# link type -> (dpkt class for the frame, frame is the IP packet itself)
DPKT_LINK = {
    dpkt.pcap.DLT_EN10MB: (dpkt.ethernet.Ethernet, False),
    dpkt.pcap.DLT_LINUX_SLL: (dpkt.sll.SLL, False),
    dpkt.pcap.DLT_NULL: (dpkt.loopback.Loopback, False),
    dpkt.pcap.DLT_LOOP: (dpkt.loopback.Loopback, False),
    101: (_raw_ip, True),                # LINKTYPE_RAW
    dpkt.pcap.DLT_RAW: (_raw_ip, True),  # DLT_RAW (12 on Linux, 14 on OpenBSD)
    228: (dpkt.ip.IP, True),             # LINKTYPE_IPV4
    229: (dpkt.ip6.IP6, True),           # LINKTYPE_IPV6
}
if getattr(dpkt, "sll2", None) is not None:  # dpkt >= 1.9.8
    DPKT_LINK[dpkt.pcap.DLT_LINUX_SLL2] = (dpkt.sll2.SLL2, False)


def dpkt_packets(f, st):
    """--decoder dpkt: dpkt.pcap.Reader (or dpkt.pcapng.Reader) iteration, dpkt's protocol
    classes for every layer, isinstance() tests for IP/IP6 and TCP/UDP, TCP flags as dpkt gives
    them. Yields the same tuples as decode(), so flows, labels, drop rules and vectors are the
    shared code.

    Two departures from textbook dpkt code, both to keep the real packet bytes: the IP packet is
    sliced from the frame at the IP header's offset (dpkt's own lengths) rather than taken as
    bytes(ip), which fills in zero checksums and rewrites the IPv4 total length; and dpkt's float
    timestamps are rounded to integer ns for the shared flow code.

    What dpkt decides differently from privpkt shows up as different samples, by design: one link
    type and time resolution per pcapng file (the first interface's), link types outside
    DPKT_LINK not decoded, no resynchronisation after a corrupt record (dpkt reads on through it
    or stops), IPv4 headers with a bad version nibble decoded, MPLS followed, at most 2 VLAN tags,
    IPv4 AH not followed, simple packet blocks ignored. dpkt exceptions are caught per packet and
    per file and counted in the skip counters."""
    IP, IP6, TCPc, UDPc = dpkt.ip.IP, dpkt.ip6.IP6, dpkt.tcp.TCP, dpkt.udp.UDP
    try:
        try:
            rdr = dpkt.pcap.Reader(f)
        except ValueError:
            f.seek(0)
            rdr = dpkt.pcapng.Reader(f)
    except Exception as e:  # noqa: BLE001 - dpkt raises ValueError, NeedData, struct.error...
        st.skip(f"dpkt cannot open the file: {type(e).__name__}")
        st.stopped_early = f"dpkt: {type(e).__name__}: {e}"
        return
    dl = rdr.datalink()
    link, is_ip = DPKT_LINK.get(dl, (None, False))
    records = 0
    try:
        for ts, buf in rdr:
            records += 1
            if link is None:
                st.skip(f"link type {dl} not decoded with dpkt")
                continue
            try:
                pkt = link(buf)
                ip = pkt if is_ip else pkt.data
                if isinstance(ip, IP):
                    ver, ip_len = 4, ip.len
                elif isinstance(ip, IP6):
                    ver, ip_len = 6, 40 + ip.plen
                else:
                    continue
                seg = ip.data
                if isinstance(seg, TCPc):
                    proto, l4hl, flags = TCP, seg.off * 4, seg.flags
                elif isinstance(seg, UDPc):
                    proto, l4hl, flags = UDP, 8, 0
                else:
                    continue
                n = len(ip)
                # The IP packet's own bytes, sliced from the frame at the IP header's offset:
                # bytes(ip) re-serialises and then rewrites fields (see the README).
                off = 0 if is_ip else len(pkt) - n
                ipb = buf[off:off + n]
                l4off = n - len(seg)
            except Exception as e:  # noqa: BLE001
                st.skip(f"dpkt: {type(e).__name__} decoding a frame")
                continue
            yield (round(ts * 1_000_000_000),
                   (ipb, ver, l4off, proto, l4hl, ip_len, flags, ip.src, ip.dst, seg.sport, seg.dport))
    except Exception as e:  # noqa: BLE001 - a broken record ends dpkt's iterator
        st.skip(f"dpkt: {type(e).__name__} reading the file")
        st.stopped_early = f"dpkt: {type(e).__name__} after record {records}: {e}"
    finally:
        st.records += records


DECODERS = {"raw": raw_packets, "dpkt": dpkt_packets}


# --------------------------------------------------------------------------------------------
# Deep Packet vector (deeppacket.rs)
# --------------------------------------------------------------------------------------------

def vectorize(ip, ver, l4off, l4, l4hl, honest):
    """Cut/pad to 1500 bytes, pad UDP headers to 20 bytes, mask. Drop rules are applied by the
    caller."""
    n = len(ip)
    v = bytearray(VECTOR_LEN)
    if l4 == TCP:
        if n >= VECTOR_LEN:
            v[:] = ip[:VECTOR_LEN]
        else:
            v[:n] = ip
    else:
        # IP header + 8-byte UDP header, 12 zero bytes, then the payload
        l4end = l4off + 8 if l4off + 8 < n else n
        head = l4end if l4end < VECTOR_LEN else VECTOR_LEN
        v[:head] = ip[:head]
        pad_end = head + UDP_PAD if head + UDP_PAD < VECTOR_LEN else VECTOR_LEN
        rest = min(n - l4end, VECTOR_LEN - pad_end)
        if rest > 0:
            v[pad_end:pad_end + rest] = ip[l4end:l4end + rest]
    # masking
    if ver == 4:
        if honest:
            v[4:6] = Z2     # identification
            v[8] = 0        # TTL
            v[10:20] = Z10  # header checksum, source and destination address
        else:
            v[12:20] = Z8
    else:
        v[8:40] = Z32       # source and destination address
        if honest:
            v[1] &= 0xF0    # flow label
            v[2:4] = Z2
            v[7] = 0        # hop limit
    if not honest:
        return v
    if l4off + 20 <= VECTOR_LEN:
        if l4 == UDP:
            v[l4off:l4off + 4] = Z4           # ports
            v[l4off + 6:l4off + 8] = Z2       # checksum
        else:
            v[l4off:l4off + 12] = Z12         # ports, sequence and acknowledgement numbers
            v[l4off + 16:l4off + 18] = Z2     # checksum
    else:
        def z(a, b):
            a, b = min(a, VECTOR_LEN), min(b, VECTOR_LEN)
            if b > a:
                v[a:b] = bytes(b - a)
        z(l4off, l4off + 4)
        if l4 == UDP:
            z(l4off + 6, l4off + 8)
        else:
            z(l4off + 4, l4off + 12)
            z(l4off + 16, l4off + 18)
    if l4 == TCP and l4hl > 20:
        # TCP timestamp option values (TSval, TSecr)
        i = l4off + 20
        end = min(l4off + l4hl, n, VECTOR_LEN)
        while i < end:
            kind = ip[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= end:
                break
            ln = ip[i + 1]
            if ln < 2:
                break
            if kind == 8 and ln == 10 and i + 10 <= end:
                v[i + 2:i + 10] = Z8
            i += ln
    return v


# --------------------------------------------------------------------------------------------
# Labels (labels.rs FlowLabels)
# --------------------------------------------------------------------------------------------

def parse_endpoint(s):
    s = s.strip()
    if s.startswith("["):
        ip, sep, port = s[1:].partition("]:")
        if not sep:
            return None
    else:
        ip, sep, port = s.rpartition(":")
        if not sep:
            return None
    if not port.isdigit() or int(port) > 65535 or "%" in ip:
        return None
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return a.packed, int(port)


def load_labels(path, column):
    vpn_prefix = column.endswith("+vpn")
    if vpn_prefix:
        column = column[:-4]
    labels, conflicted = {}, set()
    bad_rows, first_bad = 0, None
    with open(path, newline="", encoding="utf-8") as fh:
        rdr = csv.reader(fh)
        header = [h.strip() for h in next(rdr)]

        def need(name):
            if name not in header:
                sys.exit(f"{path}: missing column `{name}` (columns: {', '.join(header)})")
            return header.index(name)

        l4c, ac, bc, labc = need("l4"), need("endpoint_a"), need("endpoint_b"), need(column)
        vpnc = need("vpn") if vpn_prefix else None
        filec = header.index("file") if "file" in header else None
        for lineno, row in enumerate(rdr, start=2):
            l4s = row[l4c].strip() if l4c < len(row) else ""
            if l4s in ("TCP", "tcp", "6"):
                l4 = TCP
            elif l4s in ("UDP", "udp", "17"):
                l4 = UDP
            else:
                continue
            ea = parse_endpoint(row[ac] if ac < len(row) else "")
            eb = parse_endpoint(row[bc] if bc < len(row) else "")
            if ea is None or eb is None:
                # labels.rs: an unparseable row is skipped and counted, not fatal
                bad_rows += 1
                if first_bad is None:
                    first_bad = lineno
                continue
            label = row[labc].strip() if labc < len(row) else ""
            if not label:
                continue
            if vpnc is not None and row[vpnc].strip() in ("yes", "1", "true", "vpn"):
                label = "vpn_" + label
            fname = os.path.basename(row[filec].strip()) if filec is not None else ""
            if ea > eb:
                ea, eb = eb, ea
            k = (fname, l4, ea[0], ea[1], eb[0], eb[1])
            if k in conflicted:
                continue
            old = labels.get(k)
            if old is None:
                labels[k] = label
            elif old != label:
                del labels[k]
                conflicted.add(k)
    if bad_rows:
        if not labels:
            sys.exit(f"{path}, line {first_bad}: bad endpoint; no row of the file is usable ({bad_rows} bad rows)")
        print(f"warning: {path}: {bad_rows} row(s) skipped, first at line {first_bad}: bad endpoint",
              file=sys.stderr)
    return labels, filec is not None


# --------------------------------------------------------------------------------------------
# Files and the per-file pipeline (extract.rs + flow.rs)
# --------------------------------------------------------------------------------------------

def collect_captures(inputs):
    """prepare.rs collect_captures: directories recursively in sorted order, files recognised by
    magic bytes; files named explicitly are kept whatever they hold."""
    out = []

    def is_capture(p):
        try:
            with open(p, "rb") as fh:
                return fh.read(4) in ALL_MAGICS
        except OSError:
            return False

    def walk(d):
        for name in sorted(os.listdir(d), key=os.fsencode):
            p = os.path.join(d, name)
            if os.path.isdir(p):
                walk(p)
            elif os.path.isfile(p) and is_capture(p):
                out.append(p)

    for i in inputs:
        if os.path.isdir(i):
            walk(i)
        elif os.path.isfile(i):
            out.append(i)
        else:
            sys.exit(f"{i}: no such file or directory")
    return out


def process_file(path, cap_idx, labels, has_file, cfg, vec_out, idx_writer, sample0):
    """Extract the Deep Packet samples of one capture. Returns (Stats, samples written)."""
    st = Stats()
    honest = not cfg.paper
    cap = cfg.max_per_flow if cfg.max_per_flow > 0 else 1 << 62
    idle = int(cfg.idle_timeout * 1e9)
    active = int(cfg.active_timeout * 1e9)
    linger = int(5.0 * 1e9)
    fname = os.path.basename(path) if has_file else ""
    lget = labels.get
    write = vec_out.write
    writerow = idx_writer.writerow
    sample = sample0

    # flow table: key -> [id, fwd_is_a, first, last, fin_a, fin_b, closed_at, touch, label, samples]
    table = {}
    next_id = 0
    now = None
    last_sweep = None   # time of the latest sweep privpkt would have run (flow.rs place/sweep)
    sweep_seq = 0
    gc_at = None

    with open(path, "rb", buffering=1 << 20) as f:
        for ts, p in DECODERS[cfg.decoder](f, st):
            ip, ver, l4off, l4, l4hl, ip_len, flags, src, dst, sport, dport = p
            st.tcp_udp += 1
            # ---- flow.rs FlowTable::place
            if now is None:
                now = ts
                last_sweep = ts
                gc_at = ts
            else:
                if ts > now:
                    now = ts
                if now - last_sweep >= 1_000_000_000:
                    last_sweep = now
                    sweep_seq += 1
            if (src, sport) <= (dst, dport):
                key = (l4, src, sport, dst, dport)
                a_to_b = True
            else:
                key = (l4, dst, dport, src, sport)
                a_to_b = False
            e = table.get(key)
            if e is not None:
                if e[7] != sweep_seq:
                    # a sweep ran since this flow's last packet: did it end the flow? Its
                    # conditions only grow with time, so checking the latest sweep is exact.
                    t = last_sweep
                    c = e[6]
                    if ((c is not None and t - (c if c > e[3] else e[3]) > linger)
                            or t - e[3] > idle or t - e[2] > active):
                        e = None
                if e is not None and (ts - e[3] > idle or ts - e[2] > active
                                      or (e[6] is not None and l4 == TCP
                                          and flags & (SYN | ACK) == SYN)):
                    e = None
            if e is None:
                label = lget((fname, l4) + key[1:])
                e = [next_id, a_to_b, ts, ts, False, False, None, sweep_seq, label, 0]
                table[key] = e
                next_id += 1
                st.flows += 1
                if label is not None:
                    st.labelled_flows += 1
            else:
                if ts > e[3]:
                    e[3] = ts
                e[7] = sweep_seq
            if l4 == TCP and e[6] is None:
                if flags & RST:
                    e[6] = ts
                if flags & FIN:
                    if a_to_b:
                        e[4] = True
                    else:
                        e[5] = True
                    if e[4] and e[5]:
                        e[6] = ts
            # drop flows that privpkt's sweep has ended (memory only: the lazy check above is
            # what decides flow ids)
            if now - gc_at >= 60_000_000_000:
                gc_at = now
                t = last_sweep
                dead = [k for k, x in table.items()
                        if x[7] != sweep_seq and (
                            (x[6] is not None and t - max(x[6], x[3]) > linger)
                            or t - x[3] > idle or t - x[2] > active)]
                for k in dead:
                    del table[k]
            # ---- extract.rs
            label = e[8]
            if label is None:
                continue
            st.labelled_packets += 1
            # deeppacket.rs drop rules: DNS, TCP SYN/ACK/FIN without payload
            if sport == 53 or dport == 53:
                st.dropped_by_rule += 1
                continue
            if l4 == TCP and ip_len <= l4off + l4hl and flags & (SYN | ACK | FIN):
                st.dropped_by_rule += 1
                continue
            if e[9] >= cap:
                st.capped += 1
                continue
            e[9] += 1
            write(vectorize(ip, ver, l4off, l4, l4hl, honest))
            writerow((sample, cap_idx, e[0], "fwd" if a_to_b == e[1] else "bwd", ts, label,
                      "TCP" if l4 == TCP else "UDP", sport, dport))
            sample += 1
    st.samples = sample - sample0
    return st, st.samples


NPY_HEADER_LEN = 128


def npy_header(rows):
    """A version 1.0 .npy header for a (rows, 1500) uint8 C array, always 128 bytes long so the
    row count can be filled in after streaming the data."""
    d = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, VECTOR_LEN)
    pad = NPY_HEADER_LEN - 10 - len(d) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", NPY_HEADER_LEN - 10) + d.encode() + b" " * pad + b"\n"


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="capture files or directories (searched recursively)")
    ap.add_argument("--labels", required=True, help="per-flow labels CSV (nDPI corpus format)")
    ap.add_argument("--label-column", default="category", help="label column (COL or COL+vpn)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--paper", action="store_true", help="mask IP addresses only (paper's steps)")
    ap.add_argument("--max-per-flow", type=int, default=256, help="keep the first N samples per flow; 0 keeps all")
    ap.add_argument("--idle-timeout", type=float, default=120.0)
    ap.add_argument("--active-timeout", type=float, default=3600.0)
    ap.add_argument("--decoder", choices=sorted(DECODERS), default="raw",
                    help="raw (default): hand-written reader/decoder, byte-exact with privpkt; "
                         "dpkt: dpkt.pcap/pcapng.Reader and dpkt's protocol classes, as research "
                         "code does (the throughput baseline)")
    cfg = ap.parse_args(argv)

    t0 = time.perf_counter()
    labels, has_file = load_labels(cfg.labels, cfg.label_column)
    files = collect_captures(cfg.inputs)
    os.makedirs(cfg.out, exist_ok=True)
    vec_path = os.path.join(cfg.out, "vectors.npy")
    captures = []
    total_bytes = 0
    total_records = 0
    samples = 0
    skipped = {}
    with open(vec_path, "wb", buffering=1 << 22) as vec_out, \
            open(os.path.join(cfg.out, "index.csv"), "w", newline="", buffering=1 << 20) as idx:
        vec_out.write(npy_header(0))
        w = csv.writer(idx, lineterminator="\n")
        w.writerow(("sample", "capture", "flow", "direction", "timestamp_ns", "label", "l4",
                    "src_port", "dst_port"))
        for ci, path in enumerate(files):
            size = os.path.getsize(path)
            st, n = process_file(path, ci, labels, has_file, cfg, vec_out, w, samples)
            samples += n
            total_bytes += size
            total_records += st.records
            for why, k in st.skipped.items():
                skipped[why] = skipped.get(why, 0) + k
            captures.append({
                "path": path, "bytes": size, "records": st.records, "tcp_udp_packets": st.tcp_udp,
                "flows": st.flows, "labelled_flows": st.labelled_flows,
                "dropped_by_rule": st.dropped_by_rule, "capped": st.capped, "samples": n,
                "skipped": st.skipped, "stopped_early": st.stopped_early,
            })
            if st.interfaces:
                captures[-1]["pcapng_interfaces"] = st.interfaces
        vec_out.flush()
        vec_out.seek(0)
        vec_out.write(npy_header(samples))
    secs = time.perf_counter() - t0
    rss = peak_rss_bytes()
    summary = {
        "tool": "python-dpkt-reference",
        "decoder": cfg.decoder,
        "python": sys.version.split()[0],
        "dpkt": dpkt.__version__,
        "numpy": np.__version__,
        "masking": "paper" if cfg.paper else "honest",
        "max_per_flow": cfg.max_per_flow,
        "files": len(files),
        "bytes": total_bytes,
        "packets": total_records,
        "samples": samples,
        "seconds": secs,
        "mb_per_s": total_bytes / 1e6 / secs if secs else None,
        "packets_per_s": total_records / secs if secs else None,
        "peak_rss_bytes": rss,
        "skipped": dict(sorted(skipped.items(), key=lambda kv: -kv[1])),
        "files_stopped_early": sum(1 for c in captures if c["stopped_early"]),
        "vectors": vec_path,
    }
    with open(os.path.join(cfg.out, "summary.json"), "w") as fh:
        json.dump(dict(summary, captures=captures), fh, indent=1)
    # sanity: numpy reads back what was streamed
    arr = np.load(vec_path, mmap_mode="r")
    assert arr.shape == (samples, VECTOR_LEN) and arr.dtype == np.uint8, arr.shape
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
