//! The ceiling: the fastest a single thread can answer the benchmark's requests on this machine.
//!
//! One thread, one mio `Poll` (epoll, edge-triggered), httparse for request heads, and a canned
//! response for every request. Supports keep-alive, pipelining (every complete request in the
//! read buffer is answered, in order, in one write), request bodies by Content-Length (skipped),
//! and `Connection: close`. No WSGI, no Python, no threads: whatever maitre loses against this
//! is the cost of everything that is not the socket work itself.
//!
//! Usage: `maitre-ceiling --port N [--host 127.0.0.1]`

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!";
/// The same, for a request that asked to close (`Connection: close`, HTTP/1.0): saying so lets
/// the client reconnect at once instead of reusing a connection that is about to close.
const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nHello, world!";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const LISTENER: Token = Token(usize::MAX);
const READ_CHUNK: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_HEAD: usize = 64 * 1024;
const OUT_HIGH: usize = 1024 * 1024;

struct Conn {
    sock: TcpStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Bytes of `outbuf` already written.
    sent: usize,
    /// Body bytes of the current request still to be skipped.
    skip: usize,
    /// Close once `outbuf` is flushed.
    closing: bool,
    /// Reading stopped because `outbuf` is over OUT_HIGH (a client pipelining without reading).
    paused: bool,
}

enum Parsed {
    /// A whole request head of this many bytes, followed by `body` bytes; `close` if the client
    /// asked for it (or speaks HTTP/1.0 without keep-alive).
    Request { head: usize, body: usize, close: bool },
    Partial,
    Invalid,
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head)) => {
            let mut body = 0usize;
            let mut close = req.version == Some(0);
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                        Some(n) => body = n,
                        None => return Parsed::Invalid,
                    }
                } else if h.name.eq_ignore_ascii_case("connection") {
                    let v = h.value;
                    if v.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if v.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    // Chunked bodies are out of scope for the ceiling.
                    return Parsed::Invalid;
                }
            }
            Parsed::Request { head, body, close }
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Parsed::Partial,
        _ => Parsed::Invalid,
    }
}

impl Conn {
    fn new(sock: TcpStream) -> Self {
        Conn { sock, inbuf: Vec::new(), outbuf: Vec::new(), sent: 0, skip: 0, closing: false, paused: false }
    }

    /// Read until the socket is drained (edge-triggered), answering every complete request.
    /// `scratch` is the loop's one read buffer (initialised once, so no per-read memset); what
    /// arrives is appended to `inbuf`, which only ever holds a few unparsed bytes.
    /// Returns false on a read error (the connection is dropped at once).
    fn on_readable(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            if self.closing || self.paused {
                return true;
            }
            match self.sock.read(scratch) {
                Ok(0) => {
                    // Peer finished sending: answer what we have, then close.
                    self.closing = true;
                    return true;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.process();
                    if self.outbuf.len() - self.sent > OUT_HIGH {
                        // Resumed by the event loop once the output is flushed.
                        self.paused = true;
                        return true;
                    }
                    if n < scratch.len() {
                        // A short read on a stream socket means its receive queue is empty
                        // (epoll(7)); data arriving later raises a new edge. Skip the read that
                        // would only return WouldBlock: one syscall less per request.
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Answer every complete request in `inbuf`, pipelined requests included.
    fn process(&mut self) {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.inbuf.len() - pos);
                self.skip -= n;
                pos += n;
                if self.skip > 0 {
                    break;
                }
            }
            if pos == self.inbuf.len() || self.closing {
                break;
            }
            match parse(&self.inbuf[pos..]) {
                Parsed::Request { head, body, close } => {
                    self.outbuf.extend_from_slice(if close { RESPONSE_CLOSE } else { RESPONSE });
                    pos += head;
                    self.skip = body;
                    if close {
                        self.closing = true;
                    }
                }
                Parsed::Partial => break,
                Parsed::Invalid => {
                    self.outbuf.extend_from_slice(BAD_REQUEST);
                    self.closing = true;
                    pos = self.inbuf.len();
                }
            }
        }
        self.inbuf.drain(..pos);
    }

    /// Write until done or WouldBlock. Returns false on error.
    fn flush(&mut self) -> bool {
        while self.sent < self.outbuf.len() {
            match self.sock.write(&self.outbuf[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.outbuf.clear();
        self.sent = 0;
        true
    }

    fn done(&self) -> bool {
        self.closing && self.outbuf.is_empty()
    }
}

fn parse_args() -> Result<SocketAddr, String> {
    let mut host = String::from("127.0.0.1");
    let mut port: Option<u16> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = Some(args.next().and_then(|v| v.parse().ok()).ok_or("--port needs a number")?),
            "--host" => host = args.next().ok_or("--host needs an address")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let port = port.ok_or("--port is required")?;
    format!("{host}:{port}").parse().map_err(|e| format!("bad address: {e}"))
}

fn main() -> io::Result<()> {
    let addr = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("maitre-ceiling: {msg}");
            }
            eprintln!("usage: maitre-ceiling --port N [--host 127.0.0.1]");
            std::process::exit(2);
        }
    };
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("maitre-ceiling listening on http://{}", listener.local_addr()?);

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];

    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                // Edge-triggered: accept until WouldBlock.
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            // Both interests, registered once: with edge triggering we are woken
                            // when the socket becomes writable again after a WouldBlock.
                            poll.registry().register(&mut sock, Token(idx), Interest::READABLE | Interest::WRITABLE)?;
                            conns[idx] = Some(Conn::new(sock));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // EMFILE and friends: drop this round, the next event retries.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let idx = event.token().0;
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else { continue };
            let mut want_read = event.is_readable() || event.is_read_closed() || event.is_error();
            let alive = loop {
                if want_read && !conn.on_readable(&mut scratch) {
                    break false;
                }
                // Flush after reading (answers to what we just parsed) and on writable events.
                if !conn.flush() || conn.done() {
                    break false;
                }
                if conn.paused && conn.outbuf.is_empty() {
                    conn.paused = false;
                    want_read = true;
                    continue;
                }
                break true;
            };
            if !alive {
                if let Some(mut c) = conns[idx].take() {
                    let _ = poll.registry().deregister(&mut c.sock);
                }
                free.push(idx);
            }
        }
    }
}
