//! The agent against a misbehaving HTTPS server on 127.0.0.1: every case ends with a clear
//! error within (attempts × request timeout) plus the back-off, memory stays bounded by the
//! response cap, and text from the server reaches the terminal bounded and without control
//! characters. The peak-RSS figure for the gigabyte case is printed by
//! `cargo bench -p felhom-tests --bench hostile_body_rss`.

use std::time::{Duration, Instant};

use felhom_agent::pve::{ApiSettings, NodeName, PveClient, PveError, TlsMode, TokenId};
use felhom_agent::secret::Secret;
use felhom_tests::bins;
use felhom_tests::hostile_server::{HostileServer, Misbehaviour};

const TIMEOUT: Duration = Duration::from_secs(2);
/// Reads are tried 3 times with 200 ms + 400 ms of back-off between them.
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(600);
/// Scheduling slack on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_millis(2500);

fn client(server: &HostileServer, cap: usize) -> PveClient {
    PveClient::new(&ApiSettings {
        api_url: server.base_url().parse().unwrap(),
        node: NodeName::new("pve").unwrap(),
        token_id: TokenId::new("felhom@pve!agent").unwrap(),
        token_secret: Secret::new("0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap(),
        tls: TlsMode::Pinned(server.fingerprint().parse().unwrap()),
        request_timeout: TIMEOUT,
        max_response_bytes: cap,
        tls_server_name: None,
    })
    .unwrap()
}

/// Runs `containers()` (a GET of a list: retried) against a server doing `b`; returns the
/// error, the time it took and the number of requests the server saw.
async fn containers_against(b: Misbehaviour, cap: usize) -> (PveError, Duration, usize) {
    let server = HostileServer::start(b).await.unwrap();
    let pve = client(&server, cap);
    let started = Instant::now();
    let r = pve.containers().await;
    let took = started.elapsed();
    let err = match r {
        Ok(v) => panic!("a hostile server's answer was accepted: {v:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        !text.chars().any(char::is_control),
        "control characters in {text:?}"
    );
    assert!(
        text.len() < 4096,
        "unbounded error text: {} bytes",
        text.len()
    );
    (err, took, server.requests())
}

fn within_attempts(took: Duration) {
    let bound = TIMEOUT * ATTEMPTS + BACKOFF + SLACK;
    assert!(took <= bound, "took {took:?}, bound {bound:?}");
}

#[tokio::test]
async fn stall_before_the_headers_times_out_after_each_attempt() {
    let (e, took, n) = containers_against(Misbehaviour::StallBeforeHeaders, 1 << 20).await;
    assert!(matches!(e, PveError::Transport { .. }), "{e:?}");
    assert_eq!(n, ATTEMPTS as usize, "a read is retried");
    assert!(took >= TIMEOUT * ATTEMPTS, "{took:?}");
    within_attempts(took);
}

#[tokio::test]
async fn stall_in_the_middle_of_a_body_times_out() {
    let (e, took, n) = containers_against(Misbehaviour::StallMidBody, 1 << 20).await;
    assert!(matches!(e, PveError::Transport { .. }), "{e:?}");
    assert_eq!(n, ATTEMPTS as usize);
    within_attempts(took);
}

#[tokio::test]
async fn a_body_that_drips_forever_ends_at_the_request_timeout() {
    let (e, took, _) = containers_against(Misbehaviour::DripForever, 1 << 20).await;
    assert!(matches!(e, PveError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("/nodes/pve/lxc"), "{e}");
    within_attempts(took);
}

#[tokio::test]
async fn a_huge_body_sent_fast_is_refused_at_the_cap_while_reading() {
    // 256 MiB chunked (no length announced) against a 1 MiB cap: refused after about 1 MiB,
    // long before the body could have been read, and not retried.
    let (e, took, n) = containers_against(
        Misbehaviour::HugeBody {
            bytes: 256 << 20,
            announce: false,
        },
        1 << 20,
    )
    .await;
    match &e {
        PveError::Decode { path, message } => {
            assert_eq!(path, "/nodes/pve/lxc");
            assert!(
                message.contains("1048576 bytes (max_response_bytes)"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n, 1, "an oversized body is not retried");
    assert!(
        took < TIMEOUT,
        "{took:?}: the cap must stop the read, not the timeout"
    );
}

#[tokio::test]
async fn an_announced_huge_body_is_refused_before_reading() {
    let (e, took, _) = containers_against(
        Misbehaviour::HugeBody {
            bytes: 2 << 30,
            announce: true,
        },
        1 << 20,
    )
    .await;
    assert!(
        matches!(&e, PveError::Decode { message, .. } if message.contains("announces 2147483648 bytes")),
        "{e:?}"
    );
    assert!(took < TIMEOUT, "{took:?}");
}

fn respond(status: u16, reason: &[u8], body: &[u8]) -> Misbehaviour {
    Misbehaviour::Respond {
        status,
        reason: reason.to_vec(),
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn truncated_json_is_a_decode_error() {
    let (e, _, n) = containers_against(respond(200, b"OK", br#"{"data":[{"vmid":"#), 1 << 20).await;
    assert!(
        matches!(&e, PveError::Decode { message, .. } if message.contains("not JSON")),
        "{e:?}"
    );
    assert_eq!(n, 1);
}

#[tokio::test]
async fn deeply_nested_json_is_a_decode_error_not_a_stack_overflow() {
    let mut body = br#"{"data":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', 500_000));
    let (e, _, _) = containers_against(respond(200, b"OK", &body), 1 << 20).await;
    assert!(matches!(e, PveError::Decode { .. }), "{e:?}");
}

#[tokio::test]
async fn null_data_where_a_list_is_expected_is_a_decode_error() {
    let (e, _, _) = containers_against(respond(200, b"OK", br#"{"data":null}"#), 1 << 20).await;
    assert!(matches!(e, PveError::Decode { .. }), "{e:?}");
}

#[tokio::test]
async fn an_html_error_page_is_an_api_error_with_the_status() {
    let page =
        b"<html><head><title>502 Bad Gateway</title></head><body>\x1b[31mnginx</body></html>";
    let (e, took, n) = containers_against(respond(502, b"Bad Gateway", page), 1 << 20).await;
    match &e {
        PveError::Api {
            status, message, ..
        } => {
            assert_eq!(*status, 502);
            assert_eq!(message, "Bad Gateway");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n, ATTEMPTS as usize, "a 5xx read is retried");
    within_attempts(took);
}

#[tokio::test]
async fn a_60_kb_reason_phrase_is_cut() {
    let reason = vec![b'x'; 60 * 1024];
    let (e, _, _) = containers_against(respond(400, &reason, b""), 1 << 20).await;
    let text = e.to_string();
    assert!(text.contains("more bytes cut"), "{text}");
    assert!(text.len() < 1200, "{} bytes", text.len());
}

#[tokio::test]
async fn escape_sequences_in_a_reason_phrase_never_reach_the_text() {
    // C0 escapes (ESC [2J clears the screen, OSC 0 sets the title): the HTTP parser refuses
    // the status line itself, so the error is a transport error that quotes nothing of it.
    let (e, _, _) = containers_against(
        respond(400, b"bad \x1b[2J\x1b]0;pwned\x07 end", b""),
        1 << 20,
    )
    .await;
    assert!(matches!(e, PveError::Transport { .. }), "{e:?}");
    assert!(!e.to_string().contains("pwned"), "{e}");
    // A C1 CSI (U+009B in UTF-8) is obs-text: the parser takes the line, the phrase is not
    // used, and nothing of it shows.
    let (e, _, _) = containers_against(respond(400, b"bad \xc2\x9b31m end", b""), 1 << 20).await;
    assert!(!e.to_string().contains('\u{9b}'), "{e}");
    // The real way in: JSON escapes in the body's `message` and `errors` decode to real
    // control characters. They are replaced.
    let body = br#"{"data":null,"message":"bad \u001b[2J\u001b]0;pwned\u0007 \u009b31m end\n","errors":{"vmid\u001b[1m":"x\u001b[0m"}}"#;
    let (e, _, _) = containers_against(respond(400, b"Bad Request", body), 1 << 20).await;
    let text = e.to_string();
    assert!(
        text.contains("bad \u{FFFD}[2J\u{FFFD}]0;pwned\u{FFFD} \u{FFFD}31m end"),
        "{text}"
    );
    assert!(text.contains("vmid\u{FFFD}[1m: x\u{FFFD}[0m"), "{text}");
}

#[tokio::test]
async fn a_connection_closed_mid_response_is_a_transport_error() {
    let (e, took, n) = containers_against(Misbehaviour::CloseMidResponse, 1 << 20).await;
    assert!(matches!(e, PveError::Transport { .. }), "{e:?}");
    assert_eq!(n, ATTEMPTS as usize);
    within_attempts(took);
}

/// The real CLI: a hostile reason phrase reaches the terminal bounded and without escape
/// sequences (it used to print 60 KB of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_hostile_reason_phrase_bounded_and_clean() {
    tokio::task::block_in_place(bins::agent);
    // 60 KB of reason phrase, and a body message with escape sequences in JSON escapes.
    let reason = vec![b'y'; 60 * 1024];
    let body = format!(
        r#"{{"data":null,"message":"\u001b[2J\u001b]0;pwned\u0007{}"}}"#,
        "z".repeat(60 * 1024)
    );
    let server = HostileServer::start(respond(400, &reason, body.as_bytes()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap();
    // Private to this user, as the agent requires of a token file.
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("agent.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "api_url": server.base_url(),
            "node": "pve",
            "token_id": "felhom@pve!agent",
            "token_secret_file": secret,
            "tls_fingerprint": server.fingerprint(),
            "request_timeout_secs": 2,
        })
        .to_string(),
    )
    .unwrap();
    let r = bins::run_agent(&config, &["guests"]).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("pwned") && r.stderr.contains("zzzz"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.len() < 4096, "{} bytes on stderr", r.stderr.len());
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        !all.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reached the terminal: {all:?}"
    );
}
