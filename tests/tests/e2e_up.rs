//! `clawgate up` as a user runs it: the real binary, a fresh data directory.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clawgate_tests::cluster::{clawgate_binary, free_addr};
use clawgate_tests::ws::WsClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `clawgate up` and returns it with the lines it printed up to the URL
/// line (and the token line, when it prints one).
async fn start_up(
    data_dir: &std::path::Path,
    listen: std::net::SocketAddr,
) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = Command::new(clawgate_binary()?)
        .args(["up", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &listen.to_string()])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??
    {
        let done = line.starts_with("gateway token");
        seen.push(line);
        if done {
            break;
        }
    }
    Ok((child, seen))
}

#[tokio::test]
async fn up_creates_a_token_prints_it_and_accepts_a_connect_quickly() -> anyhow::Result<()> {
    // Build (or find) the binary before timing anything.
    clawgate_binary()?;
    let data = tempfile::tempdir()?;
    let listen = free_addr()?;

    let started = Instant::now();
    let (mut child, lines) = start_up(data.path(), listen).await?;
    let url_line = lines
        .iter()
        .find(|l| l.contains("ws://"))
        .context("URL line")?;
    assert!(url_line.contains(&format!("ws://{listen}")), "{lines:?}");
    let token_line = lines
        .iter()
        .find(|l| l.starts_with("gateway token"))
        .context("token line")?;
    let token = token_line.rsplit(' ').next().context("token")?.to_owned();
    assert!(token.len() >= 32, "{token_line}");

    let mut client = WsClient::connect(&format!("ws://{listen}/")).await?;
    let hello = client.openclaw_handshake(&token).await?;
    let elapsed = started.elapsed();
    assert_eq!(hello["type"], "hello-ok");
    eprintln!(
        "clawgate up: first connect accepted {} ms after start",
        elapsed.as_millis()
    );
    assert!(elapsed < Duration::from_secs(3), "connect took {elapsed:?}");

    // The token is kept in the data directory, readable by the owner only.
    let stored = std::fs::read_to_string(data.path().join("gateway-token"))?;
    assert_eq!(stored.trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join("gateway-token"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    client.close().await;
    child.kill().await?;
    child.wait().await?;

    // A second start keeps the token and does not print it again.
    let listen = free_addr()?;
    let (mut child, lines) = start_up(data.path(), listen).await?;
    assert!(
        lines.iter().any(|l| l.contains(&format!("ws://{listen}"))),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains(&token)), "{lines:?}");
    let mut client = WsClient::connect(&format!("ws://{listen}/")).await?;
    client.openclaw_handshake(&token).await?;
    child.kill().await?;
    Ok(())
}

#[tokio::test]
async fn up_keeps_serving_when_its_standard_output_is_closed() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let listen = free_addr()?;
    let mut child = Command::new(clawgate_binary()?)
        .args(["up", "--data-dir"])
        .arg(data.path())
        .args(["--listen", &listen.to_string()])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // Nobody reads the banner: the pipe is closed before the gateway writes it.
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        match WsClient::connect(&format!("ws://{listen}/")).await {
            Ok(client) => break client,
            Err(err) if Instant::now() < deadline => {
                assert!(
                    child.try_wait()?.is_none(),
                    "clawgate up exited before serving: {err:#}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err),
        }
    };
    let token = std::fs::read_to_string(data.path().join("gateway-token"))?;
    let hello = client.openclaw_handshake(token.trim()).await?;
    assert_eq!(hello["type"], "hello-ok");
    assert!(
        child.try_wait()?.is_none(),
        "still running after the banner"
    );
    child.kill().await?;
    Ok(())
}
