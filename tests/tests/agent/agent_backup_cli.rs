//! The real `felhom-agent` binary against the simulator: `backup` takes its archive from
//! the vzdump task log and checks it against the storage (directory and Proxmox Backup
//! Server storages, a storage holding only an older archive, a log without the line),
//! never prunes unless `--prune` is given, and `restore` resets the network identity only
//! for a copy.

use felhom_tests::agent_env::{AgentEnv as Env, agent, env};
use felhom_tests::pve_sim::BackupQuirk;
use serde_json::Value;

/// The form body of the last vzdump request.
fn last_vzdump_body(env: &Env) -> String {
    env.sim
        .state()
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path.ends_with("/vzdump"))
        .map(|r| r.body)
        .expect("a vzdump request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_storage_archive_comes_from_the_task_log() {
    let env = env().await;
    let state = env.sim.state();
    // An older backup of the guest is already there.
    let old = state.add_backup_aged("local", 100, 3600);
    let r = agent(&env, &["--json", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let archive = v["archive"].as_str().unwrap().to_string();
    assert!(archive.starts_with("local:backup/vzdump-lxc-100-"), "{v:#}");
    assert_ne!(archive, old);
    assert_eq!(v["archive_source"], "task-log", "{v:#}");
    assert_eq!(v["archive_verified"], true, "{v:#}");
    assert_eq!(v["prune_requested"], false, "{v:#}");
    assert_eq!(v["pruned"], serde_json::Value::Null, "{v:#}");
    // It is the one the task log names, and the storage has it.
    let upid = v["task"]["upid"].as_str().unwrap();
    let r2 = agent(&env, &["tasks", "log", upid]).await;
    let file = archive.trim_start_matches("local:backup/");
    assert!(
        r2.stdout.contains(&format!(
            "creating vzdump archive '/var/lib/vz/dump/{file}'"
        )),
        "{}",
        r2.stdout
    );
    assert!(state.backups("local", 100).contains(&archive));
    // No pruning was asked for: remove=0 was sent and the old archive is still there.
    assert!(last_vzdump_body(&env).contains("remove=0"));
    assert!(state.backups("local", 100).contains(&old));

    // Human output names the archive and where it came from.
    let r = agent(&env, &["backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("(named in the task log, listed by the storage)"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbs_storage_archive_is_the_logged_snapshot() {
    let env = env().await;
    let state = env.sim.state();
    state.add_pbs_storage("pbs");
    let r = agent(&env, &["--json", "backup", "100", "--storage", "pbs"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let archive = v["archive"].as_str().unwrap();
    assert!(archive.starts_with("pbs:backup/ct/100/"), "{v:#}");
    assert!(archive.ends_with('Z'), "{v:#}");
    assert_eq!(v["archive_source"], "task-log", "{v:#}");
    assert_eq!(state.backups("pbs", 100), vec![archive.to_string()]);
    // The storage lists it in the PBS form, with subtype lxc and (once a verify job ran)
    // its verification, which `--json` keeps.
    state.set_backup_verified(archive, "ok");
    let r = agent(
        &env,
        &["--json", "storage", "content", "pbs", "--content", "backup"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = r.json();
    let text = list.to_string();
    assert!(text.contains(archive), "{text}");
    let vol = &list["volumes"][0];
    assert_eq!(vol["volid"], archive, "{text}");
    assert_eq!(vol["subtype"], "lxc", "{text}");
    assert_eq!(vol["verification"]["state"], "ok", "{text}");
    assert!(
        vol["verification"]["upid"]
            .as_str()
            .is_some_and(|u| u.starts_with("UPID:pbs:")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_archive_is_never_reported_as_the_new_one() {
    let env = env().await;
    let state = env.sim.state();
    // CT 101 has a two-day-old backup on local (the default inventory).
    let old = state.backups("local", 101);
    assert_eq!(old.len(), 1);
    let old = old[0].clone();

    // The log names an archive the storage does not list: failure, naming the logged one.
    state.set_backup_quirk(BackupQuirk::ArchiveNotListed);
    let r = agent(&env, &["backup", "101", "--storage", "local"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains(&old), "{}", r.stdout);
    assert!(r.stderr.contains("does not list it"), "{}", r.stderr);
    assert!(
        r.stderr.contains("local:backup/vzdump-lxc-101-"),
        "{}",
        r.stderr
    );

    // No line and nothing new: failure, and the older archive is named as older.
    state.set_backup_quirk(BackupQuirk::NoLineNotListed);
    let r = agent(&env, &["--json", "backup", "101", "--storage", "local"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("names no archive"), "{all}");
    assert!(
        all.contains(&format!("the newest there, {old}, is older")),
        "{all}"
    );
    assert_eq!(state.backups("local", 101), vec![old]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_without_the_line_falls_back_to_the_filtered_listing() {
    let env = env().await;
    let state = env.sim.state();
    let old = state.backups("local", 101)[0].clone();
    state.set_backup_quirk(BackupQuirk::NoArchiveLine);
    let r = agent(&env, &["--json", "backup", "101", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["archive_source"], "listing", "{v:#}");
    let archive = v["archive"].as_str().unwrap();
    assert_ne!(archive, old);
    assert!(state.backups("local", 101).contains(&archive.to_string()));
    // The listing was asked for this guest's backups only.
    let asked = state
        .requests()
        .into_iter()
        .any(|r| r.path.ends_with("/storage/local/content") && r.query.contains("vmid=101"));
    assert!(asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_limit_is_reported_with_its_remedy_and_prune_opts_in() {
    let env = env().await;
    let state = env.sim.state();
    let old = state.backups("local", 101)[0].clone();
    assert!(state.set_storage_keep_last("local", Some(1)));
    let r = agent(&env, &["backup", "101", "--storage", "local"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("max backup limit of 1"), "{}", r.stderr);
    assert!(r.stderr.contains("--prune"), "{}", r.stderr);
    assert_eq!(state.backups("local", 101), vec![old.clone()]);

    let r = agent(
        &env,
        &["--json", "backup", "101", "--storage", "local", "--prune"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    // What vzdump's log says it removed (pve-manager `VZDump.pm`: "pruned N backup(s)";
    // pve-storage `Plugin.pm` `prune_backups`: "removing backup '<volid>'").
    assert_eq!(v["pruned"]["ran"], true, "{v:#}");
    assert_eq!(v["pruned"]["count"], 1, "{v:#}");
    assert_eq!(
        v["pruned"]["removed"],
        serde_json::json!([old.clone()]),
        "{v:#}"
    );
    assert!(last_vzdump_body(&env).contains("remove=1"));
    // keep-last=1: the old one was pruned, the new one is there.
    assert_eq!(
        state.backups("local", 101),
        vec![v["archive"].as_str().unwrap().to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_over_the_same_vmid_keeps_the_identity() {
    let env = env().await;
    let state = env.sim.state();
    let archive = state.backups("local", 101)[0].clone();
    let before = state.container_config(101).unwrap();
    let r = agent(
        &env,
        &[
            "--json",
            "restore",
            &archive,
            "--vmid",
            "101",
            "--storage",
            "local-lvm",
            "--force",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["identity"]["case"], "same-vmid", "{v:#}");
    assert_eq!(v["identity"]["reset"], false, "{v:#}");
    assert_eq!(v["archive_vmid"], 101, "{v:#}");
    let after = state.container_config(101).unwrap();
    assert_eq!(after["hostname"], before["hostname"]);
    assert_eq!(after["net0"], before["net0"]);
    assert!(after["net0"].as_str().unwrap().contains("hwaddr="));
    assert_eq!(
        state.count_requests("PUT", "/lxc/101/config"),
        0,
        "nothing was changed after the restore"
    );

    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "101",
            "--storage",
            "local-lvm",
            "--force",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("disaster recovery): MAC addresses kept"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_static_addresses_is_warned_about() {
    let env = env().await;
    let state = env.sim.state();
    state.add_container(102, "web", false);
    let net1 = "name=eth1,bridge=vmbr1,ip=10.0.0.5/24,gw=10.0.0.1,type=veth";
    assert!(state.set_config_value(102, "net1", Some(Value::from(net1))));
    let archive = state.add_backup("local", 102);
    let r = agent(
        &env,
        &[
            "--json",
            "restore",
            &archive,
            "--vmid",
            "202",
            "--storage",
            "local-lvm",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["identity"]["case"], "copy", "{v:#}");
    assert_eq!(
        v["identity"]["static_address_interfaces"],
        serde_json::json!(["net1"])
    );
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "203",
            "--storage",
            "local-lvm",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("restored as a copy of CT 102 into CT 203"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("warning: net1 of CT 203 have a static ip=/ip6=/gw= setting"),
        "{}",
        r.stdout
    );
}

/// `--prune` on a storage that keeps every backup (no retention: vzdump sets `remove=0`
/// for `keep-all`, pve-manager `VZDump.pm`) must not claim anything was pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_that_removes_nothing_does_not_claim_it_pruned() {
    let env = env().await;
    let state = env.sim.state();
    let before = state.backups("local", 101);
    let r = agent(&env, &["backup", "101", "--storage", "local", "--prune"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stdout.contains("were pruned"),
        "claims a prune that did not happen: {}",
        r.stdout
    );
    assert!(r.stdout.contains("shows no prune"), "{}", r.stdout);
    assert_eq!(state.backups("local", 101).len(), before.len() + 1);
}

/// A stopped CT is backed up in stop mode whatever mode was asked (pve-manager
/// `VZDump.pm` `exec_backup_task`): the simulator's log says so, as Proxmox's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_guest_is_backed_up_in_stop_mode() {
    let env = env().await;
    let state = env.sim.state();
    assert_eq!(state.container_running(101), Some(false));
    let r = agent(
        &env,
        &[
            "--json",
            "backup",
            "101",
            "--storage",
            "local",
            "--mode",
            "snapshot",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let upid = r.json()["task"]["upid"].as_str().unwrap().to_string();
    let log = agent(&env, &["tasks", "log", &upid]).await;
    assert!(
        log.stdout.contains("INFO: backup mode: stop"),
        "{}",
        log.stdout
    );
    assert!(
        !log.stdout.contains("backup mode: snapshot"),
        "{}",
        log.stdout
    );
}

/// The form fields of the last restore request (`POST …/lxc` with `restore=1`).
fn last_restore_form(env: &Env) -> Vec<(String, String)> {
    let body = env
        .sim
        .state()
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path.ends_with("/lxc"))
        .map(|r| r.body)
        .expect("a restore request");
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A copy is made unique by Proxmox in the restore call itself (`unique=1`, hostname as a
/// restore parameter: pve-container `API2/LXC.pm` `create_vm`, `LXC/Create.pm`
/// `sanitize_and_merge_config`), with no config write afterwards; `--keep-identity` keeps
/// the archive's MACs unless `--unique` is given, and then it must not claim they were kept.
/// Every case reports each interface's MAC before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_sends_unique_for_a_copy_and_reports_every_mac() {
    let env = env().await;
    let state = env.sim.state();
    let archive = state.backups("local", 101)[0].clone();
    let source = state.container_config(101).unwrap();
    let source_net0 = source["net0"].as_str().unwrap().to_string();
    assert!(source_net0.contains("hwaddr="), "{source_net0}");
    let source_mac = source_net0
        .split(',')
        .find_map(|o| o.strip_prefix("hwaddr="))
        .unwrap()
        .to_ascii_uppercase();

    for (vmid, flags, unique, kept) in [
        ("210", &[][..], true, false),
        ("211", &["--unique"][..], true, false),
        ("212", &["--keep-identity"][..], false, true),
        ("213", &["--unique", "--keep-identity"][..], true, true),
        ("214", &["--hostname", "given-name"][..], true, false),
    ] {
        let mut args = vec![
            "--json",
            "restore",
            &archive,
            "--vmid",
            vmid,
            "--storage",
            "local-lvm",
        ];
        args.extend(flags);
        let r = agent(&env, &args).await;
        assert_eq!(r.code, 0, "{flags:?}: {}\n{}", r.stdout, r.stderr);
        let form = last_restore_form(&env);
        assert_eq!(field(&form, "vmid"), Some(vmid), "{form:?}");
        assert_eq!(field(&form, "restore"), Some("1"), "{form:?}");
        assert_eq!(
            field(&form, "unique"),
            unique.then_some("1"),
            "{flags:?}: the restore request's unique field: {form:?}"
        );
        let v = r.json();
        let puts = state.count_requests("PUT", &format!("/lxc/{vmid}/config"));
        assert_eq!(
            puts, 0,
            "{flags:?}: the config was written after the restore"
        );
        let cfg = state.container_config(vmid.parse().unwrap()).unwrap();
        let net0 = cfg["net0"].as_str().unwrap();
        if kept {
            assert_eq!(v["identity"]["case"], "kept", "{v:#}");
            assert_eq!(cfg["hostname"], source["hostname"], "{flags:?}");
        } else {
            assert_eq!(v["identity"]["case"], "copy", "{v:#}");
            let want = if flags.contains(&"--hostname") {
                "given-name".to_string()
            } else {
                format!("{}-{vmid}", source["hostname"].as_str().unwrap())
            };
            assert_eq!(field(&form, "hostname"), Some(want.as_str()), "{form:?}");
            assert_eq!(cfg["hostname"], want.as_str(), "{flags:?}");
        }
        assert_eq!(
            net0 == source_net0,
            kept && !unique,
            "{flags:?}: {net0} vs the archive's {source_net0}"
        );
        // The report says what really happened to each MAC, read back after the restore.
        let ifs = v["identity"]["interfaces"].as_array().unwrap();
        let n0 = ifs.iter().find(|i| i["interface"] == "net0").unwrap();
        assert_eq!(n0["mac_before"], source_mac.as_str(), "{v:#}");
        let after = net0
            .split(',')
            .find_map(|o| o.strip_prefix("hwaddr="))
            .unwrap()
            .to_ascii_uppercase();
        assert_eq!(n0["mac_after"], after.as_str(), "{v:#}");
        assert_eq!(n0["changed"], unique, "{flags:?}: {v:#}");
    }
}

/// On SDN with IPAM the source's reservation survives a copy: the old way (a PUT that
/// drops `hwaddr=` from the copy's `netN`) deletes the reservation of the MAC the copy
/// shared with its source (pve-container `LXC/Config.pm` `vmconfig_apply_pending` →
/// `del_ips_from_mac`); `unique=1` at restore registers the copy's own new MACs instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_keeps_the_source_guests_ipam_reservation() {
    let env = env().await;
    let state = env.sim.state();
    state.ipam_reserve(101);
    let source_macs: Vec<String> = state.ipam_reservations().into_keys().collect();
    assert!(!source_macs.is_empty());
    let archive = state.backups("local", 101)[0].clone();
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "220",
            "--storage",
            "local-lvm",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let res = state.ipam_reservations();
    for mac in &source_macs {
        assert_eq!(
            res.get(mac),
            Some(&101),
            "source reservation {mac} lost: {res:?}"
        );
    }
    assert!(
        res.values().any(|v| *v == 220),
        "the copy got its own: {res:?}"
    );
    assert!(r.stdout.contains("net0: MAC "), "{}", r.stdout);
    assert!(r.stdout.contains("(new)"), "{}", r.stdout);

    // The simulator models the hazard: the old reset (a restore without unique, then a PUT
    // dropping hwaddr) would have deleted the source's reservation.
    let r = agent(
        &env,
        &[
            "restore",
            &archive,
            "--vmid",
            "221",
            "--storage",
            "local-lvm",
            "--keep-identity",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let net0 = state.container_config(221).unwrap()["net0"]
        .as_str()
        .unwrap()
        .to_string();
    let stripped: Vec<&str> = net0
        .split(',')
        .filter(|o| !o.starts_with("hwaddr="))
        .collect();
    let kv = format!("net0={}", stripped.join(","));
    let r = agent(&env, &["set-config", "221", &kv]).await;
    assert_eq!(r.code, 0, "old-style reset: {}\n{}", r.stdout, r.stderr);
    let res = state.ipam_reservations();
    assert!(
        source_macs.iter().any(|m| !res.contains_key(m)),
        "a PUT dropping the copy's hwaddr deletes the source's reservation: {res:?}"
    );
}

/// A backup written in the DST fall-back hour: the directory storage lists a `ctime` read
/// back from the local-time name an hour before the task started (simulator
/// `set_local_time(3600, 7200)`, as `timelocal` does in Europe/Berlin). The archive the log
/// names is still the one reported, with its ctime as listed; without the log line, the
/// listing fallback's one-hour tolerance for local-time names finds it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_the_fall_back_hour_is_still_found() {
    let env = env().await;
    let state = env.sim.state();
    state.set_local_time(3600, 7200);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = agent(&env, &["--json", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["archive_source"], "task-log", "{v:#}");
    let archive = v["archive"].as_str().unwrap().to_string();
    assert!(state.backups("local", 100).contains(&archive), "{v:#}");
    let ctime = v["archive_ctime"].as_i64().unwrap();
    assert!(
        ctime < before && ctime >= before - 3600 - 5,
        "ctime {ctime}, started after {before}: {v:#}"
    );

    state.set_backup_quirk(BackupQuirk::NoArchiveLine);
    let r = agent(&env, &["--json", "backup", "100", "--storage", "local"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["archive_source"], "listing", "{v:#}");
    assert_ne!(v["archive"], archive.as_str(), "{v:#}");
    assert!(v["archive_ctime"].as_i64().unwrap() < before + 60, "{v:#}");
}
