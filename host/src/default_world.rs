//! The embedded default world that `cep run` uses without a configuration:
//! a small deterministic workload that exercises broadcast and bound
//! enzymes, before/after ordering, delayed emission, retries, write
//! conflicts and CEI facts, so its final hash pins down the kernel's
//! semantics end to end.

use cep_sdk::{EnzymeDescriptor, Name, Path, Value, Word};

use crate::beat::{EnzymeCx, Impulse, Runtime};
use crate::enzyme::Outcome;
use crate::episode::{EpisodeSpec, Profile};
use crate::ops::{self, OpSpec, OpStatus};

fn path(text: &str) -> Path {
    Path::parse(text).expect("static path")
}

/// Cells the workers spread over.
const CELLS: u64 = 16;
/// Work impulses emitted per beat.
const WORK_PER_BEAT: u64 = 8;
/// Hash rounds per work call: enough to make the work CPU-bound.
const WORK_ROUNDS: u32 = 64;

fn counter(cx: &EnzymeCx<'_>, at: &Path) -> i64 {
    cx.read(at).and_then(Value::as_i64).unwrap_or(0)
}

/// The beat at which the clock opens the gate the demo episode awaits.
const GATE_OPENS_AT: u64 = 20;

/// How many times the demo episode has reached `state` (from its dossier).
fn times_in(cx: &EnzymeCx<'_>, state: &str) -> usize {
    let Some(eid) = cx.episode() else { return 0 };
    ops::history(cx.snapshot(), eid)
        .iter()
        .filter(|(s, _)| s == state)
        .count()
}

/// Registers the default world's enzymes, starts its episode and seeds its
/// first impulse.
pub fn install(runtime: &mut Runtime) -> anyhow::Result<()> {
    // An operation the demo episode awaits; the clock opens it.
    let gate = runtime.op_start(OpSpec::new(path("demo/gate")));
    let gate_for_clock = gate.clone();
    // clock: counts beats and drives everything else.
    runtime.register(
        &EnzymeDescriptor::new("clock", "demo/tick").label("beat counter"),
        move |cx: &mut EnzymeCx<'_>| {
            let clock = path("/data/demo/clock");
            let now = counter(cx, &clock);
            if cx.beat() == GATE_OPENS_AT {
                cx.op_state(&gate_for_clock, "ist:open");
            }
            cx.write(&clock, now + 1).ok();
            cx.emit(Impulse::signal(path("demo/tick")));
            let cells = path("/data/demo/cells");
            for i in 0..WORK_PER_BEAT {
                let k = (cx.beat() * 3 + i) % CELLS;
                let target = cells.child(Name::from_index(k));
                cx.emit(
                    Impulse::targeted(path("demo/work"), target).with_payload(Value::I64(i as i64)),
                );
            }
            if cx.beat() % 10 == 9 {
                // Two writers for one cell next beat: a recorded conflict.
                let target = cells.child(Name::from_index((cx.beat() * 3) % CELLS));
                cx.emit(Impulse::targeted(path("demo/work"), target).with_payload(Value::I64(99)));
            }
            if cx.beat().is_multiple_of(7) {
                cx.emit_after(4, Impulse::signal(path("demo/slow")));
            }
            Outcome::Ok
        },
    )?;
    // worker: bound (propagating) on the cells, mixes its cell's value.
    runtime.register(
        &EnzymeDescriptor::new("worker", "demo/work").writes(&["/data/demo/cells"]),
        |cx: &mut EnzymeCx<'_>| {
            let Some(target) = cx.target().cloned() else {
                return Outcome::Fatal("demo/work needs a target".into());
            };
            let seed = cx.payload().and_then(Value::as_i64).unwrap_or(0);
            let current = counter(cx, &target);
            let mut state = blake3::hash(&[current.to_le_bytes(), seed.to_le_bytes()].concat());
            for _ in 0..WORK_ROUNDS {
                state = blake3::hash(state.as_bytes());
            }
            let mixed = i64::from_le_bytes(state.as_bytes()[..8].try_into().expect("8 bytes"));
            cx.write(&target, mixed).ok();
            Outcome::Ok
        },
    )?;
    // tally: runs after worker for the same impulse, counts work per cell.
    runtime.register(
        &EnzymeDescriptor::new("tally", "demo/work").after(&["worker"]),
        |cx: &mut EnzymeCx<'_>| {
            let Some(name) = cx.target().and_then(Path::last).cloned() else {
                return Outcome::Ok;
            };
            let at = path("/data/demo/tally").child(name);
            let n = counter(cx, &at);
            cx.write(&at, n + 1).ok();
            Outcome::Ok
        },
    )?;
    // slow: not ready on odd beats; the retry runs it on the next beat.
    runtime.register(
        &EnzymeDescriptor::new("slow", "demo/slow"),
        |cx: &mut EnzymeCx<'_>| {
            if cx.beat() % 2 == 1 {
                return Outcome::Retry;
            }
            cx.append(&path("/data/demo/slow"), Value::I64(cx.beat() as i64))
                .ok();
            Outcome::Ok
        },
    )?;
    // pipeline: an episode that yields three times, awaits the gate, then
    // records its result and closes.
    runtime.register(
        &EnzymeDescriptor::new("pipeline", "demo/pipeline/slice"),
        move |cx: &mut EnzymeCx<'_>| {
            let step = path("/data/demo/pipeline/steps");
            cx.append(&step, cx.beat() as i64).ok();
            if times_in(cx, "ist:yield") < 3 {
                cx.ep_yield().ok();
            } else if times_in(cx, "ist:await") == 0 {
                cx.ep_await(&gate, "ist:open", 0).ok();
            } else {
                cx.write(&path("/data/demo/pipeline/result"), "gate passed")
                    .ok();
                cx.ep_close(OpStatus::Ok, "pipeline finished").ok();
            }
            Outcome::Ok
        },
    )?;
    runtime.ep_start(EpisodeSpec::new("pipeline", Profile::Ro));
    let cells = path("/data/demo/cells");
    runtime.bind(&cells, &Name::new("worker")?, true);
    runtime.bind(&cells, &Name::new("tally")?, true);
    runtime.inject(&Word::new("cli")?, Impulse::signal(path("demo/tick")))?;
    Ok(())
}
