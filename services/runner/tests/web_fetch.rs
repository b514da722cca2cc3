//! The `web_fetch` tool against real sockets: a small HTTP/1.1 server on
//! 127.0.0.1 (allowed by the test's allow-list) for what a fetch answers, and
//! the SSRF table: every case is refused with an error saying so, and canary
//! listeners on the refused loopback addresses (127.0.0.2 and ::1, on the
//! server's port) prove that nothing connected to them.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clawgate_proto::call_auth::CallSigner;
use clawgate_proto::session::SessionClient;
use clawgate_proto::{Principal, ServiceError};
use clawgate_runner::tools::web_fetch::{Resolver, WebFetch, WebFetchConfig};
use clawgate_runner::tools::{Tool, ToolContext, ToolOutput, ToolSet};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PAGE: &str = "<!DOCTYPE html><html><head><title>Test &amp; Page</title>\
    <style>.x { color: red }</style><script>var secret = 'script text';</script></head>\
    <body><h1>Hello</h1><p>This is <b>the</b> page.</p>\
    <script>document.write('more script')</script><noscript>no script</noscript>\
    <ul><li>first</li><li>second</li></ul></body></html>";

/// The test server: answers by path, records every path it was asked for.
struct Server {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(handle(socket, addr.port(), seen.clone()));
            }
        });
        Self { addr, paths }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn redirect(location: &str) -> Vec<u8> {
    response("302 Found", &[("Location", location)], b"")
}

async fn handle(mut socket: TcpStream, port: u16, paths: Arc<Mutex<Vec<String>>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split(' ').nth(1).unwrap_or("").to_owned();
    paths.lock().unwrap().push(path.clone());
    let html = [("Content-Type", "text/html; charset=utf-8")];
    let plain = [("Content-Type", "text/plain")];
    let reply = match path.as_str() {
        "/page" => response("200 OK", &html, PAGE.as_bytes()),
        "/plain" => response("200 OK", &plain, "0123456789".repeat(10).as_bytes()),
        "/missing" => response("404 Not Found", &plain, b"no such page"),
        "/image" => response(
            "200 OK",
            &[("Content-Type", "image/png")],
            b"\x89PNG\r\n\x1a\n",
        ),
        "/redirect" => redirect("/page"),
        "/redirect-absolute" => redirect(&format!("http://127.0.0.1:{port}/redirect")),
        "/to-canary" => redirect(&format!("http://127.0.0.2:{port}/")),
        "/to-mapped" => redirect(&format!("http://[::ffff:127.0.0.2]:{port}/")),
        "/to-file" => redirect("file:///etc/passwd"),
        "/loop" => redirect("/loop"),
        "/big" => {
            // Announces 64 MiB, sends 256 KiB, then never finishes.
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                Content-Length: 67108864\r\n\r\n";
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&vec![b'a'; 256 * 1024]).await;
            std::future::pending::<()>().await;
            return;
        }
        "/hang" => {
            std::future::pending::<()>().await;
            return;
        }
        other => match other
            .strip_prefix("/hop/")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) => redirect(&format!("/hop/{}", n + 1)),
            None => response("404 Not Found", &plain, b"unknown"),
        },
    };
    let _ = socket.write_all(&reply).await;
    let _ = socket.shutdown().await;
}

/// A listener that must never be connected to; counts connections.
struct Canary {
    hits: Arc<AtomicUsize>,
}

impl Canary {
    /// A canary on `addr`, or `None` where the address cannot be bound.
    async fn bind(addr: SocketAddr) -> Option<Self> {
        let listener = TcpListener::bind(addr).await.ok()?;
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((_socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        Some(Self { hits })
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A resolver answering from a table: each host has its answers in order
/// (the last one repeats); counts the questions per host.
#[derive(Default)]
struct TableResolver {
    answers: HashMap<String, Vec<Vec<IpAddr>>>,
    asked: Mutex<HashMap<String, usize>>,
}

impl TableResolver {
    fn with(mut self, host: &str, answers: &[&[&str]]) -> Self {
        let answers = answers
            .iter()
            .map(|answer| answer.iter().map(|ip| ip.parse().unwrap()).collect())
            .collect();
        self.answers.insert(host.to_owned(), answers);
        self
    }

    fn asked(&self, host: &str) -> usize {
        self.asked.lock().unwrap().get(host).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Resolver for TableResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let count = {
            let mut asked = self.asked.lock().unwrap();
            let count = asked.entry(host.to_owned()).or_insert(0);
            *count += 1;
            *count
        };
        let answers = self
            .answers
            .get(host)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))?;
        Ok(answers[(count - 1).min(answers.len() - 1)].clone())
    }
}

struct NoSigner;

impl CallSigner for NoSigner {
    fn sign(&self, _principal: &Principal) -> Result<String, ServiceError> {
        Ok("unused".to_owned())
    }
}

fn context() -> ToolContext {
    let session =
        SessionClient::connect_lazy("http://127.0.0.1:9", Arc::new(NoSigner)).expect("client");
    ToolContext {
        principal: Principal::default(),
        session,
        session_key: "main".to_owned(),
        agent_id: "default".to_owned(),
        run_id: "run-1".to_owned(),
    }
}

fn tool(resolver: Arc<TableResolver>) -> WebFetch {
    WebFetch::new(WebFetchConfig {
        allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
        timeout: Duration::from_secs(3),
        resolver,
        ..WebFetchConfig::default()
    })
}

async fn fetch(tool: &WebFetch, arguments: Value) -> ToolOutput {
    tool.call(&context(), arguments).await
}

/// The JSON answer of a successful fetch.
fn answer(output: &ToolOutput) -> Value {
    assert!(!output.is_error, "expected an answer: {}", output.content);
    serde_json::from_str(&output.content).expect("JSON answer")
}

#[tokio::test]
async fn html_is_fetched_as_text_without_scripts_and_styles() {
    let server = Server::start().await;
    let tool = tool(Arc::default());
    let output = fetch(&tool, json!({"url": server.url("/page")})).await;
    let value = answer(&output);
    assert_eq!(value["url"], server.url("/page"));
    assert_eq!(value["status"], 200);
    assert_eq!(value["contentType"], "text/html; charset=utf-8");
    assert_eq!(value["truncated"], false);
    assert_eq!(value["title"], "Test & Page");
    assert_eq!(
        value["text"],
        "Hello\n\nThis is the page.\n\n- first\n- second"
    );

    let raw = answer(
        &fetch(
            &tool,
            json!({"url": server.url("/page"), "extractMode": "raw"}),
        )
        .await,
    );
    assert_eq!(raw["text"], PAGE);
}

#[tokio::test]
async fn max_chars_cuts_the_text() {
    let server = Server::start().await;
    let tool = tool(Arc::default());
    let value = answer(&fetch(&tool, json!({"url": server.url("/plain"), "maxChars": 15})).await);
    assert_eq!(value["text"], "012345678901234");
    assert_eq!(value["truncated"], true);
    let whole = answer(&fetch(&tool, json!({"url": server.url("/plain")})).await);
    assert_eq!(whole["text"].as_str().unwrap().len(), 100);
    assert_eq!(whole["truncated"], false);

    let bad = fetch(&tool, json!({"url": server.url("/plain"), "maxChars": 0})).await;
    assert!(bad.is_error);
    let bad = fetch(
        &tool,
        json!({"url": server.url("/plain"), "extractMode": "pdf"}),
    )
    .await;
    assert!(bad.is_error);
    let bad = fetch(&tool, json!({})).await;
    assert!(bad.is_error && bad.content.contains("url is required"));
}

#[tokio::test]
async fn the_body_is_read_up_to_the_byte_limit() {
    let server = Server::start().await;
    let tool = WebFetch::new(WebFetchConfig {
        max_bytes: 10_000,
        ..tool(Arc::default()).config().clone()
    });
    let started = Instant::now();
    // The server never finishes the body: only stopping at the limit answers.
    let value = answer(&fetch(&tool, json!({"url": server.url("/big")})).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(value["text"].as_str().unwrap().len(), 10_000);
    assert_eq!(value["truncated"], true);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = Server::start().await;
    let tool = WebFetch::new(WebFetchConfig {
        timeout: Duration::from_millis(300),
        ..tool(Arc::default()).config().clone()
    });
    let started = Instant::now();
    let output = fetch(&tool, json!({"url": server.url("/hang")})).await;
    let elapsed = started.elapsed();
    assert!(output.is_error);
    assert!(output.content.contains("timed out"), "{}", output.content);
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2));
}

#[tokio::test]
async fn redirects_are_followed_within_the_limits() {
    let server = Server::start().await;
    let tool = tool(Arc::default());
    let value = answer(&fetch(&tool, json!({"url": server.url("/redirect-absolute")})).await);
    assert_eq!(value["url"], server.url("/page"));
    assert_eq!(value["status"], 200);
    assert!(value["text"].as_str().unwrap().starts_with("Hello"));
    assert_eq!(server.paths(), ["/redirect-absolute", "/redirect", "/page"]);

    let looped = fetch(&tool, json!({"url": server.url("/loop")})).await;
    assert!(
        looped.is_error && looped.content.contains("redirect loop"),
        "{}",
        looped.content
    );
    let endless = fetch(&tool, json!({"url": server.url("/hop/0")})).await;
    assert!(
        endless.is_error && endless.content.contains("too many redirects"),
        "{}",
        endless.content
    );
    // The first request and five redirects.
    assert_eq!(
        server
            .paths()
            .iter()
            .filter(|p| p.starts_with("/hop/"))
            .count(),
        6
    );
}

#[tokio::test]
async fn error_statuses_and_binary_bodies_are_answers() {
    let server = Server::start().await;
    let tool = tool(Arc::default());
    let missing = answer(&fetch(&tool, json!({"url": server.url("/missing")})).await);
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["text"], "no such page");

    let image = answer(&fetch(&tool, json!({"url": server.url("/image")})).await);
    assert_eq!(image["status"], 200);
    assert_eq!(image["text"], "");
    assert!(image["note"].as_str().unwrap().contains("image/png"));

    let nothing = fetch(&tool, json!({"url": "http://127.0.0.1:1/"})).await;
    assert!(
        nothing.is_error && nothing.content.contains("failed"),
        "{}",
        nothing.content
    );
}

#[tokio::test]
async fn web_fetch_is_built_in_and_on_by_default() {
    let set = ToolSet::builtin();
    let names: Vec<String> = set
        .for_agent(&[])
        .specs()
        .into_iter()
        .map(|spec| spec.name)
        .collect();
    assert!(names.contains(&"web_fetch".to_owned()));
    let spec = WebFetch::default().spec();
    assert_eq!(spec.parameters["required"], json!(["url"]));
    assert!(WebFetch::default().on_by_default());
    // The default guard allows nothing beyond public addresses.
    let output = fetch(&WebFetch::default(), json!({"url": "http://127.0.0.1:1/"})).await;
    assert!(output.is_error && output.content.contains("refused"));
}

#[tokio::test]
async fn the_ssrf_table_is_refused_and_nothing_reaches_a_refused_address() {
    let server = Server::start().await;
    let port = server.port();
    let mut canaries = vec![
        Canary::bind(SocketAddr::from(([127, 0, 0, 2], port)))
            .await
            .expect("127.0.0.2 binds on Linux"),
    ];
    canaries.extend(Canary::bind(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))).await);

    let resolver = Arc::new(
        TableResolver::default()
            .with("private.test", &[&["10.0.0.1"]])
            .with("loopback.test", &[&["127.0.0.2"]])
            .with("mixed.test", &[&["93.184.215.14", "127.0.0.2"]])
            .with("mixed-allowed.test", &[&["127.0.0.1", "127.0.0.2"]])
            .with("rebind.test", &[&["127.0.0.1"], &["127.0.0.2"]])
            .with("rebind-back.test", &[&["127.0.0.2"], &["127.0.0.1"]]),
    );
    let tool = tool(resolver.clone());

    let on = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    let cases: Vec<(&str, String)> = vec![
        ("loopback literal", on("127.0.0.2", "/")),
        ("IPv6 loopback", on("[::1]", "/")),
        ("10/8", on("10.0.0.1", "/")),
        ("192.168/16", on("192.168.1.1", "/")),
        ("172.16/12", on("172.16.0.1", "/")),
        ("metadata", on("169.254.169.254", "/latest/meta-data/")),
        ("IPv6 link-local", on("[fe80::1]", "/")),
        (
            "mapped allowed loopback",
            on("[::ffff:127.0.0.1]", "/mapped"),
        ),
        ("mapped private", on("[::ffff:10.0.0.1]", "/")),
        ("mapped loopback canary", on("[::ffff:127.0.0.2]", "/")),
        ("unspecified", on("0.0.0.0", "/")),
        ("IPv6 unspecified", on("[::]", "/")),
        ("CGNAT", on("100.64.0.1", "/")),
        ("unique local", on("[fc00::1]", "/")),
        ("NAT64 loopback", on("[64:ff9b::7f00:2]", "/")),
        ("6to4 loopback", on("[2002:7f00:2::]", "/")),
        ("integer IPv4", format!("http://2130706434:{port}/")),
        ("hex IPv4", format!("http://0x7f.0.0.2:{port}/")),
        ("name of a private address", on("private.test", "/")),
        ("name of a loopback address", on("loopback.test", "/")),
        (
            "name of a public and a private address",
            on("mixed.test", "/"),
        ),
        (
            "name of an allowed and a refused address",
            on("mixed-allowed.test", "/mixed"),
        ),
        (
            "private first, then allowed",
            on("rebind-back.test", "/rebind-back"),
        ),
        ("file scheme", "file:///etc/passwd".to_owned()),
        ("ftp scheme", format!("ftp://127.0.0.1:{port}/")),
        ("gopher scheme", format!("gopher://127.0.0.1:{port}/_GET")),
        (
            "user info",
            format!("http://user:pass@127.0.0.1:{port}/page"),
        ),
        ("redirect to a refused address", server.url("/to-canary")),
        (
            "redirect to a mapped refused address",
            server.url("/to-mapped"),
        ),
        ("redirect to a file URL", server.url("/to-file")),
    ];
    let mut wrong = Vec::new();
    for (name, url) in &cases {
        let output = fetch(&tool, json!({"url": url})).await;
        if !output.is_error || !output.content.contains("refused") {
            wrong.push(format!("{name} ({url}): {}", output.content));
        }
    }
    assert_eq!(resolver.asked("rebind-back.test"), 1);

    // Rebinding: the first (allowed) answer is used for the whole fetch, a
    // redirect to the same host included; the second is never asked for.
    let value = answer(&fetch(&tool, json!({"url": on("rebind.test", "/redirect")})).await);
    assert_eq!(value["url"], on("rebind.test", "/page"));
    assert!(value["text"].as_str().unwrap().starts_with("Hello"));
    assert_eq!(resolver.asked("rebind.test"), 1);

    let hits: Vec<usize> = canaries.iter().map(Canary::hits).collect();
    assert!(
        wrong.is_empty() && hits.iter().all(|hits| *hits == 0),
        "not refused: {wrong:#?}; connections to refused addresses: {hits:?}"
    );
    let paths = server.paths();
    for reached in ["/mapped", "/mixed", "/rebind-back"] {
        assert!(!paths.iter().any(|p| p == reached), "{reached} was fetched");
    }
    assert_eq!(
        paths,
        ["/to-canary", "/to-mapped", "/to-file", "/redirect", "/page"]
    );
}
