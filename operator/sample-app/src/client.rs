//! Outgoing connections: the `/connect` check and the `probe` HTTP client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::http::{self, Body};

/// Connects to `host:port` (a name is resolved; every address is tried) within `timeout`
/// per address.
pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port).to_socket_addrs()?.collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last)
}

/// `probe URL`: GET the URL, print the body; Ok(true) on a 2xx status.
pub fn probe(url: &str) -> Result<bool, String> {
    request("GET", url, None)
}

/// `put URL BODY`: PUT `body` to the URL (e.g. `/data/<name>` of another sample app, or of
/// this one through 127.0.0.1), print the answer; Ok(true) on a 2xx status.
pub fn put(url: &str, body: &str) -> Result<bool, String> {
    request("PUT", url, Some(body.as_bytes()))
}

fn request(method: &str, url: &str, body: Option<&[u8]>) -> Result<bool, String> {
    let u = http::parse_url(url)?;
    let stream = connect(&u.host, u.port, Duration::from_secs(5)).map_err(|e| format!("{url}: connect: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    stream.set_write_timeout(timeout).map_err(|e| e.to_string())?;
    let host_header = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let length = body
        .map(|b| format!("Content-Length: {}\r\n", b.len()))
        .unwrap_or_default();
    let request = format!(
        "{method} {} HTTP/1.1\r\nHost: {host_header}:{}\r\nUser-Agent: govcloud-sample-app-probe/{}\r\n{length}Connection: close\r\n\r\n",
        u.target,
        u.port,
        env!("CARGO_PKG_VERSION")
    );
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    w.write_all(request.as_bytes())
        .and_then(|()| w.write_all(body.unwrap_or_default()))
        .map_err(|e| format!("{url}: sending: {e}"))?;

    let mut r = BufReader::new(stream);
    let head = http::read_head(&mut r)
        .map_err(|e| format!("{url}: reading the response: {e}"))?
        .ok_or_else(|| format!("{url}: connection closed without a response"))?;
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or("");
    let status =
        http::parse_status_line(status_line).ok_or_else(|| format!("{url}: bad status line '{status_line}'"))?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut out = io::stdout().lock();
    let copied = match http::body_kind(&headers) {
        Ok(Body::Chunked) => http::copy_chunked(&mut r, &mut out, u64::MAX),
        Ok(Body::Length(n)) => io::copy(&mut r.by_ref().take(n), &mut out),
        // No length: read to the end (we asked for Connection: close).
        Ok(Body::None) if !has_zero_length(&headers) => io::copy(&mut r, &mut out),
        Ok(Body::None) => Ok(0),
        Err(e) => return Err(format!("{url}: {e}")),
    };
    copied.map_err(|e| format!("{url}: reading the body: {e}"))?;
    let _ = out.flush();
    if !(200..300).contains(&status) {
        eprintln!("{url}: {}", status_line.trim_end());
    }
    let _ = r.fill_buf();
    Ok((200..300).contains(&status))
}

fn has_zero_length(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-length") && v == "0")
}
