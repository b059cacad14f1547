//! What an operator installs and runs: completions, the man page, the
//! licence, the minimum Rust version and the systemd unit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use std::path::Path;
use std::process::{Command, Output};

fn clawgate(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(args)
        .env("HOME", home)
        .current_dir(home)
        .output()
        .unwrap()
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn completions_are_printed_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_clawgate()"),
        ("zsh", "#compdef clawgate"),
        ("fish", "complete -c clawgate"),
    ] {
        let out = clawgate(&["completions", shell], home.path());
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("serve"), "{shell}: subcommands are completed");
    }
    let bad = clawgate(&["completions", "cmd.exe"], home.path());
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn man_page_is_roff_naming_the_commands() {
    let home = tempfile::tempdir().unwrap();
    let out = clawgate(&["man"], home.path());
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH clawgate 1"), "{page}");
    assert!(page.contains("serve"), "{page}");
}

#[test]
fn license_file_matches_the_manifest_and_rust_version_is_the_locked_minimum() {
    let manifest = repo_file("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = repo_file("LICENSE");
    assert!(license.contains("Apache License"));
    assert!(license.contains("Version 2.0, January 2004"));
    // pasetors 0.8.1 (in Cargo.lock) declares rust-version 1.88.
    assert!(repo_file("Cargo.lock").contains("name = \"pasetors\"\nversion = \"0.8.1\""));
    assert!(manifest.contains("rust-version = \"1.88\""));
    assert!(repo_file("README.md").contains("cargo install --path . --locked"));
}

#[test]
fn systemd_unit_is_hardened_and_checked_in_ci() {
    let unit = repo_file("contrib/clawgate.service");
    for line in [
        "User=clawgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "StateDirectory=clawgate",
        "ReadWritePaths=/var/lib/clawgate",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=64",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    assert!(repo_file(".ci/run").contains("bash .ci/systemd-verify"));
    assert!(repo_file(".ci/systemd-verify").contains("systemd-analyze verify"));
}
