//! A damaged journal never costs an intact beat: only an incomplete last
//! frame is a torn tail (cut on recovery); every other damage — a flipped
//! bit that intact frames follow, a frame out of order or repeated, a bad
//! run header, a copied segment — is corruption, which `cep run` refuses,
//! `cep replay --verify` fails on, and only `--truncate-corrupt` cuts
//! (keeping a copy of what it removed).

use std::path::{Path, PathBuf};

use cep_host::cell::{Change, WorkTree};
use cep_host::journal::{self, codec, BeatEntry, Fsync, Journal, JournalConfig, RunHeader};
use cep_host::{Snapshot, Value};
use cep_sdk::flat;
use proptest::prelude::*;

/// Beats per run of the built journal, and its runs.
const RUN_BEATS: u64 = 60;
const RUNS: u64 = 2;

/// Writes a journal of two runs (the second resumed from the first's last
/// beat) of real trees and hashes, in segments of about `segment_bytes`.
/// Returns every beat written.
fn build(dir: &Path, segment_bytes: u64) -> Vec<BeatEntry> {
    let config = JournalConfig {
        fsync: Fsync::Never,
        segment_bytes,
    };
    let mut tree = Snapshot::empty();
    let mut all = Vec::new();
    for run in 0..RUNS {
        let first = run * RUN_BEATS;
        let header = RunHeader {
            first_beat: first,
            run: Some(run),
            genesis: (run > 0).then(|| (tree.beat(), tree.hash())),
            ..RunHeader::default()
        };
        let mut j = Journal::open(dir, config, &header).unwrap();
        for beat in first..first + RUN_BEATS {
            let changes = vec![Change::Put {
                path: cep_host::Path::parse(&format!("/data/n/{}", beat % 17)).unwrap(),
                value: Some(Value::text(&format!("beat {beat} {}", "x".repeat(40)))),
                sealed: false,
                log: None,
            }];
            let mut work = WorkTree::new(&tree);
            for c in &changes {
                work.apply(c).unwrap();
            }
            tree = work.commit(beat);
            let entry = BeatEntry {
                beat,
                changes,
                state_hash: tree.hash(),
                ..BeatEntry::default()
            };
            j.append(&entry).unwrap();
            all.push(entry);
        }
        j.sync().unwrap();
    }
    all
}

/// The byte ranges of every frame, per segment: (segment, start, end).
fn frames(dir: &Path) -> Vec<(PathBuf, usize, usize)> {
    let mut out = Vec::new();
    for seg in journal::segments(dir).unwrap() {
        let bytes = std::fs::read(&seg).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let len = flat::frame_len(&bytes[at..], &flat::Limits::default())
                .unwrap()
                .unwrap();
            out.push((seg.clone(), at, at + len));
            at += len;
        }
    }
    out
}

fn flip(path: &Path, byte: usize, bit: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[byte] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A tiny deterministic generator (SplitMix64) for seeded positions.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bit flips at 240 seeded positions — a third in run headers, a third in
/// the middle of the journal, a third in its last frames — of a journal of
/// several segments: a flip is either a torn tail (only when it hit the
/// last frame: nothing intact follows it) or corruption; recovery never
/// cuts an intact beat without being told to.
#[test]
fn no_bit_flip_loses_an_intact_beat_or_passes_unless_it_tore_the_last_frame() {
    let base = tempfile::tempdir().unwrap();
    let pristine = base.path().join("pristine");
    let beats = build(&pristine, 2_000);
    assert!(journal::segments(&pristine).unwrap().len() >= 4);
    let frames = frames(&pristine);
    let headers: Vec<_> = frames
        .iter()
        .filter(|(seg, start, _)| {
            let bytes = std::fs::read(seg).unwrap();
            u16::from_le_bytes([bytes[start + 6], bytes[start + 7]]) == codec::FRAME_HEADER
        })
        .cloned()
        .collect();
    assert_eq!(headers.len(), RUNS as usize);
    let tail = &frames[frames.len() - 4..];
    let last_frame = frames.last().unwrap().clone();
    let mut rng = Seeded(0x5eed_cafe);
    let mut torn = 0;
    for case in 0..240 {
        let (seg, start, end) = match case % 3 {
            0 => headers[rng.below(headers.len())].clone(),
            1 => frames[frames.len() / 4 + rng.below(frames.len() / 2)].clone(),
            _ => tail[rng.below(tail.len())].clone(),
        };
        let byte = start + rng.below(end - start);
        let bit = rng.below(8) as u8;
        let dir = base.path().join(format!("case-{case}"));
        copy_dir(&pristine, &dir);
        let seg = dir.join(seg.file_name().unwrap());
        flip(&seg, byte, bit);
        let what = format!("case {case}: bit {bit} of byte {byte} in {}", seg.display());
        let contents = journal::read_until_damage(&dir).unwrap();
        let hit_last = seg.file_name() == last_frame.0.file_name() && byte >= last_frame.1;
        match (&contents.corrupt, &contents.torn) {
            (Some(damage), _) => {
                // Corruption: refused by recovery, nothing cut.
                let before = std::fs::read(&seg).unwrap();
                let err = journal::recover(&dir).unwrap_err();
                assert!(err.to_string().contains("damaged"), "{what}: {err}");
                assert_eq!(std::fs::read(&seg).unwrap(), before, "{what}: nothing cut");
                assert!(
                    hit_last || damage.beats_after > 0,
                    "{what}: corruption before the end has intact beats after it: {damage}"
                );
            }
            (None, Some(_)) => {
                assert!(hit_last, "{what}: only the last frame can be a torn tail");
                torn += 1;
                let recovery = journal::recover(&dir).unwrap();
                assert_eq!(
                    recovery.last_beat,
                    Some(beats[beats.len() - 2].beat),
                    "{what}"
                );
            }
            (None, None) => panic!("{what}: a flipped bit went unnoticed"),
        }
        // Whatever was read is a prefix of what was written.
        for (read, written) in contents.beats.iter().zip(&beats) {
            assert_eq!(read, written, "{what}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        torn < 240 / 3,
        "most flips in the tail are corruption, not torn"
    );
}

/// The journal's frames, as bytes, in order, and their segments rejoined
/// into one: (segment name, frame bytes).
fn frame_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    frames(dir)
        .into_iter()
        .map(|(seg, start, end)| {
            let bytes = std::fs::read(&seg).unwrap();
            (
                seg.file_name().unwrap().to_string_lossy().into_owned(),
                bytes[start..end].to_vec(),
            )
        })
        .collect()
}

/// Writes frames back, each into its segment.
fn write_frames(dir: &Path, frames: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut segs: Vec<(String, Vec<u8>)> = Vec::new();
    for (seg, bytes) in frames {
        match segs.last_mut() {
            Some((name, all)) if name == seg => all.extend_from_slice(bytes),
            _ => segs.push((seg.clone(), bytes.clone())),
        }
    }
    for (name, bytes) in segs {
        let path = dir.join(&name);
        let mut old = std::fs::read(&path).unwrap_or_default();
        old.extend_from_slice(&bytes);
        std::fs::write(path, old).unwrap();
    }
}

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the journal's last segment at a byte offset (a crash).
    Cut(usize),
    /// Flip one bit anywhere.
    Flip(usize, u8),
    /// Repeat frame i right after itself.
    Duplicate(usize),
    /// Swap frames i and j.
    Swap(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0usize..1 << 20).prop_map(Damage::Cut),
        (0usize..1 << 20, 0u8..8).prop_map(|(b, bit)| Damage::Flip(b, bit)),
        (0usize..1 << 20).prop_map(Damage::Duplicate),
        (0usize..1 << 20, 0usize..1 << 20).prop_map(|(i, j)| Damage::Swap(i, j)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any cut, flip, duplicate or reorder: what is read is a prefix of what
    /// was written; a cut at a frame boundary reads clean and any other cut
    /// is a torn tail (never corruption); a duplicate or reorder is
    /// corruption; nothing but a torn tail loses a frame silently.
    #[test]
    fn damage_reads_a_prefix_and_only_a_crash_cut_is_a_torn_tail(d in damage()) {
        let base = tempfile::tempdir().unwrap();
        let pristine = base.path().join("p");
        let beats = build(&pristine, 3_000);
        let mut frames = frame_bytes(&pristine);
        let dir = base.path().join("d");
        let n = frames.len();
        let mut boundary_cut = false;
        match &d {
            Damage::Cut(at) => {
                let last = journal::segments(&pristine).unwrap().pop().unwrap();
                copy_dir(&pristine, &dir);
                let path = dir.join(last.file_name().unwrap());
                let len = std::fs::metadata(&path).unwrap().len() as usize;
                let at = at % len;
                let mut starts = 0;
                for (seg, bytes) in &frames {
                    if *seg == last.file_name().unwrap().to_string_lossy() {
                        boundary_cut |= starts == at;
                        starts += bytes.len();
                    }
                }
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(at as u64).unwrap();
            }
            Damage::Flip(at, bit) => {
                copy_dir(&pristine, &dir);
                let segs = journal::segments(&dir).unwrap();
                let seg = &segs[at % segs.len()];
                let len = std::fs::metadata(seg).unwrap().len() as usize;
                flip(seg, (at / segs.len()) % len, *bit);
            }
            Damage::Duplicate(i) => {
                let i = i % n;
                let copy = frames[i].clone();
                frames.insert(i + 1, copy);
                write_frames(&dir, &frames);
            }
            Damage::Swap(i, j) => {
                let (i, j) = (i % n, j % n);
                prop_assume!(i != j);
                let (a, b) = (frames[i].1.clone(), frames[j].1.clone());
                frames[i].1 = b;
                frames[j].1 = a;
                write_frames(&dir, &frames);
            }
        }
        let contents = journal::read_until_damage(&dir).unwrap();
        for (read, written) in contents.beats.iter().zip(&beats) {
            prop_assert_eq!(read, written);
        }
        prop_assert!(contents.beats.len() <= beats.len());
        match &d {
            Damage::Cut(_) => {
                prop_assert!(contents.corrupt.is_none(), "a crash cut is never corruption");
                prop_assert_eq!(contents.torn.is_none(), boundary_cut);
            }
            Damage::Flip(..) => {
                prop_assert!(contents.corrupt.is_some() || contents.torn.is_some());
            }
            Damage::Duplicate(_) | Damage::Swap(..) => {
                prop_assert!(contents.corrupt.is_some(), "{:?} is corruption", d);
            }
        }
        if contents.corrupt.is_none() {
            // Only the frames after a torn point are lost.
            prop_assert!(contents.beats.len() + 1 >= beats.len() || matches!(d, Damage::Cut(_)));
        }
    }
}

use cep_tests::plugins::{printed as text, run_cep as cep};

/// A real `cep run` journal of 300 beats with checkpoints at 100 and 200.
fn journaled_run(data: &Path) -> Vec<BeatEntry> {
    let out = cep(&[
        "run",
        "--beats",
        "300",
        "--data-dir",
        data.to_str().unwrap(),
        "--checkpoint-every",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    journal::read(&data.join("journal")).unwrap().beats
}

/// Flips one bit in the middle of the only segment of `data`.
fn flip_middle(data: &Path) -> (PathBuf, usize) {
    let seg = journal::segments(&data.join("journal")).unwrap()[0].clone();
    let len = std::fs::metadata(&seg).unwrap().len() as usize;
    // A byte inside the frame that holds the middle of the file.
    let frame = frames(&data.join("journal"))
        .into_iter()
        .find(|(_, start, end)| (*start..*end).contains(&(len / 3)))
        .unwrap();
    let byte = frame.1 + (frame.2 - frame.1) / 2;
    flip(&seg, byte, 3);
    (seg, byte)
}

/// The case: one flipped bit mid-segment. `cep replay --verify`
/// fails naming the damage, `cep run` refuses to resume (exit 2) and cuts
/// nothing, `cep inspect` shows the last beat before the damage and says
/// so; `--truncate-corrupt` cuts, keeping a copy, and the run resumes.
#[test]
fn a_flipped_bit_mid_segment_is_refused_everywhere_until_the_user_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let beats = journaled_run(&data);
    assert_eq!(beats.len(), 300);
    let (seg, byte) = flip_middle(&data);
    let seg_len = std::fs::metadata(&seg).unwrap().len();

    let out = cep(&["replay", "--verify", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("damaged"), "{said}");
    assert!(
        said.contains(&format!("at byte {}", frame_start(&seg, byte))),
        "{said}"
    );
    assert!(said.contains("intact beats"), "{said}");

    let out = cep(&["run", "--beats", "10", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("damaged") && said.contains("--truncate-corrupt"),
        "{said}"
    );
    assert!(said.contains(&seg.display().to_string()), "{said}");
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        seg_len,
        "nothing was cut"
    );

    let out = cep(&["inspect", data.to_str().unwrap(), "/"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    let damaged = journal::read_until_damage(&data.join("journal")).unwrap();
    let last_good = damaged.beats.last().unwrap().beat;
    assert!(last_good < 299);
    assert!(said.contains(&format!("beat={last_good} ")), "{said}");
    assert!(said.contains("last before the damage"), "{said}");

    let out = cep(&[
        "run",
        "--beats",
        "10",
        "--data-dir",
        data.to_str().unwrap(),
        "--truncate-corrupt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    // The damaged beat is not intact; every beat after it is.
    let deleted = 298 - last_good;
    assert!(
        said.contains(&format!("{deleted} intact beats deleted")),
        "{deleted}: {said}"
    );
    let kept = dir.path().join("data.cut-1");
    assert!(kept.join(seg.file_name().unwrap()).is_file(), "{said}");
    assert!(
        kept.join("checkpoints").read_dir().unwrap().count() >= 1,
        "checkpoints past the cut are kept aside"
    );
    let out = cep(&["replay", "--verify", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("verified {} beats", last_good + 1 + 10)),
        "{}",
        text(&out)
    );
}

/// The start of the frame holding `byte`.
fn frame_start(seg: &Path, byte: usize) -> usize {
    frames(seg.parent().unwrap())
        .into_iter()
        .find(|(s, start, end)| s == seg && (*start..*end).contains(&byte))
        .unwrap()
        .1
}

/// A flipped bit in the run header is corruption, not an empty journal:
/// the run refuses to restart from beat 0.
#[test]
fn a_flipped_bit_in_the_run_header_refuses_to_restart_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journaled_run(&data);
    let seg = journal::segments(&data.join("journal")).unwrap()[0].clone();
    flip(&seg, 30, 0);
    let out = cep(&["run", "--beats", "10", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("before any beat"), "{}", text(&out));
    let out = cep(&["replay", "--verify", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// Segment 0 saved again under a later name is a repeat, not a second run.
#[test]
fn a_copied_segment_is_corruption_not_another_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journaled_run(&data);
    let jdir = data.join("journal");
    let seg = journal::segments(&jdir).unwrap()[0].clone();
    std::fs::copy(&seg, jdir.join(format!("{:020}.seg", 300))).unwrap();
    let out = cep(&["replay", "--verify", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("named for beat 300"), "{}", text(&out));
    let out = cep(&["run", "--beats", "10", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// CRC-valid frames out of order or repeated are corruption.
#[test]
fn crc_valid_frames_out_of_order_or_repeated_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("p");
    build(&pristine, 1 << 30);
    let frames = frame_bytes(&pristine);
    let mut repeated = frames.clone();
    repeated.insert(10, frames[9].clone());
    write_frames(&dir.path().join("repeated"), &repeated);
    let mut swapped = frames.clone();
    swapped.swap(20, 21);
    write_frames(&dir.path().join("swapped"), &swapped);
    let mut second_header_lost = frames.clone();
    second_header_lost.remove(RUN_BEATS as usize + 1);
    write_frames(&dir.path().join("headless"), &second_header_lost);
    for (name, expect) in [
        ("repeated", "beat 8 where beat 9 must follow"),
        ("swapped", "beat 20 where beat 19 must follow"),
        ("headless", "of run 1 in run 0"),
    ] {
        let contents = journal::read_until_damage(&dir.path().join(name)).unwrap();
        let damage = contents.corrupt.unwrap_or_else(|| panic!("{name}"));
        assert!(damage.what.contains(expect), "{name}: {damage}");
        assert!(damage.beats_after > 0, "{name}: {damage}");
    }
    // A run header must name the next run.
    let mut wrong_run = frames.clone();
    let header_at = RUN_BEATS as usize + 1;
    let header = flat::decode(&wrong_run[header_at].1, &flat::Limits::default()).unwrap();
    let mut h = codec::read_header(&header).unwrap();
    h.run = Some(5);
    wrong_run[header_at].1 = flat::encode(&codec::header_frame(&h), Default::default());
    write_frames(&dir.path().join("wrong_run"), &wrong_run);
    let damage = journal::read_until_damage(&dir.path().join("wrong_run"))
        .unwrap()
        .corrupt
        .unwrap();
    assert!(damage.what.contains("run 5 where run 1"), "{damage}");
}

/// A beat whose recorded changes do not give its recorded hash (CRC-valid:
/// written so) fails `replay --verify`, which checks the change records as
/// well as the hash it recomputes.
#[test]
fn replay_checks_the_recorded_changes_against_the_recorded_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journaled_run(&data);
    let contents = journal::read(&data.join("journal")).unwrap();
    let out_dir = dir.path().join("edited");
    let (header, _) = &contents.runs[0];
    let mut j = Journal::open(&out_dir.join("journal"), JournalConfig::default(), header).unwrap();
    for mut beat in contents.beats {
        if beat.beat == 150 {
            beat.changes.push(Change::Put {
                path: cep_host::Path::parse("/data/forged").unwrap(),
                value: Some(Value::I64(1)),
                sealed: false,
                log: None,
            });
        }
        j.append(&beat).unwrap();
    }
    j.sync().unwrap();
    let out = cep(&["replay", "--verify", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("beat 150") && said.contains("change records"),
        "{said}"
    );
}

/// Start-up removes a checkpoint a crash left unfinished, and sets aside a
/// checkpoint of a beat the journal does not reach (never used).
#[test]
fn startup_removes_leftover_tmp_checkpoints_and_sets_aside_ones_past_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journaled_run(&data);
    let ckpts = data.join("checkpoints");
    std::fs::write(ckpts.join(format!("{:020}.tmp", 250)), b"half").unwrap();
    // A checkpoint "from the future": beat 5000's name on beat 299's tree.
    let newest = journal::checkpoint::list(&data).pop().unwrap().1;
    std::fs::copy(&newest, ckpts.join(format!("{:020}.ckpt", 5000))).unwrap();
    let out = cep(&["run", "--beats", "5", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("left unfinished by a crash"), "{said}");
    assert!(said.contains("checkpoint of beat 5000 is newer"), "{said}");
    assert!(!ckpts.join(format!("{:020}.tmp", 250)).exists());
    assert!(journal::checkpoint::list(&data)
        .iter()
        .all(|(b, _)| *b < 5000));
    let out = cep(&["replay", "--verify", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
