//! A CA-signed certificate for a DNS name only (as an ACME certificate is), served at
//! 127.0.0.1: chain verification fails for the URL's address with a message naming the
//! fix, and succeeds with `tls_server_name`; a pin accepts the leaf regardless. Both through
//! the library and through the real `felhom-agent` binary with its config file.

use std::time::Duration;

use felhom_agent::pve::{ApiSettings, NodeName, PveClient, TlsMode, TokenId};
use felhom_agent::secret::Secret;
use felhom_tests::bins;
use felhom_tests::fake_helper::{FakeHelper, write_agent_config};
use felhom_tests::pve_sim::{PveSim, SimOptions};
use serde_json::Value;

const DNS_NAME: &str = "pve1.felhom.example";

fn settings(sim: &PveSim, tls: TlsMode, name: Option<&str>) -> ApiSettings {
    ApiSettings {
        api_url: sim.base_url().parse().unwrap(),
        node: NodeName::new(sim.node()).unwrap(),
        token_id: TokenId::new(sim.token_id()).unwrap(),
        token_secret: Secret::new(sim.token_secret()).unwrap(),
        tls,
        tls_server_name: name.map(str::to_string),
        max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
        request_timeout: Duration::from_secs(5),
    }
}

async fn sim() -> PveSim {
    PveSim::start_with_cert_names(SimOptions::default(), &[DNS_NAME])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dns_only_certificate_needs_tls_server_name_at_127_0_0_1() {
    let sim = sim().await;
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let mode = TlsMode::CaFile(ca);

    // Without the name: refused, and the message says what to set.
    let pve = PveClient::new(&settings(&sim, mode.clone(), None)).unwrap();
    let err = pve.version().await.unwrap_err().to_string();
    assert!(err.contains("not valid for 127.0.0.1"), "{err}");
    assert!(err.contains("set tls_server_name"), "{err}");

    // With it: verified for the DNS name while connecting to 127.0.0.1.
    let pve = PveClient::new(&settings(&sim, mode.clone(), Some(DNS_NAME))).unwrap();
    pve.version().await.unwrap();

    // A name the certificate does not hold still fails.
    let pve = PveClient::new(&settings(&sim, mode, Some("other.felhom.example"))).unwrap();
    let err = pve.version().await.unwrap_err().to_string();
    assert!(err.contains("not valid for other.felhom.example"), "{err}");

    // A pin accepts the leaf whatever names and chain it has.
    let pin = TlsMode::Pinned(sim.fingerprint().parse().unwrap());
    let pve = PveClient::new(&settings(&sim, pin, None)).unwrap();
    pve.version().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_reads_tls_server_name_from_its_config() {
    tokio::task::block_in_place(bins::agent);
    let sim = sim().await;
    let helper = FakeHelper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1).unwrap();
    let ca = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let mut v: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("tls_fingerprint");
    obj.insert("tls_ca_file".into(), Value::from(ca.to_str().unwrap()));
    std::fs::write(&config, serde_json::to_vec(&v).unwrap()).unwrap();

    let r = bins::run_agent(&config, &["guests"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("set tls_server_name"), "{}", r.stderr);

    v.as_object_mut()
        .unwrap()
        .insert("tls_server_name".into(), Value::from(DNS_NAME));
    std::fs::write(&config, serde_json::to_vec(&v).unwrap()).unwrap();
    let r = bins::run_agent(&config, &["guests"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("web"), "{}", r.stdout);
}
