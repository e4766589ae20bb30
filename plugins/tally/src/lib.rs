//! `tally`: an example wasm organ written in Rust with `cep-sdk`.
//!
//! The code is the same as a native plugin's; built with
//! `cargo build -p cep-plugin-tally --target wasm32-unknown-unknown --release`
//! it is a sandboxed module (`cep_plugin_tally.wasm`).
//!
//! - `tally.ctor` (organ constructor): `/data/tally/count = 0`.
//! - `tally.add` (`tally/add`, payload: i64, default 1): adds to the count,
//!   records the beat, and emits `ping/pong` with the count each time it
//!   passes a multiple of ten (the `.wat` example `ping` handles it).
//! - `tally.put` (`store/put`): the same, for each item the native store
//!   organ puts — in the demo world, a wasm organ following a native one.
//! - `tally.burn` (`tally/burn`, payload: iterations): spins a hash for the
//!   given number of rounds and writes the result — given enough rounds it
//!   runs out of fuel, which stops it at the same instruction every run.
//! - `tally.keep` (`tally/keep`): remembers a number in the instance's own
//!   memory between calls and writes it (`/data/tally/kept`), showing that
//!   an instance keeps state until it is reset by a failure or a reload.
//! - `tally.job` (`tally/job`) starts an episode whose slices are
//!   `tally.step` (`tally/step`): three slices, one per beat, each
//!   recording the cells under `/data/tally`; the second takes an
//!   execution-document snapshot `half`; the third closes it `sts:ok`.

use std::sync::atomic::{AtomicI64, Ordering};

use cep_sdk::plugin::{Cx, EpisodeRequest, HostError, Plugin};
use cep_sdk::{EnzymeDescriptor, OrganDescriptor, Value};

const COUNT: &str = "/data/tally/count";

fn count(cx: &Cx<'_>) -> Result<i64, HostError> {
    Ok(cx.read(COUNT)?.and_then(|v| v.as_i64()).unwrap_or(0))
}

fn add(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let by = cx.payload().and_then(|v| v.as_i64()).unwrap_or(1);
    let before = count(cx)?;
    let after = before + by;
    cx.write(COUNT, after)?;
    cx.write("/data/tally/beat", cx.beat() as i64)?;
    if after / 10 > before / 10 {
        cx.emit("ping/pong", None, Some(Value::I64(after)))?;
    }
    Ok(())
}

fn burn(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let rounds = cx.payload().and_then(|v| v.as_i64()).unwrap_or(0).max(0) as u64;
    let mut x = cx.beat();
    for i in 0..rounds {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    cx.write("/data/tally/burn", x as i64)
}

/// Lives in the instance's memory, not in the tree.
static KEPT: AtomicI64 = AtomicI64::new(0);

fn keep(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let kept = KEPT.fetch_add(1, Ordering::Relaxed) + 1;
    cx.write("/data/tally/kept", kept)
}

fn job(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let mut request = EpisodeRequest::new("tally.step");
    request.signal = "tally/step".into();
    request.max_beats = 100;
    let eid = cx.ep_start(&request)?;
    cx.write("/data/tally/job/eid", eid.as_str())?;
    cx.write("/data/tally/job/steps", 0i64)
}

fn step(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let steps = cx
        .read("/data/tally/job/steps")?
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        + 1;
    cx.write("/data/tally/job/steps", steps)?;
    let cells = cx.children("/data/tally")?;
    cx.write("/data/tally/job/cells", cells.join(","))?;
    match steps {
        1 => cx.ep_yield(),
        2 => {
            cx.ep_snapshot("half")?;
            cx.ep_yield()
        }
        _ => cx.ep_close("sts:ok", &format!("{steps} steps")),
    }
}

fn build() -> Plugin {
    Plugin::new("tally", "0.1.0")
        .capability("write:/data/tally")
        .capability("emit:ping")
        .organ(OrganDescriptor::new("tally", "/data/tally").constructor("tally.ctor"))
        .enzyme(
            EnzymeDescriptor::new("tally.ctor", "organ/tally/ctor"),
            |cx: &mut Cx<'_>| cx.write(COUNT, 0i64),
        )
        .enzyme(EnzymeDescriptor::new("tally.add", "tally/add"), add)
        .enzyme(EnzymeDescriptor::new("tally.put", "store/put"), add)
        .enzyme(EnzymeDescriptor::new("tally.burn", "tally/burn"), burn)
        .enzyme(EnzymeDescriptor::new("tally.keep", "tally/keep"), keep)
        .enzyme(EnzymeDescriptor::new("tally.job", "tally/job"), job)
        .enzyme(EnzymeDescriptor::new("tally.step", "tally/step"), step)
}

cep_sdk::export_plugin!(build());
