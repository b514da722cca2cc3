//! The `web_fetch` tool: fetches an `http`/`https` URL and answers its text
//! (HTML reduced to readable text, or the raw body), guarded against
//! server-side request forgery.
//!
//! This module owns the tool, its configuration ([`WebFetchConfig`]) and the
//! fetch loop (redirects, limits); [`guard`] owns which addresses may be
//! reached and the DNS pinning; `text` owns turning a body into text.
//!
//! Invariants:
//! - only `http` and `https` URLs without user name or password are fetched,
//!   and every hop of a redirect chain is checked again (scheme, user info,
//!   host) before anything connects to it;
//! - an IP-literal host is checked before connecting; a host name is resolved
//!   once per fetch through the configured [`Resolver`], every answer is
//!   checked, and the connection goes to exactly the checked addresses (the
//!   HTTP client resolves through [`guard::PinnedResolver`] only); no proxy is
//!   used, so no environment variable can route a fetch elsewhere;
//! - a fetch takes at most [`WebFetchConfig::timeout`] in all, reads at most
//!   [`WebFetchConfig::max_bytes`] of a body and follows at most
//!   [`WebFetchConfig::max_redirects`] redirects;
//! - an HTTP error status is an answer (with its status), a refused or failed
//!   fetch is an error output saying why; binary bodies are never returned;
//! - the JSON output fits [`MAX_OUTPUT_BYTES`], so
//!   the generic cut never breaks it.

pub mod guard;
mod text;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};

pub use guard::{Resolver, SystemResolver};

use super::{MAX_OUTPUT_BYTES, Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

/// Characters of text answered when the call does not say.
pub const DEFAULT_MAX_CHARS: usize = 50_000;
/// Most characters a call may ask for.
pub const MAX_CHARS_LIMIT: usize = 200_000;

const USER_AGENT: &str = concat!("clawgate-web-fetch/", env!("CARGO_PKG_VERSION"));

/// How `web_fetch` fetches.
#[derive(Clone)]
pub struct WebFetchConfig {
    /// Addresses fetched although the guard would refuse them (for example a
    /// test server on 127.0.0.1/32). An address matches as it is: an
    /// IPv4-mapped IPv6 address is not matched by an IPv4 network.
    pub allow_cidrs: Vec<IpNet>,
    /// Longest a whole fetch may take, redirects and body included.
    pub timeout: Duration,
    /// Most bytes of a body read; the rest is left unread (`truncated`).
    pub max_bytes: usize,
    /// Most redirects followed.
    pub max_redirects: usize,
    /// Resolves host names (default: the system resolver).
    pub resolver: Arc<dyn Resolver>,
}

impl Default for WebFetchConfig {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            timeout: Duration::from_secs(15),
            max_bytes: 2 * 1024 * 1024,
            max_redirects: 5,
            resolver: Arc::new(SystemResolver),
        }
    }
}

impl fmt::Debug for WebFetchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebFetchConfig")
            .field("allow_cidrs", &self.allow_cidrs)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

/// The `web_fetch` tool.
#[derive(Clone, Debug, Default)]
pub struct WebFetch {
    config: WebFetchConfig,
    guard: guard::Guard,
}

/// How the body becomes the answer's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// HTML reduced to readable text; other text as it is.
    Text,
    /// The body as it is.
    Raw,
}

/// What one fetch got.
struct Fetched {
    url: Url,
    status: u16,
    content_type: Option<String>,
    text: String,
    title: Option<String>,
    truncated: bool,
    note: Option<String>,
}

impl WebFetch {
    pub fn new(config: WebFetchConfig) -> Self {
        let guard = guard::Guard::new(config.allow_cidrs.clone());
        Self { config, guard }
    }

    pub fn config(&self) -> &WebFetchConfig {
        &self.config
    }

    /// Checks `url` before anything connects to it: scheme, user info, and
    /// its host's addresses, pinning those of a host name in `pins`.
    async fn check_url(&self, url: &Url, pins: &guard::PinnedResolver) -> Result<(), String> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "refused: only http and https URLs are fetched, not {other}:"
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("refused: URLs with a user name or password are not fetched".to_owned());
        }
        let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
            return Err("refused: the URL has no host".to_owned());
        };
        // The URL parser has normalised IPv4 literals (octal, hex, integer
        // forms) to dotted decimal and bracketed IPv6 ones.
        let literal = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        };
        let Some(ip) = literal else {
            if pins.get(host).is_none() {
                let addrs =
                    guard::resolve_checked(&self.config.resolver, &self.guard, host).await?;
                pins.pin(host, addrs);
            }
            return Ok(());
        };
        match self.guard.check(ip) {
            Some(why) => Err(format!("refused: {ip} is {why}")),
            None => Ok(()),
        }
    }

    /// Fetches `url`, following redirects, within the limits.
    async fn fetch(&self, url: Url, mode: Mode, max_chars: usize) -> Result<Fetched, String> {
        let pins = Arc::new(guard::PinnedResolver::default());
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(pins.clone())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| format!("the HTTP client could not be built: {err}"))?;
        let mut url = url;
        let mut seen = HashSet::new();
        let mut redirects = 0;
        loop {
            self.check_url(&url, &pins).await?;
            seen.insert(url.clone());
            let response = client
                .get(url.clone())
                .header(
                    ACCEPT,
                    "text/html, text/plain;q=0.9, application/json;q=0.9, */*;q=0.5",
                )
                .send()
                .await
                .map_err(|err| format!("the fetch of {url} failed: {}", error_chain(&err)))?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            if let (true, Some(location)) = (redirect, location) {
                let location = location
                    .to_str()
                    .map_err(|_| format!("{url} redirected to a Location that is not text"))?;
                let next = url
                    .join(location)
                    .map_err(|err| format!("{url} redirected to a bad URL {location:?}: {err}"))?;
                if seen.contains(&next) {
                    return Err(format!("redirect loop: {url} redirected back to {next}"));
                }
                redirects += 1;
                if redirects > self.config.max_redirects {
                    return Err(format!(
                        "too many redirects (more than {}), the last to {next}",
                        self.config.max_redirects
                    ));
                }
                url = next;
                continue;
            }
            return self.read(url, response, mode, max_chars).await;
        }
    }

    /// Reads the body of the final response into its answer.
    async fn read(
        &self,
        url: Url,
        mut response: reqwest::Response,
        mode: Mode,
        max_chars: usize,
    ) -> Result<Fetched, String> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (media_type, charset) = parse_content_type(content_type.as_deref());
        let mut fetched = Fetched {
            url,
            status,
            content_type,
            text: String::new(),
            title: None,
            truncated: false,
            note: None,
        };
        if let Some(media_type) = media_type.as_deref().filter(|m| !text::is_textual(m)) {
            let size = response
                .content_length()
                .map(|length| format!(" ({length} bytes)"))
                .unwrap_or_default();
            fetched.note = Some(format!(
                "the body is {media_type}{size}, not text; it was not read"
            ));
            return Ok(fetched);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("reading {} failed: {}", fetched.url, error_chain(&err)))?
        {
            let room = self.config.max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                fetched.truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if media_type.is_none() && text::looks_binary(&body) {
            fetched.note = Some("the body is binary data, not text".to_owned());
            return Ok(fetched);
        }
        let mut decoded = text::decode(&body, charset.as_deref());
        if fetched.truncated {
            // The cut may have split a character.
            while decoded.ends_with('\u{fffd}') {
                decoded.pop();
            }
        }
        fetched.text = if mode == Mode::Text && text::is_html(media_type.as_deref(), &decoded) {
            let (text, title) = text::html_to_text(&decoded);
            fetched.title = title;
            text
        } else {
            decoded
        };
        if text::cut_chars(&mut fetched.text, max_chars) {
            fetched.truncated = true;
        }
        Ok(fetched)
    }
}

/// The media type (lower case) and charset of a `Content-Type` value.
fn parse_content_type(value: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(value) = value else {
        return (None, None);
    };
    let mut parts = value.split(';');
    let media_type = parts
        .next()
        .map(|media| media.trim().to_ascii_lowercase())
        .filter(|media| !media.is_empty());
    let charset = parts.find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_owned())
    });
    (media_type, charset)
}

/// An error with its sources, which name the actual cause (refused
/// connection, TLS failure...).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The answer of a fetch as JSON, its text shortened as needed to fit
/// [`MAX_OUTPUT_BYTES`].
fn answer(mut fetched: Fetched) -> ToolOutput {
    loop {
        let mut value = json!({
            "url": fetched.url.as_str(),
            "status": fetched.status,
            "contentType": fetched.content_type,
            "text": fetched.text,
            "truncated": fetched.truncated,
        });
        if let Some(title) = &fetched.title {
            value["title"] = json!(title);
        }
        if let Some(note) = &fetched.note {
            value["note"] = json!(note);
        }
        let rendered = value.to_string();
        if rendered.len() <= MAX_OUTPUT_BYTES || fetched.text.is_empty() {
            return ToolOutput::ok(rendered);
        }
        // Each byte of text is at least one byte of JSON.
        let excess = rendered.len() - MAX_OUTPUT_BYTES;
        let mut end = fetched.text.len().saturating_sub(excess);
        while !fetched.text.is_char_boundary(end) {
            end -= 1;
        }
        fetched.text.truncate(end);
        fetched.truncated = true;
    }
}

#[async_trait]
impl Tool for WebFetch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "web_fetch".to_owned(),
            description: "Fetches a public web page or file over http(s) and returns its text: \
                HTML is reduced to readable text (scripts, styles and markup removed), other text \
                is returned as it is. Redirects are followed. Returns JSON with the final url, \
                the HTTP status, contentType, text and whether the text was truncated. Private, \
                local and internal network addresses are refused; binary content (images, \
                archives) is not returned."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string",
                        "description": "The http or https URL to fetch."},
                    "maxChars": {"type": "integer", "minimum": 1, "maximum": MAX_CHARS_LIMIT,
                        "description": "Most characters of text to return (default 50000)."},
                    "extractMode": {"type": "string", "enum": ["text", "raw"],
                        "description": "text (default): HTML reduced to readable text; \
                            raw: the body as it is."},
                },
                "required": ["url"],
                "additionalProperties": false,
            }),
        }
    }

    async fn call(&self, _context: &ToolContext, arguments: Value) -> ToolOutput {
        let Some(raw_url) = arguments
            .get("url")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|url| !url.is_empty())
        else {
            return ToolOutput::error("url is required (a string)");
        };
        let max_chars = match arguments.get("maxChars") {
            None | Some(Value::Null) => DEFAULT_MAX_CHARS,
            Some(value) => match value.as_u64() {
                Some(n) if (1..=MAX_CHARS_LIMIT as u64).contains(&n) => n as usize,
                _ => {
                    return ToolOutput::error(format!(
                        "maxChars must be an integer from 1 to {MAX_CHARS_LIMIT}"
                    ));
                }
            },
        };
        let mode = match arguments.get("extractMode") {
            None | Some(Value::Null) => Mode::Text,
            Some(Value::String(mode)) if mode == "text" => Mode::Text,
            Some(Value::String(mode)) if mode == "raw" => Mode::Raw,
            Some(_) => return ToolOutput::error("extractMode must be \"text\" or \"raw\""),
        };
        let url = match Url::parse(raw_url) {
            Ok(url) => url,
            Err(err) => return ToolOutput::error(format!("{raw_url:?} is not a valid URL: {err}")),
        };
        let limit = self.config.timeout;
        match tokio::time::timeout(limit, self.fetch(url, mode, max_chars)).await {
            Ok(Ok(fetched)) => answer(fetched),
            Ok(Err(reason)) => ToolOutput::error(reason),
            Err(_) => ToolOutput::error(format!(
                "the fetch of {raw_url} timed out after {} ms",
                limit.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_parsed() {
        assert_eq!(
            parse_content_type(Some("Text/HTML; charset=\"ISO-8859-1\"")),
            (Some("text/html".into()), Some("ISO-8859-1".into()))
        );
        assert_eq!(parse_content_type(None), (None, None));
    }

    #[test]
    fn the_answer_fits_the_output_bound() {
        let fetched = Fetched {
            url: Url::parse("https://example.com/").unwrap(),
            status: 200,
            content_type: Some("text/plain".into()),
            text: "\u{1}é".repeat(MAX_OUTPUT_BYTES),
            title: None,
            truncated: false,
            note: None,
        };
        let output = answer(fetched);
        assert!(output.content.len() <= MAX_OUTPUT_BYTES);
        let value: Value = serde_json::from_str(&output.content).unwrap();
        assert_eq!(value["truncated"], true);
    }
}
