//! NumPy `.npy` (format 1.0) files, written streaming.
//!
//! The header is written with room for the largest shape first and rewritten in place once the
//! row count is known, so samples stream to disk without a second pass and numpy opens the
//! result with `np.load(path, mmap_mode="r")`.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Element types the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dtype {
    U8,
    U16,
    U32,
    U64,
    /// Signed 64-bit (Flower's SecAgg+ masked vectors).
    I64,
    F32,
    /// Float64 (what numpy computes by default; read to be narrowed).
    F64,
}

impl Dtype {
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::I64 => "<i8",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::U16 => 2,
            Dtype::U32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 => 8,
        }
    }

    fn from_descr(d: &str) -> Option<Dtype> {
        Some(match d {
            "|u1" | "<u1" | "u1" => Dtype::U8,
            "<u2" => Dtype::U16,
            "<u4" => Dtype::U32,
            "<u8" => Dtype::U64,
            "<i8" => Dtype::I64,
            "<f4" => Dtype::F32,
            "<f8" => Dtype::F64,
            _ => return None,
        })
    }
}

/// Fixed header size: 128 bytes holds any shape we write and keeps the data 64-byte aligned.
pub const HEADER_LEN: usize = 128;

fn header(dtype: Dtype, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_s
    );
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    assert!(h.len() < HEADER_LEN, "npy header too long");
    h.resize(HEADER_LEN - 1, b' ');
    h.push(b'\n');
    h
}

/// Streams rows of a fixed shape into an `.npy` file.
pub struct NpyWriter {
    path: PathBuf,
    out: BufWriter<File>,
    dtype: Dtype,
    row_shape: Vec<u64>,
    row_bytes: usize,
    rows: u64,
}

impl NpyWriter {
    pub fn create(path: &Path, dtype: Dtype, row_shape: &[u64]) -> std::io::Result<NpyWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut shape = vec![0u64];
        shape.extend_from_slice(row_shape);
        out.write_all(&header(dtype, &shape))?;
        let row_bytes = row_shape.iter().product::<u64>() as usize * dtype.size();
        Ok(NpyWriter {
            path: path.to_path_buf(),
            out,
            dtype,
            row_shape: row_shape.to_vec(),
            row_bytes,
            rows: 0,
        })
    }

    /// Append whole rows (raw little-endian bytes, a multiple of the row size).
    pub fn write_rows(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.row_bytes == 0 || !bytes.len().is_multiple_of(self.row_bytes) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{}: {} bytes is not a whole number of {}-byte rows",
                    self.path.display(),
                    bytes.len(),
                    self.row_bytes
                ),
            ));
        }
        self.out.write_all(bytes)?;
        self.rows += (bytes.len() / self.row_bytes) as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rewrite the header with the final row count. No fsync: the dataset's manifest, written
    /// last, is what marks it complete (an interrupted run never looks complete; a power cut
    /// during the run is caught by the shard-size checks in `Dataset::open`).
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.out.flush()?;
        let mut f = self.out.into_inner().map_err(|e| e.into_error())?;
        let mut shape = vec![self.rows];
        shape.extend_from_slice(&self.row_shape);
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&header(self.dtype, &shape))?;
        Ok(self.rows)
    }
}

/// Write a whole 1-D array.
pub fn write_1d<T: Copy>(path: &Path, dtype: Dtype, values: &[T]) -> std::io::Result<()> {
    assert_eq!(std::mem::size_of::<T>(), dtype.size());
    let mut w = NpyWriter::create(path, dtype, &[])?;
    // Little-endian targets only (x86_64, aarch64): the in-memory bytes are the file bytes.
    let bytes = unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values)) };
    if !bytes.is_empty() {
        w.write_rows(bytes)?;
    }
    w.finish()?;
    Ok(())
}

/// What an `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyInfo {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Byte offset of the data.
    pub data_offset: u64,
}

/// Length of the header after the fixed preamble, and the preamble's own length (10 bytes in
/// format 1.0, 12 in 2.0/3.0), from the first 10 bytes and, for 2.0/3.0, two more.
fn preamble(pre: &[u8]) -> Result<(usize, usize), String> {
    if pre.len() < 10 {
        return Err("too short for an .npy header".into());
    }
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not an .npy file (bad magic)".into());
    }
    let (hlen, pre_len) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
        2 | 3 if pre.len() >= 12 => (u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize, 12),
        2 | 3 => return Err("truncated header".into()),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    if hlen > 1 << 20 {
        return Err("header length implausible".into());
    }
    Ok((hlen, pre_len))
}

/// dtype and shape from the header dictionary.
fn parse_dict(h: &str) -> Result<(Dtype, Vec<u64>), String> {
    let field = |name: &str| -> Option<String> {
        let i = h.find(&format!("'{name}':"))? + name.len() + 3;
        Some(h[i..].trim_start().to_string())
    };
    let descr = field("descr").ok_or("header has no descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("")
        .to_string();
    let dtype = Dtype::from_descr(&descr).ok_or_else(|| format!("unsupported dtype {descr}"))?;
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_s = field("shape").ok_or("header has no shape")?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad shape")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| format!("bad shape entry `{s}`")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dtype, shape))
}

/// Data bytes the header promises; an overflowing shape is an error, not a wrap-around.
fn data_len(dtype: Dtype, shape: &[u64]) -> Result<u64, String> {
    shape
        .iter()
        .try_fold(dtype.size() as u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))
}

/// Parse the header of an `.npy` file, checking it against the file size.
pub fn read_info(path: &Path) -> Result<NpyInfo, String> {
    let err = |m: String| format!("{}: {m}", path.display());
    let mut f = File::open(path).map_err(|e| err(e.to_string()))?;
    let mut pre = [0u8; 12];
    f.read_exact(&mut pre[..10])
        .map_err(|_| err("too short for an .npy header".into()))?;
    if matches!(pre[6], 2 | 3) {
        f.read_exact(&mut pre[10..])
            .map_err(|_| err("truncated header".into()))?;
    }
    let (hlen, pre_len) = preamble(&pre).map_err(err)?;
    let mut h = vec![0u8; hlen];
    f.read_exact(&mut h).map_err(|_| err("truncated header".into()))?;
    let (dtype, shape) = parse_dict(&String::from_utf8_lossy(&h)).map_err(err)?;
    let data_offset = (pre_len + hlen) as u64;
    let need = data_len(dtype, &shape).map_err(err)?;
    let len = f.metadata().map_err(|e| err(e.to_string()))?.len();
    if len < data_offset + need {
        return Err(err(format!(
            "truncated: header promises {need} data bytes, file has {}",
            len.saturating_sub(data_offset)
        )));
    }
    Ok(NpyInfo {
        dtype,
        shape,
        data_offset,
    })
}

/// A whole `.npy` file in memory, byte for byte what `np.save(..., allow_pickle=False)` writes
/// (format 1.0, the header padded with numpy's growth room and aligned to 64 bytes), so that
/// peers exchanging arrays by content hash (Flower) see identical bytes for identical arrays.
/// `data` holds the raw little-endian values.
pub fn to_bytes(dtype: Dtype, shape: &[u64], data: &[u8]) -> Result<Vec<u8>, String> {
    let need = data_len(dtype, shape)?;
    if need != data.len() as u64 {
        return Err(format!(
            "shape {shape:?} of {} needs {need} bytes, got {}",
            dtype.descr(),
            data.len()
        ));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_s}, }}",
        dtype.descr()
    );
    // numpy leaves room for the first axis to grow to 21 digits (GROWTH_AXIS_MAX_DIGITS).
    if let Some(first) = dims.first() {
        dict.push_str(&" ".repeat(21usize.saturating_sub(first.len())));
    }
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    if total - 10 > u16::MAX as usize {
        return Err(format!("shape {shape:?} needs a header too long for .npy format 1.0"));
    }
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(data);
    Ok(out)
}

/// Parse a whole `.npy` file held in memory: its header and its data bytes (exactly as many
/// as the shape needs; trailing bytes are an error).
pub fn parse_bytes(bytes: &[u8]) -> Result<(NpyInfo, &[u8]), String> {
    let (hlen, pre_len) = preamble(bytes)?;
    let data_offset = pre_len + hlen;
    let h = bytes.get(pre_len..data_offset).ok_or("truncated header")?;
    let (dtype, shape) = parse_dict(&String::from_utf8_lossy(h))?;
    let need = data_len(dtype, &shape)?;
    let data = &bytes[data_offset..];
    if data.len() as u64 != need {
        return Err(format!(
            "header promises {need} data bytes (shape {shape:?}, {}), the array holds {}",
            dtype.descr(),
            data.len()
        ));
    }
    Ok((
        NpyInfo {
            dtype,
            shape,
            data_offset: data_offset as u64,
        },
        data,
    ))
}

/// Read a whole `.npy` file's data bytes (checked against `dtype`).
pub fn read_bytes(path: &Path, dtype: Dtype) -> Result<(NpyInfo, Vec<u8>), String> {
    let info = read_info(path)?;
    if info.dtype != dtype {
        return Err(format!(
            "{}: dtype {:?}, expected {:?}",
            path.display(),
            info.dtype,
            dtype
        ));
    }
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(info.data_offset)).map_err(|e| e.to_string())?;
    let n = info.shape.iter().product::<u64>() as usize * dtype.size();
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((info, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_header_patch() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.npy");
        let mut w = NpyWriter::create(&p, Dtype::U8, &[4]).unwrap();
        w.write_rows(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        w.write_rows(&[9, 9, 9, 9]).unwrap();
        assert!(w.write_rows(&[1, 2, 3]).is_err());
        assert_eq!(w.finish().unwrap(), 3);
        let (info, data) = read_bytes(&p, Dtype::U8).unwrap();
        assert_eq!(info.shape, vec![3, 4]);
        assert_eq!(info.data_offset, 128);
        assert_eq!(data[8..], [9, 9, 9, 9]);
        let raw = std::fs::read(&p).unwrap();
        let h = String::from_utf8_lossy(&raw[10..128]);
        assert!(
            h.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }"),
            "{h}"
        );
        assert_eq!(raw[127], b'\n');
    }

    #[test]
    fn one_d_u64() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.npy");
        write_1d(&p, Dtype::U64, &[1u64, 2, 300]).unwrap();
        let (info, data) = read_bytes(&p, Dtype::U64).unwrap();
        assert_eq!(info.shape, vec![3]);
        assert_eq!(u64::from_le_bytes(data[16..24].try_into().unwrap()), 300);
        assert!(read_bytes(&p, Dtype::U8).is_err());
    }

    #[test]
    fn in_memory_bytes_match_numpy_and_round_trip() {
        let vals = [1.5f32, -2.0, 0.25, 8.0, 0.0, -0.5];
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = to_bytes(Dtype::F32, &[2, 3], &data).unwrap();
        // np.save(f, np.zeros((2, 3), "<f4")) writes exactly this 128-byte header.
        let want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        assert_eq!(&b[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert_eq!(&b[10..10 + want.len()], want.as_bytes());
        assert_eq!(b.len(), 128 + 24);
        assert_eq!(b[127], b'\n');
        assert!(b[10 + want.len()..127].iter().all(|&c| c == b' '));
        let (info, back) = parse_bytes(&b).unwrap();
        assert_eq!(
            (info.dtype, info.shape.clone(), info.data_offset),
            (Dtype::F32, vec![2, 3], 128)
        );
        assert_eq!(back, &data[..]);
        let one = to_bytes(Dtype::F32, &[1], &data[..4]).unwrap();
        assert!(String::from_utf8_lossy(&one).contains("'shape': (1,), }"));
        assert_eq!(one.len() % 64, 4);
        let scalar = to_bytes(Dtype::F32, &[], &data[..4]).unwrap();
        assert_eq!(parse_bytes(&scalar).unwrap().0.shape, Vec::<u64>::new());
    }

    #[test]
    fn in_memory_errors_are_named() {
        assert!(to_bytes(Dtype::F32, &[2, 2], &[0u8; 12])
            .unwrap_err()
            .contains("needs 16 bytes"));
        let b = to_bytes(Dtype::F32, &[2], &[0u8; 8]).unwrap();
        assert!(parse_bytes(&b[..b.len() - 1]).unwrap_err().contains("promises 8"));
        assert!(parse_bytes(&b[..20]).unwrap_err().contains("truncated"));
        assert!(parse_bytes(b"NUMPY.......").unwrap_err().contains("bad magic"));
        let mut f2 = b.clone();
        let at = f2.windows(3).position(|w| w == b"<f4").unwrap();
        f2[at + 2] = b'2';
        assert!(parse_bytes(&f2).unwrap_err().contains("unsupported dtype <f2"));
        assert!(data_len(Dtype::F32, &[u64::MAX, 2]).unwrap_err().contains("too large"));
    }

    #[test]
    fn truncated_file_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.npy");
        let mut w = NpyWriter::create(&p, Dtype::U16, &[2, 2]).unwrap();
        w.write_rows(&[0u8; 16]).unwrap();
        w.finish().unwrap();
        let raw = std::fs::read(&p).unwrap();
        std::fs::write(&p, &raw[..raw.len() - 3]).unwrap();
        let e = read_info(&p).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, b"hello world, not numpy").unwrap();
        assert!(read_info(&p).unwrap_err().contains("bad magic"));
    }
}
