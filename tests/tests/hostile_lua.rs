//! Hostile Lua plugins: nothing a script does hangs the host, exhausts its
//! memory, puts an address into the state or changes another plugin.
//! Each case is a class (a loop reached from C, a library call doing
//! unbounded work, an error object, a shared table); every case must end
//! its call with a `lua:*` fact, quickly, and leave the VM usable.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cep_host::plugin::{load_file, PluginHost};
use cep_host::{Config, Runtime, Value};
use cep_tests::world::{self, read, text};
use cep_tests::{facts, p};

fn script(dir: &Path, name: &str, source: &str) -> PathBuf {
    let file = dir.join(format!("{name}.lua"));
    std::fs::write(&file, source).unwrap();
    file
}

/// A plugin `name` with one enzyme on `go/<name>` running `body`.
fn plugin(dir: &Path, name: &str, body: &str) -> PathBuf {
    script(
        dir,
        name,
        &format!(
            "return {{ name = \"{name}\", version = \"0.1.0\", capabilities = {{ \"write:/data/{name}\" }},\n  enzymes = {{ {{ name = \"{name}.run\", signal = \"go/{name}\", run = function(payload, target)\n{body}\nend }} }} }}\n"
        ),
    )
}

fn config(plugins: Vec<PathBuf>) -> Config {
    let mut config = Config {
        plugins,
        lua_budget: 2_000_000,
        lua_memory_max: 32 << 20,
        ..Config::default()
    };
    config.grants.insert(
        "*".into(),
        vec!["write:/data".to_owned(), "emit:*".to_owned()],
    );
    config
}

/// Runs `f` on another thread and fails the test if it takes longer than
/// `limit` (a hang would otherwise hang the test suite).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: still running after {limit:?}: the host hangs"))
}

fn boot(config: &Config) -> (Runtime, PluginHost) {
    let (runtime, host) = world::boot(config);
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    (runtime, host)
}

fn go(runtime: &Runtime, name: &str) {
    world::inject(runtime, &format!("go/{name}"), None, None);
}

/// Every loop reachable from a callback that Lua calls from C, and every
/// library call that does unbounded work in one instruction, ends its call
/// with `lua:budget` (or `lua:memory`/`lua:error`), and the VM still runs.
#[test]
fn no_loop_or_library_call_outlives_the_budget() {
    let cases: &[(&str, &str)] = &[
        ("sort", "table.sort({3, 2, 1}, function(a, b) while true do end end)"),
        (
            "sortpcall",
            "table.sort({3, 2, 1}, function(a, b) while true do pcall(function() while true do end end) end end)",
        ),
        ("gsubfn", "string.gsub('abc', '%w', function() while true do end end)"),
        (
            "tostr",
            "tostring(setmetatable({}, { __tostring = function() while true do end end }))",
        ),
        (
            "index",
            "local t = setmetatable({}, { __index = function() while true do end end }); return t.x",
        ),
        (
            "eq",
            "local mt = { __eq = function() while true do end end }; local a, b = setmetatable({}, mt), setmetatable({}, mt); return a == b",
        ),
        ("xpcallh", "while true do xpcall(error, function() while true do end end) end"),
        (
            "resume",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        ),
        (
            "wrap",
            "while true do pcall(coroutine.wrap(function() while true do end end)) end",
        ),
        ("repempty", "while true do string.rep('', 1e18) end"),
        ("repbig", "while true do local s = string.rep('x', 4e6) end"),
        ("repsep", "while true do local s = ('x'):rep(1e6, 'yy') end"),
        ("findbt", "string.find(('a'):rep(3000), ('a*'):rep(20) .. 'b')"),
        ("matchbt", "string.match(('a'):rep(20000), '.-.-.-b')"),
        (
            "gmatchbt",
            "for w in string.gmatch(('a'):rep(3000), ('a*'):rep(15) .. 'b') do end",
        ),
        (
            "plainfind",
            "local s = ('a'):rep(4e6); while true do string.find(s, ('a'):rep(1e6) .. 'b', 1, true) end",
        ),
        ("move", "table.move({}, 1, math.maxinteger - 1, 2)"),
        (
            "concat",
            "local t = {}; for i = 1, 64 do t[i] = ('x'):rep(1e5) end; while true do local s = table.concat(t) end",
        ),
        (
            "insert",
            "local t = {}; for i = 1, 1e5 do t[i] = i end; while true do table.insert(t, 1, 0); table.remove(t, 1) end",
        ),
        (
            "utf8",
            "local s = ('a'):rep(8e6); while true do utf8.len(s) end",
        ),
        (
            "hostpath",
            "while true do pcall(cep.exists, '/' .. ('a'):rep(1e7)) end",
        ),
        ("gc", "setmetatable({}, { __gc = function() while true do end end })"),
        (
            "format",
            "local s = ('x'):rep(1e6); while true do local t = string.format('%s%s', s, s) end",
        ),
        (
            "byte",
            "local s = ('x'):rep(9e5); while true do local t = { s:byte(1, -1) } end",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = cases
        .iter()
        .map(|(name, body)| plugin(dir.path(), name, body))
        .collect();
    files.push(plugin(
        dir.path(),
        "ok",
        "cep.write('/data/ok/beat', cep.beat())",
    ));
    let config = config(files);
    let names: Vec<&'static str> = cases.iter().map(|(n, _)| *n).collect();
    within(Duration::from_secs(120), "the hostile calls", move || {
        let (mut runtime, _host) = boot(&config);
        for name in &names {
            eprintln!("case {name}");
            go(&runtime, name);
            runtime.run(1).unwrap();
            let ended: Vec<_> = ["lua:budget", "lua:memory", "lua:error"]
                .iter()
                .flat_map(|topic| facts(&runtime, topic))
                .filter(|f| f.note.contains(&format!("enzyme {name}.run")))
                .collect();
            assert_eq!(ended.len(), 1, "{name}: {ended:?}");
        }
        go(&runtime, "ok");
        runtime.run(1).unwrap();
        assert!(
            read(&runtime, "/data/ok/beat").is_some(),
            "the VM still runs"
        );
    });
}

/// The budget holds while a script loads and when it is reloaded, even
/// against a `pcall` loop (which used to catch the load-time stop).
#[test]
fn the_budget_holds_at_load_and_at_reload() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "while true do pcall(function() while true do end end) end\nreturn { name = \"h\", version = \"0.2.0\" }\n";
    let file = script(dir.path(), "h", hostile);
    let err = within(Duration::from_secs(60), "loading", move || {
        load_file(&file).map(|_| ()).unwrap_err().to_string()
    });
    assert!(err.contains("lua:budget"), "{err}");
    // A reload runs the script in the world's VM.
    let v1 = script(
        dir.path(),
        "h1",
        "return { name = \"h\", version = \"0.1.0\" }\n",
    );
    let v2 = script(dir.path(), "h2", hostile);
    let config = config(vec![v1]);
    let err = within(Duration::from_secs(60), "reloading", move || {
        let (mut runtime, mut host) = boot(&config);
        let err = host
            .reload(&mut runtime, &config, &v2)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        runtime.run(1).unwrap();
        err
    });
    assert!(err.contains("lua:budget"), "{err}");
}

/// No address reaches the state: `string.format("%s", {})`, `tostring`
/// through `__name`, `error({})` in a call and at load all render without
/// one; `%p` is refused. Two runs give the same hashes.
#[test]
fn no_address_reaches_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
local t = setmetatable({}, { __name = "Thing" })
cep.write("/data/a/format", string.format("%s|%8s|%s", {}, type, coroutine.running()))
cep.write("/data/a/tostring", tostring(t) .. tostring(cep.null) .. tostring(function() end))
cep.write("/data/a/p", select(2, pcall(string.format, "%p", {})))
local ok, e = pcall(error, {})
cep.write("/data/a/caught", type(e))
"#;
    let a = plugin(dir.path(), "a", body);
    let b = plugin(
        dir.path(),
        "b",
        "error(setmetatable({}, { __name = 'Boom' }))",
    );
    let config = config(vec![a, b]);
    let run = || {
        let (mut runtime, _host) = boot(&config);
        go(&runtime, "a");
        go(&runtime, "b");
        runtime.run(2).unwrap();
        runtime
    };
    let runtime = run();
    let format = text(&runtime, "/data/a/format").unwrap();
    assert_eq!(format, "table|function|thread", "{format}");
    let tostring = text(&runtime, "/data/a/tostring").unwrap();
    assert_eq!(tostring, "tableuserdatafunction");
    assert!(text(&runtime, "/data/a/p").unwrap().contains("%p"));
    let error = facts(&runtime, "lua:error");
    assert_eq!(error.len(), 1, "{error:?}");
    assert!(
        error[0].note.contains("(error object is a table value)"),
        "{}",
        error[0].note
    );
    for path in ["/data/a/format", "/data/a/tostring", "/data/a/p"] {
        assert!(!text(&runtime, path).unwrap().contains("0x"), "{path}");
    }
    let again = run();
    assert_eq!(runtime.snapshot().hash(), again.snapshot().hash());
    // At load.
    let file = script(
        dir.path(),
        "l",
        "error(setmetatable({}, { __name = 'X' }))\nreturn { name = 'l', version = '0.1.0' }\n",
    );
    let err = load_file(&file).map(|_| ()).unwrap_err().to_string();
    assert!(!err.contains("0x"), "{err}");
    assert!(err.contains("error object is a table value"), "{err}");
}

/// One plugin cannot change what another plugin's strings do: the string
/// metatable a script sees is its own view; changing it, or its own
/// `string` table, changes nothing for anyone else.
#[test]
fn plugins_cannot_tamper_with_each_other_through_shared_tables() {
    let dir = tempfile::tempdir().unwrap();
    let evil = plugin(
        dir.path(),
        "evil",
        r#"
getmetatable("").__index.upper = function() return "pwned" end
string.lower = function() return "pwned" end
rawset(getmetatable(""), "__index", { upper = function() return "pwned" end })
pcall(setmetatable, getmetatable(""), {})
cep.write("/data/evil/own", ("abc"):upper())
"#,
    );
    let victim = plugin(
        dir.path(),
        "victim",
        r#"
cep.write("/data/victim/upper", ("abc"):upper())
cep.write("/data/victim/lower", string.lower("ABC"))
cep.write("/data/victim/method", ("ABC"):lower())
"#,
    );
    let config = config(vec![evil, victim]);
    let (mut runtime, _host) = boot(&config);
    go(&runtime, "evil");
    runtime.run(1).unwrap();
    go(&runtime, "victim");
    runtime.run(1).unwrap();
    assert_eq!(text(&runtime, "/data/victim/upper").as_deref(), Some("ABC"));
    assert_eq!(text(&runtime, "/data/victim/lower").as_deref(), Some("abc"));
    assert_eq!(
        text(&runtime, "/data/victim/method").as_deref(),
        Some("abc")
    );
    assert_eq!(
        text(&runtime, "/data/evil/own").as_deref(),
        Some("ABC"),
        "string methods are the library's, whatever a script's view says"
    );
}

/// Host calls that build big values on a script's behalf (error messages
/// quoting a 10 MB path) stay small: the loop ends by the budget, and the
/// messages a script sees are capped.
#[test]
fn errors_built_by_host_calls_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
local ok, e = pcall(function() local r = cep.exists("/" .. ("a"):rep(1e6) .. "/"); return r end)
cep.write("/data/m/len", #e)
cep.write("/data/m/text", e)
"#;
    let m = plugin(dir.path(), "m", body);
    let config = config(vec![m]);
    let (mut runtime, _host) = boot(&config);
    go(&runtime, "m");
    runtime.run(1).unwrap();
    let len = read(&runtime, "/data/m/len")
        .and_then(|v| v.as_i64())
        .unwrap();
    assert!(len < 2048, "an error message of {len} bytes");
    let text = text(&runtime, "/data/m/text").unwrap();
    assert!(text.contains("bytes)"), "{text}");
    assert!(
        text.starts_with("m.lua:"),
        "the error names the script line: {text}"
    );
    let _ = p("/");
    let _ = Value::Null;
}
