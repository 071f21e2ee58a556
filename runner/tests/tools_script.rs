//! `scripts/tools.sh` on a fresh machine: a PATH without Node/npm, Java, Python and Chromium (the
//! machine's own commands minus those), an empty tools directory. Every missing prerequisite is
//! reported in one message with its Debian/Ubuntu and macOS install commands, before anything is
//! installed; as root on Debian it first asks apt-get for all of them at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Commands the fresh machine does not have.
const ABSENT: &[&str] = &[
    "java",
    "node",
    "nodejs",
    "npm",
    "npx",
    "pyenv",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "anvil",
    "apt-get",
    "apt-cache",
    "id",
];

fn absent(name: &str) -> bool {
    ABSENT.contains(&name) || name.starts_with("python") || name.starts_with("pip")
}

/// A bin directory holding links to every command of this machine's PATH but the absent ones.
fn fresh_path(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let path = std::env::var_os("PATH").unwrap();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            let link = bin.join(n);
            if absent(n) || link.exists() || dir.to_string_lossy().contains("pyenv") {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), link);
        }
    }
}

fn script(bin: &Path, name: &str, body: &str) {
    let p = bin.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// rustup's homes as they are (a HOME without them would make `cargo` look for its toolchain
/// elsewhere and try to install it).
fn rust_env() -> Vec<(String, PathBuf)> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")]
        .into_iter()
        .map(|(var, dir)| {
            let v = std::env::var_os(var).map_or_else(|| home.join(dir), PathBuf::from);
            (var.to_string(), v)
        })
        .collect()
}

fn tools_sh(bin: &Path, home: &Path, tools: &Path, args: &[&str]) -> Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new("/bin/bash")
        .arg(root.join("scripts/tools.sh"))
        .args(args)
        .env_clear()
        .env("PATH", bin)
        .env("HOME", home)
        .env("SEQ_TOOLS_DIR", tools)
        .envs(rust_env())
        .output()
        .unwrap()
}

/// The one message, checked to list each of `missing` with both install commands.
fn assert_one_message(o: &Output, missing: &[(&str, &str, &str)]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("MISSING PREREQUISITES").count(), 1, "{err}");
    for (title, debian, macos) in missing {
        let at = err
            .find(&format!("  - {title}"))
            .unwrap_or_else(|| panic!("{title} not listed:\n{err}"));
        let entry = &err[at..];
        let entry = &entry[..entry[4..].find("\n  - ").map_or(entry.len(), |i| i + 4)];
        assert!(
            entry.contains(&format!("Debian/Ubuntu: {debian}")),
            "{title}:\n{entry}"
        );
        assert!(
            entry.contains(&format!("macOS:         {macos}")),
            "{title}:\n{entry}"
        );
    }
    err
}

const NPM: (&str, &str, &str) = (
    "npm and Node.js",
    "sudo apt-get install -y nodejs npm",
    "brew install node",
);
const JAVA: (&str, &str, &str) = (
    "Java 17 or newer",
    "sudo apt-get install -y openjdk-17-jre-headless",
    "brew install openjdk@17",
);
const PY3: (&str, &str, &str) = (
    "Python 3 with venv",
    "sudo apt-get install -y python3 python3-venv",
    "brew install python",
);
const PY313: (&str, &str, &str) = (
    "Python 3.13 with venv",
    "sudo apt-get install -y python3.13 python3.13-venv",
    "brew install python@3.13",
);
const CHROMIUM: (&str, &str, &str) = (
    "Chromium",
    "sudo apt-get install -y chromium",
    "brew install --cask chromium",
);

#[test]
fn a_fresh_machine_gets_every_missing_prerequisite_in_one_message() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    fresh_path(&bin);
    // Not root.
    script(&bin, "id", "echo 1000");
    let tools = t.path().join("tools");

    let o = tools_sh(&bin, t.path(), &tools, &[]);
    let err = assert_one_message(&o, &[NPM, JAVA, PY3, PY313, CHROMIUM]);
    // Nothing was installed: no component directory, no install log.
    let made: Vec<_> = std::fs::read_dir(&tools)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "logs" && n != ".install.lock")
        .collect();
    assert!(made.is_empty(), "{made:?}\n{err}");
    assert_eq!(std::fs::read_dir(tools.join("logs")).unwrap().count(), 0);
    // Each missing tool names what needs it.
    assert!(
        err.contains("for anvil") || err.contains(", anvil"),
        "{err}"
    );
    assert!(
        err.contains("dynamodb (DynamoDB Local runs on it)"),
        "{err}"
    );

    // The run command's install (`tools.sh anvil`) needs npm alone, and says only that.
    let o = tools_sh(&bin, t.path(), &tools, &["anvil"]);
    let err = assert_one_message(&o, &[NPM]);
    assert!(!err.contains("Java") && !err.contains("Chromium"), "{err}");

    // --check reports the same and installs nothing, whoever runs it.
    let o = tools_sh(&bin, t.path(), &tools, &["--check", "dynamodb"]);
    assert_one_message(&o, &[NPM, JAVA]);
}

#[test]
fn as_root_on_debian_it_asks_apt_get_for_all_of_them_at_once() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    fresh_path(&bin);
    let calls = t.path().join("apt-calls");
    script(&bin, "id", "echo 0");
    // Debian's lists have every package; the stand-in apt-get records its calls and installs
    // nothing, so the message still follows.
    script(&bin, "apt-cache", "echo '  Candidate: 1.0-1'");
    script(
        &bin,
        "apt-get",
        &format!("echo \"$*\" >> '{}'", calls.display()),
    );
    let tools = t.path().join("tools");
    let o = tools_sh(&bin, t.path(), &tools, &[]);
    assert_one_message(&o, &[NPM, JAVA, PY3, PY313, CHROMIUM]);
    let calls = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert_eq!(lines[0], "update -qq");
    let install = lines[1];
    assert!(
        install.starts_with("install -y -qq --no-install-recommends "),
        "{install}"
    );
    for pkg in [
        "nodejs",
        "npm",
        "openjdk-17-jre-headless",
        "python3",
        "python3-venv",
        "python3.13",
        "python3.13-venv",
        "chromium",
    ] {
        assert!(
            install.split(' ').any(|w| w == pkg),
            "{pkg} not asked for: {install}"
        );
    }
}
