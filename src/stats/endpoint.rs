//! The `metrics` listener, served by the event loop beside the app's: `/metrics`
//! (Prometheus), `/stats` (JSON), `/health/live`, `/health/ready` (503 once a
//! stop began) and `/` (the status page, which polls `/stats`). Each scrape is
//! one small request on its own connection: read the head, answer, close.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::prometheus;
use super::report::Reporter;

/// Scrapes served at once; more wait in the listen backlog.
const MAX_SCRAPES: usize = 64;
/// A scrape connection that has not finished by then is dropped.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 8192;

const STATUS_PAGE: &str = include_str!("status.html");

struct Scrape {
    socket: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    since: Instant,
}

pub struct Endpoint {
    listener: TcpListener,
    scrapes: Vec<Option<Scrape>>,
    reporter: Arc<Reporter>,
    /// Tokens `first..first + 1 + MAX_SCRAPES`: the listener, then the scrapes.
    first: usize,
}

impl Endpoint {
    /// Registers `listener` with tokens just below `below`.
    pub fn new(
        mut listener: TcpListener,
        reporter: Arc<Reporter>,
        registry: &Registry,
        below: usize,
    ) -> io::Result<Endpoint> {
        let first = below - 1 - MAX_SCRAPES;
        registry.register(&mut listener, Token(first), Interest::READABLE)?;
        Ok(Endpoint {
            listener,
            scrapes: (0..MAX_SCRAPES).map(|_| None).collect(),
            reporter,
            first,
        })
    }

    pub fn owns(&self, token: Token) -> bool {
        (self.first..=self.first + MAX_SCRAPES).contains(&token.0)
    }

    pub fn on_event(&mut self, registry: &Registry, token: Token) {
        if token.0 == self.first {
            self.accept(registry);
        } else {
            self.drive(token.0 - self.first - 1);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        while let Some(slot) = self.scrapes.iter().position(Option::is_none) {
            let Ok((mut socket, _)) = self.listener.accept() else {
                return;
            };
            let token = Token(self.first + 1 + slot);
            if registry
                .register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            self.scrapes[slot] = Some(Scrape {
                socket,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                since: Instant::now(),
            });
            self.drive(slot);
        }
    }

    /// Reads the head, answers, writes; drops the connection when done or broken.
    fn drive(&mut self, slot: usize) {
        let Some(Some(scrape)) = self.scrapes.get_mut(slot) else {
            return;
        };
        if scrape.progress(&self.reporter).unwrap_or(true) {
            self.scrapes[slot] = None;
        }
    }

    /// Drops scrapes that take too long (the loop calls this on its cleanup).
    pub fn expire(&mut self, now: Instant) {
        for slot in &mut self.scrapes {
            if slot
                .as_ref()
                .is_some_and(|s| now.duration_since(s.since) > SCRAPE_TIMEOUT)
            {
                *slot = None;
            }
        }
    }
}

impl Scrape {
    /// True once the answer is written (or nothing more can happen).
    fn progress(&mut self, reporter: &Reporter) -> io::Result<bool> {
        if self.output.is_empty() {
            let mut buf = [0; 2048];
            loop {
                match self.socket.read(&mut buf) {
                    Ok(0) => return Ok(true),
                    Ok(n) => self.input.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                if self.input.len() > MAX_HEAD {
                    self.output = answer("431 Request Header Fields Too Large", "text/plain", "");
                    break;
                }
            }
            if self.output.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                self.output = match req.parse(&self.input) {
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Ok(httparse::Status::Complete(_)) => {
                        route(req.method, req.path.unwrap_or("/"), reporter)
                    }
                    Err(_) => answer("400 Bad Request", "text/plain", "bad request\n"),
                };
            }
        }
        while self.written < self.output.len() {
            match self.socket.write(&self.output[self.written..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

fn route(method: Option<&str>, target: &str, reporter: &Reporter) -> Vec<u8> {
    let head_only = method == Some("HEAD");
    if !matches!(method, Some("GET" | "HEAD")) {
        return answer("405 Method Not Allowed", "text/plain", "GET or HEAD\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    let mut response = match path {
        "/metrics" => answer(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &prometheus::render(&reporter.report()),
        ),
        "/stats" => answer("200 OK", "application/json", &reporter.json()),
        "/health/live" => answer("200 OK", "text/plain", "live\n"),
        "/health/ready" if reporter.draining() => {
            answer("503 Service Unavailable", "text/plain", "draining\n")
        }
        "/health/ready" => answer("200 OK", "text/plain", "ready\n"),
        "/" => answer("200 OK", "text/html; charset=utf-8", STATUS_PAGE),
        _ => answer(
            "404 Not Found",
            "text/plain",
            "/metrics /stats /health/live /health/ready /\n",
        ),
    };
    if head_only {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            response.truncate(end + 4);
        }
    }
    response
}

fn answer(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
