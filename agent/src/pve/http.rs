//! The HTTP layer: one reqwest client (connection reuse, timeouts, preconfigured rustls),
//! the token header, the `{"data": …}` envelope, error classification, and retries of
//! idempotent reads.
//!
//! The error text of older Proxmox releases lives only in the HTTP reason phrase. hyper keeps
//! a non-canonical reason phrase in the response extensions as `hyper::ext::ReasonPhrase`,
//! and reqwest passes the extensions through (`Response::extensions`), so we read it there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

use super::ApiSettings;
use super::certexpiry::{CertDates, SeenCert};
use super::error::{MAX_MESSAGE_BYTES, PveError, classify, clean_text};
use super::tls::{self, PinReport, TlsMode};

/// How many times an idempotent read is attempted on connect errors, 5xx and 59x.
const READ_ATTEMPTS: u32 = 3;
/// First back-off between read attempts (doubled each time).
const READ_BACKOFF: Duration = Duration::from_millis(200);

/// A decoded success envelope.
#[derive(Debug)]
pub(crate) struct Reply {
    /// `data`.
    pub data: Value,
    /// `total`, when present (task log).
    pub total: Option<u64>,
}

/// The low-level API transport.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: url::Url,
    auth: HeaderValue,
    pin: Option<Arc<PinReport>>,
    seen: Arc<SeenCert>,
    ca_not_after: Vec<i64>,
    tls: TlsMode,
    max_body: usize,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base.as_str())
            .field("auth", &"[redacted]")
            .field("tls", &self.tls)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// Why a body could not be read.
enum BodyError {
    /// The transport failed (timeout, reset, truncated chunked encoding, …).
    Transport(reqwest::Error),
    /// The body is (or announced to be) larger than the cap.
    TooLarge {
        /// Bytes announced in `Content-Length`, when that is what was refused.
        announced: Option<u64>,
    },
}

/// Reads a response body, counting bytes as they arrive: reading stops at the first chunk
/// that would pass `cap`, so memory never holds more than `cap` bytes of one body (a
/// `Content-Length` over the cap is refused before reading anything).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let announced = resp.content_length();
    if let Some(len) = announced {
        if len > cap as u64 {
            return Err(BodyError::TooLarge {
                announced: Some(len),
            });
        }
    }
    // Preallocate only what was announced (already known to be within the cap), at most 1 MiB.
    let mut body = Vec::with_capacity(announced.map_or(8 * 1024, |n| n.min(1 << 20) as usize));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge { announced: None });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How long an idle pooled connection is kept for reuse. pveproxy (pve-http-server's
/// `PVE/APIServer/AnyEvent.pm`) arms a 5 s handle timeout (its default `timeout`, which
/// pveproxy does not change) when it sends a response and closes a keep-alive connection
/// that stays silent that long. Dropping our side well before that means a request never
/// goes out on a connection the server is closing, where a POST would end as "outcome
/// unknown" although it never reached Proxmox. Task polls (at most 1 s apart) still reuse
/// the connection.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Formats an error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

impl Http {
    pub(crate) fn new(settings: &ApiSettings) -> Result<Http, PveError> {
        // Only https: the token header must never travel in clear text. Checked here, not
        // only in the config loader, because `ApiSettings` can be built directly.
        let mut base = settings.api_url.clone();
        if base.scheme() != "https" || base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(PveError::InvalidArgument(format!(
                "api_url must be https://HOST:PORT, got {}",
                settings.api_url
            )));
        }
        if settings.tls == TlsMode::Insecure {
            tracing::warn!(
                api_url = %settings.api_url,
                "tls_insecure is set: the Proxmox API certificate is NOT verified"
            );
        }
        let tls::ClientTls {
            config,
            pin,
            seen,
            ca_not_after,
        } = tls::client_config(&settings.tls, settings.tls_server_name.as_deref())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("felhom-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PveError::TlsSetup(format!("HTTP client setup: {}", chain(&e))))?;
        base.set_query(None);
        base.set_fragment(None);
        {
            let mut segs = base
                .path_segments_mut()
                .map_err(|()| PveError::InvalidArgument("api_url cannot be a base".into()))?;
            segs.pop_if_empty().extend(["api2", "json"]);
        }
        // The header value is built once and marked sensitive (hidden from Debug output).
        let mut auth = HeaderValue::from_str(&format!(
            "PVEAPIToken={}={}",
            settings.token_id,
            settings.token_secret.expose()
        ))
        .map_err(|_| PveError::InvalidArgument("token id or secret not header-safe".into()))?;
        auth.set_sensitive(true);
        Ok(Http {
            client,
            base,
            auth,
            pin,
            seen,
            ca_not_after,
            tls: settings.tls.clone(),
            max_body: settings.max_response_bytes,
        })
    }

    /// When the certificates this client relies on expire (the server's: as of the last
    /// handshake).
    pub(crate) fn cert_dates(&self) -> CertDates {
        CertDates {
            server_not_after: self.seen.get(),
            ca_file_not_after: self.ca_not_after.clone(),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<url::Url, PveError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| PveError::InvalidArgument("bad base url".into()))?
            .extend(segments);
        Ok(url)
    }

    /// One API call. GET is retried (bounded, with back-off) on transport errors, 5xx and
    /// 59x; POST/PUT/DELETE are sent exactly once.
    pub(crate) async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        form: Option<&[(String, String)]>,
    ) -> Result<Reply, PveError> {
        let idempotent = method == Method::GET;
        let attempts = if idempotent { READ_ATTEMPTS } else { 1 };
        let mut backoff = READ_BACKOFF;
        let mut attempt = 1;
        loop {
            match self
                .call_once(&method, segments, query, form, idempotent)
                .await
            {
                Err(e) if attempt < attempts && e.is_retryable_read() => {
                    tracing::debug!(error = %e, attempt, "retrying idempotent read");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        method: &Method,
        segments: &[&str],
        query: &[(&str, String)],
        form: Option<&[(String, String)]>,
        idempotent: bool,
    ) -> Result<Reply, PveError> {
        let url = self.url(segments)?;
        let path = format!("/{}", segments.join("/"));
        let mut req = self
            .client
            .request(method.clone(), url)
            .header(AUTHORIZATION, self.auth.clone());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(form) = form {
            req = req.form(form);
        }
        let started = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(method, &path, &e, idempotent)),
        };
        let status = resp.status();
        // The reason phrase is text from outside: bounded and stripped of control characters
        // before it can reach a terminal or a log line.
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| clean_text(&String::from_utf8_lossy(r.as_bytes()), MAX_MESSAGE_BYTES));
        let body = match read_capped(resp, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::Transport(e)) => {
                return Err(self.transport_error(method, &path, &e, idempotent));
            }
            Err(BodyError::TooLarge { announced }) => {
                let what = match announced {
                    Some(n) => format!("announces {n} bytes"),
                    None => "is larger than that".to_string(),
                };
                return Err(PveError::Decode {
                    path,
                    message: format!(
                        "response body {what}; the limit is {} bytes (max_response_bytes); stopped reading",
                        self.max_body
                    ),
                });
            }
        };
        tracing::debug!(
            %method,
            path = %path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pve api call"
        );
        if !status.is_success() {
            let err = classify(
                method.as_str(),
                &path,
                status.as_u16(),
                reason.as_deref(),
                &body,
                idempotent,
            );
            tracing::debug!(%method, path = %path, error = %err, "pve api error");
            return Err(err);
        }
        let mut v: Value = serde_json::from_slice(&body).map_err(|e| PveError::Decode {
            path: path.clone(),
            message: format!("body is not JSON: {e}"),
        })?;
        let total = v.get("total").and_then(|t| {
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        });
        let data = v.get_mut("data").map(Value::take).ok_or(PveError::Decode {
            path,
            message: "missing \"data\" in response".into(),
        })?;
        Ok(Reply { data, total })
    }

    fn transport_error(
        &self,
        method: &Method,
        path: &str,
        e: &reqwest::Error,
        idempotent: bool,
    ) -> PveError {
        // The pin report is shared by every connection of this client; a recorded mismatch
        // explains only a failure to connect (the handshake), never a request that failed
        // after it was sent (that must stay OutcomeUnknown).
        if let (true, Some(report), TlsMode::Pinned(expected)) =
            (e.is_connect(), &self.pin, &self.tls)
        {
            if let Some(presented) = report.take_mismatch() {
                return PveError::Tls {
                    presented_fingerprint: presented.to_string(),
                    expected_fingerprint: expected.to_string(),
                };
            }
        }
        let message = clean_text(&chain(e), MAX_MESSAGE_BYTES);
        // A request that failed before a connection existed was never sent and is safe to
        // report as a plain transport error; anything later may have reached the server.
        if !idempotent && !e.is_connect() && !e.is_builder() {
            return PveError::OutcomeUnknown {
                method: method.to_string(),
                path: path.to_string(),
                status: 0,
                message,
            };
        }
        PveError::Transport {
            method: method.to_string(),
            path: path.to_string(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::{Fingerprint, NodeName, TokenId};
    use crate::secret::Secret;
    use tokio::io::AsyncReadExt;

    fn pinned_http() -> Http {
        Http::new(&ApiSettings {
            api_url: "https://127.0.0.1:8006".parse().unwrap(),
            node: NodeName::new("pve").unwrap(),
            token_id: TokenId::new("felhom@pve!agent").unwrap(),
            token_secret: Secret::new("0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap(),
            tls: TlsMode::Pinned(Fingerprint::of_der(b"expected")),
            tls_server_name: None,
            request_timeout: Duration::from_secs(5),
            max_response_bytes: crate::pve::DEFAULT_MAX_RESPONSE_BYTES,
        })
        .unwrap()
    }

    /// A body larger than the bound is refused while it is read, with or without a
    /// Content-Length.
    #[tokio::test]
    async fn bodies_are_bounded_while_read() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = vec![b'x'; 3000];
                    let head = if req.starts_with("GET /chunked") {
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                            .to_string()
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                    };
                    let _ = sock.write_all(head.as_bytes()).await;
                    if req.starts_with("GET /chunked") {
                        for part in body.chunks(500) {
                            let _ = sock
                                .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                                .await;
                            let _ = sock.write_all(part).await;
                            let _ = sock.write_all(b"\r\n").await;
                        }
                        let _ = sock.write_all(b"0\r\n\r\n").await;
                    } else {
                        let _ = sock.write_all(&body).await;
                    }
                });
            }
        });
        let client = pinned_http().client;
        for path in ["sized", "chunked"] {
            let get = || client.get(format!("http://{addr}/{path}")).send();
            let small = read_capped(get().await.unwrap(), 1000).await;
            assert!(matches!(small, Err(BodyError::TooLarge { .. })), "{path}");
            let fits = read_capped(get().await.unwrap(), 3000).await;
            assert_eq!(fits.ok().map(|b| b.len()), Some(3000), "{path}");
        }
    }

    /// The pin report is shared by all connections of a client: a mismatch recorded by one
    /// handshake must not turn another request's post-send failure (outcome unknown) into a
    /// TLS error; it explains connect errors only.
    #[tokio::test]
    async fn pin_report_explains_only_connect_errors() {
        let http = pinned_http();
        let report = http.pin.clone().unwrap();
        let presented = Fingerprint::of_der(b"presented");
        report.record(presented);

        // A server that reads the request and hangs up without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
            }
        });
        let e = http
            .client
            .post(format!("http://{addr}/x"))
            .send()
            .await
            .unwrap_err();
        assert!(!e.is_connect(), "{e:?}");
        let err = http.transport_error(&Method::POST, "/x", &e, false);
        assert!(matches!(err, PveError::OutcomeUnknown { .. }), "{err:?}");

        // The recorded mismatch is still there for a connect error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = http
            .client
            .get(format!("http://{closed}/x"))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_connect(), "{e:?}");
        match http.transport_error(&Method::GET, "/x", &e, true) {
            PveError::Tls {
                presented_fingerprint,
                ..
            } => assert_eq!(presented_fingerprint, presented.to_string()),
            other => panic!("{other:?}"),
        }
    }
}
