//! Compiles the vendored flwr 1.40.0 `.proto` files with protox (a pure-Rust protobuf
//! compiler, so no system `protoc` is needed) into prost types, and keeps the compiled
//! descriptor set for the test that checks it against the wheel's own descriptors.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "flwr/proto/fleet.proto",
        "flwr/proto/heartbeat.proto",
        "flwr/proto/message.proto",
        "flwr/proto/node.proto",
        "flwr/proto/recorddict.proto",
        "flwr/proto/error.proto",
        "flwr/proto/run.proto",
        "flwr/proto/fab.proto",
        "flwr/proto/transport.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("flwr.fds.bin"), prost::Message::encode_to_vec(&fds))?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
