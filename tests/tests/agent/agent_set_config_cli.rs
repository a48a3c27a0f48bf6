//! The real `felhom-agent` binary: `set-config` on a running container reports which
//! changes Proxmox applied and which wait in `…/pending` for the next start (human and
//! JSON output), read from the simulator's `GET …/pending`; and start/stop/shutdown of an
//! HA-managed guest wait for the state the HA manager brings it to.

use std::time::Duration;

use felhom_tests::agent_env::{agent, env};
use felhom_tests::pve_sim::{Fault, FaultKind};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_says_what_is_applied_and_what_is_pending() {
    let env = env().await;
    let state = env.sim.state();
    // CT 100 runs: memory is applied at once, nameserver waits for the next start.
    let r = agent(
        &env,
        &[
            "--json",
            "set-config",
            "100",
            "memory=1024",
            "nameserver=192.0.2.53",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["applied"], json!(["memory=1024"]), "{v:#}");
    assert_eq!(v["pending"], json!(["nameserver=192.0.2.53"]), "{v:#}");
    assert_eq!(v["pending_known"], true);
    assert_eq!(state.container_config(100).unwrap()["memory"], 1024);
    assert!(
        state
            .container_config(100)
            .unwrap()
            .get("nameserver")
            .is_none()
    );

    let r = agent(&env, &["set-config", "100", "searchdomain=example.test"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("pending until the container's next start (Proxmox keeps them in …/pending): searchdomain=example.test"),
        "{}",
        r.stdout
    );
    // Nothing was applied at once, so the human output has no such line.
    assert!(!r.stdout.contains("applied now"), "{}", r.stdout);
    let r = agent(&env, &["set-config", "100", "cores=2"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("applied now: cores=2\n"), "{}", r.stdout);
    assert!(!r.stdout.contains("pending until"), "{}", r.stdout);

    // A restart applies them.
    assert_eq!(agent(&env, &["stop", "100"]).await.code, 0);
    assert_eq!(agent(&env, &["start", "100"]).await.code, 0);
    let cfg = state.container_config(100).unwrap();
    assert_eq!(cfg["nameserver"], "192.0.2.53");
    assert_eq!(cfg["searchdomain"], "example.test");

    // A stopped container takes everything at once.
    let r = agent(
        &env,
        &["--json", "set-config", "101", "nameserver=192.0.2.1"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["applied"], json!(["nameserver=192.0.2.1"]));
    assert_eq!(r.json()["pending"], json!([]));

    // When …/pending cannot be read, the output does not claim either.
    state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/lxc/101/pending".into(),
        kind: FaultKind::Status {
            code: 500,
            reason: "internal error".into(),
        },
        times: 10,
    });
    let r = agent(&env, &["--json", "set-config", "101", "cores=2"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["pending_known"], false);
    assert!(r.json()["applied"].is_null());
}

/// On a running CT, Proxmox writes `hostname` into the config at once (pve-container's
/// fastplug options: no `[pending]` entry), but the container keeps its old name until it
/// starts again: the agent says so instead of "applied now". `cpulimit`/`swap` are
/// hotplugged; a stopped CT's hostname is simply applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_of_a_running_container_takes_effect_at_the_next_start() {
    let env = env().await;
    let state = env.sim.state();
    let r = agent(
        &env,
        &[
            "--json",
            "set-config",
            "100",
            "hostname=renamed",
            "cpulimit=2",
            "swap=256",
            "tags=a;b",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(
        v["applied"],
        json!(["cpulimit=2", "swap=256", "tags=a;b"]),
        "{v:#}"
    );
    assert_eq!(v["at_next_start"], json!(["hostname=renamed"]), "{v:#}");
    assert_eq!(v["pending"], json!([]), "{v:#}");
    // Proxmox's config has the new name already.
    assert_eq!(state.container_config(100).unwrap()["hostname"], "renamed");

    let r = agent(&env, &["set-config", "100", "hostname=again"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "in the configuration now, but the running container takes it at its next start: hostname=again\n"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("applied now"), "{}", r.stdout);

    let r = agent(&env, &["--json", "set-config", "101", "hostname=stopped"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["applied"], json!(["hostname=stopped"]));
    assert_eq!(r.json()["at_next_start"], json!([]));
}

/// `set-config` sends the digest it read: a change made by someone else between the agent's
/// read and its PUT makes Proxmox refuse the PUT, and the agent says so, naming the digest;
/// the other change stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_changed_between_read_and_write_is_not_overwritten() {
    let env = env().await;
    let state = env.sim.state();
    // The PUT waits a moment in the simulator before it is executed; meanwhile another
    // user changes the config.
    state.inject(Fault {
        method: Some("PUT".into()),
        path_contains: "/lxc/101/config".into(),
        kind: FaultKind::Stall(Duration::from_millis(800)),
        times: 1,
    });
    let other_user = async {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while state.count_requests("PUT", "/lxc/101/config") == 0 {
            assert!(std::time::Instant::now() < until, "the agent sent no PUT");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(state.set_config_value(101, "memory", Some(json!(3072))));
    };
    let (r, ()) = tokio::join!(
        agent(&env, &["set-config", "101", "memory=1024"]),
        other_user
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("detected modified configuration"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("configuration changed after felhom-agent read it (digest "),
        "{}",
        r.stderr
    );
    let put = state
        .requests()
        .into_iter()
        .find(|q| q.method == "PUT" && q.path.ends_with("/lxc/101/config"))
        .unwrap();
    let sent = put
        .body
        .split('&')
        .find_map(|kv| kv.strip_prefix("digest="))
        .expect("the PUT carries the digest");
    assert!(
        r.stderr.contains(&format!("(digest {sent})")),
        "{}",
        r.stderr
    );
    assert_eq!(state.container_config(101).unwrap()["memory"], 3072);

    // Unchanged meanwhile: the same command goes through.
    let r = agent(&env, &["set-config", "101", "memory=1024"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(state.container_config(101).unwrap()["memory"], 1024);
}

/// An HA-managed guest: the `hastart`/`hastop` task ends once the request is queued; the
/// agent waits until `status/current` shows the target state and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_managed_power_waits_for_the_real_state() {
    let env = env().await;
    let state = env.sim.state();
    state.set_ha_managed(101, true);
    let r = agent(&env, &["--json", "start", "101"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert!(
        v["task"]["upid"]
            .as_str()
            .unwrap()
            .contains(":hastart:101:"),
        "{v:#}"
    );
    assert_eq!(v["ha"]["managed"], true, "{v:#}");
    assert_eq!(v["ha"]["reached"], true, "{v:#}");
    // When the agent returns, the guest really runs (the LRM's vzstart took longer than
    // the hastart task).
    assert_eq!(state.container_running(101), Some(true));
    assert!(
        state
            .task_upids()
            .iter()
            .any(|u| u.contains(":vzstart:101:")),
        "the LRM started it"
    );

    let r = agent(&env, &["shutdown", "101", "--timeout", "5"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("CT 101 is HA-managed: the HA manager brought it to stopped"),
        "{}",
        r.stdout
    );
    assert_eq!(state.container_running(101), Some(false));

    // A guest that is not HA-managed has no HA part.
    let r = agent(&env, &["--json", "stop", "100"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["ha"].is_null());
}

/// HA commands are honest: a guest the HA manager does not bring to the requested state
/// (here: its service is in the CRM's `error` state, pve-ha-manager `HA/Manager.pm`
/// `next_state_error`) makes the command exit 1 with `"ok": false`; `--force-stop` on an
/// HA-managed guest is refused before anything is sent (pve-container
/// `API2/LXC/Status.pm` `vm_shutdown` hands it to `ha-manager crm-command stop`, whose
/// shutdown never force-stops: pve-ha-manager `HA/Resources/PVECT.pm` `shutdown`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_state_not_reached_exits_1_and_force_stop_is_refused() {
    let env = env().await;
    let state = env.sim.state();
    state.set_ha_managed(101, true);
    assert_eq!(state.container_running(101), Some(false));
    state.set_ha_error(101);
    let r = agent(&env, &["--json", "start", "101"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], false, "{v:#}");
    assert_eq!(v["ha"]["reached"], false, "{v:#}");
    assert_eq!(v["ha"]["ha_state"], "error", "{v:#}");
    assert_eq!(state.container_running(101), Some(false));

    state.set_ha_managed(100, true);
    let posts = state.count_requests("POST", "/lxc/100/status/shutdown");
    let r = agent(&env, &["shutdown", "100", "--force-stop"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("HA-managed"), "{}", r.stderr);
    assert_eq!(
        state.count_requests("POST", "/lxc/100/status/shutdown"),
        posts,
        "nothing was sent"
    );
    assert_eq!(state.container_running(100), Some(true));
}
