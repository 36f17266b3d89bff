//! Streaming pcap / pcapng reader that never gives up on a whole file because of one bad record.
//!
//! The format is detected from the magic bytes, never from the file name (the nDPI corpus has
//! pcapng files called `.pcap` and the reverse). Block and record parsing is done by
//! `pcap-parser`; this module adds what a corpus reader needs on top of it: a bounded buffer
//! (constant memory per file), per-interface link types and time resolutions for pcapng,
//! byte offsets for every problem, and resynchronisation after a corrupt record so the rest of
//! the file is still read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::PcapHeader;
use serde::{Deserialize, Serialize};

/// libpcap's largest legal record (`MAXIMUM_SNAPLEN`); anything larger is a corrupt header.
pub const MAX_RECORD: u32 = 262_144;
/// Largest pcapng block we accept; larger declared lengths are treated as corruption.
const MAX_BLOCK: u32 = 16 * 1024 * 1024;
/// Read granularity: 1 MiB keeps syscalls cheap while memory stays constant per file.
const READ_CHUNK: usize = 1 << 20;
/// How far we scan for the next plausible record after corruption before giving up.
const RESYNC_WINDOW: u64 = 8 << 20;

/// Fatal problems: the file cannot be read as a capture at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a pcap or pcapng file (magic bytes {magic})")]
    NotACapture { path: PathBuf, magic: String },
    #[error("{path}: file is empty or shorter than a capture header ({len} bytes)")]
    TooShort { path: PathBuf, len: u64 },
}

/// Which container the magic bytes announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureFormat {
    /// Classic pcap; `nanos` for the a1b23c4d magic, `modified` for Kuznetsov's variant.
    Pcap {
        big_endian: bool,
        nanos: bool,
        modified: bool,
    },
    PcapNg,
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureFormat::Pcap {
                big_endian,
                nanos,
                modified,
            } => write!(
                f,
                "pcap ({}{}{})",
                if *big_endian { "big-endian" } else { "little-endian" },
                if *nanos { ", ns" } else { ", µs" },
                if *modified { ", modified" } else { "" }
            ),
            CaptureFormat::PcapNg => write!(f, "pcapng"),
        }
    }
}

/// One captured frame as handed to the decoder.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// Timestamp in nanoseconds since the Unix epoch (0 for pcapng simple packet blocks).
    pub ts_ns: i64,
    /// LINKTYPE_* value of the interface that captured the frame.
    pub linktype: u32,
    pub data: &'a [u8],
    /// Length on the wire; larger than `data.len()` when the snap length cut the packet.
    pub orig_len: u32,
    /// Byte offset of the record (or block) in the file.
    pub offset: u64,
    /// Index of the record among the packet records of the file.
    pub index: u64,
}

/// How often one kind of problem happened in a file and where it first did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkipCount {
    pub count: u64,
    pub first_offset: u64,
}

/// What reading one file found: nothing here is fatal, every entry says what was lost where.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadReport {
    pub format: Option<CaptureFormat>,
    /// Distinct link types seen (per interface for pcapng).
    pub linktypes: Vec<u32>,
    pub bytes: u64,
    /// Packet records handed on to decoding.
    pub records: u64,
    /// Records whose captured length is shorter than the original length (snap length).
    pub snaplen_cut: u64,
    /// Problems of the container: reason → count and first byte offset.
    pub skipped: BTreeMap<String, SkipCount>,
    /// Bytes jumped over while resynchronising after corruption.
    pub resync_bytes: u64,
    /// Set when reading stopped before the end of the file, with the reason.
    pub stopped_early: Option<String>,
}

impl ReadReport {
    pub fn skip(&mut self, reason: impl Into<String>, offset: u64) {
        let e = self.skipped.entry(reason.into()).or_insert(SkipCount {
            count: 0,
            first_offset: offset,
        });
        e.count += 1;
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().map(|s| s.count).sum()
    }

    fn note_linktype(&mut self, lt: u32) {
        if !self.linktypes.contains(&lt) {
            self.linktypes.push(lt);
        }
    }
}

/// Sliding window over the file: `buf[start..end]` is unread data starting at file offset `base`.
struct Window<R> {
    file: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    fn new(file: R) -> Self {
        Window {
            file,
            buf: vec![0; 2 * READ_CHUNK],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn offset(&self) -> u64 {
        self.base
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.base += n as u64;
    }

    /// Make at least `want` bytes available if the file has them; returns false at EOF short of it.
    fn fill(&mut self, want: usize) -> std::io::Result<bool> {
        while self.end - self.start < want {
            if self.eof {
                return Ok(false);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK.min(want.max(READ_CHUNK)) {
                let need = (self.end + want.max(READ_CHUNK)).next_power_of_two();
                self.buf.resize(need, 0);
            }
            let n = self.file.read(&mut self.buf[self.end..])?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(true)
    }
}

/// Per-interface facts of a pcapng section.
#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Units per second of the timestamps.
    resolution: u64,
    offset_s: i64,
}

/// Read `path`, calling `on_packet` for every packet record. Problems are recorded in the
/// returned report; only a file that is not a capture at all is an `Err`.
pub fn read_capture<F>(path: &Path, on_packet: F) -> Result<ReadReport, CaptureError>
where
    F: FnMut(&RawPacket<'_>),
{
    let file = File::open(path).map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_capture_from(path, file, on_packet)
}

/// As [`read_capture`], from any reader (`path` only names it in errors). Reading may stop
/// before the end of the input when the rest is unreadable; the reader is left there.
pub fn read_capture_from<R: Read, F>(path: &Path, input: R, mut on_packet: F) -> Result<ReadReport, CaptureError>
where
    F: FnMut(&RawPacket<'_>),
{
    let io = |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut w = Window::new(input);
    let mut report = ReadReport::default();
    w.fill(24).map_err(io)?;
    let head = w.data();
    if head.len() < 12 {
        return Err(CaptureError::TooShort {
            path: path.to_path_buf(),
            len: head.len() as u64,
        });
    }
    let magic = [head[0], head[1], head[2], head[3]];
    let result = match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(&mut w, &mut report, &mut on_packet),
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x34, 0xcd, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xcd, 0x34] => {
            if head.len() < 24 {
                return Err(CaptureError::TooShort {
                    path: path.to_path_buf(),
                    len: head.len() as u64,
                });
            }
            read_pcap(&mut w, &mut report, &mut on_packet)
        }
        _ => {
            return Err(CaptureError::NotACapture {
                path: path.to_path_buf(),
                magic: magic.iter().map(|b| format!("{b:02x}")).collect(),
            })
        }
    };
    result.map_err(io)?;
    report.bytes = w.offset() + (w.end - w.start) as u64;
    Ok(report)
}

fn read_pcap<R: Read, F>(w: &mut Window<R>, report: &mut ReadReport, on_packet: &mut F) -> std::io::Result<()>
where
    F: FnMut(&RawPacket<'_>),
{
    let header: PcapHeader = match pcap_parser::parse_pcap_header(w.data()) {
        Ok((_, h)) => h,
        Err(_) => {
            report.stopped_early = Some("unreadable pcap file header at byte 0".into());
            return Ok(());
        }
    };
    let big_endian = header.is_bigendian();
    let nanos = header.is_nanosecond_precision();
    let modified = header.is_modified_format();
    report.format = Some(CaptureFormat::Pcap {
        big_endian,
        nanos,
        modified,
    });
    // Only the low 16 bits are the link type; the upper bits carry FCS-length flags and
    // reserved bits (libpcap's LT_LINKTYPE does the same).
    let linktype = (header.network.0 as u32) & 0xffff;
    if header.network.0 as u32 != linktype {
        report.skip(
            format!(
                "link type field has FCS/reserved bits set (raw {:#x})",
                header.network.0
            ),
            20,
        );
    }
    report.note_linktype(linktype);
    let rec_hdr = if modified { 24 } else { 16 };
    let frac_limit: u32 = if nanos { 1_000_000_000 } else { 1_000_000 };
    w.consume(24);
    let mut index = 0u64;
    let mut last_ts: Option<u32> = None;
    let read_u32 = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    loop {
        if !w.fill(rec_hdr)? {
            let left = w.data().len();
            if left > 0 {
                report.skip("truncated record header at end of file", w.offset());
                report.stopped_early = Some(format!(
                    "file ends inside a record header at byte {} ({left} bytes left)",
                    w.offset()
                ));
            }
            return Ok(());
        }
        let d = w.data();
        let (ts_sec, ts_frac, caplen, origlen) = (
            read_u32(&d[0..]),
            read_u32(&d[4..]),
            read_u32(&d[8..]),
            read_u32(&d[12..]),
        );
        if caplen > MAX_RECORD {
            let off = w.offset();
            report.skip(format!("corrupt record header (captured length > {MAX_RECORD})"), off);
            if !resync_pcap(w, report, rec_hdr, &read_u32, last_ts, frac_limit)? {
                report.stopped_early = Some(format!("no readable record found after corrupt header at byte {off}"));
                return Ok(());
            }
            continue;
        }
        let total = rec_hdr + caplen as usize;
        if !w.fill(total)? {
            report.skip("truncated record at end of file", w.offset());
            report.stopped_early = Some(format!(
                "file ends inside the record at byte {} (needs {total} bytes, {} left)",
                w.offset(),
                w.data().len()
            ));
            return Ok(());
        }
        // pcap-parser does the field decoding; our own checks above only guard the window.
        let d = w.data();
        let parsed = if modified {
            pcap_parser::parse_pcap_frame_modified(d)
        } else if big_endian {
            pcap_parser::parse_pcap_frame_be(d)
        } else {
            pcap_parser::parse_pcap_frame(d)
        };
        match parsed {
            Ok((_, block)) => {
                if ts_frac >= frac_limit {
                    report.skip("timestamp fraction out of range (kept)", w.offset());
                }
                let mult = if nanos { 1 } else { 1_000 };
                let ts_ns = ts_sec as i64 * 1_000_000_000 + (ts_frac as i64 % frac_limit as i64) * mult;
                if caplen < origlen {
                    report.snaplen_cut += 1;
                }
                on_packet(&RawPacket {
                    ts_ns,
                    linktype,
                    data: block.data,
                    orig_len: origlen.max(caplen),
                    offset: w.offset(),
                    index,
                });
                report.records += 1;
                index += 1;
                last_ts = Some(ts_sec);
            }
            Err(_) => {
                report.skip("unparseable record", w.offset());
            }
        }
        w.consume(total);
    }
}

/// Scan forward for a record header that looks like a real one and is followed by another
/// (or by the end of the file): the same heuristic pcapfix uses.
fn resync_pcap<R: Read>(
    w: &mut Window<R>,
    report: &mut ReadReport,
    rec_hdr: usize,
    read_u32: &dyn Fn(&[u8]) -> u32,
    last_ts: Option<u32>,
    frac_limit: u32,
) -> std::io::Result<bool> {
    let plausible = |h: &[u8]| {
        let (ts, frac, cap, orig) = (read_u32(h), read_u32(&h[4..]), read_u32(&h[8..]), read_u32(&h[12..]));
        cap <= MAX_RECORD
            && orig <= MAX_RECORD
            && cap <= orig
            && orig > 0
            && frac < frac_limit
            && last_ts.is_none_or(|l| ts.abs_diff(l) <= 86_400)
    };
    let mut skipped = 0u64;
    w.consume(1);
    skipped += 1;
    while skipped < RESYNC_WINDOW {
        if !w.fill(rec_hdr)? {
            break;
        }
        let d = w.data();
        if plausible(d) {
            let next = rec_hdr + read_u32(&d[8..]) as usize;
            w.fill(next + rec_hdr)?;
            let d = w.data();
            let ok = if d.len() >= next + rec_hdr {
                plausible(&d[next..])
            } else {
                d.len() == next
            };
            if ok {
                report.resync_bytes += skipped;
                return Ok(true);
            }
        }
        w.consume(1);
        skipped += 1;
    }
    report.resync_bytes += skipped;
    // Drop whatever is left: nothing plausible follows.
    let rest = w.data().len();
    w.consume(rest);
    Ok(false)
}

fn read_pcapng<R: Read, F>(w: &mut Window<R>, report: &mut ReadReport, on_packet: &mut F) -> std::io::Result<()>
where
    F: FnMut(&RawPacket<'_>),
{
    report.format = Some(CaptureFormat::PcapNg);
    let mut big_endian = false;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut index = 0u64;
    loop {
        if !w.fill(12)? {
            if !w.data().is_empty() {
                report.skip("truncated block header at end of file", w.offset());
                report.stopped_early = Some(format!("file ends inside a block header at byte {}", w.offset()));
            }
            return Ok(());
        }
        let d = w.data();
        let btype_le = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        // A section header announces its own byte order in its byte-order magic.
        if btype_le == 0x0a0d_0d0a {
            big_endian = d[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
        }
        let rd = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let btype = rd(&d[0..]);
        let blen = rd(&d[4..]);
        let off = w.offset();
        if blen < 12 || blen % 4 != 0 || blen > MAX_BLOCK {
            report.skip("corrupt block length", off);
            if !resync_pcapng(w, report, big_endian)? {
                report.stopped_early = Some(format!("no readable block found after corrupt block at byte {off}"));
                return Ok(());
            }
            continue;
        }
        if !w.fill(blen as usize)? {
            report.skip("truncated block at end of file", off);
            report.stopped_early = Some(format!(
                "file ends inside a block at byte {off} (needs {blen} bytes, {} left)",
                w.data().len()
            ));
            return Ok(());
        }
        let d = &w.data()[..blen as usize];
        if rd(&d[blen as usize - 4..]) != blen {
            report.skip("block trailer length does not match header", off);
            if !resync_pcapng(w, report, big_endian)? {
                report.stopped_early = Some(format!("no readable block found after corrupt block at byte {off}"));
                return Ok(());
            }
            continue;
        }
        let parsed = if big_endian {
            pcap_parser::pcapng::parse_block_be(d)
        } else {
            pcap_parser::pcapng::parse_block_le(d)
        };
        match parsed {
            Ok((_, block)) => match block {
                Block::SectionHeader(_) => ifaces.clear(),
                Block::InterfaceDescription(idb) => {
                    let linktype = (idb.linktype.0 as u32) & 0xffff;
                    // Decoded here from the raw option bytes: pcap-parser 0.17 rejects every
                    // power-of-2 resolution and reads if_tsoffset little-endian in big-endian
                    // sections.
                    let (tsresol, tsoffset) = idb_time_options(&idb.options, big_endian);
                    let resolution = match ts_units(tsresol.unwrap_or(6)) {
                        Some(r) => r,
                        None => {
                            report.skip("interface with invalid time resolution (µs assumed)", off);
                            1_000_000
                        }
                    };
                    report.note_linktype(linktype);
                    ifaces.push(Iface {
                        linktype,
                        resolution,
                        offset_s: tsoffset.unwrap_or(0),
                    });
                }
                Block::EnhancedPacket(epb) => match ifaces.get(epb.if_id as usize) {
                    Some(iface) => {
                        let ts = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                        let ns = (ts as u128 * 1_000_000_000 / iface.resolution as u128) as i64;
                        let data = epb.packet_data();
                        if (data.len() as u32) < epb.origlen {
                            report.snaplen_cut += 1;
                        }
                        on_packet(&RawPacket {
                            ts_ns: ns.saturating_add(iface.offset_s.saturating_mul(1_000_000_000)),
                            linktype: iface.linktype,
                            data,
                            orig_len: epb.origlen.max(data.len() as u32),
                            offset: off,
                            index,
                        });
                        report.records += 1;
                        index += 1;
                    }
                    None => report.skip("packet for an undefined interface", off),
                },
                Block::SimplePacket(spb) => match ifaces.first() {
                    Some(iface) => {
                        let data = spb.packet_data();
                        if (data.len() as u32) < spb.origlen {
                            report.snaplen_cut += 1;
                        }
                        on_packet(&RawPacket {
                            ts_ns: 0,
                            linktype: iface.linktype,
                            data,
                            orig_len: spb.origlen.max(data.len() as u32),
                            offset: off,
                            index,
                        });
                        report.records += 1;
                        index += 1;
                    }
                    None => report.skip("simple packet before any interface", off),
                },
                _ => {}
            },
            Err(e) => {
                report.skip(format!("unparseable block type {btype:#x}: {}", describe_nom(e)), off);
            }
        }
        w.consume(blen as usize);
    }
}

/// Units per second of an `if_tsresol` value (pcapng spec): 10^v, or 2^(v & 0x7f) when the
/// high bit is set; `None` when it does not fit in a u64.
pub fn ts_units(v: u8) -> Option<u64> {
    if v & 0x80 == 0 {
        (v <= 19).then(|| 10u64.pow(v as u32))
    } else {
        let e = v & 0x7f;
        (e <= 63).then(|| 1u64 << e)
    }
}

/// `if_tsresol` (option 9) and `if_tsoffset` (option 14) of an interface, in the section's byte order.
fn idb_time_options(options: &[pcap_parser::pcapng::PcapNGOption<'_>], big_endian: bool) -> (Option<u8>, Option<i64>) {
    let (mut resol, mut offset) = (None, None);
    for o in options {
        let v = o.value();
        match o.code.0 {
            9 if o.len >= 1 && !v.is_empty() => resol = Some(v[0]),
            14 if o.len >= 8 && v.len() >= 8 => {
                let b: [u8; 8] = v[..8].try_into().expect("8 bytes checked");
                offset = Some(if big_endian {
                    i64::from_be_bytes(b)
                } else {
                    i64::from_le_bytes(b)
                });
            }
            _ => {}
        }
    }
    (resol, offset)
}

/// Short reason for a block pcap-parser rejected (its error kind, without the raw bytes).
fn describe_nom<E>(e: pcap_parser::nom::Err<pcap_parser::PcapError<E>>) -> String {
    use pcap_parser::PcapError as P;
    match e {
        pcap_parser::nom::Err::Incomplete(_) => "incomplete".into(),
        pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e) => match e {
            P::NomError(_, k) | P::OwnedNomError(_, k) => format!("{k:?}"),
            P::HeaderNotRecognized => "header not recognized".into(),
            _ => "invalid block".into(),
        },
    }
}

/// Scan 4-byte-aligned positions for a block of a known type whose two length fields agree.
fn resync_pcapng<R: Read>(w: &mut Window<R>, report: &mut ReadReport, big_endian: bool) -> std::io::Result<bool> {
    const KNOWN: [u32; 9] = [0x0a0d_0d0a, 1, 2, 3, 4, 5, 6, 0x0000_000a, 0x0000_0bad];
    let rd = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let mut skipped = 0u64;
    while skipped < RESYNC_WINDOW {
        w.consume(4.min(w.data().len()));
        skipped += 4;
        if !w.fill(12)? {
            break;
        }
        let d = w.data();
        let (t, l) = (rd(d), rd(&d[4..]));
        if KNOWN.contains(&t) && l >= 12 && l % 4 == 0 && l <= MAX_BLOCK {
            w.fill(l as usize)?;
            let d = w.data();
            if d.len() >= l as usize && rd(&d[l as usize - 4..]) == l {
                report.resync_bytes += skipped;
                return Ok(true);
            }
        }
    }
    report.resync_bytes += skipped;
    let rest = w.data().len();
    w.consume(rest);
    Ok(false)
}

/// Human name of a LINKTYPE_* value, for reports.
pub fn linktype_name(lt: u32) -> String {
    match lt {
        0 => "NULL".into(),
        1 => "ETHERNET".into(),
        9 => "PPP".into(),
        12 | 14 | 101 => "RAW".into(),
        104 => "C_HDLC".into(),
        108 => "LOOP".into(),
        113 => "LINUX_SLL".into(),
        192 => "PPI".into(),
        228 => "IPV4".into(),
        229 => "IPV6".into(),
        276 => "LINUX_SLL2".into(),
        other => format!("{other}"),
    }
}
