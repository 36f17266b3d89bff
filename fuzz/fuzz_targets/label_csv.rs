//! Label files as users write them: per-flow CSVs (any column, `+vpn`), path rules and class
//! maps. Whatever the bytes, an error naming the file and line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privpkt_dataset::labels::{ClassMap, FlowLabels, PathRules};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("privpkt-fuzz-labels-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("labels.csv");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for col in ["category", "category+vpn", "app_class", "l4"] {
        if let Ok(c) = col.parse() {
            if let Ok(l) = FlowLabels::load(&path, &c) {
                std::hint::black_box((l.classes(), l.warnings(&path)));
            }
        }
    }
    if let Ok(r) = PathRules::load(&path) {
        std::hint::black_box(r.classes());
    }
    if let Ok(m) = ClassMap::load(&path) {
        std::hint::black_box(m.apply("chat"));
    }
});
