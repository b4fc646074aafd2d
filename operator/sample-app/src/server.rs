//! The web app: one thread per connection, one request per connection.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::http::{self, Body, Request};
use crate::sha256::{Sha256, hex};

/// Largest body `PUT /data/<name>` accepts.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Marker file: while it exists in the data directory, `/healthz` answers 503.
pub const UNHEALTHY_MARKER: &str = ".unhealthy";
const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Config {
    pub port: u16,
    pub data_dir: PathBuf,
    pub app_name: String,
    pub version: String,
}

struct State {
    config: Config,
    hostname: String,
    tmp_counter: AtomicU64,
}

pub fn run(config: Config) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", config.port))?;
    let hostname = hostname();
    println!(
        "{} {} listening on 0.0.0.0:{} (hostname {}, data {})",
        config.app_name,
        config.version,
        config.port,
        hostname,
        config.data_dir.display()
    );
    let state = Arc::new(State {
        config,
        hostname,
        tmp_counter: AtomicU64::new(0),
    });
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let state = Arc::clone(&state);
                if let Err(e) = std::thread::Builder::new().spawn(move || handle_connection(&state, stream)) {
                    eprintln!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(())
}

pub fn hostname() -> String {
    for f in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(s) = fs::read_to_string(f) {
            let s = s.trim();
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".to_string())
}

/// A response: status, content type and body (a buffer or an open file).
enum Reply {
    Text(u16, String),
    File(File, u64),
}

fn text(status: u16, body: impl Into<String>) -> Reply {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Reply::Text(status, body)
}

fn handle_connection(state: &State, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_string());
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let write_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{peer}: {e}");
            return;
        }
    };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(write_half);

    let head = match http::read_head(&mut reader) {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(e) => {
            let status = match e.kind() {
                io::ErrorKind::InvalidData => 431,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => 408,
                _ => return,
            };
            let _ = send(&mut writer, text(status, e.to_string()));
            return;
        }
    };
    let (line, reply) = match http::parse_request(&head) {
        Ok(req) => {
            let line = format!(
                "{} {} ({})",
                req.method,
                String::from_utf8_lossy(&req.path),
                req.header("user-agent").unwrap_or("-")
            );
            let reply = route(state, &req, &mut reader, &mut writer);
            (line, reply)
        }
        Err(e) => {
            let status = if e == http::ParseError::UnsupportedVersion {
                505
            } else {
                400
            };
            ("-".to_string(), text(status, e.to_string()))
        }
    };
    let status = match &reply {
        Reply::Text(s, _) => *s,
        Reply::File(..) => 200,
    };
    // Probes every few seconds would drown the log: log everything else.
    if !line.starts_with("GET /healthz ") || status != 200 {
        println!("{peer} {line} {status}");
    }
    if let Err(e) = send(&mut writer, reply) {
        eprintln!("{peer}: writing the response: {e}");
    }
}

fn send(w: &mut BufWriter<TcpStream>, reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Text(status, body) => {
            http::write_head(w, status, "text/plain; charset=utf-8", body.len() as u64)?;
            w.write_all(body.as_bytes())?;
        }
        Reply::File(mut f, len) => {
            http::write_head(w, 200, "application/octet-stream", len)?;
            let copied = io::copy(&mut (&mut f).take(len), w)?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while sending",
                ));
            }
        }
    }
    w.flush()
}

fn route(state: &State, req: &Request, r: &mut BufReader<TcpStream>, w: &mut BufWriter<TcpStream>) -> Reply {
    let path = req.path.as_slice();
    if let Some(name) = path.strip_prefix(b"/data/") {
        let name = match validate_name(name) {
            Ok(n) => n,
            Err(e) => return text(400, e),
        };
        return match req.method.as_str() {
            "GET" => get_data(state, name),
            "PUT" => put_data(state, name, req, r, w),
            "DELETE" => delete_data(state, name),
            _ => text(405, "use GET, PUT or DELETE"),
        };
    }
    if req.method != "GET" {
        return text(405, "use GET");
    }
    match path {
        b"/healthz" => healthz(state),
        b"/" => text(
            200,
            format!(
                "app: {}\nhostname: {}\nversion: {}\nsample-app: govcloud-sample-app {}\n",
                state.config.app_name,
                state.hostname,
                state.config.version,
                env!("CARGO_PKG_VERSION")
            ),
        ),
        b"/checksums" => checksums(state),
        b"/connect" => connect(req),
        _ => text(404, "not found"),
    }
}

/// A file name under the data directory: not empty, no `/`, no `..`, no NUL, valid UTF-8.
pub fn validate_name(name: &[u8]) -> Result<&str, String> {
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    if name.len() > 255 {
        return Err("name longer than 255 bytes".to_string());
    }
    if name.contains(&0) {
        return Err("name contains NUL".to_string());
    }
    if name.contains(&b'/') {
        return Err("name contains '/'".to_string());
    }
    if name.windows(2).any(|w| w == b"..") {
        return Err("name contains '..'".to_string());
    }
    if name == b"." {
        return Err("name is '.'".to_string());
    }
    std::str::from_utf8(name).map_err(|_| "name is not UTF-8".to_string())
}

fn healthz(state: &State) -> Reply {
    if state.config.data_dir.join(UNHEALTHY_MARKER).exists() {
        text(
            503,
            format!(
                "unhealthy: {} exists",
                state.config.data_dir.join(UNHEALTHY_MARKER).display()
            ),
        )
    } else {
        text(200, "ok")
    }
}

fn get_data(state: &State, name: &str) -> Reply {
    let path = state.config.data_dir.join(name);
    match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
        Ok((f, m)) if m.is_file() => Reply::File(f, m.len()),
        Ok(_) => text(404, format!("{name}: not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => text(404, format!("{name}: not found")),
        Err(e) => text(500, format!("{name}: {e}")),
    }
}

fn delete_data(state: &State, name: &str) -> Reply {
    match fs::remove_file(state.config.data_dir.join(name)) {
        Ok(()) => text(200, format!("deleted {name}")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => text(404, format!("{name}: not found")),
        Err(e) => text(500, format!("{name}: {e}")),
    }
}

fn put_data(
    state: &State,
    name: &str,
    req: &Request,
    r: &mut BufReader<TcpStream>,
    w: &mut BufWriter<TcpStream>,
) -> Reply {
    if let Body::Length(n) = req.body
        && n > MAX_BODY
    {
        return text(413, format!("body of {n} bytes is larger than {MAX_BODY}"));
    }
    if req.expect_continue {
        let ok = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").and_then(|()| w.flush());
        if let Err(e) = ok {
            return text(500, format!("sending 100 Continue: {e}"));
        }
    }
    let dir = &state.config.data_dir;
    if let Err(e) = fs::create_dir_all(dir) {
        return text(500, format!("creating {}: {e}", dir.display()));
    }
    // Write to a temporary file, sync, then rename: readers never see half a file.
    let n = state.tmp_counter.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp.{}.{n}", std::process::id()));
    let result = write_body(&tmp, req, r).and_then(|len| {
        fs::rename(&tmp, dir.join(name))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(len)
    });
    match result {
        Ok(len) => text(201, format!("stored {name} ({len} bytes)")),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            match e.kind() {
                io::ErrorKind::FileTooLarge => text(413, format!("body larger than {MAX_BODY} bytes")),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => {
                    text(400, format!("reading the body: {e}"))
                }
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => text(408, format!("reading the body: {e}")),
                _ => text(500, format!("storing {name}: {e}")),
            }
        }
    }
}

fn write_body(tmp: &Path, req: &Request, r: &mut BufReader<TcpStream>) -> io::Result<u64> {
    let mut f = BufWriter::new(File::create(tmp)?);
    let len = match req.body {
        Body::None => 0,
        Body::Length(n) => {
            let copied = io::copy(&mut r.by_ref().take(n), &mut f)?;
            if copied != n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("got {copied} of {n} bytes"),
                ));
            }
            n
        }
        Body::Chunked => http::copy_chunked(r, &mut f, MAX_BODY)?,
    };
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(len)
}

fn checksums(state: &State) -> Reply {
    let dir = &state.config.data_dir;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Reply::Text(200, String::new()),
        Err(e) => return text(500, format!("{}: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return text(500, format!("{}: {e}", dir.display())),
        };
        // symlink_metadata: regular files only, links are not followed.
        match entry.path().symlink_metadata() {
            Ok(m) if m.is_file() => files.push(entry.file_name().to_string_lossy().into_owned()),
            _ => {}
        }
    }
    files.sort();
    let mut out = String::new();
    for name in files {
        match sha256_file(&dir.join(&name)) {
            Ok(sum) => out.push_str(&format!("{sum}  {name}\n")),
            // Removed between the listing and the read (e.g. a concurrent DELETE).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return text(500, format!("{name}: {e}")),
        }
    }
    Reply::Text(200, out)
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finish()))
}

fn connect(req: &Request) -> Reply {
    let (Some(host), Some(port)) = (req.query("host"), req.query("port")) else {
        return text(400, "usage: /connect?host=H&port=P");
    };
    let Ok(port) = port.parse::<u16>() else {
        return text(400, format!("bad port '{port}'"));
    };
    match crate::client::connect(host, port, Duration::from_secs(2)) {
        Ok(_) => text(200, "open"),
        Err(e) => text(200, format!("closed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name(b"backup-2026.sql"), Ok("backup-2026.sql"));
        assert_eq!(validate_name(b".unhealthy"), Ok(".unhealthy"));
        assert_eq!(validate_name("数据.txt".as_bytes()), Ok("数据.txt"));
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a/b",
            b"/etc",
            b"a..b",
            b"../x",
            b"x\0y",
            b"\xff",
        ] {
            assert!(
                validate_name(bad).is_err(),
                "{:?} should be rejected",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(validate_name(&[b'a'; 256]).is_err());
        assert!(validate_name(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn text_replies_end_with_a_newline() {
        match text(200, "ok") {
            Reply::Text(200, s) => assert_eq!(s, "ok\n"),
            _ => panic!("expected a text reply"),
        }
    }

    #[test]
    fn file_checksum() {
        let dir = std::env::temp_dir().join(format!("govcloud-sample-app-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
