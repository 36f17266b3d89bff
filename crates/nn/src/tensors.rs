//! f32 tensors + JSON metadata in one safetensors file, with a checksum of the tensor bytes
//! (safetensors itself only checks the header, so a flipped weight byte would go unnoticed).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

/// Metadata key of the sha256 over all tensors (name, shape, little-endian data, by name).
const CHECKSUM_KEY: &str = "privpkt_tensors_sha256";

/// A named f32 tensor.
pub(crate) struct NamedTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn checksum<'a>(items: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>) -> String {
    let mut items: Vec<_> = items.collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, shape, data) in items {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update(data);
    }
    format!("{:x}", h.finalize())
}

/// Write tensors and `metadata` to `path` atomically (temporary sibling, then rename).
pub(crate) fn write(
    path: &Path,
    tensors: &[NamedTensor<'_>],
    mut metadata: HashMap<String, String>,
) -> Result<(), String> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| le_bytes(t.data)).collect();
    metadata.insert(
        CHECKSUM_KEY.into(),
        checksum(
            tensors
                .iter()
                .zip(&bytes)
                .map(|(t, b)| (t.name.as_str(), t.shape.as_slice(), b.as_slice())),
        ),
    );
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| format!("tensor {}: {e}", t.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| e.to_string())
}

/// Tensors read back: name → (shape, values).
pub(crate) type Loaded = (HashMap<String, String>, HashMap<String, (Vec<usize>, Vec<f32>)>);

/// Read a file written by [`write`], verifying its checksum. Errors are messages about what
/// is wrong with the file.
pub(crate) fn read(path: &Path) -> Result<Loaded, ReadError> {
    let buf = std::fs::read(path).map_err(ReadError::Io)?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| ReadError::Corrupt(format!("safetensors: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| ReadError::Corrupt(format!("safetensors: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let mut out = HashMap::new();
    let mut raw = Vec::new();
    for (name, view) in st.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(ReadError::Corrupt(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        raw.push((name, view.shape().to_vec(), view.data()));
    }
    let want = meta
        .get(CHECKSUM_KEY)
        .ok_or_else(|| ReadError::Corrupt("no tensor checksum in the header".into()))?;
    let got = checksum(raw.iter().map(|(n, s, d)| (*n, s.as_slice(), *d)));
    if &got != want {
        return Err(ReadError::Corrupt(
            "tensor data does not match its checksum (the file is damaged)".into(),
        ));
    }
    for (name, shape, data) in raw {
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name.to_string(), (shape, v));
    }
    Ok((meta.into_iter().collect(), out))
}

pub(crate) enum ReadError {
    Io(std::io::Error),
    Corrupt(String),
}

impl ReadError {
    /// The crate error for `path`: I/O stays I/O, damage becomes whatever `corrupt` makes of it
    /// (a corrupt model, a bad checkpoint).
    pub(crate) fn at(
        self,
        path: &std::path::Path,
        corrupt: impl FnOnce(String) -> crate::error::NnError,
    ) -> crate::error::NnError {
        match self {
            ReadError::Io(source) => crate::error::NnError::Io {
                path: path.to_path_buf(),
                source,
            },
            ReadError::Corrupt(m) => corrupt(m),
        }
    }
}
