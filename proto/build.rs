//! Compiles `clawgate/**.proto` with protox (pure Rust, no system protoc).

use std::path::PathBuf;

/// Messages with a secret field; keep in sync with `src/redact.rs`.
const SECRET_BEARING: [&str; 10] = [
    ".clawgate.auth.v1.OpenClawConnect",
    ".clawgate.auth.v1.GoclawConnect",
    ".clawgate.auth.v1.AuthenticateConnectResponse",
    ".clawgate.auth.v1.DeviceTokenInfo",
    ".clawgate.auth.v1.CreateApiKeyResponse",
    ".clawgate.auth.v1.SetSecretRequest",
    ".clawgate.auth.v1.ApproveNodePairingResponse",
    ".clawgate.auth.v1.VerifyNodeRequest",
    ".clawgate.channel.v1.CreateAccountRequest",
    ".clawgate.channel.v1.UpdateAccountRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let files = [
        "clawgate/common/v1/principal.proto",
        "clawgate/auth/v1/auth.proto",
        "clawgate/common/v1/events.proto",
        "clawgate/runner/v1/runner.proto",
        "clawgate/session/v1/session.proto",
        "clawgate/cron/v1/cron.proto",
        "clawgate/channel/v1/channel.proto",
    ];
    println!("cargo:rerun-if-changed=build.rs");
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages holding secrets get a hand-written, redacting `Debug`
        // (src/redact.rs), so a stray `{:?}` cannot leak a token or key.
        .skip_debug(SECRET_BEARING)
        .compile_fds(fds)?;
    Ok(())
}
