//! HTTPS front end: TLS, authentication, fault injection, request recording and the PVE
//! response envelope.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::api::{ApiError, dispatch};
use super::options::{FaultKind, RecordedRequest};
use super::state::SimState;
use super::util::{civil, now_epoch, parse_form, parse_json_params, percent_decode};

/// What every connection handler needs.
pub(crate) struct Shared {
    pub(crate) state: SimState,
    pub(crate) token_id: String,
    pub(crate) token_secret: String,
}

type Reply = Response<Full<Bytes>>;

/// Accepts connections until `shutdown` changes or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let Ok((tcp, _peer)) = accepted else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let tls = tokio::select! {
                _ = stop.changed() => return,
                r = acceptor.accept(tcp) => match r {
                    Ok(t) => t,
                    Err(_) => return,
                },
            };
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// HTTP-date for the `Expires` header.
fn http_date(epoch: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = DAYS[((epoch / 86_400) % 7) as usize];
    let mon = MONTHS[(mo as usize).saturating_sub(1) % 12];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{mi:02}:{s:02} GMT")
}

fn build(status: u16, reason: Option<&str>, body: Bytes) -> Reply {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    let date = http_date(now_epoch());
    for (k, v) in [
        ("content-type", "application/json;charset=UTF-8"),
        ("server", "pve-api-daemon/3.0"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
        ("expires", date.as_str()),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    if status >= 400 {
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    if let Some(reason) = reason {
        // Reason phrases allow HTAB, SP, VCHAR and obs-text only.
        let clean: Vec<u8> = reason
            .bytes()
            .filter(|b| *b == b'\t' || *b == b' ' || (0x21..=0x7e).contains(b) || *b >= 0x80)
            .collect();
        if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(clean) {
            resp.extensions_mut().insert(rp);
        }
    }
    resp
}

fn error_reply(err: &ApiError, legacy: bool) -> Reply {
    let mut body = Map::new();
    body.insert("data".into(), Value::Null);
    if !legacy {
        body.insert("message".into(), json!(err.message));
    }
    if let Some(errors) = &err.errors {
        body.insert("errors".into(), Value::Object(errors.clone()));
    }
    let text = Value::Object(body).to_string();
    build(err.status, Some(&err.reason()), Bytes::from(text))
}

/// The value after `PVEAPIToken=`/`PVEAPIToken ` in an Authorization header, uri-unescaped.
fn token_value(header: &str) -> Option<String> {
    let mut search = 0;
    while let Some(pos) = header[search..].find("PVEAPIToken") {
        let at = search + pos;
        let boundary = at == 0 || header[..at].ends_with(char::is_whitespace);
        let rest = &header[at + "PVEAPIToken".len()..];
        if boundary && (rest.starts_with('=') || rest.starts_with(' ')) {
            let value = rest[1..].split(';').next().unwrap_or("");
            return Some(percent_decode(value, false));
        }
        search = at + 1;
    }
    None
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, std::io::Error> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_json = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let body_text = String::from_utf8_lossy(&body).into_owned();

    // Record, then look for an injected fault (under one lock, released before awaiting).
    let (fault, legacy, delay) = {
        let mut g = shared.state.lock();
        g.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body_text.clone(),
        });
        let idx = g.faults.iter().position(|f| {
            f.times > 0
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&method))
                && path.contains(&f.path_contains)
        });
        let fault = idx.map(|i| {
            g.faults[i].times -= 1;
            let kind = g.faults[i].kind.clone();
            if g.faults[i].times == 0 {
                g.faults.remove(i);
            }
            kind
        });
        (fault, g.legacy_wire, g.unauthorized_delay)
    };
    let mut lost_answer = None;
    match fault {
        Some(FaultKind::ExecuteThenStatus { code, reason }) => {
            lost_answer = Some(ApiError::new(code, reason));
        }
        Some(FaultKind::Status { code, reason }) => {
            return Ok(error_reply(&ApiError::new(code, reason), legacy));
        }
        Some(FaultKind::Stall(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::CloseConnection) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected connection close",
            ));
        }
        None => {}
    }

    // Authentication: PVE delays every 401 (3 s by default).
    let unauthorized = match auth.as_deref().and_then(token_value) {
        None => Some("No ticket"),
        Some(value) => match value.rsplit_once('=') {
            Some((id, secret)) if id == shared.token_id && secret == shared.token_secret => None,
            _ => Some("Authentication failed!"),
        },
    };
    if let Some(reason) = unauthorized {
        tokio::time::sleep(delay).await;
        return Ok(build(401, Some(reason), Bytes::new()));
    }

    // `/api2/<format>/<path>`
    let Some(rest) = path.strip_prefix("/api2/") else {
        return Ok(error_reply(&ApiError::new(501, "no such uri"), legacy));
    };
    let (format, rel) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if format != "json" {
        return Ok(error_reply(&ApiError::new(501, "no such uri"), legacy));
    }
    let rel = percent_decode(rel, false);
    if !body.is_empty() && !matches!(method.as_str(), "POST" | "PUT") {
        return Ok(error_reply(
            &ApiError::new(501, format!("Unexpected content for method '{method}'")),
            legacy,
        ));
    }
    let mut params = BTreeMap::new();
    if !body.is_empty() {
        if is_json {
            if !parse_json_params(&body, &mut params) {
                return Ok(error_reply(
                    &ApiError::new(400, "malformed JSON request body"),
                    legacy,
                ));
            }
        } else {
            parse_form(&body_text, &mut params);
        }
    }
    parse_form(&query, &mut params);

    let result = {
        let mut g = shared.state.lock();
        let mut result = dispatch(&mut g, &method, &rel, &params);
        if let (Ok(ok), "GET") = (&mut result, method.as_str()) {
            super::patch::apply(&g.patches, &rel, &mut ok.data);
        }
        result
    };
    if let Some(err) = lost_answer {
        // The request took effect, but the client only sees the proxy error.
        return Ok(error_reply(&err, legacy));
    }
    Ok(match result {
        Ok(ok) => {
            let mut env = Map::new();
            env.insert("data".into(), ok.data);
            for (k, v) in ok.extra {
                env.insert(k, v);
            }
            build(200, None, Bytes::from(Value::Object(env).to_string()))
        }
        Err(e) => error_reply(&e, legacy),
    })
}

/// Binds the listener (127.0.0.1 only).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_header_forms() {
        assert_eq!(
            token_value("PVEAPIToken=a@pve!t=s-1").as_deref(),
            Some("a@pve!t=s-1")
        );
        assert_eq!(
            token_value("PVEAPIToken a%40pve%21t%3Ds").as_deref(),
            Some("a@pve!t=s")
        );
        assert_eq!(token_value("Bearer x"), None);
        assert_eq!(token_value("XPVEAPIToken=a"), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_706_702_400), "Wed, 31 Jan 2024 12:00:00 GMT");
    }
}
