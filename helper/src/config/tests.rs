//! Tests of the configuration: parsing, validation limits, trust checks, `mount_root`.

use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn empty_object_gives_production_defaults() {
    let c = parse("{}").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.tools.pct, Path::new("/usr/sbin/pct"));
    assert_eq!(c.mount_root, Path::new("/mnt/felhom"));
    assert_eq!(c.time_caps.golden_image, 1200);
}

#[test]
fn unknown_keys_are_named() {
    let e = parse(r#"{"agent_usr":"x"}"#).unwrap_err();
    assert!(e.contains("agent_usr"), "{e}");
    let e = parse(r#"{"tools":{"sh":"/bin/sh"}}"#).unwrap_err();
    assert!(e.contains("`sh`"), "{e}");
    let e = parse(r#"{"mount_backend":"fstab"}"#).unwrap_err();
    assert!(e.contains("fstab"), "{e}");
}

fn write_cfg(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("helper.json");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn validation_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    for (bad, needle) in [
        (r#""mount_root":"relative""#, "absolute"),
        (r#""mount_root":"/""#, "must not be /"),
        (r#""mount_root_mode":"0770""#, "no write bit"),
        (r#""mount_root_mode":"0757""#, "no write bit"),
        (r#""mount_root_mode":"0650""#, "no write bit"),
        (r#""mount_root_mode":"rwx""#, "octal"),
        (r#""mount_root_mode":"07500""#, "octal"),
        (r#""shutdown_grace_secs":7200"#, "at most 3600"),
        (r#""sysfs_dev_block":"rel""#, "absolute"),
        (r#""unit_dir":"/etc/../tmp""#, ".."),
        (r#""idle_timeout_secs":0"#, "idle_timeout_secs"),
        (r#""allowed_filesystems":["vfat"]"#, "vfat"),
        (r#""max_output_bytes":10"#, "max_output_bytes"),
        (r#""max_connections":0"#, "max_connections"),
        (r#""max_connections":100000"#, "max_connections"),
        (r#""time_caps":{"smart":0}"#, "time_caps.smart"),
        (r#""tools":{"pct":"pct"}"#, "tools.pct"),
    ] {
        let p = write_cfg(dir.path(), &format!(r#"{{"agent_user":"{uid}",{bad}}}"#));
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn writable_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let p = write_cfg(dir.path(), &minimal(dir.path(), uid, ""));
    assert!(load(&p).is_ok());
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = load(&p).unwrap_err();
    assert!(matches!(e, StartupError::Insecure { .. }), "{e}");
    assert_eq!(e.exit_code(), 2);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(
        load(&p).is_err(),
        "a world-writable parent directory must be refused"
    );
}

/// A config whose paths all live in `dir` (plus `extra` keys).
fn minimal(dir: &Path, uid: u32, extra: &str) -> String {
    format!(
        r#"{{"agent_user":"{uid}","mount_root":"{d}/mnt","unit_dir":"{d}/units",
            "record_file":"{d}/state/mounts.fstab"{extra}}}"#,
        d = dir.display()
    )
}

#[test]
fn a_symlinked_tool_in_a_writable_directory_is_refused() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    // /tmp/x (0777) holding `pct -> /bin/true`: whoever writes x could swap the link.
    let evil = dir.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o777)).unwrap();
    symlink("/bin/true", evil.join("pct")).unwrap();
    let extra = format!(r#","tools":{{"pct":"{}"}}"#, evil.join("pct").display());
    let p = write_cfg(dir.path(), &minimal(dir.path(), uid, &extra));
    let e = load(&p).unwrap_err();
    assert!(
        matches!(&e, StartupError::Insecure { path, .. } if path == &evil),
        "{e}"
    );
    // The same link in a trusted directory is fine, and the helper execs the checked
    // target, not the link.
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("/bin/true", good.join("pct")).unwrap();
    let extra = format!(r#","tools":{{"pct":"{}"}}"#, good.join("pct").display());
    let p = write_cfg(dir.path(), &minimal(dir.path(), uid, &extra));
    let c = load(&p).unwrap();
    assert_eq!(
        c.config.tools.pct,
        std::fs::canonicalize("/bin/true").unwrap()
    );
    assert_eq!(c.configured_tools.pct, good.join("pct"));
    // A link whose target lies in a writable directory is refused too.
    std::fs::copy("/bin/true", evil.join("real")).unwrap();
    std::fs::set_permissions(evil.join("real"), std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(evil.join("real"), good.join("smartctl")).unwrap();
    let extra = format!(
        r#","tools":{{"smartctl":"{}"}}"#,
        good.join("smartctl").display()
    );
    let p = write_cfg(dir.path(), &minimal(dir.path(), uid, &extra));
    assert!(matches!(load(&p), Err(StartupError::Insecure { .. })));
}

#[test]
fn a_symlinked_config_file_is_read_through_the_checked_path() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let real = write_cfg(dir.path(), &minimal(dir.path(), uid, ""));
    let evil = dir.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&real, evil.join("helper.json")).unwrap();
    assert!(matches!(
        load(&evil.join("helper.json")),
        Err(StartupError::Insecure { .. })
    ));
}

#[test]
fn mount_root_is_created_checked_and_canonical() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let d = dir.path().display();
    // Missing, and written with a doubled slash: created 0750 (the default
    // mount_root_mode), stored canonical.
    let text = format!(
        r#"{{"agent_user":"{uid}","mount_root":"{d}//new/mnt","unit_dir":"{d}/units","record_file":"{d}/state/m.fstab"}}"#
    );
    let p = write_cfg(dir.path(), &text);
    let c = load(&p).unwrap();
    let want = std::fs::canonicalize(dir.path()).unwrap().join("new/mnt");
    assert_eq!(c.config.mount_root, want);
    assert_eq!(
        c.config.mount_root.to_str().unwrap().matches("//").count(),
        0
    );
    let mode = std::fs::metadata(&want).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    // An existing mount_root gets the configured mode at every start.
    std::fs::set_permissions(&want, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = format!(
        r#"{{"agent_user":"{uid}","mount_root":"{d}/new/mnt","mount_root_mode":"0700","unit_dir":"{d}/units","record_file":"{d}/state/m.fstab"}}"#
    );
    let p = write_cfg(dir.path(), &text);
    load(&p).unwrap();
    let mode = std::fs::metadata(&want).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    // A symlink as mount_root is refused.
    std::os::unix::fs::symlink(&want, dir.path().join("link")).unwrap();
    let text = format!(
        r#"{{"agent_user":"{uid}","mount_root":"{d}/link","unit_dir":"{d}/units","record_file":"{d}/state/m.fstab"}}"#
    );
    let p = write_cfg(dir.path(), &text);
    let e = load(&p).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    // Also when written with a trailing slash (lstat would follow the link).
    let text = format!(
        r#"{{"agent_user":"{uid}","mount_root":"{d}/link/","unit_dir":"{d}/units","record_file":"{d}/state/m.fstab"}}"#
    );
    let p = write_cfg(dir.path(), &text);
    let e = load(&p).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    // A writable mount_root, parent, unit_dir or record directory is refused.
    for (sub, key) in [
        ("w1", "mount_root"),
        ("w2", "unit_dir"),
        ("w3", "record_file"),
    ] {
        let w = dir.path().join(sub);
        std::fs::create_dir(&w).unwrap();
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = if key == "record_file" {
            w.join("m.fstab")
        } else {
            w.join("x")
        };
        let mut v = serde_json::json!({
            "agent_user": uid.to_string(),
            "mount_root": format!("{d}/new/mnt"),
            "unit_dir": format!("{d}/units"),
            "record_file": format!("{d}/state/m.fstab"),
        });
        v[key] = serde_json::Value::String(target.display().to_string());
        let p = write_cfg(dir.path(), &v.to_string());
        let e = load(&p).unwrap_err();
        assert!(matches!(e, StartupError::Insecure { .. }), "{key}: {e}");
    }
}

#[test]
fn a_mount_root_that_resolves_to_the_root_directory_changes_nothing() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::os::unix::fs::symlink("/", dir.path().join("to-root")).unwrap();
    let before = std::fs::metadata("/").unwrap();
    // The mode and agent are the ones `/` already has, so even a broken check could not
    // harm this machine; what is asserted is the refusal and its reason.
    let mode = format!("{:04o}", before.mode() & 0o7777);
    let agent = before.uid();
    for root in [
        format!("{d}/to-root/"),
        format!("{d}/to-root/."),
        "/".into(),
    ] {
        let text = format!(
            r#"{{"agent_user":"{agent}","mount_root":"{root}","mount_root_mode":"{mode}","unit_dir":"{d}/units","record_file":"{d}/state/m.fstab"}}"#
        );
        let p = write_cfg(dir.path(), &text);
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("must not be /")
                || e.contains("resolves to /")
                || e.contains("symbolic link"),
            "{root}: {e}"
        );
    }
    let after = std::fs::metadata("/").unwrap();
    assert_eq!(
        (
            after.mode(),
            after.uid(),
            after.gid(),
            after.ctime(),
            after.ctime_nsec()
        ),
        (
            before.mode(),
            before.uid(),
            before.gid(),
            before.ctime(),
            before.ctime_nsec()
        ),
        "/ was changed"
    );
}

#[test]
fn the_loaded_config_answers_its_idle_timeout_and_which_tools_exist() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let extra = format!(
        r#","idle_timeout_secs":7,"tools":{{"pct":"{}","mount":"/bin/true"}}"#,
        dir.path().join("no-such-pct").display()
    );
    let c = load(&write_cfg(dir.path(), &minimal(dir.path(), uid, &extra))).unwrap();
    assert_eq!(c.idle_timeout(), Duration::from_secs(7));
    assert!(!c.has_tool(Tool::Pct), "a missing tool is reported missing");
    assert!(
        c.has_tool(Tool::Mount),
        "a present tool is reported present"
    );
    assert_eq!(c.missing_tools, vec![Tool::Pct]);
}

#[test]
fn max_output_bytes_leaves_room_for_both_streams_in_a_reply_frame() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let with = |n: usize| {
        let extra = format!(r#","max_output_bytes":{n}"#);
        load(&write_cfg(dir.path(), &minimal(dir.path(), uid, &extra)))
    };
    assert!(with(MAX_OUTPUT_LIMIT).is_ok());
    assert!(with(MAX_OUTPUT_LIMIT + 1).is_err());
    // Two streams of half a frame each (plus the reply around them) cannot fit.
    let half = felhom_protocol::transport::MAX_REPLY_FRAME / 2;
    let e = with(half).unwrap_err().to_string();
    assert!(e.contains("max_output_bytes"), "{e}");
}

/// [`read_trusted_file`] on its own: the checks it makes on the opened descriptor are a
/// second lock behind [`check_trusted`] (against a swap between the walk and the open),
/// so they are tested directly.
#[test]
fn the_config_file_is_checked_again_through_its_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let insecure = |r: Result<String, StartupError>| match r {
        Err(StartupError::Insecure { reason, .. }) => reason,
        other => panic!("not refused as insecure: {other:?}"),
    };

    // Read whole up to the bound, and cut at it.
    let small = dir.path().join("small.json");
    std::fs::write(&small, "x".repeat(4096)).unwrap();
    assert_eq!(read_trusted_file(&small).unwrap().len(), 4096);
    let big = dir.path().join("big.json");
    std::fs::write(&big, "x".repeat(2 * 1024 * 1024)).unwrap();
    assert_eq!(read_trusted_file(&big).unwrap().len(), 1024 * 1024);

    // Writable by the group.
    std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o620)).unwrap();
    assert!(insecure(read_trusted_file(&small)).contains("writable"));
    std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A symlink is not followed (O_NOFOLLOW).
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&small, &link).unwrap();
    assert!(insecure(read_trusted_file(&link)).contains("cannot open"));

    // A FIFO is refused at once, not waited on (O_NONBLOCK).
    let fifo = dir.path().join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(read_trusted_file(&f));
    });
    let answer = rx.recv_timeout(Duration::from_secs(10));
    if answer.is_err() {
        // Release the blocked open so the thread ends, then fail.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        panic!("opening a FIFO as the config blocked");
    }
    assert!(insecure(answer.unwrap()).contains("not a regular file"));

    // Owned by someone else (needs root to chown).
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&small, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        assert!(insecure(read_trusted_file(&small)).contains("owned by uid 4242"));
    } else {
        eprintln!("skipped the foreign-owner case: needs root");
    }
}

#[test]
fn numeric_limits_are_exact_at_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let with = |extra: &str| {
        let extra = format!(",{extra}");
        load(&write_cfg(dir.path(), &minimal(dir.path(), uid, &extra)))
    };
    for (ok, bad) in [
        (
            r#""idle_timeout_secs":86400"#,
            r#""idle_timeout_secs":86401"#,
        ),
        (
            r#""shutdown_grace_secs":3600"#,
            r#""shutdown_grace_secs":3601"#,
        ),
        (
            r#""time_caps":{"mount":86400}"#,
            r#""time_caps":{"mount":86401}"#,
        ),
        (r#""max_output_bytes":1024"#, r#""max_output_bytes":1023"#),
        (r#""max_connections":1"#, r#""max_connections":0"#),
        (r#""max_connections":512"#, r#""max_connections":513"#),
    ] {
        assert!(with(ok).is_ok(), "{ok}: {:?}", with(ok).err());
        assert!(with(bad).is_err(), "{bad} was accepted");
    }
    // Inside the range, not only at its ends.
    assert!(with(r#""max_output_bytes":4096"#).is_ok());
    assert!(with(r#""idle_timeout_secs":1"#).is_ok());
}

#[test]
fn allowed_filesystems_are_kept_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let extra = r#","allowed_filesystems":["ext4","xfs","ext4"]"#;
    let c = load(&write_cfg(dir.path(), &minimal(dir.path(), uid, extra))).unwrap();
    assert_eq!(c.allowed_filesystems, vec![FsType::Ext4, FsType::Xfs]);
}

#[test]
fn config_paths_refuse_spaces_and_control_characters() {
    assert!(check_config_path("unit_dir", Path::new("/etc/systemd/system")).is_ok());
    for bad in ["/etc/with space", "/etc/tab\there", "/etc/new\nline"] {
        let e = check_config_path("unit_dir", Path::new(bad)).unwrap_err();
        assert!(e.contains("spaces or control"), "{bad:?}: {e}");
    }
}

#[test]
fn a_path_through_a_foreign_owned_directory_is_not_trusted() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("f"), "x").unwrap();
    assert!(check_trusted(&theirs.join("f")).is_ok());
    // A directory owned by another user (mode 0755 still): its owner could swap the file.
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
    match check_trusted(&theirs.join("f")) {
        Err(StartupError::Insecure { path, reason }) => {
            assert_eq!(path, theirs);
            assert!(reason.contains("owned by uid 4242"), "{reason}");
        }
        other => panic!("trusted a path through a foreign-owned directory: {other:?}"),
    }
}

#[test]
fn symlinks_are_followed_up_to_the_kernel_limit_and_loops_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("target"), "x").unwrap();
    // A chain of MAX_SYMLINKS links resolves; one more is refused.
    let mut next = d.join("target");
    for i in 0..=MAX_SYMLINKS {
        let link = d.join(format!("l{i}"));
        std::os::unix::fs::symlink(&next, &link).unwrap();
        next = link;
    }
    let real = std::fs::canonicalize(d.join("target")).unwrap();
    let last_ok = d.join(format!("l{}", MAX_SYMLINKS - 1));
    assert_eq!(check_trusted(&last_ok).unwrap(), real);
    let too_long = d.join(format!("l{MAX_SYMLINKS}"));
    let e = check_trusted(&too_long).unwrap_err().to_string();
    assert!(e.contains("too many levels"), "{e}");
    // A loop ends with the same error (bounded: a hang fails the test).
    std::os::unix::fs::symlink(d.join("b"), d.join("a")).unwrap();
    std::os::unix::fs::symlink(d.join("a"), d.join("b")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let a = d.join("a");
    std::thread::spawn(move || {
        let _ = tx.send(check_trusted(&a).map_err(|e| e.to_string()));
    });
    let e = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a symlink loop was walked forever")
        .unwrap_err();
    assert!(e.contains("too many levels"), "{e}");
}

#[test]
fn a_relative_link_with_dotdot_is_walked_from_the_link_s_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("real")).unwrap();
    std::fs::write(d.join("real/f"), "x").unwrap();
    std::fs::create_dir(d.join("links")).unwrap();
    std::os::unix::fs::symlink("../real/f", d.join("links/f")).unwrap();
    assert_eq!(
        check_trusted(&d.join("links/f")).unwrap(),
        std::fs::canonicalize(d.join("real/f")).unwrap()
    );
}

#[test]
fn a_missing_path_is_judged_by_its_nearest_existing_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    // Existing: checked and returned canonical.
    assert_eq!(check_trusted_or_ancestor(&d).unwrap(), Some(d.clone()));
    // Missing: its existing ancestor is checked, and there is no canonical path yet.
    assert_eq!(
        check_trusted_or_ancestor(&d.join("new/deeper")).unwrap(),
        None
    );
    // A path "through" a regular file is an error, not a missing path.
    std::fs::write(d.join("file"), "x").unwrap();
    let e = check_trusted_or_ancestor(&d.join("file/child")).unwrap_err();
    assert!(e.to_string().contains("cannot stat"), "{e}");
}

#[test]
fn mount_root_mode_takes_three_octal_digits_after_an_optional_zero() {
    assert_eq!(parse_mode("0750").unwrap(), 0o750);
    assert_eq!(parse_mode("700").unwrap(), 0o700);
    // Four digits (setuid/setgid/sticky bits) and no digits at all are refused.
    for bad in ["07700", "7700", "0", ""] {
        assert!(parse_mode(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn mount_root_must_be_a_directory_that_can_be_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let gid = Some(nix::unistd::getegid().as_raw());
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = prepare_mount_root(&file, 0o750, gid)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a directory"), "{e}");
    // Below a regular file: stat fails with ENOTDIR, which is not "missing".
    let e = prepare_mount_root(&file.join("mnt"), 0o750, gid)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot stat"), "{e}");
}

#[test]
fn users_resolve_by_name_or_number() {
    let root = AgentAccount {
        uid: 0,
        gid: Some(0),
    };
    assert_eq!(resolve_agent("root").unwrap(), root);
    // A number is a uid; its group comes from the same account when there is one.
    assert_eq!(resolve_agent("0").unwrap(), root);
    assert_eq!(
        resolve_agent("4242").unwrap(),
        AgentAccount {
            uid: 4242,
            gid: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(4242))
                .unwrap()
                .map(|u| u.gid.as_raw()),
        }
    );
    assert!(resolve_agent("no-such-user-felhom").is_err());
    assert!(resolve_agent("99999999999").is_err());
}

#[test]
fn a_walk_ending_in_dotdot_judges_that_directory_as_the_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Open to everyone like /tmp: fine on the way, not as the directory a path names.
    std::fs::create_dir(d.join("open")).unwrap();
    std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(d.join("open/sub")).unwrap();
    std::os::unix::fs::symlink("..", d.join("open/sub/up")).unwrap();
    std::fs::write(d.join("open/sub/f"), "x").unwrap();
    let e = check_trusted(&d.join("open/sub/up"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("writable by its group or by others"), "{e}");
    // The same directory on the way to a file is still fine.
    assert!(check_trusted(&d.join("open/sub/up/sub/f")).is_ok());
}

#[test]
fn proven_directories_are_reused_only_on_the_way_and_only_within_one_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("a/b")).unwrap();
    std::fs::write(d.join("a/b/f"), "x").unwrap();
    std::fs::write(d.join("a/g"), "x").unwrap();
    let mut set = TrustedDirs::default();
    let real = std::fs::canonicalize(d.join("a/b/f")).unwrap();
    assert_eq!(set.check(&d.join("a/b/f")).unwrap(), real);
    // `a` becomes writable by others after the set proved it: a later walk of the same
    // start-up passes through it without a second look, a fresh walk refuses it...
    std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(set.check(&d.join("a/g")).is_ok());
    let e = check_trusted(&d.join("a/g")).unwrap_err().to_string();
    assert!(e.contains("writable by its group or by others"), "{e}");
    // ...and the final component is always looked at, proven or not.
    let e = set.check(&d.join("a")).unwrap_err().to_string();
    assert!(e.contains("writable by its group or by others"), "{e}");
    // Symlinks are never taken as proven: a link that now points elsewhere is walked.
    std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(d.join("c")).unwrap();
    std::fs::write(d.join("c/f"), "y").unwrap();
    std::os::unix::fs::symlink(d.join("a/b"), d.join("l")).unwrap();
    assert_eq!(set.check(&d.join("l/f")).unwrap(), real);
    std::fs::remove_file(d.join("l")).unwrap();
    std::os::unix::fs::symlink(d.join("c"), d.join("l")).unwrap();
    assert_eq!(
        set.check(&d.join("l/f")).unwrap(),
        std::fs::canonicalize(d.join("c/f")).unwrap()
    );
}

#[test]
fn an_unchanged_mount_root_is_left_as_it_is_and_a_wrong_mode_is_set() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mnt");
    let gid = Some(nix::unistd::getegid().as_raw());
    let real = prepare_mount_root(&root, 0o750, gid).unwrap();
    let md = std::fs::metadata(&real).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o750);
    let ctime = (md.ctime(), md.ctime_nsec());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(prepare_mount_root(&root, 0o750, gid).unwrap(), real);
    let md = std::fs::metadata(&real).unwrap();
    assert_eq!(
        (md.ctime(), md.ctime_nsec()),
        ctime,
        "an unchanged inode was rewritten"
    );
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
    prepare_mount_root(&root, 0o750, gid).unwrap();
    assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o750);
}

#[test]
fn as_root_mount_root_gets_the_agent_s_group_and_keeps_one_that_is_right() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: giving a directory another group needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mnt");
    std::fs::create_dir(&root).unwrap();
    let set_group =
        |gid: u32| nix::unistd::chown(&root, None, Some(nix::unistd::Gid::from_raw(gid))).unwrap();
    let group = || std::fs::metadata(&root).unwrap().gid();
    set_group(1234);
    prepare_mount_root(&root, 0o750, Some(4242)).unwrap();
    assert_eq!(group(), 4242);
    // No known group (a bare uid without an account): the group is left as it is.
    set_group(1234);
    prepare_mount_root(&root, 0o750, None).unwrap();
    assert_eq!(group(), 1234);
    // Another user's directory is refused before anything changes (the owner is not put
    // right: the walk refuses it).
    nix::unistd::chown(&root, Some(nix::unistd::Uid::from_raw(1234)), None).unwrap();
    let e = prepare_mount_root(&root, 0o750, Some(4242))
        .unwrap_err()
        .to_string();
    assert!(e.contains("owned by uid 1234"), "{e}");
    assert_eq!(group(), 1234);
}

#[test]
fn golden_image_bounds_default_to_a_stock_pve_install() {
    let c = parse("{}").unwrap();
    assert_eq!(c.golden_image.storages, vec!["local-lvm".to_string()]);
    assert_eq!(c.golden_image.template_storages, vec!["local".to_string()]);
    assert_eq!(c.golden_image.bridges, vec!["vmbr0".to_string()]);
    // A key given alone replaces that list only; the others keep their defaults.
    let c = parse(r#"{"golden_image":{"storages":["local-zfs","tank"]}}"#).unwrap();
    assert_eq!(
        c.golden_image.storages,
        vec!["local-zfs".to_string(), "tank".to_string()]
    );
    assert_eq!(c.golden_image.template_storages, vec!["local".to_string()]);
    assert_eq!(c.golden_image.bridges, vec!["vmbr0".to_string()]);
    let e = parse(r#"{"golden_image":{"bridge":["vmbr1"]}}"#).unwrap_err();
    assert!(e.contains("bridge"), "{e}");
}

#[test]
fn golden_image_bounds_are_validated_at_load_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let load_with = |golden: &str| {
        let extra = format!(r#","golden_image":{golden}"#);
        load(&write_cfg(dir.path(), &minimal(dir.path(), uid, &extra)))
    };
    for (bad, needle) in [
        (
            r#"{"storages":["local-lvm","tank pool"]}"#,
            r#"golden_image.storages: "tank pool" is invalid"#,
        ),
        (r#"{"storages":["1st"]}"#, "golden_image.storages"),
        (
            r#"{"template_storages":["local:vztmpl"]}"#,
            "golden_image.template_storages",
        ),
        (
            r#"{"bridges":["vmbr0-far-too-long-for-ifnamsiz"]}"#,
            "golden_image.bridges",
        ),
        (r#"{"bridges":[""]}"#, "golden_image.bridges"),
    ] {
        let e = load_with(bad).unwrap_err();
        assert!(matches!(e, StartupError::Config { .. }), "{bad}: {e}");
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
    let c = load_with(
        r#"{"storages":["local-zfs"],"template_storages":["nfs-templates"],"bridges":["vmbr1"]}"#,
    )
    .unwrap();
    assert_eq!(
        c.config.golden_image.storages,
        vec!["local-zfs".to_string()]
    );
    assert_eq!(
        c.config.golden_image.template_storages,
        vec!["nfs-templates".to_string()]
    );
    assert_eq!(c.config.golden_image.bridges, vec!["vmbr1".to_string()]);
    // Empty lists are allowed: golden images are then refused, each time naming the key.
    assert!(load_with(r#"{"storages":[]}"#).is_ok());
}
