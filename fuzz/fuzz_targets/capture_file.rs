//! Whole-file fuzzing: container parsing (pcap/pcapng, resync), decoding, flows, Deep Packet
//! vectors and FlowPic images — everything `prepare` runs on an untrusted capture.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privpkt_capture::{
    extract_from, BehaviourConfig, DeepPacketConfig, StatsScope, ExtractConfig, FlowConfig, FlowKey, FlowPicConfig, FlowPicImage, Masking,
    Representation, SampleMeta, SampleSink,
};

struct Sink;
impl SampleSink for Sink {
    fn label(&mut self, k: &FlowKey) -> Option<u32> {
        Some(k.a.port as u32 % 3)
    }
    fn packet(&mut self, _: &SampleMeta, v: &[u8; 1500]) {
        std::hint::black_box(v);
    }
    fn flowpic(&mut self, _: &SampleMeta, img: &FlowPicImage) {
        std::hint::black_box(img);
    }
    fn behaviour(&mut self, _: &SampleMeta, sample: &[f32]) {
        assert!(sample.iter().all(|v| v.is_finite()), "behaviour samples are finite");
    }
}

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz-input");
    let masking = if data.len() % 2 == 0 { Masking::Honest } else { Masking::Paper };
    for repr in [
        Representation::DeepPacket(DeepPacketConfig { masking }),
        Representation::FlowPic(FlowPicConfig { block_s: 1.0, resolution: 16, min_packets: 1, bidirectional: data.len() % 3 == 0 }),
        Representation::Behaviour(BehaviourConfig {
            packets: 8,
            payload_bytes: 4,
            payload_packets: 2,
            stats: Some(if data.len() % 2 == 0 { StatsScope::Flow } else { StatsScope::Seconds { seconds: 0.5 } }),
            min_packets: 1,
        }),
    ] {
        let cfg = ExtractConfig { repr, flow: FlowConfig::default(), max_per_flow: 5 };
        let _ = extract_from(path, std::io::Cursor::new(data), &cfg, &mut Sink);
    }
});
