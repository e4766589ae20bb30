//! Determinism: random enzyme sets, bindings and impulse streams give the
//! same hash at every beat on `cooperative` and on `threaded` with 1, 2 and
//! 8 workers.

use proptest::prelude::*;

use cep_host::{
    Config, EnzymeCx, EnzymeDescriptor, Hash, Impulse, Name, Outcome, Path, Runtime, Value, Word,
};
use cep_tests::{backends, p, quiet_deliberate_panics};

const SIGNALS: [&str; 5] = ["a", "b", "a/x", "b/y", "a/x/z"];
const PATTERNS: [&str; 7] = ["a", "b", "a/x", "a/*", "**", "b/y", "*/x/**"];
const TARGETS: [&str; 6] = [
    "/data/p",
    "/data/p/q",
    "/data/p/q/r",
    "/data/s",
    "/data/s/t",
    "/data/u",
];

#[derive(Debug, Clone)]
struct EnzymePlan {
    pattern: usize,
    prefix: bool,
    before: Vec<usize>,
    after: Vec<usize>,
    stateful: bool,
    seed: u64,
}

#[derive(Debug, Clone)]
struct Input {
    beat: u64,
    source: u8,
    signal: usize,
    target: Option<usize>,
    ttl: i64,
}

#[derive(Debug, Clone)]
struct World {
    enzymes: Vec<EnzymePlan>,
    bindings: Vec<(usize, usize, bool, bool)>,
    inputs: Vec<Input>,
}

fn enzyme_plan(count: usize) -> impl Strategy<Value = EnzymePlan> {
    (
        0..PATTERNS.len(),
        any::<bool>(),
        prop::collection::vec(0..count, 0..2),
        prop::collection::vec(0..count, 0..2),
        prop::bool::weighted(0.2),
        any::<u64>(),
    )
        .prop_map(
            |(pattern, prefix, before, after, stateful, seed)| EnzymePlan {
                pattern,
                prefix,
                before,
                after,
                stateful,
                seed,
            },
        )
}

fn world() -> impl Strategy<Value = World> {
    (2usize..9).prop_flat_map(|count| {
        (
            prop::collection::vec(enzyme_plan(count), count),
            prop::collection::vec(
                (
                    0..TARGETS.len(),
                    0..count,
                    any::<bool>(),
                    prop::bool::weighted(0.2),
                ),
                0..8,
            ),
            prop::collection::vec(
                (
                    0u64..50,
                    0u8..3,
                    0..SIGNALS.len(),
                    prop::option::of(0..TARGETS.len()),
                    0i64..4,
                )
                    .prop_map(|(beat, source, signal, target, ttl)| Input {
                        beat,
                        source,
                        signal,
                        target,
                        ttl,
                    }),
                1..40,
            ),
        )
            .prop_map(|(enzymes, bindings, inputs)| World {
                enzymes,
                bindings,
                inputs,
            })
    })
}

fn enzyme_name(i: usize) -> String {
    format!("e{i}")
}

/// A deterministic enzyme whose behaviour is drawn from `seed` and what it
/// reads: writes (conflicting ones included), appends, delayed emissions,
/// retries, fatal outcomes and panics.
fn behaviour(seed: u64) -> impl Fn(&mut EnzymeCx<'_>) -> Outcome + Send + Sync + 'static {
    move |cx: &mut EnzymeCx<'_>| {
        let target_value = cx
            .target()
            .and_then(|t| cx.read(t))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(&cx.beat().to_le_bytes());
        h.update(cx.signal().to_string().as_bytes());
        h.update(
            cx.target()
                .map(Path::to_string)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update(target_value.as_bytes());
        h.update(
            cx.payload()
                .map(|v| v.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap());
        let out = p("/data/out").child(Name::from_index(v % 12));
        cx.write(&out, v as i64).unwrap();
        if let Some(target) = cx.target().cloned() {
            cx.write(&target, Value::I64((v >> 8) as i64)).unwrap();
        }
        if v % 5 == 0 {
            cx.append(&p("/data/log"), Value::from(cx.enzyme().to_string()))
                .unwrap();
        }
        let ttl = cx.payload().and_then(Value::as_i64).unwrap_or(0);
        if ttl > 0 && v % 2 == 0 {
            let signal = p(SIGNALS[(v >> 3) as usize % SIGNALS.len()]);
            let impulse = match (v >> 7) % 7 {
                6 => Impulse::signal(signal),
                t => Impulse::targeted(signal, p(TARGETS[t as usize % TARGETS.len()])),
            };
            cx.emit_after(
                ((v >> 11) % 3) as u32,
                impulse.with_payload(Value::I64(ttl - 1)),
            );
        }
        match v % 97 {
            0..=4 => Outcome::Retry,
            5..=7 => Outcome::Fatal(format!("drawn fatal {v}")),
            8 => panic!("deliberate panic {v}"),
            _ => Outcome::Ok,
        }
    }
}

fn build(world: &World, config: Config) -> Runtime {
    let mut rt = Runtime::new(config).unwrap();
    for (i, plan) in world.enzymes.iter().enumerate() {
        let mut d = EnzymeDescriptor::new(&enzyme_name(i), PATTERNS[plan.pattern]);
        if plan.prefix {
            d = d.prefix();
        }
        d.before = plan.before.iter().map(|&j| enzyme_name(j)).collect();
        d.after = plan.after.iter().map(|&j| enzyme_name(j)).collect();
        d.flags.stateful = plan.stateful;
        // Cycles and self-references are refused; the same ones on every backend.
        let _ = rt.register(&d, behaviour(plan.seed));
    }
    for &(target, enzyme, propagate, unbind) in &world.bindings {
        let name = Name::new(&enzyme_name(enzyme)).unwrap();
        if unbind {
            rt.unbind(&p(TARGETS[target]), &name);
        } else {
            rt.bind(&p(TARGETS[target]), &name, propagate);
        }
    }
    rt
}

fn run(world: &World, config: Config, beats: u64) -> Vec<Hash> {
    let mut rt = build(world, config);
    let sources = ["adc", "net", "ui"].map(|s| Word::new(s).unwrap());
    let mut hashes = Vec::new();
    for beat in 0..beats {
        for input in world.inputs.iter().filter(|i| i.beat == beat) {
            let signal = p(SIGNALS[input.signal]);
            let impulse = match input.target {
                Some(t) => Impulse::targeted(signal, p(TARGETS[t])),
                None => Impulse::signal(signal),
            };
            rt.inject(
                &sources[input.source as usize],
                impulse.with_payload(Value::I64(input.ttl)),
            )
            .unwrap();
        }
        hashes.push(rt.step().unwrap().state_hash);
    }
    hashes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_beat_hash_is_identical_across_executors_and_worker_counts(world in world()) {
        quiet_deliberate_panics();
        let mut reference: Option<(String, Vec<Hash>)> = None;
        for (label, config) in backends() {
            let hashes = run(&world, config, 60);
            match &reference {
                None => reference = Some((label, hashes)),
                Some((first, expected)) => {
                    for (beat, (a, b)) in expected.iter().zip(&hashes).enumerate() {
                        prop_assert_eq!(a, b, "beat {} differs between {} and {}", beat, first, label);
                    }
                }
            }
        }
    }
}

#[test]
fn a_busy_world_is_identical_across_executors() {
    // A fixed, larger world so the threaded backend really splits the agenda.
    quiet_deliberate_panics();
    let world = World {
        enzymes: (0..8)
            .map(|i| EnzymePlan {
                pattern: i % PATTERNS.len(),
                prefix: i % 3 == 0,
                before: vec![(i + 1) % 8],
                after: vec![],
                stateful: i == 4,
                seed: i as u64 * 7919,
            })
            .collect(),
        bindings: vec![
            (0, 1, true, false),
            (3, 2, true, false),
            (1, 5, false, true),
        ],
        inputs: (0..400)
            .map(|i| Input {
                beat: i % 20,
                source: (i % 3) as u8,
                signal: (i as usize * 7) % SIGNALS.len(),
                target: (i % 4 != 0).then_some(i as usize % TARGETS.len()),
                ttl: 3,
            })
            .collect(),
    };
    let runs: Vec<(String, Vec<Hash>)> = backends()
        .into_iter()
        .map(|(label, config)| (label, run(&world, config, 60)))
        .collect();
    for (label, hashes) in &runs[1..] {
        assert_eq!(hashes, &runs[0].1, "{label} differs from {}", runs[0].0);
    }
    let again = run(&world, Config::default(), 60);
    assert_eq!(again, runs[0].1, "a second cooperative run differs");
}
