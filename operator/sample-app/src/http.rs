//! A small HTTP/1.1 subset: request heads, query strings, percent-decoding, chunked
//! bodies, responses, and `http://` URLs for the probe client.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// Largest request or response head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    TooLarge,
    Malformed(&'static str),
    UnsupportedVersion,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLarge => write!(f, "head too large"),
            ParseError::Malformed(what) => write!(f, "malformed {what}"),
            ParseError::UnsupportedVersion => write!(f, "unsupported HTTP version"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path (bytes: may hold anything, validated by the handlers).
    pub path: Vec<u8>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub expect_continue: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one head (up to and including the empty line) from `r`. `Ok(None)` at a clean
/// end of stream before any byte.
pub fn read_head(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, io::Error> {
    let mut head = Vec::with_capacity(512);
    loop {
        let before = head.len();
        let n = r
            .by_ref()
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the head",
            ));
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                ParseError::TooLarge.to_string(),
            ));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            // Tolerate empty lines before the request line (RFC 9112 §2.2).
            if before == 0 {
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// Parses a request head (request line and headers, CRLF or LF line ends).
pub fn parse_request(head: &[u8]) -> Result<Request, ParseError> {
    if head.len() > MAX_HEAD {
        return Err(ParseError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| ParseError::Malformed("head encoding"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(ParseError::Malformed("request line"))?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err(ParseError::Malformed("request line")),
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ParseError::Malformed("method"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ParseError::UnsupportedVersion);
    }
    if !target.starts_with('/') {
        return Err(ParseError::Malformed("request target"));
    }
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let path = percent_decode(raw_path.as_bytes(), false).ok_or(ParseError::Malformed("path escape"))?;
    let query = parse_query(raw_query)?;

    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::Malformed("header"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(ParseError::Malformed("header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let body = body_kind(&headers)?;
    let expect_continue = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("expect") && v.eq_ignore_ascii_case("100-continue"));
    Ok(Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body,
        expect_continue,
    })
}

/// How the body of a message with these headers is framed (requests; for responses
/// the caller handles "read to end").
pub fn body_kind(headers: &[(String, String)]) -> Result<Body, ParseError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(ParseError::Malformed("transfer-encoding"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| ParseError::Malformed("content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::Malformed("content-length"));
            }
            length = Some(n);
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Err(ParseError::Malformed("both content-length and chunked")),
        (true, None) => Ok(Body::Chunked),
        (false, Some(0)) | (false, None) => Ok(Body::None),
        (false, Some(n)) => Ok(Body::Length(n)),
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, for query strings).
/// `None` on a broken escape.
pub fn percent_decode(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex_val(*s.get(i + 1)?)?;
                let lo = hex_val(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k.as_bytes(), true).ok_or(ParseError::Malformed("query escape"))?;
        let v = percent_decode(v.as_bytes(), true).ok_or(ParseError::Malformed("query escape"))?;
        let k = String::from_utf8(k).map_err(|_| ParseError::Malformed("query encoding"))?;
        let v = String::from_utf8(v).map_err(|_| ParseError::Malformed("query encoding"))?;
        out.push((k, v));
    }
    Ok(out)
}

/// Copies a chunked body from `r` to `w`, at most `limit` bytes of data. Returns the
/// data length. Trailers are read and dropped.
pub fn copy_chunked(r: &mut impl BufRead, w: &mut impl Write, limit: u64) -> io::Result<u64> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut total: u64 = 0;
    loop {
        let mut line = Vec::new();
        r.by_ref().take(1024).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(invalid("bad chunk size line"));
        }
        let text = std::str::from_utf8(&line).map_err(|_| invalid("bad chunk size line"))?;
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                let mut t = Vec::new();
                let n = r.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut t)?;
                if n == 0 || t == b"\r\n" || t == b"\n" {
                    return Ok(total);
                }
            }
        }
        total = total.checked_add(size).ok_or_else(|| invalid("chunk size overflow"))?;
        if total > limit {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "body too large"));
        }
        let copied = io::copy(&mut r.by_ref().take(size), w)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body shorter than its chunk size",
            ));
        }
        let mut crlf = Vec::new();
        r.by_ref().take(2).read_until(b'\n', &mut crlf)?;
        if crlf != b"\r\n" && crlf != b"\n" {
            return Err(invalid("missing CRLF after chunk"));
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes a response head with `Connection: close` (one request per connection).
pub fn write_head(w: &mut impl Write, status: u16, content_type: &str, length: u64) -> io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        reason(status)
    )
}

/// An `http://host[:port]/path` URL (no userinfo, no https: the probe talks to pods).
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(format!("{url}: user information is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url}: bad IPv6 literal"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, p),
            None if after.is_empty() => (h, ""),
            None => return Err(format!("{url}: bad authority")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let port = if port.is_empty() {
        80
    } else {
        port.parse().map_err(|_| format!("{url}: bad port '{port}'"))?
    };
    if target.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("{url}: spaces or control characters in the path"));
    }
    Ok(Url {
        host: host.to_string(),
        port,
        target,
    })
}

/// Parses a response status line, e.g. `HTTP/1.1 200 OK`, to the status code.
pub fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_simple_get() {
        let r = parse_request(b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.34\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, b"/healthz");
        assert_eq!(r.header("host"), Some("x"));
        assert_eq!(r.header("USER-AGENT"), Some("kube-probe/1.34"));
        assert_eq!(r.body, Body::None);
        assert!(!r.expect_continue);
    }

    #[test]
    fn parses_query_and_escapes() {
        let r = parse_request(b"GET /connect?host=db.ns.svc&port=5432&x=a%20b+c HTTP/1.0\n\n").unwrap();
        assert_eq!(r.path, b"/connect");
        assert_eq!(r.query("host"), Some("db.ns.svc"));
        assert_eq!(r.query("port"), Some("5432"));
        assert_eq!(r.query("x"), Some("a b c"));
        assert_eq!(r.query("missing"), None);
        let r = parse_request(b"PUT /data/a%2Fb HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, b"/data/a/b");
    }

    #[test]
    fn body_framing() {
        let r = parse_request(b"PUT /data/x HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert_eq!(r.body, Body::Length(12));
        assert!(r.expect_continue);
        let r = parse_request(b"PUT /data/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.body, Body::Chunked);
        assert!(parse_request(b"PUT /d HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_request(b"PUT /d HTTP/1.1\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(parse_request(b"PUT /d HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(parse_request(b"PUT /d HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
    }

    #[test]
    fn rejects_bad_heads() {
        assert_eq!(
            parse_request(b"GET /\r\n\r\n").unwrap_err(),
            ParseError::Malformed("request line")
        );
        assert_eq!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            ParseError::UnsupportedVersion
        );
        assert!(parse_request(b"GET  / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"get / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET /%zz HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET /a%2 HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").is_err());
        assert!(parse_request(b"GET /\xff HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn reads_heads_from_a_stream() {
        let mut input: &[u8] = b"\r\nGET / HTTP/1.1\r\nA: b\r\n\r\nBODY";
        let head = read_head(&mut input).unwrap().unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\nA: b\r\n\r\n");
        assert_eq!(input, b"BODY");
        let mut empty: &[u8] = b"";
        assert!(read_head(&mut empty).unwrap().is_none());
        let mut cut: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(read_head(&mut cut).is_err());
        let big = vec![b'a'; MAX_HEAD + 10];
        assert!(read_head(&mut big.as_slice()).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let mut input: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut out = Vec::new();
        assert_eq!(copy_chunked(&mut input, &mut out, 100).unwrap(), 11);
        assert_eq!(out, b"hello world");
        assert_eq!(input, b"NEXT");

        let mut input: &[u8] = b"a\r\n0123456789\r\n0\r\n\r\n";
        assert!(copy_chunked(&mut input, &mut Vec::new(), 5).is_err());
        let mut input: &[u8] = b"zz\r\n";
        assert!(copy_chunked(&mut input, &mut Vec::new(), 5).is_err());
        let mut input: &[u8] = b"5\r\nhel";
        assert!(copy_chunked(&mut input, &mut Vec::new(), 100).is_err());
        let mut input: &[u8] = b"ffffffffffffffff\r\n";
        assert!(copy_chunked(&mut input, &mut Vec::new(), u64::MAX).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://web.ns.svc:8080/healthz").unwrap(),
            Url {
                host: "web.ns.svc".into(),
                port: 8080,
                target: "/healthz".into()
            }
        );
        assert_eq!(
            parse_url("http://10.0.0.1").unwrap(),
            Url {
                host: "10.0.0.1".into(),
                port: 80,
                target: "/".into()
            }
        );
        assert_eq!(
            parse_url("http://[::1]:9/x?y=1").unwrap(),
            Url {
                host: "::1".into(),
                port: 9,
                target: "/x?y=1".into()
            }
        );
        assert_eq!(parse_url("http://h?q").unwrap().target, "/?q");
        assert!(parse_url("https://h/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
        assert!(parse_url("http://u@h/").is_err());
        assert!(parse_url("http://h/a b").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status_line("HTTP/1.1 204"), Some(204));
        assert_eq!(parse_status_line("SSH-2.0-x"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 x"), None);
    }
}
