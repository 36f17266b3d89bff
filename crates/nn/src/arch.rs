//! Model architectures, the inputs they take and how raw samples are scaled for them.

use std::fmt;
use std::str::FromStr;

use privpkt_capture::{BehaviourConfig, Representation, SERIES_CHANNELS};
use privpkt_dataset::{Manifest, Storage};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// The architectures (one module each in [`crate::archs`]).
///
/// The papers' models, on packet bytes and images:
/// - `deeppacket-app` / `deeppacket-traffic`: Deep Packet's 1D-CNN, application identification
///   (conv 200×k4 s3 → conv 200×k5 s1) and traffic characterisation (k5 s3 → k4 s3) variants,
///   each followed by max-pool 2 and FC 200-100-50 with dropout 0.05.
/// - `sae`: Deep Packet's stacked autoencoder 1500→400-300-200-100-50, greedily pre-trained.
/// - `flowpic`: the FlowPic CNN for the paper's 1500×1500 images (conv 10×10 s5 twice).
/// - `flowpic-mini`: the same layout with 3×3 stride-1 convolutions, for 32×32 mini-FlowPics.
///
/// Models of flow behaviour (series and statistics), small enough for DP-SGD:
/// - `logistic`: multinomial logistic regression;
/// - `mlp`: two hidden layers (256, 128);
/// - `series-cnn`: 1-D convolutions over the packet series with masked global pooling, the
///   first packets in order, and the flow statistics when present.
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
    Logistic,
    Mlp,
    #[serde(rename = "series-cnn")]
    SeriesCnn,
}

impl Arch {
    pub const ALL: [Arch; 8] = [
        Arch::DeepPacketApp,
        Arch::DeepPacketTraffic,
        Arch::Sae,
        Arch::FlowPic,
        Arch::FlowPicMini,
        Arch::Logistic,
        Arch::Mlp,
        Arch::SeriesCnn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::DeepPacketApp => "deeppacket-app",
            Arch::DeepPacketTraffic => "deeppacket-traffic",
            Arch::Sae => "sae",
            Arch::FlowPic => "flowpic",
            Arch::FlowPicMini => "flowpic-mini",
            Arch::Logistic => "logistic",
            Arch::Mlp => "mlp",
            Arch::SeriesCnn => "series-cnn",
        }
    }

    /// The architecture a representation gets when none is asked for: the app-ID CNN for Deep
    /// Packet vectors; the paper's FlowPic CNN for images of at least 256×256 (its two stride-5
    /// convolutions need room), the mini variant below that; for flow behaviour the series
    /// network when there is a series long enough for it, else the MLP.
    pub fn default_for(repr: &Representation) -> Arch {
        match repr {
            Representation::DeepPacket(_) => Arch::DeepPacketApp,
            Representation::FlowPic(fp) if fp.resolution >= 256 => Arch::FlowPic,
            Representation::FlowPic(_) => Arch::FlowPicMini,
            Representation::Behaviour(b) => {
                let input = InputSpec::of_behaviour(b);
                if Arch::SeriesCnn.check_input(&input).is_ok() {
                    Arch::SeriesCnn
                } else {
                    Arch::Mlp
                }
            }
        }
    }

    /// Whether this architecture can take `input`, with the reason when it cannot.
    pub fn check_input(self, input: &InputSpec) -> Result<()> {
        crate::archs::of(self).check_input(input)
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
    /// A flow's behaviour: `packets` series rows of `SERIES_CHANNELS + payload_bytes` values,
    /// then `stats` flow statistics (the layout of `privpkt_capture::behaviour`); the model
    /// sees each number spread over `bins` piecewise-linear bins ([`Scaling::Behaviour`]).
    Behaviour {
        packets: usize,
        payload_bytes: usize,
        stats: usize,
        /// A model's choice, not the data's (model files without it: [`PLE_BINS`]).
        #[serde(default = "default_bins")]
        bins: usize,
    },
}

fn default_bins() -> usize {
    PLE_BINS
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
            (Representation::Behaviour(b), Storage::Dense { row_shape, .. }) => {
                if row_shape[..] != [b.sample_len() as u64] {
                    return Err(bad(format!(
                        "behaviour samples of {} values expected, rows of shape {row_shape:?} stored",
                        b.sample_len()
                    )));
                }
                Ok(InputSpec::of_behaviour(b))
            }
            (Representation::DeepPacket(_) | Representation::Behaviour(_), Storage::Sparse { .. }) => {
                Err(bad(format!("{} samples stored sparse", m.extract.repr.name())))
            }
        }
    }

    /// Series packets, payload bytes per packet and statistics of a behaviour input.
    pub fn behaviour_layout(&self) -> Option<(usize, usize, usize)> {
        match *self {
            InputSpec::Behaviour {
                packets,
                payload_bytes,
                stats,
                ..
            } => Some((packets, payload_bytes, stats)),
            _ => None,
        }
    }

    /// Piecewise-linear bins per number of a behaviour input (0 for other inputs).
    pub fn bins(&self) -> usize {
        match *self {
            InputSpec::Behaviour { bins, .. } => bins,
            _ => 0,
        }
    }

    /// The same samples seen through `bins` piecewise-linear bins per number (`None`, or an
    /// input other than behaviour: unchanged).
    pub fn with_bins(self, bins: Option<usize>) -> InputSpec {
        match (self, bins) {
            (
                InputSpec::Behaviour {
                    packets,
                    payload_bytes,
                    stats,
                    ..
                },
                Some(bins),
            ) => InputSpec::Behaviour {
                packets,
                payload_bytes,
                stats,
                bins,
            },
            _ => self,
        }
    }

    /// Whether `other` holds samples stored like this input's (the model's encoding aside).
    pub fn same_samples(&self, other: &InputSpec) -> bool {
        *self == other.with_bins(Some(self.bins()).filter(|&b| b > 0))
    }

    /// The input of behaviour samples made with `b`, seen through the default bins.
    pub fn of_behaviour(b: &BehaviourConfig) -> InputSpec {
        InputSpec::Behaviour {
            packets: b.packets as usize,
            payload_bytes: b.payload_bytes as usize,
            stats: b.stats_len(),
            bins: PLE_BINS,
        }
    }

    /// Values per sample the network sees (after [`Scaling`], which widens behaviour samples).
    pub fn features(&self) -> usize {
        match *self {
            InputSpec::Behaviour {
                packets,
                payload_bytes,
                stats,
                bins,
            } => packets * encoded_packet_width(payload_bytes, bins) + stats * bins,
            _ => self.stored_len(),
        }
    }

    /// Values per sample as stored in the dataset.
    pub fn stored_len(&self) -> usize {
        match *self {
            InputSpec::DeepPacket { len } => len,
            InputSpec::FlowPic { resolution } => resolution * resolution,
            InputSpec::Behaviour {
                packets,
                payload_bytes,
                stats,
                ..
            } => packets * (SERIES_CHANNELS + payload_bytes) + stats,
        }
    }

    /// The dataset's name for the representation.
    pub fn representation(&self) -> &'static str {
        match *self {
            InputSpec::DeepPacket { .. } => "deeppacket",
            InputSpec::FlowPic { .. } => "flowpic",
            InputSpec::Behaviour { packets, stats, .. } => match (packets > 0, stats > 0) {
                (true, false) => "series",
                (false, true) => "flowstats",
                _ => "behaviour",
            },
        }
    }

    /// How raw values become model inputs.
    pub fn scaling(&self) -> Scaling {
        match self {
            InputSpec::DeepPacket { .. } => Scaling::BytesOver255,
            InputSpec::FlowPic { .. } => Scaling::Log1pOverImageMax,
            InputSpec::Behaviour { .. } => Scaling::Behaviour,
        }
    }
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InputSpec::DeepPacket { len } => write!(f, "Deep Packet vectors of {len} bytes"),
            InputSpec::FlowPic { resolution } => write!(f, "{resolution}×{resolution} FlowPics"),
            InputSpec::Behaviour {
                packets,
                payload_bytes,
                stats,
                bins,
            } => {
                let mut parts = Vec::new();
                if packets > 0 {
                    parts.push(if payload_bytes > 0 {
                        format!("{packets}-packet series with {payload_bytes} payload bytes each")
                    } else {
                        format!("{packets}-packet series")
                    });
                }
                if stats > 0 {
                    parts.push(format!("{stats} flow statistics"));
                }
                write!(f, "flow behaviour ({})", parts.join(" and "))?;
                if bins != PLE_BINS {
                    write!(f, ", numbers in {bins} bins")?;
                }
                Ok(())
            }
        }
    }
}

/// Piecewise-linear bins of each numeric behaviour value ([`Scaling::Behaviour`]), unless the
/// model asks for others (`--ple-bins`): 16 lets a small model draw fine thresholds; fewer
/// bins mean fewer weights, which DP-SGD's noise favours.
pub const PLE_BINS: usize = 16;
/// Bins a model may ask for.
pub const MAX_PLE_BINS: usize = 64;
/// Upper end of the last bin, on the scaled values (larger values saturate it).
pub const PLE_MAX: f32 = 1.6;
/// Series values per packet kept as they are: mask, direction and the six TCP flags.
pub const PLAIN_CHANNELS: usize = 8;
/// Numeric series values per packet spread over bins: IP length, payload length, gap.
pub const BINNED_CHANNELS: usize = 3;

/// Network inputs per series packet with `payload_bytes` bytes and `bins` bins per number.
pub fn encoded_packet_width(payload_bytes: usize, bins: usize) -> usize {
    PLAIN_CHANNELS + BINNED_CHANNELS * bins + 8 * payload_bytes
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
    /// Flow behaviour, each value by a fixed transform of its kind, so no statistic of the data
    /// (nothing private) is needed: sizes over 1500; gaps `ln(1 + µs) / 16`; counts
    /// `ln(1 + n) / 10`; bytes `ln(1 + b) / 16`; milliseconds `ln(1 + ms) / 12`; shares as they
    /// are; the protocol as 1 for UDP. Each such number is then spread over the input's `bins`
    /// ([`PLE_BINS`] unless the model asks for others) piecewise-linear bins of width
    /// [`PLE_MAX`]`/bins` (Gorishniy et al. 2022: bin k is
    /// `clamp(v/w − k, 0, 1)`), which lets small models draw thresholds as trees do; masks,
    /// directions and flags stay single 0/±1 values, and each payload byte becomes its 8 bits.
    Behaviour,
}
