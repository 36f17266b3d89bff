//! Model architectures, the inputs they take and how raw samples are scaled for them.

use std::fmt;
use std::str::FromStr;

use privpkt_capture::{Representation, VECTOR_LEN};
use privpkt_dataset::{Manifest, Storage};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// The models of the two papers.
///
/// - `deeppacket-app` / `deeppacket-traffic`: Deep Packet's 1D-CNN, application identification
///   (conv 200×k4 s3 → conv 200×k5 s1) and traffic characterisation (k5 s3 → k4 s3) variants,
///   each followed by max-pool 2 and FC 200-100-50 with dropout 0.05.
/// - `sae`: Deep Packet's stacked autoencoder 1500→400-300-200-100-50, greedily pre-trained.
/// - `flowpic`: the FlowPic CNN for the paper's 1500×1500 images (conv 10×10 s5 twice).
/// - `flowpic-mini`: the same layout with 3×3 stride-1 convolutions, for 32×32 mini-FlowPics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    #[serde(rename = "deeppacket-app")]
    DeepPacketApp,
    #[serde(rename = "deeppacket-traffic")]
    DeepPacketTraffic,
    Sae,
    #[serde(rename = "flowpic")]
    FlowPic,
    #[serde(rename = "flowpic-mini")]
    FlowPicMini,
}

impl Arch {
    pub const ALL: [Arch; 5] = [
        Arch::DeepPacketApp,
        Arch::DeepPacketTraffic,
        Arch::Sae,
        Arch::FlowPic,
        Arch::FlowPicMini,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::DeepPacketApp => "deeppacket-app",
            Arch::DeepPacketTraffic => "deeppacket-traffic",
            Arch::Sae => "sae",
            Arch::FlowPic => "flowpic",
            Arch::FlowPicMini => "flowpic-mini",
        }
    }

    /// The architecture a representation gets when none is asked for: the app-ID CNN for Deep
    /// Packet vectors; the paper's FlowPic CNN for images of at least 256×256 (its two stride-5
    /// convolutions need room), the mini variant below that.
    pub fn default_for(repr: &Representation) -> Arch {
        match repr {
            Representation::DeepPacket(_) => Arch::DeepPacketApp,
            Representation::FlowPic(fp) if fp.resolution >= 256 => Arch::FlowPic,
            Representation::FlowPic(_) => Arch::FlowPicMini,
        }
    }

    /// Whether this architecture can take `input`, with the reason when it cannot.
    pub fn check_input(self, input: &InputSpec) -> Result<()> {
        match (self, input) {
            (Arch::DeepPacketApp | Arch::DeepPacketTraffic | Arch::Sae, InputSpec::DeepPacket { len }) => {
                if *len == VECTOR_LEN {
                    Ok(())
                } else {
                    Err(NnError::Incompatible(format!(
                        "{self} takes Deep Packet vectors of {VECTOR_LEN} bytes, the data has {len}"
                    )))
                }
            }
            (Arch::FlowPic | Arch::FlowPicMini, InputSpec::FlowPic { resolution }) => {
                crate::model::flowpic_dims(self, *resolution).map(|_| ())
            }
            _ => Err(NnError::Incompatible(format!(
                "{self} does not take {} samples",
                input.representation()
            ))),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<_> = Arch::ALL.iter().map(|a| a.name()).collect();
            NnError::Config(format!("unknown architecture `{s}` (one of {})", names.join(", ")))
        })
    }
}

/// What a model takes as one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputSpec {
    /// A Deep Packet vector of `len` bytes (1500).
    DeepPacket { len: usize },
    /// A FlowPic histogram of `resolution`×`resolution` packet counts.
    FlowPic { resolution: usize },
}

impl InputSpec {
    /// The input of a dataset, checked against how its samples are stored.
    pub fn from_manifest(m: &Manifest) -> Result<InputSpec> {
        let bad = |msg: String| NnError::Incompatible(format!("dataset storage: {msg}"));
        match (&m.extract.repr, &m.storage) {
            (Representation::DeepPacket(_), Storage::Dense { row_shape, .. }) => match row_shape[..] {
                [len] => Ok(InputSpec::DeepPacket { len: len as usize }),
                _ => Err(bad(format!("Deep Packet rows of shape {row_shape:?}"))),
            },
            (Representation::FlowPic(fp), storage) => {
                let r = fp.resolution as usize;
                let stored = match storage {
                    Storage::Dense { row_shape, .. } => row_shape.clone(),
                    Storage::Sparse { resolution, .. } => vec![*resolution as u64; 2],
                };
                if stored != [r as u64, r as u64] {
                    return Err(bad(format!("FlowPic resolution {r} but samples of shape {stored:?}")));
                }
                Ok(InputSpec::FlowPic { resolution: r })
            }
            (Representation::DeepPacket(_), Storage::Sparse { .. }) => {
                Err(bad("Deep Packet vectors stored sparse".into()))
            }
        }
    }

    /// Values per sample.
    pub fn features(&self) -> usize {
        match *self {
            InputSpec::DeepPacket { len } => len,
            InputSpec::FlowPic { resolution } => resolution * resolution,
        }
    }

    /// The dataset's name for the representation ("deeppacket" / "flowpic").
    pub fn representation(&self) -> &'static str {
        match self {
            InputSpec::DeepPacket { .. } => "deeppacket",
            InputSpec::FlowPic { .. } => "flowpic",
        }
    }

    /// How raw values become model inputs.
    pub fn scaling(&self) -> Scaling {
        match self {
            InputSpec::DeepPacket { .. } => Scaling::BytesOver255,
            InputSpec::FlowPic { .. } => Scaling::Log1pOverImageMax,
        }
    }
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSpec::DeepPacket { len } => write!(f, "Deep Packet vectors of {len} bytes"),
            InputSpec::FlowPic { resolution } => write!(f, "{resolution}×{resolution} FlowPics"),
        }
    }
}

/// Input scaling, recorded in the model file so inference scales exactly as training did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// `byte / 255`, into [0, 1].
    BytesOver255,
    /// `ln(1 + count) / ln(1 + max count of the image)`: packet counts are heavy-tailed, so a
    /// log keeps sparse bins visible, and dividing by the image's own maximum makes images of
    /// busy and quiet flows comparable. An empty image stays all zeros.
    Log1pOverImageMax,
}
