//! Writes a flow-behaviour dataset's splits as the scaled inputs the networks see (`<split>_x.npy`, f32
//! `[n, features]`, and `<split>_y.npy`, u32 labels), for exploring models outside privpkt.
//!
//!   cargo run --release -p privpkt-nn --example dump_features -- DATASET OUT_DIR

use privpkt_dataset::npy::{self, Dtype};
use privpkt_dataset::{Dataset, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, ds, out] = args.as_slice() else {
        return Err("usage: dump_features DATASET OUT_DIR".into());
    };
    let ds = Dataset::open(std::path::Path::new(ds))?;
    let out = std::path::Path::new(out);
    std::fs::create_dir_all(out)?;
    for split in [Split::Train, Split::Val, Split::Test] {
        let s = privpkt_nn::data::load_split(&ds, split)?;
        let f = s.input.features();
        let privpkt_nn::data::SampleData::F32(raw) = &s.data else {
            return Err("flow behaviour datasets only".into());
        };
        let w = s.input.stored_len();
        let mut x = vec![0f32; s.len() * f];
        for (row, r) in x.chunks_exact_mut(f).zip(raw.chunks_exact(w)) {
            privpkt_nn::data::scale_behaviour(&s.input, r, row);
        }
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(
            out.join(format!("{}_x.npy", split.name())),
            npy::to_bytes(Dtype::F32, &[s.len() as u64, f as u64], &bytes)?,
        )?;
        npy::write_1d(&out.join(format!("{}_y.npy", split.name())), Dtype::U32, &s.labels)?;
        println!("{}: {} × {f}", split.name(), s.len());
    }
    Ok(())
}
