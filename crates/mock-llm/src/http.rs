//! A minimal HTTP/1.1 server side: request parsing (content-length or
//! chunked bodies, `expect: 100-continue`) and response writing (fixed
//! length or chunked).

use std::io::{self, BufRead, Read, Write};
use std::thread;
use std::time::Duration;

const MAX_LINE: u64 = 64 * 1024;
const MAX_HEADERS: usize = 256;
const MAX_BODY: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path plus query).
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: String,
    /// Names as sent (not lowercased).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| conn.split(',').any(|x| x.trim() == t);
        if self.version == "HTTP/1.0" {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one CRLF (or LF) terminated line without its terminator; `None`
/// at a clean end of stream.
fn read_line<R: BufRead>(r: &mut R) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE {
            bad("line too long")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "eof in line")
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad("non-utf8 line"))
}

fn need_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    read_line(r)?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "eof"))
}

/// Reads the next request from a connection. `Ok(None)` when the peer
/// closed the connection between requests. `out` receives the interim
/// `100 Continue` when the client asks for it.
pub fn read_request<R: BufRead, W: Write>(r: &mut R, out: &mut W) -> io::Result<Option<Request>> {
    // Skip empty lines before the request line (RFC 9112 2.2).
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("unsupported version"));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let l = need_line(r)?;
        if l.is_empty() {
            break;
        }
        if req.headers.len() >= MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let (name, value) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
        req.headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match req.header("content-length") {
        Some(v) if !chunked => Some(v.parse::<usize>().map_err(|_| bad("bad content-length"))?),
        _ => None,
    };
    if length.is_some_and(|n| n > MAX_BODY) {
        return Err(bad("body too large"));
    }
    let expects_body = chunked || length.is_some_and(|n| n > 0);
    if expects_body
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    if chunked {
        req.body = read_chunked(r)?;
    } else if let Some(n) = length {
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = need_line(r)?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !need_line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        if let Some(dst) = body.get_mut(start..) {
            r.read_exact(dst)?;
        }
        if !need_line(r)?.is_empty() {
            return Err(bad("missing CRLF after chunk"));
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
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

fn head(status: u16, headers: &[(&str, String)], keep_alive: bool) -> String {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        h.push_str(n);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    if !keep_alive {
        h.push_str("connection: close\r\n");
    }
    h
}

/// Writes a complete response with a content-length (no body on HEAD when
/// `send_body` is false, but the length is still announced).
pub fn write_full<W: Write>(
    w: &mut W,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
    send_body: bool,
) -> io::Result<()> {
    let mut out = head(status, headers, keep_alive).into_bytes();
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    if send_body {
        out.extend_from_slice(body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// How a fixed-length body goes out: at once, dripped, or cut short.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pace {
    /// Spread the body over this long, in up to [`DRIP_PIECES`] writes.
    pub drip: Duration,
    /// Send only the first half of the announced body (the caller then closes).
    pub cut: bool,
}

/// How many writes a dripped body is split into.
pub const DRIP_PIECES: usize = 20;

/// Like [`write_full`], but the headers go out at once and the body as `pace` says.
/// The content-length always announces the whole body.
pub fn write_paced<W: Write>(
    w: &mut W,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
    pace: Pace,
) -> io::Result<()> {
    let mut out = head(status, headers, keep_alive).into_bytes();
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    w.write_all(&out)?;
    w.flush()?;
    let sent = if pace.cut {
        body.get(..body.len() / 2).unwrap_or(body)
    } else {
        body
    };
    let pieces = if pace.drip.is_zero() {
        1
    } else {
        DRIP_PIECES.min(sent.len()).max(1)
    };
    let step = sent.len().div_ceil(pieces).max(1);
    let pause = pace.drip / pieces as u32;
    for piece in sent.chunks(step) {
        if !pause.is_zero() {
            thread::sleep(pause);
        }
        w.write_all(piece)?;
        w.flush()?;
    }
    Ok(())
}

/// A response with `transfer-encoding: chunked`; each `chunk` is written
/// and flushed on its own.
pub struct Chunked<'a, W: Write> {
    w: &'a mut W,
}

impl<'a, W: Write> Chunked<'a, W> {
    pub fn start(
        w: &'a mut W,
        status: u16,
        headers: &[(&str, String)],
        keep_alive: bool,
    ) -> io::Result<Self> {
        let mut h = head(status, headers, keep_alive);
        h.push_str("transfer-encoding: chunked\r\n\r\n");
        w.write_all(h.as_bytes())?;
        w.flush()?;
        Ok(Chunked { w })
    }

    pub fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(()); // an empty chunk would end the body
        }
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.w.write_all(&out)?;
        self.w.flush()
    }

    pub fn finish(self) -> io::Result<()> {
        self.w.write_all(b"0\r\n\r\n")?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &str) -> (Request, Vec<u8>) {
        let mut r = Cursor::new(raw.as_bytes().to_vec());
        let mut out = Vec::new();
        let req = read_request(&mut r, &mut out).unwrap().unwrap();
        (req, out)
    }

    #[test]
    fn content_length_body() {
        let (req, out) =
            parse("POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(req.path(), "/v1/x");
        assert_eq!(req.body, b"hello");
        assert!(req.keep_alive());
        assert!(out.is_empty());
    }

    #[test]
    fn chunked_body_with_expect() {
        let (req, out) = parse(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n",
        );
        assert_eq!(req.body, b"hello world");
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn keep_alive_rules() {
        let (req, _) = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!req.keep_alive());
        let (req, _) = parse("GET / HTTP/1.0\r\n\r\n");
        assert!(!req.keep_alive());
        let (req, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(req.keep_alive());
    }

    #[test]
    fn eof_between_requests() {
        let mut r = Cursor::new(Vec::new());
        assert!(read_request(&mut r, &mut Vec::new()).unwrap().is_none());
    }

    #[test]
    fn paced_writer_drips_and_cuts() {
        let body = b"0123456789abcdefghij0123456789abcdefghij";
        let mut out = Vec::new();
        let pace = Pace {
            drip: Duration::from_millis(40),
            cut: false,
        };
        let t = std::time::Instant::now();
        write_paced(&mut out, 200, &[], body, true, pace).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(40));
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("content-length: 40\r\n\r\n0123456789abcdefghij0123456789abcdefghij"));
        let mut out = Vec::new();
        let pace = Pace {
            drip: Duration::ZERO,
            cut: true,
        };
        write_paced(&mut out, 200, &[], body, true, pace).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("content-length: 40\r\n\r\n0123456789abcdefghij"));
    }

    #[test]
    fn chunked_writer() {
        let mut out = Vec::new();
        let mut c = Chunked::start(
            &mut out,
            200,
            &[("content-type", "text/event-stream".into())],
            true,
        )
        .unwrap();
        c.chunk(b"data: 1\n\n").unwrap();
        c.finish().unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"));
        assert!(s.ends_with("9\r\ndata: 1\n\n\r\n0\r\n\r\n"));
    }
}
