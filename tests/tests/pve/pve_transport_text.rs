//! A transport error names its cause (the whole error chain, once each); a pinned
//! fingerprint is the SHA-256 of the certificate, parses from exactly 32 two-digit hex bytes
//! and matches only an equal one. (Written for mutants the
//! cargo-mutants run found missed; see docs/records.md.)

use std::time::Duration;

use felhom_agent::pve::{
    ApiSettings, Fingerprint, NodeName, PveClient, PveError, TlsMode, TokenId,
};
use felhom_agent::secret::Secret;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_that_says_so() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = PveClient::new(&ApiSettings {
        api_url: format!("https://127.0.0.1:{port}").parse().unwrap(),
        node: NodeName::new("pve").unwrap(),
        token_id: TokenId::new("felhom@pve!agent").unwrap(),
        token_secret: Secret::new("0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap(),
        tls: TlsMode::Pinned(Fingerprint::of_der(b"no server")),
        request_timeout: Duration::from_secs(2),
        max_response_bytes: 1 << 20,
        tls_server_name: None,
    })
    .unwrap();
    let err = client.version().await.unwrap_err();
    let PveError::Transport { message, .. } = &err else {
        panic!("not a transport error: {err:?}");
    };
    // The cause sits at the end of the chain, below reqwest's "error sending request".
    assert!(
        message.to_lowercase().contains("refused"),
        "the cause is missing: {message}"
    );
    // Each part of the chain appears once.
    let parts: Vec<&str> = message.split(": ").collect();
    let mut unique = parts.clone();
    unique.dedup();
    assert_eq!(parts, unique, "{message}");
}

#[test]
fn a_fingerprint_is_the_sha256_of_the_certificate() {
    let der = b"a certificate, as DER bytes";
    let fp = Fingerprint::of_der(der);
    let want: [u8; 32] = Sha256::digest(der).into();
    assert_eq!(fp.as_bytes(), &want);
}

fn fp(bytes: [u8; 32]) -> Fingerprint {
    let text: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    text.join(":").parse().unwrap()
}

#[test]
fn fingerprints_match_only_when_every_byte_is_equal() {
    let zero = fp([0; 32]);
    assert!(zero.matches(&fp([0; 32])));
    let mut one = [0u8; 32];
    one[31] = 1;
    assert!(!zero.matches(&fp(one)));
    // Two bytes that differ by the same bits: an accumulator that could cancel them out
    // (XOR instead of OR) would call these equal.
    let mut two = [0u8; 32];
    two[0] = 0x5a;
    two[17] = 0x5a;
    assert!(!zero.matches(&fp(two)));
}

#[test]
fn a_fingerprint_needs_32_two_digit_hex_bytes() {
    let good = ["AB"; 32].join(":");
    assert!(good.parse::<Fingerprint>().is_ok());
    let mut short = vec!["AB"; 31];
    short.push("A");
    assert!(short.join(":").parse::<Fingerprint>().is_err());
    let mut long = vec!["AB"; 31];
    long.push("ABC");
    assert!(long.join(":").parse::<Fingerprint>().is_err());
    let mut not_hex = vec!["AB"; 31];
    not_hex.push("+1");
    assert!(not_hex.join(":").parse::<Fingerprint>().is_err());
}
