//! A deliberately misbehaving HTTPS server on 127.0.0.1, for testing that the agent bounds
//! what it reads from the network: stalls, endless and huge bodies, bad JSON, hostile reason
//! phrases, connections closed mid-response. Every connection gets the same scripted
//! behaviour; the server counts requests and stops when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pve_sim::tls;

/// What the server does after reading a request's head.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Never answers (the connection stays open).
    StallBeforeHeaders,
    /// Sends the headers (announcing 1000 bytes) and 10 bytes of body, then nothing.
    StallMidBody,
    /// A chunked 200 whose body drips one byte every 100 ms, forever.
    DripForever,
    /// A 200 with `bytes` of body (valid JSON whitespace) sent as fast as the client reads;
    /// `announce` sends `Content-Length`, otherwise the body is chunked.
    HugeBody {
        /// Body size.
        bytes: u64,
        /// Whether the length is announced up front.
        announce: bool,
    },
    /// A complete response with this status line reason and body.
    Respond {
        /// HTTP status code.
        status: u16,
        /// Reason phrase, sent as is (may hold any bytes but CR/LF).
        reason: Vec<u8>,
        /// Body.
        body: Vec<u8>,
    },
    /// Announces 1000 bytes, sends 10, closes the connection.
    CloseMidResponse,
}

/// A running misbehaving server; dropping it stops it.
pub struct HostileServer {
    addr: std::net::SocketAddr,
    fingerprint: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileServer {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub async fn start(behaviour: Misbehaviour) -> anyhow::Result<HostileServer> {
        let pki = tls::generate("hostile")?;
        let acceptor = TlsAcceptor::from(pki.server_config.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let behaviour = behaviour.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if read_head(&mut s).await.is_none() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = misbehave(&mut s, &behaviour).await;
                });
            }
        });
        Ok(HostileServer {
            addr,
            fingerprint: pki.fingerprint,
            requests,
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

    /// Requests whose head was read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads up to the end of the request head (bounded at 64 KiB). The request bodies the agent
/// sends are small forms, read along with the head or ignored.
async fn read_head<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

async fn misbehave<S: AsyncWriteExt + Unpin>(s: &mut S, b: &Misbehaviour) -> std::io::Result<()> {
    const JSON_HEAD: &str = "Content-Type: application/json;charset=UTF-8\r\n";
    match b {
        Misbehaviour::StallBeforeHeaders => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Misbehaviour::StallMidBody => {
            s.write_all(
                format!("HTTP/1.1 200 OK\r\n{JSON_HEAD}Content-Length: 1000\r\n\r\n{{\"data\": [")
                    .as_bytes(),
            )
            .await?;
            s.write_all(b"         ").await?;
            s.flush().await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Misbehaviour::DripForever => {
            s.write_all(
                format!("HTTP/1.1 200 OK\r\n{JSON_HEAD}Transfer-Encoding: chunked\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
            loop {
                s.write_all(b"1\r\n \r\n").await?;
                s.flush().await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Misbehaviour::HugeBody { bytes, announce } => {
            let framing = if *announce {
                format!("Content-Length: {bytes}\r\n")
            } else {
                "Transfer-Encoding: chunked\r\n".to_string()
            };
            s.write_all(format!("HTTP/1.1 200 OK\r\n{JSON_HEAD}{framing}\r\n").as_bytes())
                .await?;
            let block = vec![b' '; 64 * 1024];
            let mut left = *bytes;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                if *announce {
                    s.write_all(&block[..n]).await?;
                } else {
                    s.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    s.write_all(&block[..n]).await?;
                    s.write_all(b"\r\n").await?;
                }
                left -= n as u64;
            }
            if !*announce {
                s.write_all(b"0\r\n\r\n").await?;
            }
            s.flush().await?;
        }
        Misbehaviour::Respond {
            status,
            reason,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} ").into_bytes();
            head.extend_from_slice(reason);
            head.extend_from_slice(
                format!(
                    "\r\n{JSON_HEAD}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            s.write_all(&head).await?;
            s.write_all(body).await?;
            s.flush().await?;
            s.shutdown().await?;
        }
        Misbehaviour::CloseMidResponse => {
            s.write_all(
                format!("HTTP/1.1 200 OK\r\n{JSON_HEAD}Content-Length: 1000\r\n\r\n{{\"data\": [")
                    .as_bytes(),
            )
            .await?;
            s.flush().await?;
            s.shutdown().await?;
        }
    }
    Ok(())
}
