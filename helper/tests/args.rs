//! The helper's plain command-line reader against clap's parser of the same options.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use felhom_helper::Args;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn clap_of(args: &[OsString]) -> Result<Args, clap::Error> {
    let mut argv = vec![OsString::from("felhom-helper")];
    argv.extend(args.iter().cloned());
    Args::try_parse_from(argv)
}

#[test]
fn where_the_plain_reader_answers_it_answers_as_clap_does() {
    let mut cases: Vec<Vec<OsString>> = [
        &[][..],
        &["--config", "/etc/felhom/helper.json"],
        &["--listen", "/run/x.sock"],
        &["--config", "/c.json", "--listen", "/l.sock"],
        &["--listen", "/l.sock", "--config", "/c.json"],
        &["--config", "relative.json"],
        &["--config", "a b"],
    ]
    .iter()
    .map(|a| os(a))
    .collect();
    // Not UTF-8: both take the bytes as they are.
    cases.push(vec![
        OsString::from("--config"),
        OsString::from_vec(b"/etc/\xff.json".to_vec()),
    ]);
    for args in &cases {
        let plain = Args::plain(args).unwrap_or_else(|| panic!("{args:?} was not plain"));
        assert_eq!(plain, clap_of(args).unwrap(), "{args:?}");
    }
    assert_eq!(
        Args::plain(&[]).unwrap().config,
        std::path::Path::new(felhom_helper::config::DEFAULT_CONFIG_PATH)
    );
}

#[test]
fn everything_else_is_left_to_clap() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version"],
        &["-V"],
        &["--config=/c.json"],
        &["--config"],
        &["--config", ""],
        &["--config", "-x"],
        &["--config", "--listen"],
        &["--config", "/a", "--config", "/b"],
        &["--listen", "/a", "--listen", "/b"],
        &["--conf", "/c.json"],
        &["-c", "/c.json"],
        &["--", "/c.json"],
        &["/c.json"],
        &["--config", "/c.json", "extra"],
    ] {
        let args = os(args);
        assert_eq!(Args::plain(&args), None, "{args:?} was read as plain");
        // Where clap accepts it, it is still accepted: only the reader differs.
        if let Ok(parsed) = clap_of(&args) {
            assert_eq!(args, os(&["--config=/c.json"]), "{parsed:?}");
        }
    }
}
