//! Experiment plans (`privpkt experiment plan.toml`): parsed and validated exactly as the
//! command does, before anything runs. Whatever the text, an error naming the plan, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("plans/fuzz.toml");
    if let Ok(plan) = privpkt::experiment::Plan::parse(text, path) {
        std::hint::black_box(privpkt::experiment::expand(&plan, privpkt_nn::Arch::Sae).len());
    }
});
