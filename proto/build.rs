//! Compiles `clawgate/**.proto` with protox (pure Rust, no system protoc).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let files = [
        "clawgate/common/v1/principal.proto",
        "clawgate/common/v1/events.proto",
        "clawgate/auth/v1/auth.proto",
        "clawgate/runner/v1/runner.proto",
        "clawgate/session/v1/session.proto",
        "clawgate/cron/v1/cron.proto",
        "clawgate/channel/v1/channel.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
