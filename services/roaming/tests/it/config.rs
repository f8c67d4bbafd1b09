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
