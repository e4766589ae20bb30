//! Lua 5.4 plugins (mlua, Lua vendored): scripts that return their
//! descriptor, run in a sandboxed VM shared by the world.
//!
//! A Lua plugin is a `.lua` file, or a folder holding `init.lua`. The script
//! runs once at load (in a throwaway VM) to read its descriptor, and once in
//! the world's VM at install; it returns a table:
//!
//! ```lua
//! return {
//!   name = "greeter", version = "0.1.0",
//!   capabilities = { "write:/data/greeter", "emit:greet" },
//!   enzymes = {
//!     { name = "greet.hello", signal = "greet/hello",
//!       run = function(payload, target) cep.write("/data/greeter/last", payload) end },
//!   },
//! }
//! ```
//!
//! **One VM per world.** Every Lua plugin of a runtime lives in one VM
//! ([`LuaWorld`]), each in its own environment. The VM is one thread's at a
//! time: its enzymes share the executor lane `"lua"`, so even the threaded
//! executor runs them one after another in agenda order (other enzymes run
//! in parallel meanwhile). Calls in agenda order make whatever a script
//! keeps between calls deterministic too.
//!
//! **Sandbox** (`prelude.lua`): no `io`, `os`, `debug`, `package`,
//! `require`, `dofile`, `loadfile`, `load` (so no binary chunks),
//! `string.dump`, `collectgarbage`, `print` or `next`; `pairs` walks keys in
//! sorted order (Lua's own order follows per-VM random string hashes);
//! `tostring`, `string.format` and error objects never render an address;
//! `math.random` is deterministic: reseeded from the beat number at the
//! VM's first call of each beat, drawn in agenda order. Each plugin has its
//! own copies of the library tables, and `getmetatable("")` gives it a view
//! of its own `string` table: string methods always reach the library, so
//! no plugin can change another's strings. `__gc` finalizers are refused
//! (they would run outside any call).
//!
//! **Limits**: an instruction budget per call and per script load
//! (`lua_budget`, counted by a hook every 1,000 instructions). Library work
//! that grows with its arguments is charged to the same budget: pattern
//! matching step by step (`strlib`, a port of Lua's matcher), and copying,
//! scanning and building strings and tables at one unit per 32 bytes or
//! per element. Past the budget every hook and every charge raises the
//! stop again, and the sandbox's `pcall`, `xpcall` and `coroutine.resume`
//! pass it on, so neither a loop in a callback from C (a sort comparator, a
//! metamethod, a message handler) nor a `pcall` loop can outlive it: the
//! call is `fatal` with a `lua:budget` fact. A memory cap for the VM
//! (`lua_memory_max`) → `lua:memory`; host errors reach a script as Lua
//! strings (capped at 1 KiB), so they count against the cap too. The
//! collector never runs on its own: a fixed step (`lua_gc_step_kb`) runs
//! after every beat, so collection work is the same on every run. A Lua
//! error is a `fatal` outcome naming the script, line and message, with a
//! `lua:error` fact; the VM stays usable.

mod api;
mod strlib;

use std::ffi::c_void;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cep_sdk::descriptor::MatchKind;
use cep_sdk::{AbiVersion, EnzymeDescriptor, PluginDescriptor, PluginKind};
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, VmState};

use super::api::{Call, PluginCtx};
use super::LoadError;
use crate::cei::Severity;
use crate::config::Config;
use crate::enzyme::EnzymeCx;
use crate::enzyme::{Enzyme, Outcome};

/// The executor lane every Lua enzyme runs in.
pub const LANE: &str = "lua";

/// Instructions between two budget checks.
const HOOK_STEP: u32 = 1_000;

/// The script of a folder plugin.
const INIT: &str = "init.lua";

/// The script a Lua plugin file or folder runs.
pub fn script_path(path: &FsPath) -> Option<PathBuf> {
    if path.is_dir() {
        let init = path.join(INIT);
        return init.is_file().then_some(init);
    }
    (path.extension().and_then(|e| e.to_str()) == Some("lua")).then(|| path.to_owned())
}

/// A Lua plugin's source, read at load.
pub struct LuaScript {
    /// The chunk name in messages: the file name (`greeter.lua`) or
    /// `<folder>/init.lua`, never the install path, which must not reach
    /// the state.
    chunk: String,
    source: String,
    /// Enzymes the script declares (the descriptor adds the delay runner).
    declared: usize,
}

/// The VM limits of a world.
#[derive(Debug, Clone, Copy)]
pub struct LuaLimits {
    pub budget: u64,
    pub memory: usize,
    pub gc_step_kb: u32,
}

impl LuaLimits {
    pub fn of(config: &Config) -> Self {
        LuaLimits {
            budget: config.lua_budget,
            memory: config.lua_memory_max,
            gc_step_kb: config.lua_gc_step_kb,
        }
    }
}

/// Opens the Lua plugin at `path` (a `.lua` file or a folder with
/// `init.lua`) and reads its descriptor (not yet validated).
pub fn open(path: &FsPath) -> Result<(Arc<LuaScript>, PluginDescriptor), LoadError> {
    let file = script_path(path).ok_or_else(|| {
        LoadError::Open(format!(
            "not a Lua plugin (a .lua file or a folder with {INIT})"
        ))
    })?;
    let source = std::fs::read_to_string(&file).map_err(|e| LoadError::Open(e.to_string()))?;
    let chunk = if path.is_dir() {
        format!("{}/{INIT}", file_name(path))
    } else {
        file_name(path)
    };
    let mut script = LuaScript {
        chunk,
        source,
        declared: 0,
    };
    let vm =
        Vm::new(LuaLimits::of(&Config::default())).map_err(|e| LoadError::Init(e.to_string()))?;
    let (descriptor, functions) = vm.evaluate(&script)?;
    script.declared = functions.len();
    Ok((Arc::new(script), complete(descriptor)))
}

fn file_name(path: &FsPath) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The name of the enzyme that runs a plugin's `cep.delay` callbacks.
fn delay_enzyme(plugin: &str) -> String {
    format!("lua:{plugin}:delay")
}

/// The signal of a plugin's `cep.delay` impulses.
fn delay_signal(plugin: &str) -> String {
    format!("lua/{plugin}/delay")
}

// ---------------------------------------------------------------------------
// The VM.

/// What the `cep` functions reach during a call.
struct Slot {
    /// The running call (`*mut LuaCall`), or null between calls.
    call: AtomicPtr<c_void>,
    /// Instructions used by the running call (or script load), with the
    /// library work charged to it.
    used: AtomicU64,
    budget: AtomicU64,
    exhausted: AtomicBool,
}

impl Slot {
    /// Starts counting for a new call or script load.
    fn start(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.exhausted.store(false, Ordering::Relaxed);
    }

    /// Adds `units` of work; past the budget the call is over: this and
    /// every later charge fail, and no `pcall` can catch that.
    fn charge(&self, units: u64) -> mlua::Result<()> {
        // One thread at a time holds the VM, so load + store is enough.
        let used = self.used.load(Ordering::Relaxed).saturating_add(units);
        self.used.store(used, Ordering::Relaxed);
        let budget = self.budget.load(Ordering::Relaxed);
        if used <= budget && !self.exhausted.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.exhausted.store(true, Ordering::Relaxed);
        Err(mlua::Error::runtime(format!(
            "lua:budget: more than {budget} instructions"
        )))
    }
}

/// One VM with the sandbox installed.
struct Vm {
    lua: Lua,
    slot: Arc<Slot>,
    environment: Function,
    seed: Function,
    /// The beat `math.random` was last seeded for.
    seeded: Option<u64>,
}

/// A Lua plugin installed in a world (one entry per version).
struct Installed {
    name: String,
    /// The declared enzymes' `run` functions.
    functions: Vec<Function>,
    /// The plugin's table of pending `cep.delay` callbacks, by id.
    delayed: Table,
    /// The next `cep.delay` id (ids are given in call order, which is
    /// agenda order).
    next_delay: i64,
}

impl Vm {
    fn new(limits: LuaLimits) -> mlua::Result<Self> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
        let lua = Lua::new_with(libs, LuaOptions::default())?;
        let slot = Arc::new(Slot {
            call: AtomicPtr::new(std::ptr::null_mut()),
            used: AtomicU64::new(0),
            budget: AtomicU64::new(limits.budget),
            exhausted: AtomicBool::new(false),
        });
        let host = host_table(&lua, &slot, limits.memory)?;
        let (environment, seed): (Function, Function) = lua
            .load(include_str!("prelude.lua"))
            .set_name("=cep-prelude")
            .call(host)?;
        let hook_slot = slot.clone();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_STEP),
            move |_, _| {
                // Past the budget every hook raises the error again, and the
                // sandbox's pcall, xpcall and coroutine.resume pass it on,
                // so the script cannot catch its way past it, in a callback
                // from C (a sort comparator, a metamethod) as anywhere.
                hook_slot.charge(HOOK_STEP as u64)?;
                Ok(VmState::Continue)
            },
        )?;
        lua.set_memory_limit(limits.memory)?;
        lua.gc_stop();
        Ok(Vm {
            lua,
            slot,
            environment,
            seed,
            seeded: None,
        })
    }

    /// Runs `script` in a fresh environment and reads the descriptor it
    /// returns; the functions are the declared enzymes' `run`, in order.
    fn evaluate(&self, script: &LuaScript) -> Result<(PluginDescriptor, Vec<Function>), LoadError> {
        let cep = api::table(&self.lua, &self.slot).map_err(|e| LoadError::Init(e.to_string()))?;
        // `cep.enzyme{...}` declares an enzyme while the script loads, as an
        // alternative to listing it in the returned table.
        let registered = self
            .lua
            .create_table()
            .map_err(|e| LoadError::Init(e.to_string()))?;
        let declare = {
            let (registered, slot) = (registered.clone(), self.slot.clone());
            self.lua.create_function(move |lua, enzyme: mlua::Value| {
                let result = if !slot.call.load(Ordering::Acquire).is_null() {
                    Err(mlua::Error::runtime(
                        "cep.enzyme works only while the script loads",
                    ))
                } else {
                    match enzyme {
                        mlua::Value::Table(t) => registered.raw_push(t),
                        other => Err(mlua::Error::runtime(format!(
                            "cep.enzyme takes an enzyme table, not a {}",
                            other.type_name()
                        ))),
                    }
                };
                api::protocol(lua, result.map(|()| mlua::Value::Nil))
            })
        };
        declare
            .and_then(|f| cep.set("enzyme", f))
            .map_err(|e| LoadError::Init(e.to_string()))?;
        let env: Table = self
            .environment
            .call(cep)
            .map_err(|e| LoadError::Init(e.to_string()))?;
        let chunk = self
            .lua
            .load(&script.source)
            .set_name(format!("@{}", script.chunk))
            .set_mode(mlua::ChunkMode::Text)
            .set_environment(env)
            .into_function()
            .map_err(|e| script_error(&script.chunk, &e))?;
        self.slot.start();
        let returned = chunk.call::<mlua::Value>(());
        if self.slot.exhausted.load(Ordering::Relaxed) {
            return Err(LoadError::Init(format!(
                "{}: lua:budget: the script ran more than {} instructions while it loaded",
                script.chunk,
                self.slot.budget.load(Ordering::Relaxed)
            )));
        }
        let returned = returned.map_err(|e| script_error(&script.chunk, &e))?;
        let mlua::Value::Table(table) = returned else {
            return Err(LoadError::Descriptor(format!(
                "{} must return its descriptor table, not a {}",
                script.chunk,
                returned.type_name()
            )));
        };
        descriptor::read(&table, &registered).map_err(LoadError::Descriptor)
    }

    /// Seeds `math.random` for `beat` once per beat.
    fn seed_for(&mut self, beat: u64) -> mlua::Result<()> {
        if self.seeded != Some(beat) {
            self.seed.call::<()>(beat as i64)?;
            self.seeded = Some(beat);
        }
        Ok(())
    }
}

/// A load-time script error: a syntax error names file and line.
fn script_error(chunk: &str, e: &mlua::Error) -> LoadError {
    match e {
        mlua::Error::SyntaxError { message, .. } => {
            let line = line_of(message, chunk);
            LoadError::Syntax {
                script: chunk.to_owned(),
                line,
                message: first_line(message),
            }
        }
        other => LoadError::Init(format!("{chunk}: {}", first_line(&other.to_string()))),
    }
}

/// The line number in a Lua message `chunk:LINE: text`.
fn line_of(message: &str, chunk: &str) -> u32 {
    message
        .find(&format!("{chunk}:"))
        .and_then(|at| {
            message[at + chunk.len() + 1..]
                .split(':')
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

mod descriptor;

// ---------------------------------------------------------------------------
// The world's VM.

/// The Lua VM of one world (one runtime), shared by its Lua plugins.
pub struct LuaWorld {
    vm: Mutex<WorldVm>,
    gc_step_kb: u32,
}

struct WorldVm {
    vm: Vm,
    installed: Vec<Installed>,
}

impl LuaWorld {
    pub fn new(limits: LuaLimits) -> Result<Arc<Self>, String> {
        let vm = Vm::new(limits).map_err(|e| e.to_string())?;
        Ok(Arc::new(LuaWorld {
            vm: Mutex::new(WorldVm {
                vm,
                installed: Vec::new(),
            }),
            gc_step_kb: limits.gc_step_kb,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, WorldVm> {
        // A panic while the VM was held cannot leave Lua's state torn
        // (mlua catches panics at every boundary).
        self.vm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluates `script` in this world and returns one enzyme per entry of
    /// `descriptor.enzymes` (the declared ones, then the delay runner).
    pub fn install(
        self: &Arc<Self>,
        script: &LuaScript,
        descriptor: &PluginDescriptor,
        plugin: Arc<PluginCtx>,
    ) -> Result<Vec<Arc<dyn Enzyme>>, String> {
        let mut world = self.lock();
        let (again, functions) = world.vm.evaluate(script).map_err(|e| e.to_string())?;
        let mut expected = again;
        expected.enzymes.push(delay_descriptor(&descriptor.name));
        if expected.enzymes != descriptor.enzymes || expected.organs != descriptor.organs {
            return Err(format!(
                "{} returned a different descriptor the second time it ran",
                script.chunk
            ));
        }
        // A new version of a plugin (a reload) takes over the callbacks its
        // predecessor scheduled with cep.delay, and its id counter.
        let previous = world
            .installed
            .iter()
            .rev()
            .find(|i| i.name == descriptor.name);
        let (delayed, next_delay) = match previous {
            Some(p) => (p.delayed.clone(), p.next_delay),
            None => (world.vm.lua.create_table().map_err(|e| e.to_string())?, 0),
        };
        let index = world.installed.len();
        world.installed.push(Installed {
            name: descriptor.name.clone(),
            functions,
            delayed,
            next_delay,
        });
        let mut out: Vec<Arc<dyn Enzyme>> = (0..script.declared)
            .map(|i| {
                Arc::new(LuaEnzyme {
                    world: self.clone(),
                    plugin: plugin.clone(),
                    index,
                    run: Run::Declared(i),
                }) as Arc<dyn Enzyme>
            })
            .collect();
        out.push(Arc::new(LuaEnzyme {
            world: self.clone(),
            plugin,
            index,
            run: Run::Delayed,
        }));
        Ok(out)
    }

    /// The collector's fixed step after a beat.
    pub fn collect(&self) {
        let world = self.lock();
        if let Err(e) = world.vm.lua.gc_step_kbytes(self.gc_step_kb as i32) {
            tracing::warn!("lua collector step failed: {e}");
        }
    }
}

/// The delay runner every Lua plugin gets.
fn delay_descriptor(plugin: &str) -> EnzymeDescriptor {
    let mut d = EnzymeDescriptor::new(&delay_enzyme(plugin), &delay_signal(plugin))
        .label("runs the plugin's cep.delay callbacks");
    d.match_kind = MatchKind::Exact;
    d
}

/// Adds the delay runner to a script's descriptor.
fn complete(mut descriptor: PluginDescriptor) -> PluginDescriptor {
    let delay = delay_descriptor(&descriptor.name);
    descriptor.enzymes.push(delay);
    descriptor
}

// ---------------------------------------------------------------------------
// Enzymes.

enum Run {
    /// The `run` function of declared enzyme `i`.
    Declared(usize),
    /// The delay runner: calls the callback the payload names.
    Delayed,
}

struct LuaEnzyme {
    world: Arc<LuaWorld>,
    plugin: Arc<PluginCtx>,
    /// Index of the plugin in the world.
    index: usize,
    run: Run,
}

/// What `Slot::call` points to during a call.
pub(crate) struct LuaCall<'c, 'a> {
    pub call: Call<'c, 'a>,
    /// The plugin's `cep.delay` table and next id.
    delayed: &'c Table,
    next_delay: &'c mut i64,
}

/// Clears the slot when the call ends, however it ends.
struct Enter<'s>(&'s Slot);

impl Drop for Enter<'_> {
    fn drop(&mut self) {
        self.0.call.store(std::ptr::null_mut(), Ordering::Release);
    }
}

impl Enzyme for LuaEnzyme {
    fn call(&self, cx: &mut EnzymeCx<'_>) -> Outcome {
        let mut guard = self.world.lock();
        let world = &mut *guard;
        let vm = &mut world.vm;
        let Installed {
            functions,
            delayed,
            next_delay,
            ..
        } = &mut world.installed[self.index];
        let beat = cx.beat();
        let prepared = (|| -> mlua::Result<Option<Function>> {
            vm.seed_for(beat)?;
            Ok(match self.run {
                Run::Declared(_) => None,
                Run::Delayed => {
                    let id = cx.payload().and_then(|v| v.as_i64()).unwrap_or(-1);
                    let f: Option<Function> = delayed.get(id)?;
                    delayed.set(id, mlua::Value::Nil)?;
                    match f {
                        Some(f) => Some(f),
                        None => {
                            return Err(mlua::Error::runtime(format!("no cep.delay callback {id}")))
                        }
                    }
                }
            })
        })();
        let callback = match prepared {
            Ok(callback) => callback,
            Err(e) => {
                return Outcome::Fatal(format!(
                    "plugin {}: {}",
                    self.plugin.name,
                    first_line(&e.to_string())
                ))
            }
        };
        let function = match (&self.run, &callback) {
            (Run::Declared(i), _) => &functions[*i],
            (Run::Delayed, Some(f)) => f,
            (Run::Delayed, None) => unreachable!("a delayed call has its callback"),
        };
        let mut state = LuaCall {
            call: Call::new(cx, &self.plugin),
            delayed,
            next_delay,
        };
        let slot = &vm.slot;
        slot.start();
        slot.call.store(
            &mut state as *mut LuaCall<'_, '_> as *mut c_void,
            Ordering::Release,
        );
        let result = {
            let _enter = Enter(slot);
            let args = match self.run {
                Run::Declared(_) => api::call_args(&vm.lua, &state.call),
                Run::Delayed => Ok(mlua::MultiValue::new()),
            };
            args.and_then(|args| function.call::<mlua::MultiValue>(args))
        };
        let exhausted = slot.exhausted.load(Ordering::Relaxed);
        let enzyme = state.call.enzyme().to_owned();
        let plugin = &self.plugin.name;
        let fail = |state: &mut LuaCall<'_, '_>, topic: &str, message: String| {
            state.call.cx.cei(
                Severity::Crit,
                topic,
                &format!("plugin {plugin}: enzyme {enzyme}: {message}"),
                None,
            );
            Outcome::Fatal(format!(
                "plugin {plugin}: enzyme {enzyme}: {topic}: {message}"
            ))
        };
        if exhausted {
            let budget = slot.budget.load(Ordering::Relaxed);
            return fail(
                &mut state,
                "lua:budget",
                format!("more than {budget} instructions"),
            );
        }
        match result {
            Ok(values) => outcome(values, |message| fail(&mut state, "lua:error", message)),
            Err(e) => {
                let topic = if is_memory(&e) {
                    "lua:memory"
                } else {
                    "lua:error"
                };
                fail(&mut state, topic, error_message(&e))
            }
        }
    }

    fn lane(&self) -> Option<&'static str> {
        Some(LANE)
    }
}

/// What a `run` function's return values mean: nothing or `true` → ok;
/// `"retry"` → retry; `false[, message]` → fatal.
fn outcome(values: mlua::MultiValue, mut fatal: impl FnMut(String) -> Outcome) -> Outcome {
    let mut values = values.into_iter();
    match values.next() {
        None | Some(mlua::Value::Nil) | Some(mlua::Value::Boolean(true)) => Outcome::Ok,
        Some(mlua::Value::String(s)) if s.as_bytes().as_ref() == b"retry" => Outcome::Retry,
        Some(mlua::Value::Boolean(false)) => {
            let message = match values.next() {
                Some(mlua::Value::String(s)) => s.to_string_lossy(),
                _ => "the enzyme returned false".to_owned(),
            };
            fatal(message)
        }
        Some(other) => Outcome::Fatal(format!(
            "an enzyme returns nothing, true, \"retry\" or false, not a {}",
            other.type_name()
        )),
    }
}

fn is_memory(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory(cause),
        _ => false,
    }
}

/// The message of a Lua error without its traceback: `script:line: text`.
fn error_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => error_message(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => first_line(m),
        other => first_line(&other.to_string()),
    }
}

/// The host's side of the prelude: the budget, and the library functions
/// whose work is charged to it (`strlib`).
fn host_table(lua: &Lua, slot: &Arc<Slot>, memory_max: usize) -> mlua::Result<Table> {
    let host = lua.create_table()?;
    let s = slot.clone();
    host.set(
        "over",
        lua.create_function(move |_, ()| Ok(s.exhausted.load(Ordering::Relaxed)))?,
    )?;
    let s = slot.clone();
    host.set(
        "charge",
        lua.create_function(move |_, units: mlua::Value| s.charge(units_of(&units)))?,
    )?;
    let s = slot.clone();
    host.set(
        "settle",
        lua.create_function(move |_, values: mlua::MultiValue| {
            let bytes: u64 = values
                .iter()
                .map(|v| match v {
                    mlua::Value::String(t) => t.as_bytes().len() as u64,
                    _ => 0,
                })
                .sum();
            s.charge(values.len() as u64 + bytes / strlib::BYTES_PER_UNIT)?;
            Ok(values)
        })?,
    )?;
    for (name, find) in [("find", true), ("match", false)] {
        let s = slot.clone();
        host.set(
            name,
            lua.create_function(move |lua, args| {
                let charge = |n| s.charge(n);
                strlib::find(lua, &charge, args, find)
            })?,
        )?;
    }
    let s = slot.clone();
    host.set(
        "gmatch",
        lua.create_function(move |lua, args| {
            let s = s.clone();
            strlib::gmatch(lua, Arc::new(move |n| s.charge(n)), args)
        })?,
    )?;
    let s = slot.clone();
    host.set(
        "gsub",
        lua.create_function(move |lua, args| {
            let charge = |n| s.charge(n);
            strlib::gsub(lua, &charge, args)
        })?,
    )?;
    let s = slot.clone();
    host.set(
        "rep",
        lua.create_function(
            move |lua, (text, n, sep): (mlua::String, i64, Option<mlua::String>)| {
                let (text, sep) = (text.as_bytes(), sep.as_ref().map(|s| s.as_bytes()));
                let sep: &[u8] = sep.as_deref().unwrap_or(&[]);
                if n <= 0 || (text.is_empty() && sep.is_empty()) {
                    return lua.create_string("");
                }
                let total = (text.len() as u128 + sep.len() as u128) * n as u128
                    - sep.len() as u128;
                if total > memory_max as u128 {
                    return Err(mlua::Error::runtime(format!(
                        "string.rep: a result of {total} bytes is over the Lua memory limit of {memory_max}"
                    )));
                }
                s.charge(total as u64 / strlib::BYTES_PER_UNIT + 1)?;
                let mut out = [&text[..], sep].concat().repeat(n as usize);
                out.truncate(total as usize);
                lua.create_string(&out)
            },
        )?,
    )?;
    Ok(host)
}

/// A count of work units from Lua: a non-negative number, saturated.
fn units_of(v: &mlua::Value) -> u64 {
    match v {
        mlua::Value::Integer(i) => (*i).max(0) as u64,
        mlua::Value::Number(f) if *f > 0.0 => {
            if f.is_finite() && *f < u64::MAX as f64 {
                *f as u64
            } else {
                u64::MAX
            }
        }
        _ => 0,
    }
}

/// A descriptor read from a script.
fn lua_descriptor(name: &str, version: &str) -> PluginDescriptor {
    let mut d = PluginDescriptor::new(name, version, PluginKind::Lua);
    d.abi = AbiVersion::CURRENT;
    d
}

/// The names of the functions in the `cep` table a Lua plugin is given,
/// sorted (the test holding the bindings to `cep_sdk::api` reads it).
pub fn cep_functions() -> Vec<String> {
    let lua = Lua::new();
    let slot = Arc::new(Slot {
        call: AtomicPtr::new(std::ptr::null_mut()),
        used: AtomicU64::new(0),
        budget: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
    });
    let mut names: Vec<String> = api::table(&lua, &slot)
        .map(|cep| {
            cep.pairs::<String, mlua::Value>()
                .filter_map(Result::ok)
                .filter(|(_, v)| v.is_function())
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
