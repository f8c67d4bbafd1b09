//! The README's settings table says what `roaming serve --help` says.

use std::collections::BTreeMap;
use std::process::Command;

/// `env → (flag, default)` of every setting, as `roaming serve --help` prints them.
fn settings_in_help() -> BTreeMap<String, (String, String)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roaming"));
    command.args(["serve", "--help"]);
    // The environment would show up as defaults ("[env: X=value]"): keep it out.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROAMING_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("roaming serve --help runs");
    assert!(output.status.success(), "roaming serve --help failed");
    let help = String::from_utf8(output.stdout).expect("help is text");
    let mut settings = BTreeMap::new();
    let mut flag: Option<String> = None;
    let mut env: Option<String> = None;
    let mut default = "—".to_owned();
    let mut flush = |flag: &mut Option<String>, env: &mut Option<String>, default: &mut String| {
        if let (Some(f), Some(e)) = (flag.take(), env.take()) {
            settings.insert(e, (f, std::mem::replace(default, "—".to_owned())));
        }
        *default = "—".to_owned();
    };
    for line in help.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("--") {
            flush(&mut flag, &mut env, &mut default);
            flag = Some(format!("--{}", rest.split_whitespace().next().unwrap()));
        } else if let Some(rest) = trimmed.strip_prefix("[env: ") {
            env = Some(rest.trim_end_matches(']').trim_end_matches('=').to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("[default: ") {
            default = rest.trim_end_matches(']').to_owned();
        }
    }
    flush(&mut flag, &mut env, &mut default);
    settings
}

/// `env → (flag, default)` of every row of the README's settings table.
fn settings_in_readme() -> BTreeMap<String, (String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("the README");
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
    table
        .lines()
        .skip_while(|l| !l.starts_with("| env |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            // Lists are comma-separated on the command line; help prints them with spaces.
            let default = unquote(cells[3]).replace(',', " ");
            (unquote(cells[1]), (unquote(cells[2]), default))
        })
        .collect()
}

#[test]
fn the_readme_settings_table_matches_roaming_serve_help() {
    let help = settings_in_help();
    let readme = settings_in_readme();
    assert!(
        help.len() > 20,
        "parsed too few settings from --help: {help:?}"
    );
    let missing: Vec<&String> = help.keys().filter(|k| !readme.contains_key(*k)).collect();
    let extra: Vec<&String> = readme.keys().filter(|k| !help.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "settings missing from the README: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "README settings that --help does not know: {extra:?}"
    );
    for (env, documented) in &readme {
        assert_eq!(
            &help[env], documented,
            "{env}: (flag, default) in --help vs the README"
        );
    }
}

/// `roaming serve` with `env` set (and no other ROAMING_ variable): its exit status and
/// stderr. The database URL points nowhere: these settings must be refused before it.
fn serve_with(env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roaming"));
    command.arg("serve");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROAMING_") {
            command.env_remove(name);
        }
    }
    command
        .env("ROAMING_JWT_SECRET", roaming_testkit::SECRET)
        .env(
            "ROAMING_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .envs(env.iter().copied());
    let output = command.output().expect("roaming serve runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_half_a_tls_setting_before_touching_the_database() {
    let (ok, stderr) = serve_with(&[("ROAMING_TLS_CERT", "/nonexistent/server.crt")]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "ROAMING_TLS_CERT (--tls-cert) is set but ROAMING_TLS_KEY (--tls-key) is not"
        ),
        "{stderr}"
    );
    let (ok, stderr) = serve_with(&[("ROAMING_TLS_KEY", "/nonexistent/server.key")]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "ROAMING_TLS_KEY (--tls-key) is set but ROAMING_TLS_CERT (--tls-cert) is not"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("database"), "{stderr}");
}

#[test]
fn tls_files_are_checked_at_start_naming_the_setting() {
    use roaming_testkit::tls::{TempDir, TestCa};
    let ca = TestCa::new("Roaming config test CA");
    let first = ca.server_cert(&["localhost"]);
    let second = ca.server_cert(&["localhost"]);
    let dir = TempDir::new("roaming-config-tls");
    let cert = dir.write("server.crt", &first.cert_pem);
    let key = dir.write("server.key", &first.key_pem);
    let other_key = dir.write("other.key", &second.key_pem);
    let not_pem = dir.write("not.pem", "not PEM at all\n");
    // A pool that connects lazily, to nowhere: App::new never touches it.
    let store = roaming_store::Store::open(
        roaming_store::db::parse_url("postgres://postgres@127.0.0.1:1/none").unwrap(),
        &roaming_store::db::PoolSettings::DEFAULT,
    )
    .unwrap();
    let refusal = |cert: &std::path::Path, key: &std::path::Path| {
        let mut config = roaming_testkit::test_config();
        config.tls.tls_cert = Some(cert.to_owned());
        config.tls.tls_key = Some(key.to_owned());
        roaming::App::new(config, store.clone())
            .err()
            .map(|e| format!("{e:#}"))
    };

    assert_eq!(refusal(&cert, &key), None, "a matching pair loads");
    let e = refusal(&dir.path().join("missing.crt"), &key).expect("refused");
    assert!(e.starts_with("ROAMING_TLS_CERT: cannot read"), "{e}");
    let e = refusal(&not_pem, &key).expect("refused");
    assert!(
        e.starts_with("ROAMING_TLS_CERT:") && e.contains("holds no PEM certificate"),
        "{e}"
    );
    let e = refusal(&cert, &not_pem).expect("refused");
    assert!(
        e.starts_with("ROAMING_TLS_KEY:") && e.contains("holds no PEM private key"),
        "{e}"
    );
    let e = refusal(&cert, &other_key).expect("refused");
    assert!(e.starts_with("ROAMING_TLS_CERT / ROAMING_TLS_KEY:"), "{e}");
    assert!(!e.contains("PRIVATE KEY"), "{e}");
}

/// `roaming serve` with `env` set exits at once with an error naming `names`.
fn refuses_to_start(env: (&str, &str), names: &str) {
    let (ok, stderr) = serve_with(&[env]);
    assert!(!ok, "{env:?} was accepted");
    assert!(stderr.contains(names), "{env:?}: {stderr}");
}

#[test]
fn settings_that_would_break_the_contract_are_refused_at_start() {
    // A page size of 0 would give empty pages that are not the end; a batch of 0 could hold
    // nothing; a pool of 0 would never answer.
    for (env, flag) in [
        ("ROAMING_MAX_PAGE_SIZE", "--max-page-size"),
        ("ROAMING_MAX_PAGES", "--max-pages"),
        ("ROAMING_CONVERSATION_PAGE_SIZE", "--conversation-page-size"),
        ("ROAMING_MAX_APPEND_BATCH", "--max-append-batch"),
        ("ROAMING_MAX_REMOVAL_IDS", "--max-removal-ids"),
        ("ROAMING_MAX_MEMBERS_PER_CALL", "--max-members-per-call"),
        ("ROAMING_MAX_BODY_BYTES", "--max-body-bytes"),
        ("ROAMING_MAX_PAGE_BYTES", "--max-page-bytes"),
        ("ROAMING_POOL_SIZE", "--pool-size"),
        ("ROAMING_MAX_CONCURRENT_CALLS", "--max-concurrent-calls"),
        ("ROAMING_MAX_UNREAD_COUNT", "--max-unread-count"),
        ("ROAMING_MAX_PINNED", "--max-pinned"),
        ("ROAMING_MAX_MARKS", "--max-marks"),
    ] {
        refuses_to_start((env, "0"), flag);
    }
    // The list's default page cannot exceed the largest page a request may ask for.
    refuses_to_start(
        ("ROAMING_CONVERSATION_PAGE_SIZE", "51"),
        "--conversation-page-size",
    );
}
