//! privpkt-capture: pcap/pcapng captures → TCP/UDP packets → bidirectional flows → Deep Packet
//! vectors, FlowPic images and flow behaviour (packet series, flow statistics).
//!
//! The layer knows nothing of labels files or datasets: [`extract::extract_file`] asks a
//! [`extract::SampleSink`] for each new flow's label and hands it the samples.

pub mod behaviour;
pub mod decode;
pub mod deeppacket;
pub mod extract;
pub mod flow;
pub mod flowpic;
pub mod reader;

pub use behaviour::{BehaviourConfig, StatsScope, SERIES_CHANNELS, STATS};
pub use decode::{decode, DecodeSkip, Decoded, L4};
pub use deeppacket::{DeepPacketConfig, Masking, VECTOR_LEN};
pub use extract::{extract_file, extract_from, ExtractConfig, ExtractReport, Representation, SampleMeta, SampleSink};
pub use flow::{Direction, Endpoint, FlowConfig, FlowKey, FlowTable};
pub use flowpic::{FlowPicConfig, FlowPicImage};
pub use reader::{read_capture, read_capture_from, CaptureError, CaptureFormat, RawPacket, ReadReport};
