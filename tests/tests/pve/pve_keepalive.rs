//! The agent's connection pool against pveproxy's keep-alive rule: pveproxy closes a
//! connection that has been silent for 5 s after a response (pve-http-server,
//! `PVE/APIServer/AnyEvent.pm`: the handle timeout armed in `response`, default 5 s). A POST
//! sent on such a connection is lost and would be reported "outcome unknown"; the agent
//! retires idle connections before that, so its POST goes out on a fresh connection.

use std::time::Duration;

use felhom_agent::pve::{ApiSettings, NodeName, PveClient, TlsMode, TokenId};
use felhom_agent::secret::Secret;
use felhom_protocol::Vmid;
use felhom_tests::keepalive_server::{KeepAliveServer, UPID};

/// pveproxy's keep-alive timeout.
const PVEPROXY_IDLE: Duration = Duration::from_secs(5);

fn client(server: &KeepAliveServer) -> PveClient {
    PveClient::new(&ApiSettings {
        api_url: server.base_url().parse().unwrap(),
        node: NodeName::new("pve").unwrap(),
        token_id: TokenId::new("felhom@pve!agent").unwrap(),
        token_secret: Secret::new("0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap(),
        tls: TlsMode::Pinned(server.fingerprint().parse().unwrap()),
        request_timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
        tls_server_name: None,
    })
    .unwrap()
}

#[tokio::test]
async fn a_post_after_pveproxys_keep_alive_timeout_goes_out_on_a_fresh_connection() {
    let server = KeepAliveServer::start(PVEPROXY_IDLE).await.unwrap();
    let pve = client(&server);
    let v = pve.version().await.unwrap();
    assert_eq!(v.version, "9.1.3");
    assert_eq!(server.connections(), 1);
    // Idle past pveproxy's timeout, as between two CLI steps or service cycles.
    tokio::time::sleep(PVEPROXY_IDLE + Duration::from_millis(500)).await;
    let upid = pve
        .start(Vmid::new(100).unwrap())
        .await
        .unwrap_or_else(|e| panic!("the POST went out on a connection pveproxy closed: {e}"));
    assert_eq!(upid.to_string(), UPID);
    assert_eq!(
        server.dropped(),
        0,
        "a request was sent on an idled-out connection"
    );
    assert_eq!(server.answered(), 2);
    assert_eq!(server.connections(), 2, "the POST used a new connection");
}

#[tokio::test]
async fn requests_in_quick_succession_still_share_one_connection() {
    let server = KeepAliveServer::start(PVEPROXY_IDLE).await.unwrap();
    let pve = client(&server);
    for _ in 0..3 {
        pve.version().await.unwrap();
        // Task polls come at most 1 s apart.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    pve.start(Vmid::new(100).unwrap()).await.unwrap();
    assert_eq!(server.answered(), 4);
    assert_eq!(
        server.connections(),
        1,
        "the pool reuses a connection within its idle time"
    );
}
