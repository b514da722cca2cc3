//! Turning a fetched body into text for the model: charset decoding, which
//! content types count as text, and a small HTML-to-text extractor.
//!
//! The extractor is deliberately small (no DOM): it drops comments, the
//! `head` (keeping its `title`) and the contents of `script`, `style`,
//! `noscript`, `template`, `svg`, `iframe` and `object`; tags of block
//! elements become line breaks, other tags vanish; runs of white space
//! collapse to one space (kept as they are inside `pre`); character
//! references are decoded. It never fails: malformed markup degrades to
//! text.

/// Elements whose whole content is dropped.
const DROPPED: &[&str] = &[
    "head", "script", "style", "noscript", "template", "svg", "iframe", "object",
];

/// Elements that start and end a line.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "option",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
];

/// Elements that stand apart by a blank line.
const PARAGRAPHS: &[&str] = &["p", "h1", "h2", "h3", "h4", "h5", "h6"];

/// Whether a `Content-Type` (its media type, lower case) is text to read.
pub fn is_textual(media_type: &str) -> bool {
    let Some((kind, subtype)) = media_type.split_once('/') else {
        return false;
    };
    match kind {
        "text" => true,
        "application" => {
            matches!(
                subtype,
                "json"
                    | "xml"
                    | "xhtml+xml"
                    | "javascript"
                    | "ecmascript"
                    | "x-javascript"
                    | "yaml"
                    | "x-yaml"
                    | "toml"
                    | "x-ndjson"
                    | "csv"
                    | "x-sh"
                    | "sql"
                    | "graphql"
            ) || subtype.ends_with("+json")
                || subtype.ends_with("+xml")
        }
        _ => false,
    }
}

/// Whether a body without a content type looks like binary data.
pub fn looks_binary(body: &[u8]) -> bool {
    body.iter().take(1024).any(|byte| *byte == 0)
}

/// Whether `media_type` (or, without one, the body) is HTML.
pub fn is_html(media_type: Option<&str>, body: &str) -> bool {
    match media_type {
        Some(media_type) => media_type == "text/html" || media_type == "application/xhtml+xml",
        None => {
            let head = body.trim_start().as_bytes();
            let starts = |prefix: &str| {
                head.get(..prefix.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
            };
            starts("<!doctype html") || starts("<html")
        }
    }
}

/// Windows-1252 characters of bytes 0x80 to 0x9F (the rest is Latin-1).
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// `body` decoded by the `charset` of its content type: the Latin-1 family
/// byte by byte, anything else as UTF-8 (invalid sequences replaced).
pub fn decode(body: &[u8], charset: Option<&str>) -> String {
    let latin = matches!(
        charset.map(str::to_ascii_lowercase).as_deref(),
        Some("iso-8859-1" | "latin1" | "latin-1" | "windows-1252" | "cp1252" | "us-ascii")
    );
    if latin {
        body.iter()
            .map(|&byte| match byte {
                0x80..=0x9f => CP1252_HIGH[usize::from(byte - 0x80)],
                _ => char::from(byte),
            })
            .collect()
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// Position of `needle` (ASCII, lower case) in `haystack` from `from`,
/// ignoring ASCII case.
fn find_ci(haystack: &str, from: usize, needle: &str) -> Option<usize> {
    let bytes = haystack.as_bytes();
    let needle = needle.as_bytes();
    if from > bytes.len() || needle.is_empty() {
        return None;
    }
    bytes[from..]
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
        .map(|at| from + at)
}

/// The end (one past `>`) of a tag whose attributes start at `from`,
/// honouring quoted attribute values.
fn tag_end(html: &str, from: usize) -> usize {
    let bytes = html.as_bytes();
    let mut quote = None;
    let mut at = from;
    while at < bytes.len() {
        let byte = bytes[at];
        match quote {
            Some(open) if byte == open => quote = None,
            Some(_) => {}
            None if byte == b'"' || byte == b'\'' => quote = Some(byte),
            None if byte == b'>' => return at + 1,
            None => {}
        }
        at += 1;
    }
    bytes.len()
}

/// The text being built: collapses white space, places line breaks.
#[derive(Default)]
struct Out {
    text: String,
    space: bool,
    pre: usize,
}

impl Out {
    fn push_text(&mut self, raw: &str) {
        let decoded = html_escape::decode_html_entities(raw);
        for ch in decoded.chars() {
            if self.pre > 0 {
                self.text.push(ch);
            } else if ch.is_whitespace() {
                self.space = true;
            } else {
                if self.space && !self.text.is_empty() && !self.text.ends_with('\n') {
                    self.text.push(' ');
                }
                self.space = false;
                self.text.push(ch);
            }
        }
    }

    /// Ends the line; `blank`: and leaves an empty line.
    fn push_break(&mut self, blank: bool) {
        self.space = false;
        if self.text.is_empty() {
            return;
        }
        let want = if blank { 2 } else { 1 };
        let have = self.text.len() - self.text.trim_end_matches('\n').len();
        for _ in have..want {
            self.text.push('\n');
        }
    }

    fn finish(self) -> String {
        let mut text = String::with_capacity(self.text.len());
        let mut blank_lines = 0;
        for line in self.text.lines() {
            let line = line.trim_end();
            if line.trim().is_empty() {
                blank_lines += 1;
                if blank_lines > 1 || text.is_empty() {
                    continue;
                }
            } else {
                blank_lines = 0;
            }
            text.push_str(line);
            text.push('\n');
        }
        text.trim_end().to_owned()
    }
}

/// The readable text of an HTML document, and its title.
pub fn html_to_text(html: &str) -> (String, Option<String>) {
    let mut out = Out::default();
    let mut title = None;
    let bytes = html.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let Some(lt) = html[at..].find('<').map(|offset| at + offset) else {
            out.push_text(&html[at..]);
            break;
        };
        out.push_text(&html[at..lt]);
        let rest = &bytes[lt + 1..];
        if rest.starts_with(b"!--") {
            at = find_ci(html, lt + 4, "-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        if rest.first().is_some_and(|b| *b == b'!' || *b == b'?') {
            at = tag_end(html, lt + 1);
            continue;
        }
        let closing = rest.first() == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len = bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
            // Not a tag: a lone `<` is text.
            out.push_text("<");
            at = lt + 1;
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let end = tag_end(html, name_start + name_len);
        let self_closing = html[..end].ends_with("/>");
        at = end;
        if !closing && !self_closing && DROPPED.contains(&name.as_str()) {
            let close = format!("</{name}");
            let (content_end, after) = match find_ci(html, end, &close) {
                Some(close_at) => (close_at, tag_end(html, close_at + close.len())),
                None => (bytes.len(), bytes.len()),
            };
            if name == "head" && title.is_none() {
                title = head_title(&html[end..content_end]);
            }
            at = after;
            continue;
        }
        if name == "title" && !closing {
            // A title outside the head: its text, not the page's.
            let content_end = find_ci(html, end, "</title").unwrap_or(bytes.len());
            if title.is_none() {
                title = clean_title(&html[end..content_end]);
            }
            at = find_ci(html, end, "</title").map_or(bytes.len(), |close| tag_end(html, close));
            continue;
        }
        if name == "pre" {
            if closing {
                out.pre = out.pre.saturating_sub(1);
            } else {
                out.push_break(false);
                out.pre += 1;
            }
        }
        if PARAGRAPHS.contains(&name.as_str()) {
            out.push_break(true);
        } else if BLOCKS.contains(&name.as_str()) {
            out.push_break(false);
            if name == "li" && !closing {
                out.text.push_str("- ");
            }
        } else if (name == "td" || name == "th") && !closing {
            out.space = true;
        }
    }
    (out.finish(), title)
}

fn head_title(head: &str) -> Option<String> {
    let open = find_ci(head, 0, "<title")?;
    let start = tag_end(head, open + "<title".len());
    let end = find_ci(head, start, "</title").unwrap_or(head.len());
    clean_title(&head[start..end])
}

fn clean_title(raw: &str) -> Option<String> {
    let decoded = html_escape::decode_html_entities(raw);
    let title = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

/// `text` cut to at most `max_chars` characters; whether it was cut.
pub fn cut_chars(text: &mut String, max_chars: usize) -> bool {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => {
            text.truncate(end);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_styles_and_head_are_dropped() {
        let html = "<!DOCTYPE html><html><head><title>The &amp; Title</title>\
            <style>body { color: red }</style><script>var x = '</p>';</script></head>\
            <body><!-- a comment --><h1>Heading</h1><p>First <b>bold</b>\n  paragraph.</p>\
            <script type=\"text/javascript\">alert(1)</script><noscript>enable js</noscript>\
            <ul><li>one</li><li>two &lt;3</li></ul><p>caf&eacute; &#x41;&#66;</p></body></html>";
        let (text, title) = html_to_text(html);
        assert_eq!(title.as_deref(), Some("The & Title"));
        assert_eq!(
            text,
            "Heading\n\nFirst bold paragraph.\n\n- one\n- two <3\n\ncafé AB"
        );
    }

    #[test]
    fn pre_keeps_its_white_space_and_attributes_may_hold_brackets() {
        let html = "<div title=\"a > b\">x</div><pre>  a\n    b</pre><p>y</p>";
        let (text, _) = html_to_text(html);
        assert_eq!(text, "x\n  a\n    b\n\ny");
    }

    #[test]
    fn malformed_markup_degrades_to_text() {
        let (text, _) = html_to_text("a < b and <3 <script>never closed");
        assert_eq!(text, "a < b and <3");
        let (text, _) = html_to_text("<p>unclosed <a href='x");
        assert_eq!(text, "unclosed");
    }

    #[test]
    fn content_types_and_charsets() {
        assert!(is_textual("text/plain"));
        assert!(is_textual("application/json"));
        assert!(is_textual("application/ld+json"));
        assert!(!is_textual("image/png"));
        assert!(!is_textual("application/octet-stream"));
        assert!(is_html(None, "  <!doctype HTML><p>x"));
        assert!(is_html(None, "<HTML>"));
        assert!(!is_html(None, "<ht"));
        assert!(!is_html(None, &"é".repeat(40)));
        assert!(!is_html(Some("text/plain"), "<html>"));
        assert_eq!(decode(b"caf\xe9 \x80", Some("ISO-8859-1")), "café €");
        assert_eq!(decode("café".as_bytes(), None), "café");
    }

    #[test]
    fn cut_chars_counts_characters() {
        let mut text = "héllo".to_owned();
        assert!(cut_chars(&mut text, 2));
        assert_eq!(text, "hé");
        assert!(!cut_chars(&mut text, 2));
    }
}
