//! FlowPic images (Shapira & Shavitt, "FlowPic: A Generic Representation for Encrypted Traffic
//! Classification and Applications Identification", IEEE TNSM 2021).
//!
//! A flow (unidirectional as the paper, bidirectional on request) is cut into blocks of `T`
//! seconds counted from the flow's first packet. Each block becomes an R×R histogram: row =
//! packet size bin (IP length 0–1500, larger sizes in the last row), column = arrival-time bin
//! within the block. Blocks with fewer than `min_packets` packets are dropped (10 in the paper).
//! The paper uses T = 60 s, R = 1500; mini-FlowPic T = 15 s, R = 32.
//!
//! Images are mostly empty, so they are produced sparse: sorted (flat bin, count) pairs with
//! flat bin = size_bin · R + time_bin and counts saturating at u16::MAX.

use serde::{Deserialize, Serialize};

use crate::flow::Direction;

/// Largest packet size on the size axis.
pub const MAX_SIZE: u32 = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlowPicConfig {
    /// Block length T in seconds.
    pub block_s: f64,
    /// Bins per axis R.
    pub resolution: u32,
    /// Blocks with fewer packets are dropped.
    pub min_packets: u32,
    /// One image for both directions instead of one per direction.
    pub bidirectional: bool,
}

impl FlowPicConfig {
    /// The paper's setting: 60 s blocks, 1500×1500.
    pub fn paper() -> Self {
        FlowPicConfig {
            block_s: 60.0,
            resolution: 1500,
            min_packets: 10,
            bidirectional: false,
        }
    }

    /// mini-FlowPic: 15 s blocks, 32×32.
    pub fn mini() -> Self {
        FlowPicConfig {
            block_s: 15.0,
            resolution: 32,
            min_packets: 10,
            bidirectional: false,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.block_s.is_finite() && self.block_s > 0.0) {
            return Err(format!(
                "FlowPic block length must be a finite number of seconds > 0, got {}",
                self.block_s
            ));
        }
        if self.resolution == 0 || self.resolution > 4096 {
            return Err(format!("FlowPic resolution must be 1..=4096, got {}", self.resolution));
        }
        Ok(())
    }

    /// Flat bin of a packet of `size` bytes arriving `dt_ns` after the block start.
    pub fn bin(&self, size: u32, dt_ns: i64) -> u32 {
        let r = self.resolution as u64;
        let size_bin = (size.min(MAX_SIZE) as u64 * r / (MAX_SIZE as u64 + 1)) as u32;
        let block_ns = self.block_s * 1e9;
        let t = (dt_ns.max(0) as f64 / block_ns * r as f64) as u64;
        let time_bin = t.min(r - 1) as u32;
        size_bin * self.resolution + time_bin
    }

    fn block_ns(&self) -> i64 {
        (self.block_s * 1e9) as i64
    }
}

/// A finished FlowPic block.
#[derive(Debug, Clone)]
pub struct FlowPicImage {
    /// Direction, or `None` for a bidirectional image.
    pub direction: Option<Direction>,
    /// Block number within the flow.
    pub block: u32,
    /// Start of the block (ns since epoch).
    pub start_ns: i64,
    pub packets: u32,
    /// Sorted (flat bin, count) pairs.
    pub bins: Vec<(u32, u16)>,
}

#[derive(Debug, Default)]
struct Acc {
    block: u32,
    bins: Vec<u32>,
}

/// Per-flow FlowPic accumulator.
#[derive(Debug, Default)]
pub struct FlowPicState {
    first_ns: Option<i64>,
    acc: [Acc; 2],
}

impl FlowPicState {
    /// Add a packet; finished blocks are passed to `emit`.
    pub fn add(
        &mut self,
        cfg: &FlowPicConfig,
        ts_ns: i64,
        direction: Direction,
        size: u32,
        emit: &mut impl FnMut(FlowPicImage),
    ) {
        let first = *self.first_ns.get_or_insert(ts_ns);
        let rel = (ts_ns - first).max(0);
        let block = (rel / cfg.block_ns()) as u32;
        let slot = if cfg.bidirectional { 0 } else { direction as usize };
        if self.acc[slot].block != block && !self.acc[slot].bins.is_empty() {
            self.flush(cfg, slot, emit);
        }
        let acc = &mut self.acc[slot];
        acc.block = block;
        let dt = rel - block as i64 * cfg.block_ns();
        acc.bins.push(cfg.bin(size, dt));
    }

    /// Emit whatever blocks are still open (flow end).
    pub fn finish(&mut self, cfg: &FlowPicConfig, emit: &mut impl FnMut(FlowPicImage)) {
        for slot in 0..2 {
            if !self.acc[slot].bins.is_empty() {
                self.flush(cfg, slot, emit);
            }
        }
    }

    fn flush(&mut self, cfg: &FlowPicConfig, slot: usize, emit: &mut impl FnMut(FlowPicImage)) {
        let acc = &mut self.acc[slot];
        let packets = acc.bins.len() as u32;
        if packets >= cfg.min_packets {
            acc.bins.sort_unstable();
            let mut bins: Vec<(u32, u16)> = Vec::new();
            for &b in &acc.bins {
                match bins.last_mut() {
                    Some((lb, c)) if *lb == b => *c = c.saturating_add(1),
                    _ => bins.push((b, 1)),
                }
            }
            let direction = if cfg.bidirectional {
                None
            } else if slot == 0 {
                Some(Direction::Forward)
            } else {
                Some(Direction::Backward)
            };
            emit(FlowPicImage {
                direction,
                block: acc.block,
                start_ns: self.first_ns.unwrap_or(0) + acc.block as i64 * cfg.block_ns(),
                packets,
                bins,
            });
        }
        acc.bins.clear();
    }
}

/// Dense R×R image of a sparse one (row-major, size rows × time columns).
pub fn densify(bins: &[(u32, u16)], resolution: u32) -> Vec<u16> {
    let mut img = vec![0u16; (resolution * resolution) as usize];
    for &(b, c) in bins {
        if let Some(x) = img.get_mut(b as usize) {
            *x = x.saturating_add(c);
        }
    }
    img
}
