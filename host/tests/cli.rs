//! The `cep` binary: output contract, exit codes, determinism through the CLI.

use std::process::Command;

fn cep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cep"))
        .args(args)
        .output()
        .expect("running cep")
}

fn last_line(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn run_ends_with_the_beat_and_a_64_hex_digit_hash() {
    let out = cep(&["run", "--beats", "20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = last_line(&out);
    let hash = line
        .strip_prefix("beat=19 hash=")
        .unwrap_or_else(|| panic!("unexpected last line {line:?}"));
    assert_eq!(hash.len(), 64);
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
}

#[test]
fn run_prints_the_same_last_line_with_1_and_8_workers_and_cooperatively() {
    let one = cep(&["run", "--beats", "500", "--workers", "1"]);
    let eight = cep(&["run", "--beats", "500", "--workers", "8"]);
    let coop = cep(&["run", "--beats", "500", "--executor", "cooperative"]);
    for out in [&one, &eight, &coop] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&eight.stdout).contains("8 workers"));
    assert_eq!(last_line(&one), last_line(&eight));
    assert_eq!(last_line(&one), last_line(&coop));
    assert!(last_line(&one).starts_with("beat=499 hash="));
}

#[test]
fn inspect_prints_the_subtree_of_the_final_state() {
    let out = cep(&["inspect", "/data/demo", "--beats", "30"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/data/demo\n"), "{text}");
    assert!(text.contains("  clock = 30"), "{text}");
    assert!(last_line(&out).starts_with("beat=29 hash="));
}

#[test]
fn bad_usage_and_bad_configuration_exit_with_code_2_and_one_clear_line() {
    let out = cep(&["run", "--executor", "quantum"]);
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cep.toml");
    std::fs::write(&config, "workerz = 3\n").unwrap();
    let out = cep(&["run", "--config", config.to_str().unwrap(), "--beats", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workerz") && err.contains("cep.toml"), "{err}");
    let out = cep(&["run", "--config", "/nonexistent/cep.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cep.toml"));
}

#[test]
fn a_configuration_file_selects_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cep.toml");
    std::fs::write(&config, "executor = \"threaded\"\nworkers = 2\n").unwrap();
    let out = cep(&["run", "--config", config.to_str().unwrap(), "--beats", "50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Threaded (2 workers)"));
    let plain = cep(&["run", "--beats", "50"]);
    assert_eq!(last_line(&out), last_line(&plain));
}
