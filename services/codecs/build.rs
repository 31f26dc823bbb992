//! Generates the GTFS-realtime protobuf types (`proto/gtfs-realtime.proto`) with prost.
//!
//! The `.proto` is parsed by `protox`, a pure-Rust protobuf compiler, so the build needs no system
//! `protoc`; prost-build then turns the resulting descriptor set into Rust in `OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/gtfs-realtime.proto");
    let descriptors = protox::compile(["gtfs-realtime.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
