//! Model files: the safetensors header, privpkt's metadata in it, the tensors and their
//! checksum, as `eval`, `classify` and `--init` read them. Whatever the bytes, an error naming
//! the file, never a panic; a model that loads holds only finite weights.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("privpkt-fuzz-model-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("model.safetensors");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(m) = privpkt_nn::load_model(&path) {
        assert!(m.params().values.iter().flatten().all(|v| v.is_finite()));
    }
});
