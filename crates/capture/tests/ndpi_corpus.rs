//! Reads every capture of the nDPI corpus (543 real files, some deliberately broken) when
//! `../shared/data/ndpi` is present: no panic, every file reported, most frames decoded.

use std::path::PathBuf;

use privpkt_capture::{
    extract_file, DeepPacketConfig, ExtractConfig, FlowConfig, FlowKey, FlowPicImage, Representation, SampleMeta,
    SampleSink,
};

fn corpus() -> Option<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = here.join("../../../shared/data/ndpi/pcap");
    dir.is_dir().then_some(dir)
}

struct Count(u64);
impl SampleSink for Count {
    fn label(&mut self, _: &FlowKey) -> Option<u32> {
        Some(0)
    }
    fn packet(&mut self, _: &SampleMeta, v: &[u8; 1500]) {
        self.0 += v[0] as u64 & 1;
    }
    fn flowpic(&mut self, _: &SampleMeta, _: &FlowPicImage) {}
    fn behaviour(&mut self, _: &SampleMeta, sample: &[f32]) {
        assert!(
            sample.iter().all(|v| v.is_finite()),
            "a behaviour sample holds a non-finite value"
        );
        self.0 += 1;
    }
}

#[test]
fn behaviour_of_every_flow_is_finite() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/data/ndpi not found (it ships beside the repository in CI only)");
        return;
    };
    let b = privpkt_capture::BehaviourConfig {
        payload_bytes: 16,
        ..privpkt_capture::BehaviourConfig::behaviour()
    };
    let cfg = ExtractConfig {
        repr: Representation::Behaviour(b),
        flow: FlowConfig::default(),
        max_per_flow: 0,
    };
    let (mut flows, mut samples) = (0u64, 0u64);
    for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        let mut c = Count(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extract_file(&f, &cfg, &mut c)))
            .unwrap_or_else(|_| panic!("panic on {}", f.display()));
        if let Ok(rep) = r {
            assert_eq!(rep.samples, c.0, "{}", f.display());
            // One sample per flow (every flow is labelled here and has ≥ 1 packet).
            assert_eq!(rep.samples, rep.flows, "{}", f.display());
            flows += rep.flows;
            samples += c.0;
        }
    }
    assert!(flows > 5000, "{flows} flows");
    assert_eq!(samples, flows);
}

#[test]
fn whole_corpus_reads_without_panic() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/data/ndpi not found (it ships beside the repository in CI only)");
        return;
    };
    let cfg = ExtractConfig {
        repr: Representation::DeepPacket(DeepPacketConfig::default()),
        flow: FlowConfig::default(),
        max_per_flow: 0,
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 500, "corpus has {} files", files.len());
    let (mut records, mut tcpudp, mut failed, mut stopped) = (0u64, 0u64, 0, 0);
    for f in &files {
        let r = std::panic::catch_unwind(|| extract_file(f, &cfg, &mut Count(0)));
        let r = r.unwrap_or_else(|_| panic!("panic on {}", f.display()));
        match r {
            Ok(rep) => {
                records += rep.read.records;
                tcpudp += rep.tcp_udp_packets;
                if let Some(why) = &rep.read.stopped_early {
                    stopped += 1;
                    eprintln!("{}: {why}", f.display());
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
            }
        }
    }
    eprintln!(
        "{} files, {records} records, {tcpudp} TCP/UDP, {failed} unreadable, {stopped} stopped early",
        files.len()
    );
    assert!(failed <= 5, "{failed} files unreadable");
    assert!(tcpudp as f64 > 0.8 * records as f64);
}
