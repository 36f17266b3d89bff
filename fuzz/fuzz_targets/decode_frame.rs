//! Frame decoding and Deep Packet vectorisation for every supported link type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privpkt_capture::{decode, deeppacket::vectorize, DeepPacketConfig};

const LINKTYPES: [u32; 16] = [0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 192, 228, 229, 276, 147, 0xffff];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let lt = LINKTYPES[sel as usize % LINKTYPES.len()];
    if let Ok(p) = decode(lt, frame) {
        let mut out = [0u8; 1500];
        let _ = vectorize(&p, &DeepPacketConfig::default(), &mut out);
        assert!(p.l4_offset <= p.ip.len());
    }
});
