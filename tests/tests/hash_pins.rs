//! The state-hash format and the kernel's tree layout are pinned: the
//! embedded default world and the plugin demo world must end on these
//! hashes. A change that moves one changes every journal's meaning: it must
//! come with a new hash-format version (docs/formats.md), never by accident.

use std::path::PathBuf;

use cep_tests::plugins::{c_plugin, cdylib, ping_wat, printed, run_cep, wasm_module, workspace};

fn last_line(args: &[&str]) -> String {
    let out = run_cep(args);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_default_world_ends_on_its_pinned_hashes() {
    for (beats, hash) in DEFAULT_WORLD {
        let line = last_line(&["run", "--beats", &beats.to_string()]);
        assert_eq!(
            line,
            format!("beat={} hash={hash}", beats - 1),
            "--beats {beats}"
        );
    }
}

#[test]
fn the_plugin_demo_world_ends_on_its_pinned_hash() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = vec![
        cdylib("cep-plugin-store"),
        cdylib("cep-plugin-index"),
        c_plugin("thermo"),
        workspace().join("plugins/watch/watch.lua"),
        wasm_module("cep-plugin-tally"),
        ping_wat(),
    ];
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    let cfg = dir.path().join("cep.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{}]\n[grants]\nstore = [\"write:/data/store\", \"emit:store\", \"emit:index\"]\nindex = [\"write:/data/index\"]\nthermo = [\"write:/data/thermo\", \"emit:thermo\"]\nwatch = [\"write:/data/watch\", \"emit:watch\"]\ntally = [\"write:/data/tally\", \"emit:ping\"]\nping = [\"write:/data/ping\"]\n",
            list.join(", ")
        ),
    )
    .unwrap();
    let line = last_line(&["run", "--config", cfg.to_str().unwrap(), "--beats", "500"]);
    assert_eq!(line, format!("beat=499 hash={PLUGIN_WORLD_500}"));
}

/// `cep run --beats N` of the embedded default world: (N, final hash),
/// as `0eb94c0` computed them.
const DEFAULT_WORLD: [(u64, &str); 4] = [
    (
        1,
        "5c68cfd5f57510d41299f9ab727719f9ea10c7495efb1218e5e726255c959ac7",
    ),
    (
        17,
        "b3a0b58824618ff228793965e9d54d33b97a71b6a1fcaf1eef3a60dd0ce26868",
    ),
    (
        500,
        "0fe13d6cece93620ada2200c8f03e0ff6a8c2fcdd121ec88455ca8208bd20b0a",
    ),
    (
        3000,
        "3ac79d079f2489a3c7d3acf272a0854d064408c5e6309f001a190c9f0cf98d5d",
    ),
];

/// The plugin demo world (`cargo xtask demo`'s plugins but the sensor
/// adapter, whose inputs arrive in real time) after 500 beats.
const PLUGIN_WORLD_500: &str = "49b6c1f9a2d6c18986d6996200d53303a0235c3bbf813311d2c657a4bdccb408";
