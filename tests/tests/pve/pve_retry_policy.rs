//! Retry policy against the simulator: a 501 is final (one request, and `wait_task` does
//! not wait through it); a 502/503/504 on a POST (a reverse proxy in front of pveproxy) is
//! outcome-unknown and never retried, like 595/596; a 503 on a GET is retried.

use std::time::Duration;

use felhom_agent::pve::{
    ApiSettings, NodeName, PveClient, PveError, TlsMode, TokenId, Upid, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_tests::pve_sim::{Fault, FaultKind, PveSim, SimOptions};

async fn setup() -> (PveSim, PveClient) {
    let sim = PveSim::start(SimOptions::default()).await.unwrap();
    let pve = PveClient::new(&ApiSettings {
        api_url: sim.base_url().parse().unwrap(),
        node: NodeName::new(sim.node()).unwrap(),
        token_id: TokenId::new(sim.token_id()).unwrap(),
        token_secret: Secret::new(sim.token_secret()).unwrap(),
        tls: TlsMode::Pinned(sim.fingerprint().parse().unwrap()),
        tls_server_name: None,
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
        request_timeout: Duration::from_secs(5),
    })
    .unwrap();
    (sim, pve)
}

fn status_fault(method: &str, path: &str, code: u16, reason: &str) -> Fault {
    Fault {
        method: Some(method.into()),
        path_contains: path.into(),
        kind: FaultKind::Status {
            code,
            reason: reason.into(),
        },
        times: 5,
    }
}

#[tokio::test]
async fn gateway_errors_on_post_are_outcome_unknown_and_sent_once() {
    let (sim, pve) = setup().await;
    let state = sim.state();
    for (code, reason) in [
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
    ] {
        let before = state.count_requests("POST", "/lxc/101/status/start");
        state.inject(Fault {
            times: 1,
            ..status_fault("POST", "/lxc/101/status/start", code, reason)
        });
        let err = pve
            .start(felhom_protocol::Vmid::new(101).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, PveError::OutcomeUnknown { status, .. } if status == code),
            "{code}: {err:?}"
        );
        assert!(err.to_string().contains("re-read the state"), "{err}");
        assert_eq!(
            state.count_requests("POST", "/lxc/101/status/start"),
            before + 1
        );
    }
    // The same status on a GET is retried and then succeeds.
    state.inject(Fault {
        times: 1,
        ..status_fault("GET", "/version", 503, "Service Unavailable")
    });
    pve.version().await.unwrap();
    assert_eq!(state.count_requests("GET", "/version"), 2);
}

#[tokio::test]
async fn not_implemented_is_final_in_reads_and_in_wait_task() {
    let (sim, pve) = setup().await;
    let state = sim.state();
    state.inject(status_fault(
        "GET",
        "/version",
        501,
        "Method 'GET /version' not implemented",
    ));
    let err = pve.version().await.unwrap_err();
    assert!(matches!(err, PveError::Api { status: 501, .. }), "{err:?}");
    assert_eq!(state.count_requests("GET", "/version"), 1);

    // A task whose status poll answers 501: the wait ends at once instead of polling
    // through the error grace.
    let upid: Upid = pve
        .start(felhom_protocol::Vmid::new(101).unwrap())
        .await
        .unwrap();
    state.inject(status_fault("GET", "/status", 501, "not implemented"));
    let err = pve
        .wait_task(&upid, WaitOptions::with_timeout(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(err, PveError::Api { status: 501, .. }), "{err:?}");
    assert_eq!(state.count_requests("GET", "/tasks/"), 1);
}

#[tokio::test]
async fn a_failing_read_is_tried_three_times_with_a_doubling_back_off() {
    let (sim, pve) = setup().await;
    let state = sim.state();
    state.inject(status_fault("GET", "/version", 503, "Service Unavailable"));
    let started = std::time::Instant::now();
    let err = pve.version().await.unwrap_err();
    let took = started.elapsed();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(state.count_requests("GET", "/version"), 3);
    // Back-off 200 ms, then 400 ms: at least 600 ms in all (a lower bound only, so a loaded
    // machine cannot fail it); a back-off that did not double would take 400 ms or less.
    assert!(took >= Duration::from_millis(600), "took {took:?}");
}
