//! The beat journal and `cep replay --verify`: real `cep` processes write a
//! journal; a replay runs it again and compares every beat's hash.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cep_host::journal::{self, BeatEntry, Journal, JournalConfig};
use cep_host::Value;
use cep_tests::plugins::{c_plugin, cdylib, cep_bin, workspace};

fn cep(args: &[&str]) -> Output {
    Command::new(cep_bin())
        .args(args)
        .output()
        .expect("cep runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A configuration with every plugin kind there is: Rust organs, the C
/// thermostat and sensor adapter, the Lua watcher (copied into `dir`, so a
/// test may change it).
fn every_kind(dir: &Path) -> PathBuf {
    let watch = dir.join("watch.lua");
    std::fs::copy(workspace().join("plugins/watch/watch.lua"), &watch).unwrap();
    let files = [
        cdylib("cep-plugin-store"),
        cdylib("cep-plugin-index"),
        c_plugin("thermo"),
        c_plugin("sensor"),
        watch,
    ];
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    let cfg = dir.join("cep.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{}]\n[grants]\nstore = [\"write:/data/store\", \"emit:*\"]\nindex = [\"write:/data/index\"]\nthermo = [\"write:/data/thermo\", \"emit:thermo\"]\nsensor = [\"threads\", \"emit:sensor\"]\nwatch = [\"write:/data/watch\", \"emit:watch\"]\n",
            list.join(", ")
        ),
    )
    .unwrap();
    cfg
}

fn run_journaled(cfg: &Path, data: &Path, beats: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--beats",
        beats,
        "--rate",
        "4000",
        "--shutdown",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = cep(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

fn replay(data: &Path) -> Output {
    cep(&["replay", "--verify", data.to_str().unwrap()])
}

/// `cep replay --verify`, which must exit 0.
fn replay_verified(data: &Path) -> Output {
    let out = replay(data);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

#[test]
fn a_run_with_every_plugin_kind_and_adapter_inputs_replays_hash_for_hash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = every_kind(dir.path());
    let data = dir.path().join("data");
    let out = run_journaled(&cfg, &data, "1000", &[]);
    assert!(
        stdout(&out).contains("5 plugins loaded"),
        "{}",
        stdout(&out)
    );
    // The sensor's readings are in the journal.
    let contents = journal::read(&data.join("journal")).unwrap();
    let readings: usize = contents.beats.iter().map(|b| b.inputs.len()).sum();
    assert!(readings > 0, "the adapter's inputs were journaled");
    let last = stdout(&out).lines().last().unwrap().to_owned();
    let verified = replay_verified(&data);
    let line = stdout(&verified);
    assert!(
        line.contains("replay verified") && line.contains("every state hash matches"),
        "{line}"
    );
    assert!(
        line.contains(&last),
        "the replay ends on the run's final hash: {line} vs {last}"
    );
}

/// Rewrites the journal under `data` into `out`, passing each beat through
/// `edit`.
fn rewrite(data: &Path, out: &Path, mut edit: impl FnMut(&mut BeatEntry)) {
    let contents = journal::read(&data.join("journal")).unwrap();
    let (header, _) = &contents.runs[0];
    let mut journal =
        Journal::open(&out.join("journal"), JournalConfig::default(), header).unwrap();
    for mut beat in contents.beats {
        edit(&mut beat);
        journal.append(&beat).unwrap();
    }
    journal.sync().unwrap();
}

#[test]
fn one_changed_input_makes_replay_name_the_beat() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = every_kind(dir.path());
    let data = dir.path().join("data");
    run_journaled(&cfg, &data, "400", &[]);
    let target = journal::read(&data.join("journal"))
        .unwrap()
        .beats
        .iter()
        .find(|b| !b.inputs.is_empty())
        .map(|b| b.beat)
        .expect("some beat captured a reading");
    let edited = dir.path().join("edited");
    rewrite(&data, &edited, |beat| {
        if beat.beat == target {
            beat.inputs[0].impulse.payload = Some(Value::I64(999));
        }
    });
    let out = replay(&edited);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report = stdout(&out);
    assert!(
        report.contains(&format!("replay diverged at beat {target}:")),
        "{report}"
    );
    // The differing cells, with both values.
    assert!(
        report.contains("cells differ (recorded vs replayed)"),
        "{report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("  /")
            && l.contains(": recorded ")
            && l.contains(", replayed ")),
        "{report}"
    );
}

#[test]
fn a_journal_of_another_hash_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = cep(&["run", "--beats", "20", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same journal, its header saying v1 (as journals did before v2).
    let contents = journal::read(&data.join("journal")).unwrap();
    let mut header = contents.runs[0].0.clone();
    assert_eq!(header.hash_format, cep_host::cell::hash::FORMAT_VERSION);
    header.hash_format = 1;
    let old = dir.path().join("old");
    let mut journal =
        Journal::open(&old.join("journal"), JournalConfig::default(), &header).unwrap();
    for beat in &contents.beats {
        journal.append(beat).unwrap();
    }
    journal.sync().unwrap();
    for out in [
        replay(&old),
        cep(&["run", "--beats", "5", "--data-dir", old.to_str().unwrap()]),
    ] {
        assert_ne!(out.status.code(), Some(0));
        let err = stderr(&out);
        let expected = format!(
            "state-hash format v1, but this cep computes v{}",
            cep_host::cell::hash::FORMAT_VERSION
        );
        assert!(err.contains(&expected), "{err}");
    }
}

#[test]
fn a_changed_plugin_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = every_kind(dir.path());
    let data = dir.path().join("data");
    run_journaled(&cfg, &data, "50", &[]);
    let watch = dir.path().join("watch.lua");
    let mut text = std::fs::read_to_string(&watch).unwrap();
    text.push_str("\n-- a modified build\n");
    std::fs::write(&watch, text).unwrap();
    let out = replay(&data);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("plugin watch changed"), "{err}");
}

#[test]
fn a_torn_tail_is_cut_and_everything_complete_replays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = cep(&[
        "run",
        "--beats",
        "120",
        "--data-dir",
        data.to_str().unwrap(),
        "--fsync",
        "beat",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let segment = journal::segments(&data.join("journal"))
        .unwrap()
        .pop()
        .unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    // A crash mid-append: the last frame loses its end.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);
    let before = journal::read(&data.join("journal")).unwrap();
    assert!(before.torn.is_some());
    assert_eq!(before.beats.last().unwrap().beat, 118, "beat 119 was torn");
    // Replay reads the complete beats and says what it skipped.
    let out = replay(&data);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("torn tail"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("verified 119 beats"),
        "{}",
        stdout(&out)
    );
    // Recovery cuts it, and a new run appends after the last complete frame.
    let recovery = journal::recover(&data.join("journal")).unwrap();
    assert_eq!(recovery.last_beat, Some(118));
    let (_, offset, cut, _) = recovery.truncated.expect("a tail was cut");
    assert!(cut > 0 && offset > 0);
    let after = journal::read(&data.join("journal")).unwrap();
    assert!(after.torn.is_none());
    assert_eq!(after.beats.len(), 119);
    let again = cep(&["run", "--beats", "30", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let out = replay_verified(&data);
    assert!(
        stdout(&out).contains("verified 149 beats in 2 runs"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_reload_is_recorded_and_replayed_at_its_beat() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("t-1.lua");
    let v2 = dir.path().join("t-2.lua");
    for (file, version) in [(&v1, "0.1.0"), (&v2, "0.2.0")] {
        std::fs::write(
            file,
            format!(
                "return {{ name = \"t\", version = \"{version}\", capabilities = {{ \"write:/data/t\" }},\n  enzymes = {{ {{ name = \"t.tick\", signal = \"sig_cei/**\", match = \"prefix\", run = function() cep.write(\"/data/t/v\", \"{version}\") end }} }} }}\n"
            ),
        )
        .unwrap();
    }
    let cfg = dir.path().join("cep.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\n[grants]\nt = [\"write:/data/t\"]\n",
            v1.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let reload = format!("20={}", v2.display());
    let out = cep(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--beats",
        "60",
        "--reload",
        &reload,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let contents = journal::read(&data.join("journal")).unwrap();
    let with_decision: Vec<u64> = contents
        .beats
        .iter()
        .filter(|b| !b.decisions.is_empty())
        .map(|b| b.beat)
        .collect();
    assert_eq!(with_decision, [20]);
    replay_verified(&data);
}

#[test]
fn segments_roll_at_their_size_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let header = journal::RunHeader::default();
    let config = JournalConfig {
        fsync: journal::Fsync::Never,
        segment_bytes: 200,
    };
    let mut j = Journal::open(dir.path(), config, &header).unwrap();
    for beat in 0..50u64 {
        j.append(&BeatEntry {
            beat,
            state_hash: [beat as u8; 32],
            ..BeatEntry::default()
        })
        .unwrap();
    }
    j.sync().unwrap();
    assert!(journal::segments(dir.path()).unwrap().len() > 5);
    let contents = journal::read(dir.path()).unwrap();
    let beats: Vec<u64> = contents.beats.iter().map(|b| b.beat).collect();
    assert_eq!(beats, (0..50).collect::<Vec<_>>());
}

/// Crash safety: `cep run` journaling with fsync every beat is killed with
/// SIGKILL at 20 moments; after each kill the journal replays up to its
/// last complete beat, and the next run recovers it (cutting a torn tail)
/// and appends after it. The final journal holds 21 runs and verifies.
#[test]
fn sigkill_at_twenty_moments_loses_no_complete_beat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut runs = 0;
    let mut journal_seen = false;
    for kill in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = std::time::Duration::from_millis(20 + seed % 180);
        let mut child = Command::new(cep_bin())
            .args([
                "run",
                "--beats",
                "1000000",
                "--rate",
                "3000",
                "--fsync",
                "beat",
                "--checkpoint-every",
                "40",
            ])
            .args(["--data-dir", &data_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cep starts");
        std::thread::sleep(after);
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        runs += 1;
        if !data.join("journal").exists() {
            // Killed before it opened its journal (a loaded machine can
            // take longer than the shortest delay to start): nothing was
            // written, so nothing can be lost. Once there, it stays.
            assert!(!journal_seen, "kill {kill}: the journal disappeared");
            continue;
        }
        journal_seen = true;
        let out = replay(&data);
        assert_eq!(
            out.status.code(),
            Some(0),
            "kill {kill} after {after:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        // Every complete frame survived, and the runs are all there (a run
        // killed before its header reached the disk leaves none).
        let contents = journal::read(&data.join("journal")).unwrap();
        assert!(contents.runs.len() <= runs);
        // Every execution document parses (they are renamed into place);
        // the log may end in a torn line, cut at the next start.
        every_exec_json_parses(&data);
        // A restart resumes after the last complete beat the previous
        // process left: the run's genesis is that beat's tree.
        for (n, (header, start)) in contents.runs.iter().enumerate().skip(1) {
            let before = &contents.beats[..*start];
            let expected = before.last().map(|b| (b.beat, b.state_hash));
            assert_eq!(
                header.genesis, expected,
                "kill {kill}: run {n} resumes after the last complete beat"
            );
            if let Some(first) = contents.beats.get(*start) {
                let next = expected.map_or(0, |(b, _)| b + 1);
                if contents.runs.get(n + 1).is_none_or(|(_, s)| s > start) {
                    assert_eq!(
                        first.beat, next,
                        "kill {kill}: run {n} numbers its beats on"
                    );
                }
            }
        }
    }
    // A clean run after the last kill recovers the journal first.
    let out = cep(&["run", "--beats", "50", "--data-dir", &data_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let contents = journal::read(&data.join("journal")).unwrap();
    assert!(contents.torn.is_none(), "recovery cut the torn tail");
    let out = replay_verified(&data);
    assert!(
        stdout(&out).contains("every state hash matches"),
        "{}",
        stdout(&out)
    );
}

/// A restart resumes after the last complete beat (rebuilt from the newest
/// checkpoint and the journal's recorded changes); both runs replay, from
/// the first beat and from the checkpoint.
#[test]
fn a_restart_resumes_from_the_last_beat_and_replays_from_either_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = every_kind(dir.path());
    let data = dir.path().join("data");
    run_journaled(&cfg, &data, "120", &["--checkpoint-every", "50"]);
    let first = journal::read(&data.join("journal")).unwrap();
    let last = first.beats.last().unwrap().clone();
    let ckpts = journal::checkpoint::list(&data);
    assert_eq!(
        ckpts.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
        [0, 50, 100, last.beat],
        "every 50 beats and at the end"
    );
    let out = run_journaled(&cfg, &data, "30", &["--checkpoint-every", "50"]);
    assert!(
        stderr(&out).contains(&format!("cep: recovered beat {}", last.beat)),
        "{}",
        stderr(&out)
    );
    let contents = journal::read(&data.join("journal")).unwrap();
    assert_eq!(contents.runs.len(), 2);
    let (second, start) = &contents.runs[1];
    assert_eq!(second.genesis, Some((last.beat, last.state_hash)));
    assert_eq!(contents.beats[*start].beat, last.beat + 1);
    // The resumed world booted again under its own dossier.
    let boot = format!("/rt/ops/{}-boot/close/status", last.beat + 1);
    let out = cep(&["inspect", data.to_str().unwrap(), &boot]);
    assert!(stdout(&out).contains("sts:ok"), "{}", stdout(&out));
    replay_verified(&data);
    let out = cep(&[
        "replay",
        "--verify",
        "--from-checkpoint",
        data.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("in 1 runs"), "{}", stdout(&out));
}

/// `cep inspect DATA --beat N` rebuilds any journaled beat: its hash is the
/// recorded one, with or without checkpoints, and a corrupt checkpoint is
/// skipped, not trusted.
#[test]
fn inspect_rebuilds_any_journaled_beat_from_checkpoints_and_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = every_kind(dir.path());
    let data = dir.path().join("data");
    run_journaled(&cfg, &data, "90", &["--checkpoint-every", "40"]);
    let contents = journal::read(&data.join("journal")).unwrap();
    let hash_of = |beat: u64| {
        let b = contents.beats.iter().find(|b| b.beat == beat).unwrap();
        cep_host::cell::hash::hex(&b.state_hash)
    };
    let inspect = |beat: u64| {
        let out = cep(&[
            "inspect",
            data.to_str().unwrap(),
            "/data",
            "--beat",
            &beat.to_string(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    for beat in [3, 40, 41, 77] {
        let text = inspect(beat);
        assert!(
            text.ends_with(&format!("beat={beat} hash={}\n", hash_of(beat))),
            "{text}"
        );
        assert!(text.starts_with("/data\n"), "{text}");
    }
    // Corrupt the checkpoint of beat 40: beat 77 still rebuilds (from 0).
    let (_, path) = journal::checkpoint::list(&data)
        .into_iter()
        .find(|(b, _)| *b == 40)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    assert!(journal::checkpoint::read(&path).is_err());
    assert!(inspect(77).ends_with(&format!("beat=77 hash={}\n", hash_of(77))));
    // Without any checkpoint the journal alone rebuilds it.
    std::fs::remove_dir_all(journal::checkpoint::dir(&data)).unwrap();
    assert!(inspect(77).ends_with(&format!("beat=77 hash={}\n", hash_of(77))));
    let out = cep(&["inspect", data.to_str().unwrap(), "--beat", "100000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("beat 100000 is not in the journal"),
        "{}",
        stderr(&out)
    );
}

/// A Lua organ whose constructor starts an episode; the episode's first
/// slice starts a child operation and takes a labelled snapshot, the
/// second closes the child, the third closes the episode.
const NEST: &str = r#"
return {
  name = "nest", version = "0.1.0", capabilities = { "write:/data/nest", "emit:nest" },
  organs = { { kind = "nest", root = "/data/nest", constructor = "nest.ctor" } },
  enzymes = {
    { name = "nest.ctor", signal = "organ/nest/ctor",
      run = function()
        cep.write("/data/nest/eid", cep.ep_start{ signal = "nest/ep", callback = "nest.slice", max_beats = 50 })
      end },
    { name = "nest.slice", signal = "nest/ep",
      run = function()
        local step = (cep.read("/data/nest/step") or 0) + 1
        cep.write("/data/nest/step", step)
        if step == 1 then
          cep.write("/data/nest/child", cep.op_start{ verb = "nest/child", payload = 7 })
          cep.ep_snapshot("first")
          cep.ep_yield()
        elseif step == 2 then
          cep.op_close(cep.read("/data/nest/child"), "sts:ok", "child done")
          cep.ep_yield()
        else
          cep.ep_close("sts:ok", "done")
        end
      end },
  },
}
"#;

fn exec_log(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("exec/log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every closed dossier has start.json and end.json; the log lists the
/// child operation under the episode that started it; the labelled
/// snapshot is there; documents carry beats and match the tree.
#[test]
fn execution_documents_hold_every_dossier_and_the_tree_of_nested_operations() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nest.lua"), NEST).unwrap();
    let cfg = dir.path().join("cep.toml");
    std::fs::write(
        &cfg,
        "plugins = [\"nest.lua\"]\n[grants]\nnest = [\"write:/data/nest\", \"emit:nest\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    run_journaled(&cfg, &data, "20", &[]);
    let d = data.to_str().unwrap();
    let read = |path: &str| {
        let out = cep(&["inspect", d, path]);
        stdout(&out).lines().next().unwrap_or_default().to_owned()
    };
    let eid = read("/data/nest/eid");
    let eid = eid.split('"').nth(1).unwrap().to_owned();
    let child = read("/data/nest/child");
    let child = child.split('"').nth(1).unwrap().to_owned();
    let log = exec_log(&data);
    let child_start = log
        .iter()
        .find(|l| l["uid"] == child.as_str() && l["event"] == "start")
        .expect("the child's creation is logged");
    assert_eq!(child_start["parent_uid"], eid.as_str(), "{log:?}");
    assert_eq!(child_start["protocol"], "nest/child");
    let ep_dir = data.join("exec/op/ep").join(&eid);
    let snap = json_file(&ep_dir.join("snap-first.json"));
    assert_eq!(snap["uid"], eid.as_str());
    assert!(snap["beat"].as_u64().unwrap() > 0);
    let end = json_file(&ep_dir.join("end.json"));
    assert_eq!(end["result"]["status"], "sts:ok");
    assert_eq!(end["result"]["summary"], "done");
    let child_dir = data.join("exec/nest/child").join(&child);
    let child_end = json_file(&child_dir.join("end.json"));
    assert_eq!(child_end["parent_uid"], eid.as_str());
    assert_eq!(child_end["input"], 7);
    assert_eq!(child_end["result"]["summary"], "child done");
    // Every closed dossier in the tree has both files.
    let contents = journal::read(&data.join("journal")).unwrap();
    let closed: Vec<(String, String)> = log
        .iter()
        .filter(|l| l["event"] == "end")
        .map(|l| {
            (
                l["protocol"].as_str().unwrap().to_owned(),
                l["uid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        closed.len() >= 4,
        "boot, episode, child, shutdown: {closed:?}"
    );
    for (protocol, uid) in &closed {
        let at = data.join("exec").join(protocol).join(uid);
        for f in ["start.json", "end.json"] {
            assert_eq!(json_file(&at.join(f))["uid"], uid.as_str());
        }
        let status = read(&format!("/rt/ops/{uid}/close/status"));
        assert!(status.contains("sts:"), "{uid}: {status}");
    }
    assert!(contents.beats.len() >= 20);
}

/// `--exec-keep 1` keeps only the newest closed execution (and every open
/// one), and the log lists nothing that was removed.
#[test]
fn retention_removes_only_old_closed_executions_and_their_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = cep(&[
        "run",
        "--beats",
        "30",
        "--shutdown",
        "--data-dir",
        d,
        "--exec-keep",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = exec_log(&data);
    let uids: std::collections::BTreeSet<&str> =
        log.iter().map(|l| l["uid"].as_str().unwrap()).collect();
    // The default world: boot and an episode close before shutdown, the
    // gate operation stays open.
    assert_eq!(uids, ["0-h0", "shdn"].into_iter().collect(), "{log:?}");
    assert!(data.join("exec/op/shdn/shdn/end.json").exists());
    assert!(data.join("exec/demo/gate/0-h0/start.json").exists());
    assert!(!data.join("exec/op/boot/boot").exists());
    assert!(!data.join("exec/op/ep/0-h1").exists());
    // Without retention everything stays.
    let all = dir.path().join("all");
    let out = cep(&[
        "run",
        "--beats",
        "30",
        "--shutdown",
        "--data-dir",
        all.to_str().unwrap(),
        "--exec-keep",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(all.join("exec/op/boot/boot/end.json").exists());
    assert!(all.join("exec/op/ep/0-h1/end.json").exists());
}

fn every_exec_json_parses(data: &Path) {
    let mut stack = vec![data.join("exec")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                json_file(&path);
            } else if path.file_name().is_some_and(|n| n == "log.jsonl") {
                let text = std::fs::read_to_string(&path).unwrap();
                for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|e| panic!("{}: {line:?}: {e}", path.display()));
                }
            }
        }
    }
}
