//! An HTTPS server on 127.0.0.1 with pveproxy's keep-alive rule: a connection that stays
//! silent for `idle` after a response is closed by the server (pve-http-server arms a 5 s
//! handle timeout when it sends a response).
//!
//! On a real network the server's close and a client's next request can cross on the wire:
//! the client sees a live pooled connection, writes its request, and gets the close instead
//! of an answer. To make that race deterministic, this server never announces the close: it
//! drops the connection, unanswered, when a request arrives after the connection has been
//! idle for `idle` or longer. A client that retires idle connections in time never meets it.
//!
//! Answers: `GET …/version` a PVE 9 version object, any `POST` a task UPID, anything else
//! `{"data":null}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pve_sim::tls;

/// The UPID every `POST` is answered with.
pub const UPID: &str = "UPID:pve:0000A1B2:00C0FFEE:65A1B2C3:vzstart:100:felhom@pve!agent:";

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    answered: AtomicUsize,
    dropped: AtomicUsize,
}

/// A running keep-alive server; dropping it stops it.
pub struct KeepAliveServer {
    addr: std::net::SocketAddr,
    fingerprint: String,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KeepAliveServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAliveServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for KeepAliveServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeepAliveServer {
    /// Starts a server on an ephemeral port of 127.0.0.1 that closes connections idle for
    /// `idle` (pveproxy: 5 s).
    pub async fn start(idle: Duration) -> anyhow::Result<KeepAliveServer> {
        let pki = tls::generate("keepalive")?;
        let acceptor = TlsAcceptor::from(pki.server_config.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    c.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(s, idle, &c).await;
                });
            }
        });
        Ok(KeepAliveServer {
            addr,
            fingerprint: pki.fingerprint,
            counters,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The SHA-256 fingerprint of the server's certificate (for a pinned client).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.counters.answered.load(Ordering::SeqCst)
    }

    /// Requests that arrived on an idled-out connection and were dropped unanswered.
    pub fn dropped(&self) -> usize {
        self.counters.dropped.load(Ordering::SeqCst)
    }
}

/// The method and path of one request.
struct Head {
    method: String,
    path: String,
}

/// Reads one request (head bounded at 64 KiB, body by `Content-Length`, at most 1 MiB).
/// `buf` carries bytes read past the previous request.
async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Head> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut first = head.lines().next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    if len > 1 << 20 {
        return None;
    }
    while buf.len() < end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..end + len);
    Some(Head { method, path })
}

async fn serve<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    mut s: S,
    idle: Duration,
    c: &Counters,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut last_response: Option<Instant> = None;
    while let Some(head) = read_request(&mut s, &mut buf).await {
        if last_response.is_some_and(|t| t.elapsed() >= idle) {
            // The server closed this connection; the request crossed the close.
            c.dropped.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        let body = if head.method == "POST" {
            format!("{{\"data\":\"{UPID}\"}}")
        } else if head.path.ends_with("/version") {
            r#"{"data":{"version":"9.1.3","release":"9.1","repoid":"0123456789abcdef"}}"#
                .to_string()
        } else {
            r#"{"data":null}"#.to_string()
        };
        s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
        s.flush().await?;
        c.answered.fetch_add(1, Ordering::SeqCst);
        last_response = Some(Instant::now());
    }
    Ok(())
}
