//! One capture file → labelled samples, streaming.
//!
//! Memory is the flow table (plus, for FlowPic, the packets of each flow's open block); the
//! file itself is read through a fixed window. Labels are asked for once per flow, when it
//! starts, so packets of unlabelled flows are counted but never vectorised.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::behaviour::{BehaviourConfig, BehaviourState};
use crate::decode::{decode, L4};
use crate::deeppacket::{vectorize, DeepPacketConfig, VECTOR_LEN};
use crate::flow::{Direction, FlowConfig, FlowEnd, FlowKey, FlowTable};
use crate::flowpic::{FlowPicConfig, FlowPicImage, FlowPicState};
use crate::reader::{read_capture_from, CaptureError, ReadReport, SkipCount};

/// Which sample representation to produce.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Representation {
    DeepPacket(DeepPacketConfig),
    FlowPic(FlowPicConfig),
    /// One sample per flow: its first packets' series and/or its statistics.
    Behaviour(BehaviourConfig),
}

impl Representation {
    /// The dataset's name of the representation.
    pub fn name(&self) -> &'static str {
        match self {
            Representation::DeepPacket(_) => "deeppacket",
            Representation::FlowPic(_) => "flowpic",
            Representation::Behaviour(b) => b.name(),
        }
    }

    /// Refuses settings that cannot produce samples.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Representation::DeepPacket(_) => Ok(()),
            Representation::FlowPic(fp) => fp.validate(),
            Representation::Behaviour(b) => b.validate(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExtractConfig {
    pub repr: Representation,
    pub flow: FlowConfig,
    /// Keep at most this many samples per flow (its first ones); 0 keeps all. One huge flow
    /// must not stand for a whole class.
    pub max_per_flow: u32,
}

/// Everything known about a sample besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct SampleMeta {
    pub flow_id: u64,
    pub key: FlowKey,
    /// Packet direction (Deep Packet) or image direction (FlowPic; `None` = bidirectional).
    pub direction: Option<Direction>,
    pub ts_ns: i64,
    pub label: u32,
    pub l4: L4,
    /// Ports of the packet (Deep Packet) or of the flow's forward direction (FlowPic): kept
    /// for the header-only baseline, since the vectors themselves have them masked.
    pub src_port: u16,
    pub dst_port: u16,
    /// Packets of the flow seen when the sample was taken: a Deep Packet vector's packet
    /// number, a FlowPic block's last packet, the packet a behaviour sample was decided at.
    pub flow_packets: u64,
}

/// Receives the samples of one file.
pub trait SampleSink {
    /// Label of a flow, asked once when the flow starts; `None` leaves it unlabelled.
    fn label(&mut self, key: &FlowKey) -> Option<u32>;
    fn packet(&mut self, meta: &SampleMeta, vector: &[u8; VECTOR_LEN]);
    fn flowpic(&mut self, meta: &SampleMeta, image: &FlowPicImage);
    /// A flow's behaviour sample (`BehaviourConfig::sample_len` raw values).
    fn behaviour(&mut self, meta: &SampleMeta, sample: &[f32]);
}

/// What extraction found in one file, beside what reading found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtractReport {
    pub read: ReadReport,
    /// Frames that gave no TCP/UDP packet, by reason.
    pub not_decoded: BTreeMap<String, SkipCount>,
    pub tcp_udp_packets: u64,
    /// TCP/UDP packets of flows that got a label.
    pub labelled_packets: u64,
    pub unlabelled_packets: u64,
    pub flows: u64,
    pub labelled_flows: u64,
    /// Packets removed by the Deep Packet rules, by rule.
    pub dropped_by_rule: BTreeMap<String, u64>,
    /// Samples not kept because their flow reached `max_per_flow`.
    pub capped: u64,
    /// FlowPic blocks below the minimum packet count.
    pub samples: u64,
    pub peak_flows: u64,
}

struct FlowState {
    label: Option<u32>,
    samples: u32,
    /// Ports of the forward direction, for FlowPic sample metadata.
    ports: (u16, u16),
    fp: FlowPicState,
    /// Behaviour representation only.
    beh: Option<Box<BehaviourState>>,
    /// Packets of the flow so far, and the first one's time.
    packets: u64,
    first_ns: i64,
}

/// Extract the samples of the capture at `path` into `sink`.
pub fn extract_file<S: SampleSink>(
    path: &Path,
    cfg: &ExtractConfig,
    sink: &mut S,
) -> Result<ExtractReport, CaptureError> {
    let file = std::fs::File::open(path).map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    extract_from(path, file, cfg, sink)
}

/// As [`extract_file`], from any reader (`path` names it in errors and reports).
pub fn extract_from<R: std::io::Read, S: SampleSink>(
    path: &Path,
    input: R,
    cfg: &ExtractConfig,
    sink: &mut S,
) -> Result<ExtractReport, CaptureError> {
    let mut rep = ExtractReport::default();
    let mut table: FlowTable<FlowState> = FlowTable::new(cfg.flow);
    let mut buf = Box::new([0u8; VECTOR_LEN]);
    let cap = if cfg.max_per_flow == 0 {
        u32::MAX
    } else {
        cfg.max_per_flow
    };

    // Flow ends only matter to FlowPic (open blocks are flushed there).
    fn end_flow<S: SampleSink>(
        e: FlowEnd<FlowState>,
        cfg: &ExtractConfig,
        cap: u32,
        sink: &mut S,
        rep: &mut ExtractReport,
    ) {
        let Some(label) = e.state.label else { return };
        let mut st = e.state;
        match cfg.repr {
            Representation::FlowPic(fp) => {
                let mut n = st.samples;
                let (id, key, ports, packets) = (e.id, e.key, st.ports, st.packets);
                st.fp.finish(&fp, &mut |img| {
                    emit_image(img, id, key, label, ports, packets, &mut n, cap, sink, rep)
                });
            }
            Representation::Behaviour(b) => {
                if let Some(sample) = st.beh.as_mut().and_then(|s| s.finish(&b)) {
                    let meta = flow_meta(e.id, e.key, e.first_ts_ns, label, st.ports, st.packets);
                    rep.samples += 1;
                    sink.behaviour(&meta, &sample);
                }
            }
            Representation::DeepPacket(_) => {}
        }
    }

    let read = read_capture_from(path, input, |raw| {
        let p = match decode(raw.linktype, raw.data) {
            Ok(p) => p,
            Err(why) => {
                let e = rep.not_decoded.entry(why.describe().to_string()).or_insert(SkipCount {
                    count: 0,
                    first_offset: raw.offset,
                });
                e.count += 1;
                return;
            }
        };
        rep.tcp_udp_packets += 1;
        for e in table.drain_ended() {
            end_flow(e, cfg, cap, sink, &mut rep);
        }
        let table_len = table.len() + 1;
        let placed = table.place(&p, raw.ts_ns, |_, _| FlowState {
            label: None,
            samples: 0,
            ports: (p.src_port, p.dst_port),
            fp: FlowPicState::default(),
            beh: matches!(cfg.repr, Representation::Behaviour(_)).then(Box::default),
            packets: 0,
            first_ns: raw.ts_ns,
        });
        rep.peak_flows = rep.peak_flows.max(table_len as u64);
        if placed.new_flow {
            placed.state.label = sink.label(&placed.key);
            rep.flows += 1;
            if placed.state.label.is_some() {
                rep.labelled_flows += 1;
            }
        }
        let Some(label) = placed.state.label else {
            rep.unlabelled_packets += 1;
            return;
        };
        rep.labelled_packets += 1;
        placed.state.packets += 1;
        let flow_packets = placed.state.packets;
        match cfg.repr {
            Representation::DeepPacket(dp) => {
                if placed.state.samples >= cap {
                    // Still apply the drop rules first so "capped" counts only real samples.
                    if crate::deeppacket::drop_reason(&p).is_none() {
                        rep.capped += 1;
                    } else {
                        count_drop(&mut rep, &p);
                    }
                    return;
                }
                match vectorize(&p, &dp, &mut buf) {
                    Ok(()) => {
                        placed.state.samples += 1;
                        rep.samples += 1;
                        let meta = SampleMeta {
                            flow_id: placed.flow_id,
                            key: placed.key,
                            direction: Some(placed.direction),
                            ts_ns: raw.ts_ns,
                            label,
                            l4: p.l4,
                            src_port: p.src_port,
                            dst_port: p.dst_port,
                            flow_packets,
                        };
                        sink.packet(&meta, &buf);
                    }
                    Err(why) => *rep.dropped_by_rule.entry(why.describe().to_string()).or_default() += 1,
                }
            }
            Representation::FlowPic(fp) => {
                let (id, key, ports) = (placed.flow_id, placed.key, placed.state.ports);
                let st = placed.state;
                let mut n = st.samples;
                st.fp
                    .add(&fp, raw.ts_ns, placed.direction, p.ip_len as u32, &mut |img| {
                        emit_image(
                            img,
                            id,
                            key,
                            label,
                            ports,
                            flow_packets - 1,
                            &mut n,
                            cap,
                            sink,
                            &mut rep,
                        )
                    });
                st.samples = n;
            }
            Representation::Behaviour(b) => {
                let st = placed.state;
                let beh = st.beh.get_or_insert_with(Box::default);
                if let Some(sample) = beh.add(&b, raw.ts_ns, placed.direction, &p) {
                    let meta = flow_meta(placed.flow_id, placed.key, st.first_ns, label, st.ports, flow_packets);
                    rep.samples += 1;
                    sink.behaviour(&meta, &sample);
                }
            }
        }
    })?;
    for e in table.finish_all() {
        end_flow(e, cfg, cap, sink, &mut rep);
    }
    rep.read = read;
    Ok(rep)
}

fn count_drop(rep: &mut ExtractReport, p: &crate::decode::Decoded<'_>) {
    if let Some(why) = crate::deeppacket::drop_reason(p) {
        *rep.dropped_by_rule.entry(why.describe().to_string()).or_default() += 1;
    }
}

/// Metadata of a per-flow sample: the flow's first packet's time and ports.
fn flow_meta(flow_id: u64, key: FlowKey, first_ns: i64, label: u32, ports: (u16, u16), packets: u64) -> SampleMeta {
    SampleMeta {
        flow_id,
        key,
        direction: None,
        ts_ns: first_ns,
        label,
        l4: key.l4,
        src_port: ports.0,
        dst_port: ports.1,
        flow_packets: packets,
    }
}

#[allow(clippy::too_many_arguments)]
fn emit_image<S: SampleSink>(
    img: FlowPicImage,
    flow_id: u64,
    key: FlowKey,
    label: u32,
    ports: (u16, u16),
    flow_packets: u64,
    n: &mut u32,
    cap: u32,
    sink: &mut S,
    rep: &mut ExtractReport,
) {
    if *n >= cap {
        rep.capped += 1;
        return;
    }
    *n += 1;
    rep.samples += 1;
    let meta = SampleMeta {
        flow_id,
        key,
        direction: img.direction,
        ts_ns: img.start_ns,
        label,
        l4: key.l4,
        src_port: ports.0,
        dst_port: ports.1,
        flow_packets,
    };
    sink.flowpic(&meta, &img);
}
