//! Minimal classic-pcap and pcapng writers.
//!
//! Hand-written rather than taken from a crate so the generator controls every
//! byte (endianness, timestamp resolution, several interfaces per pcapng file)
//! and so other crates' tests can produce exactly the corner cases their
//! readers must handle.

use std::io::{self, Write};

/// Link-layer type numbers (tcpdump.org `LINKTYPE_*`) used by the generator.
pub mod linktype {
    /// IEEE 802.3 Ethernet (also carries 802.1Q / QinQ tagged frames).
    pub const ETHERNET: u32 = 1;
    /// Raw IPv4/IPv6 packet, no link header.
    pub const RAW: u32 = 101;
    /// Linux "cooked" capture v1 (16-byte SLL header).
    pub const LINUX_SLL: u32 = 113;
}

pub use linktype::{ETHERNET, LINUX_SLL, RAW};

/// Snapshot length advertised in file headers; packets are always written whole.
pub const SNAPLEN: u32 = 65535;

/// Byte order and timestamp resolution of written files.
///
/// The defaults (little-endian, microseconds) are what most tools write; the
/// other variants exist so readers can be tested against them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WriterOptions {
    /// Write all multi-byte header fields big-endian (pcap and pcapng).
    pub big_endian: bool,
    /// Classic pcap only: use the nanosecond magic `a1b23c4d`.
    pub nanosecond: bool,
}

#[inline]
fn put_u16(buf: &mut Vec<u8>, be: bool, v: u16) {
    buf.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

#[inline]
fn put_u32(buf: &mut Vec<u8>, be: bool, v: u32) {
    buf.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

#[inline]
fn put_u32_at(buf: &mut [u8], at: usize, be: bool, v: u32) {
    buf[at..at + 4].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

/// Bytes a classic pcap record takes on disk for a packet of `caplen` bytes.
pub fn pcap_record_len(caplen: usize) -> usize {
    16 + caplen
}

/// Bytes an Enhanced Packet Block (no options) takes for `caplen` bytes of data.
pub fn pcapng_epb_len(caplen: usize) -> usize {
    32 + ((caplen + 3) & !3)
}

/// Size of the classic pcap global header.
pub const PCAP_HEADER_LEN: usize = 24;

/// Classic libpcap file writer (one link type per file).
pub struct PcapWriter<W: Write> {
    w: W,
    opts: WriterOptions,
    hdr: [u8; 16],
}

impl<W: Write> PcapWriter<W> {
    /// Writes the 24-byte global header and returns the writer.
    pub fn new(mut w: W, linktype: u32, opts: WriterOptions) -> io::Result<Self> {
        let be = opts.big_endian;
        let magic: u32 = if opts.nanosecond { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(PCAP_HEADER_LEN);
        put_u32(&mut h, be, magic);
        put_u16(&mut h, be, 2);
        put_u16(&mut h, be, 4);
        put_u32(&mut h, be, 0); // thiszone
        put_u32(&mut h, be, 0); // sigfigs
        put_u32(&mut h, be, SNAPLEN);
        put_u32(&mut h, be, linktype);
        w.write_all(&h)?;
        Ok(Self { w, opts, hdr: [0; 16] })
    }

    /// Appends one record; `ts_ns` is nanoseconds since the Unix epoch and is
    /// truncated to microseconds unless the file uses the nanosecond magic.
    /// Packets longer than the snaplen are truncated on disk (`origlen` keeps
    /// the real length), as libpcap does.
    pub fn write_packet(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let be = self.opts.big_endian;
        let sec = ts_ns / 1_000_000_000;
        let sub = ts_ns % 1_000_000_000;
        let frac = if self.opts.nanosecond { sub } else { sub / 1000 };
        let sec = u32::try_from(sec).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "timestamp beyond 2106 does not fit classic pcap",
            )
        })?;
        let origlen =
            u32::try_from(data.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
        let caplen = origlen.min(SNAPLEN);
        put_u32_at(&mut self.hdr, 0, be, sec);
        put_u32_at(&mut self.hdr, 4, be, frac as u32);
        put_u32_at(&mut self.hdr, 8, be, caplen);
        put_u32_at(&mut self.hdr, 12, be, origlen);
        self.w.write_all(&self.hdr)?;
        self.w.write_all(&data[..caplen as usize])
    }

    /// Mutable access to the underlying sink.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    /// Flushes and returns the underlying sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 0x0000_0001;
const EPB_TYPE: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_ENDOFOPT: u16 = 0;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_TSRESOL: u16 = 9;

/// Bytes written by [`PcapNgWriter::new`] (section header block).
pub const PCAPNG_SHB_LEN: usize = 28 + 4 + 16 + 4;

/// Bytes written by [`PcapNgWriter::add_interface`] for a given resolution.
pub fn pcapng_idb_len(tsresol_exponent: u8) -> usize {
    if tsresol_exponent == 6 {
        20
    } else {
        20 + 8 + 4
    }
}

/// pcapng writer: one section, any number of interfaces with their own link
/// type and timestamp resolution, Enhanced Packet Blocks.
pub struct PcapNgWriter<W: Write> {
    w: W,
    be: bool,
    /// Units per second of each interface (10^if_tsresol).
    ifaces: Vec<u64>,
    hdr: Vec<u8>,
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the Section Header Block (with an `shb_userappl` option).
    /// Only `opts.big_endian` is meaningful for pcapng.
    pub fn new(mut w: W, opts: WriterOptions) -> io::Result<Self> {
        let be = opts.big_endian;
        let appl = b"privpkt-synth"; // 13 bytes, padded to 16
        let mut b = Vec::with_capacity(PCAPNG_SHB_LEN);
        put_u32(&mut b, be, SHB_TYPE);
        put_u32(&mut b, be, PCAPNG_SHB_LEN as u32);
        put_u32(&mut b, be, BYTE_ORDER_MAGIC);
        put_u16(&mut b, be, 1);
        put_u16(&mut b, be, 0);
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown (-1)
        put_u16(&mut b, be, OPT_SHB_USERAPPL);
        put_u16(&mut b, be, appl.len() as u16);
        b.extend_from_slice(appl);
        b.resize(b.len() + 3, 0);
        put_u16(&mut b, be, OPT_ENDOFOPT);
        put_u16(&mut b, be, 0);
        put_u32(&mut b, be, PCAPNG_SHB_LEN as u32);
        debug_assert_eq!(b.len(), PCAPNG_SHB_LEN);
        w.write_all(&b)?;
        Ok(Self {
            w,
            be,
            ifaces: Vec::new(),
            hdr: Vec::with_capacity(32),
        })
    }

    /// Writes an Interface Description Block and returns its interface id.
    ///
    /// `tsresol_exponent` is the decimal exponent of the timestamp unit
    /// (6 = microseconds, the pcapng default and written without an option;
    /// 9 = nanoseconds). Values above 9 are rejected because timestamps are
    /// supplied in nanoseconds.
    pub fn add_interface(&mut self, linktype: u32, tsresol_exponent: u8) -> io::Result<u32> {
        if tsresol_exponent > 9 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "if_tsresol exponent above 9 is not supported",
            ));
        }
        let lt =
            u16::try_from(linktype).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "linktype above 65535"))?;
        let be = self.be;
        let len = pcapng_idb_len(tsresol_exponent);
        let mut b = Vec::with_capacity(len);
        put_u32(&mut b, be, IDB_TYPE);
        put_u32(&mut b, be, len as u32);
        put_u16(&mut b, be, lt);
        put_u16(&mut b, be, 0);
        put_u32(&mut b, be, SNAPLEN);
        if tsresol_exponent != 6 {
            put_u16(&mut b, be, OPT_IF_TSRESOL);
            put_u16(&mut b, be, 1);
            b.extend_from_slice(&[tsresol_exponent, 0, 0, 0]);
            put_u16(&mut b, be, OPT_ENDOFOPT);
            put_u16(&mut b, be, 0);
        }
        put_u32(&mut b, be, len as u32);
        debug_assert_eq!(b.len(), len);
        self.w.write_all(&b)?;
        self.ifaces.push(10u64.pow(u32::from(tsresol_exponent)));
        Ok((self.ifaces.len() - 1) as u32)
    }

    /// Appends an Enhanced Packet Block on interface `iface_id`; `ts_ns` is
    /// nanoseconds since the Unix epoch, scaled to the interface resolution.
    pub fn write_packet(&mut self, iface_id: u32, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let units = *self
            .ifaces
            .get(iface_id as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown pcapng interface id"))?;
        let ts = ts_ns / (1_000_000_000 / units);
        let origlen =
            u32::try_from(data.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
        let caplen = origlen.min(SNAPLEN) as usize;
        let block_len = pcapng_epb_len(caplen) as u32;
        let be = self.be;
        let h = &mut self.hdr;
        h.clear();
        put_u32(h, be, EPB_TYPE);
        put_u32(h, be, block_len);
        put_u32(h, be, iface_id);
        put_u32(h, be, (ts >> 32) as u32);
        put_u32(h, be, ts as u32);
        put_u32(h, be, caplen as u32);
        put_u32(h, be, origlen);
        self.w.write_all(h)?;
        self.w.write_all(&data[..caplen])?;
        let pad = (4 - caplen % 4) % 4;
        let mut tail = [0u8; 7];
        let end = if be {
            block_len.to_be_bytes()
        } else {
            block_len.to_le_bytes()
        };
        tail[pad..pad + 4].copy_from_slice(&end);
        self.w.write_all(&tail[..pad + 4])
    }

    /// Mutable access to the underlying sink.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    /// Flushes and returns the underlying sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_header_le_and_be() {
        let w = PcapWriter::new(Vec::new(), linktype::RAW, WriterOptions::default()).unwrap();
        let v = w.finish().unwrap();
        assert_eq!(&v[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&v[20..24], &[101, 0, 0, 0]);
        let opts = WriterOptions {
            big_endian: true,
            nanosecond: true,
        };
        let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET, opts).unwrap();
        w.write_packet(1_700_000_000_123_456_789, &[1, 2, 3]).unwrap();
        let v = w.finish().unwrap();
        assert_eq!(&v[..4], &[0xa1, 0xb2, 0x3c, 0x4d]);
        assert_eq!(&v[24..28], &1_700_000_000u32.to_be_bytes());
        assert_eq!(&v[28..32], &123_456_789u32.to_be_bytes());
        assert_eq!(v.len(), PCAP_HEADER_LEN + pcap_record_len(3));
    }

    #[test]
    fn pcapng_block_lengths_are_padded() {
        let mut w = PcapNgWriter::new(Vec::new(), WriterOptions::default()).unwrap();
        assert_eq!(w.add_interface(linktype::ETHERNET, 6).unwrap(), 0);
        assert_eq!(w.add_interface(linktype::RAW, 9).unwrap(), 1);
        assert!(w.add_interface(linktype::RAW, 12).is_err());
        for n in 0..8 {
            w.write_packet(n % 2, 5_000_000_001, &vec![0xab; n as usize + 20])
                .unwrap();
        }
        assert!(w.write_packet(7, 0, &[0; 20]).is_err());
        let v = w.finish().unwrap();
        // Walk the blocks: each starts and ends with the same 32-bit aligned length.
        let mut off = 0;
        let mut blocks = 0;
        while off < v.len() {
            let len = u32::from_le_bytes(v[off + 4..off + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let trailer = u32::from_le_bytes(v[off + len - 4..off + len].try_into().unwrap());
            assert_eq!(trailer as usize, len);
            off += len;
            blocks += 1;
        }
        assert_eq!(off, v.len());
        assert_eq!(blocks, 1 + 2 + 8);
    }
}
