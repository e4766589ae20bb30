//! Lua's pattern functions (`string.find`, `match`, `gmatch`, `gsub`) with
//! their work charged to the calling plugin's instruction budget.
//!
//! Lua's own matcher runs inside one VM instruction: a pattern like
//! `("a*"):rep(30) .. "b"` over a long subject backtracks for hours, and the
//! instruction hook never fires. This is a port of Lua 5.4's matcher
//! (`lstrlib.c`: the same classes, captures, anchors, `%b`, `%f`, back
//! references and the 200-deep recursion limit, the same results) that
//! counts its steps and charges them, so a pathological pattern ends the
//! call with `lua:budget` like any other loop. A plain `find` uses a
//! linear-time substring search (`memchr::memmem`), also charged.

use mlua::{Function, IntoLua, Lua, MultiValue, Table, Value};

/// Most captures in one pattern (`LUA_MAXCAPTURES`).
const CAPTURES_MAX: usize = 32;
/// Deepest recursion of the matcher (`MAXCCALLS`).
const DEPTH_MAX: u32 = 200;
/// Steps counted locally before they are charged to the budget.
const STEPS_CHUNK: u64 = 1024;
/// Bytes of scanning or copying charged as one instruction.
pub(super) const BYTES_PER_UNIT: u64 = 32;

/// Charges units of work to the running call; fails once the budget is
/// spent.
pub(super) type Charge<'a> = &'a dyn Fn(u64) -> mlua::Result<()>;

#[derive(Clone, Copy)]
enum Cap {
    Unfinished,
    Position,
    Len(usize),
}

struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: u32,
    level: usize,
    capture: [(usize, Cap); CAPTURES_MAX],
    steps: u64,
    charge: Charge<'a>,
}

fn error(message: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(message.into())
}

fn class_matches(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !res
    } else {
        res
    }
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], charge: Charge<'a>) -> Self {
        Matcher {
            src,
            pat,
            depth: DEPTH_MAX,
            level: 0,
            capture: [(0, Cap::Unfinished); CAPTURES_MAX],
            steps: 0,
            charge,
        }
    }

    /// A pattern byte, or 0 past the end (Lua's strings end in a NUL).
    fn p(&self, at: usize) -> u8 {
        self.pat.get(at).copied().unwrap_or(0)
    }

    fn s(&self, at: usize) -> u8 {
        self.src.get(at).copied().unwrap_or(0)
    }

    fn step(&mut self) -> mlua::Result<()> {
        self.steps += 1;
        if self.steps >= STEPS_CHUNK {
            (self.charge)(self.steps)?;
            self.steps = 0;
        }
        Ok(())
    }

    fn flush(&mut self) -> mlua::Result<()> {
        let steps = std::mem::take(&mut self.steps);
        (self.charge)(steps)
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth = DEPTH_MAX;
    }

    fn class_end(&self, mut p: usize) -> mlua::Result<usize> {
        let c = self.p(p);
        p += 1;
        match c {
            b'%' => {
                if p >= self.pat.len() {
                    return Err(error("malformed pattern (ends with '%')"));
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.p(p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= self.pat.len() {
                        return Err(error("malformed pattern (missing ']')"));
                    }
                    let c = self.p(p);
                    p += 1;
                    if c == b'%' && p < self.pat.len() {
                        p += 1;
                    }
                    if self.p(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    /// `[set]` at `p` (the '['), ending at `ec` (the ']').
    fn bracket_matches(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.p(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            if self.p(p) == b'%' {
                p += 1;
                if class_matches(c, self.p(p)) {
                    return sig;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.p(p - 2) <= c && c <= self.p(p) {
                    return sig;
                }
            } else if self.p(p) == c {
                return sig;
            }
        }
        !sig
    }

    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        if s >= self.src.len() {
            return false;
        }
        let c = self.src[s];
        match self.p(p) {
            b'.' => true,
            b'%' => class_matches(c, self.p(p + 1)),
            b'[' => self.bracket_matches(c, p, ep - 1),
            pc => pc == c,
        }
    }

    fn balance(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return Err(error("malformed pattern (missing arguments to '%b')"));
        }
        if s >= self.src.len() || self.src[s] != self.p(p) {
            return Ok(None);
        }
        let (b, e) = (self.p(p), self.p(p + 1));
        let mut cont = 1;
        let mut s = s + 1;
        while s < self.src.len() {
            self.step()?;
            let c = self.src[s];
            if c == e {
                cont -= 1;
                if cont == 0 {
                    return Ok(Some(s + 1));
                }
            } else if c == b {
                cont += 1;
            }
            s += 1;
        }
        Ok(None)
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> mlua::Result<Option<usize>> {
        let mut i = 0usize;
        while self.single(s + i, p, ep) {
            self.step()?;
            i += 1;
        }
        loop {
            if let Some(res) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(res));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> mlua::Result<Option<usize>> {
        loop {
            if let Some(res) = self.do_match(s, ep + 1)? {
                return Ok(Some(res));
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: Cap) -> mlua::Result<Option<usize>> {
        if self.level >= CAPTURES_MAX {
            return Err(error("too many captures"));
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.level -= 1;
        }
        Ok(res)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        let l = (0..self.level)
            .rev()
            .find(|&l| matches!(self.capture[l].1, Cap::Unfinished))
            .ok_or_else(|| error("invalid pattern capture"))?;
        self.capture[l].1 = Cap::Len(s - self.capture[l].0);
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.capture[l].1 = Cap::Unfinished;
        }
        Ok(res)
    }

    fn check_capture(&self, l: u8) -> mlua::Result<usize> {
        let l = l.wrapping_sub(b'1') as usize;
        if l >= self.level || matches!(self.capture[l].1, Cap::Unfinished) {
            return Err(error(format!("invalid capture index %{}", l + 1)));
        }
        Ok(l)
    }

    fn match_capture(&mut self, s: usize, l: u8) -> mlua::Result<Option<usize>> {
        let l = self.check_capture(l)?;
        let (init, cap) = self.capture[l];
        let len = match cap {
            Cap::Len(len) => len,
            _ => 0,
        };
        (self.charge)(len as u64 / BYTES_PER_UNIT)?;
        if self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }

    fn do_match(&mut self, mut s: usize, mut p: usize) -> mlua::Result<Option<usize>> {
        if self.depth == 0 {
            return Err(error("pattern too complex"));
        }
        self.depth -= 1;
        self.step()?;
        let result = loop {
            if p >= self.pat.len() {
                break Some(s);
            }
            match self.p(p) {
                b'(' => {
                    break if self.p(p + 1) == b')' {
                        self.start_capture(s, p + 2, Cap::Position)?
                    } else {
                        self.start_capture(s, p + 1, Cap::Unfinished)?
                    };
                }
                b')' => break self.end_capture(s, p + 1)?,
                b'$' if p + 1 == self.pat.len() => {
                    break (s == self.src.len()).then_some(s);
                }
                b'%' if self.p(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    Some(next) => {
                        s = next;
                        p += 4;
                        continue;
                    }
                    None => break None,
                },
                b'%' if self.p(p + 1) == b'f' => {
                    p += 2;
                    if self.p(p) != b'[' {
                        return Err(error("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    if !self.bracket_matches(previous, p, ep - 1)
                        && self.bracket_matches(self.s(s), p, ep - 1)
                    {
                        p = ep;
                        continue;
                    }
                    break None;
                }
                b'%' if self.p(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.p(p + 1))? {
                        Some(next) => {
                            s = next;
                            p += 2;
                            continue;
                        }
                        None => break None,
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let epc = self.p(ep);
                    if !self.single(s, p, ep) {
                        if matches!(epc, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        break None;
                    }
                    match epc {
                        b'?' => match self.do_match(s + 1, ep + 1)? {
                            Some(res) => break Some(res),
                            None => {
                                p = ep + 1;
                                continue;
                            }
                        },
                        b'+' => break self.max_expand(s + 1, p, ep)?,
                        b'*' => break self.max_expand(s, p, ep)?,
                        b'-' => break self.min_expand(s, p, ep)?,
                        _ => {
                            s += 1;
                            p = ep;
                            continue;
                        }
                    }
                }
            }
        };
        self.depth += 1;
        Ok(result)
    }

    /// Capture `i` of a match of `s..e` (the whole match when the pattern
    /// has no captures and `i` is 0).
    fn capture_value(&self, lua: &Lua, i: usize, s: usize, e: usize) -> mlua::Result<Value> {
        if i >= self.level {
            if i != 0 {
                return Err(error(format!("invalid capture index %{}", i + 1)));
            }
            return lua.create_string(&self.src[s..e])?.into_lua(lua);
        }
        let (init, cap) = self.capture[i];
        match cap {
            Cap::Unfinished => Err(error("unfinished capture")),
            Cap::Position => Ok(Value::Integer(init as i64 + 1)),
            Cap::Len(len) => lua
                .create_string(&self.src[init..init + len])?
                .into_lua(lua),
        }
    }

    fn captures(&self, lua: &Lua, whole: Option<(usize, usize)>) -> mlua::Result<Vec<Value>> {
        let n = if self.level == 0 && whole.is_some() {
            1
        } else {
            self.level
        };
        let (s, e) = whole.unwrap_or((0, 0));
        (0..n).map(|i| self.capture_value(lua, i, s, e)).collect()
    }
}

/// Lua's `posrelatI`: a 1-based start position, negative from the end.
fn start_of(init: Option<i64>, len: usize) -> usize {
    match init.unwrap_or(1) {
        i if i > 0 => i as usize,
        0 => 1,
        i if i < -(len as i64) => 1,
        i => (len as i64 + i + 1) as usize,
    }
}

fn no_specials(p: &[u8]) -> bool {
    !p.iter().any(|c| b"^$*+?.([%-".contains(c))
}

/// `string.find` (`find` true) and `string.match`.
pub(super) fn find(
    lua: &Lua,
    charge: Charge<'_>,
    (s, p, init, plain): (mlua::String, mlua::String, Option<i64>, Option<Value>),
    find: bool,
) -> mlua::Result<MultiValue> {
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let init = start_of(init, src.len()) - 1;
    if init > src.len() {
        return Ok(MultiValue::from_iter([Value::Nil]));
    }
    let plain = plain.is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    if find && (plain || no_specials(&pat)) {
        charge((src.len() - init + pat.len()) as u64 / BYTES_PER_UNIT + 1)?;
        return Ok(match memchr::memmem::find(&src[init..], &pat) {
            Some(at) => MultiValue::from_iter([
                Value::Integer((init + at + 1) as i64),
                Value::Integer((init + at + pat.len()) as i64),
            ]),
            None => MultiValue::from_iter([Value::Nil]),
        });
    }
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let mut m = Matcher::new(&src, pat, charge);
    let mut s1 = init;
    loop {
        m.reset();
        if let Some(e) = m.do_match(s1, 0)? {
            m.flush()?;
            return Ok(if find {
                let mut out = vec![Value::Integer(s1 as i64 + 1), Value::Integer(e as i64)];
                out.extend(m.captures(lua, None)?);
                MultiValue::from_iter(out)
            } else {
                MultiValue::from_iter(m.captures(lua, Some((s1, e)))?)
            });
        }
        s1 += 1;
        if anchor || s1 > src.len() {
            break;
        }
    }
    m.flush()?;
    Ok(MultiValue::from_iter([Value::Nil]))
}

/// `string.gmatch`: an iterator function over the matches.
pub(super) fn gmatch(
    lua: &Lua,
    charge: std::sync::Arc<dyn Fn(u64) -> mlua::Result<()> + Send + Sync>,
    (s, p, init): (mlua::String, mlua::String, Option<i64>),
) -> mlua::Result<Function> {
    let src = s.as_bytes().to_vec();
    let pat = p.as_bytes().to_vec();
    let mut at = start_of(init, src.len()) - 1;
    if at > src.len() {
        at = src.len() + 1;
    }
    let mut last: Option<usize> = None;
    lua.create_function_mut(move |lua, ()| {
        let charge: Charge<'_> = &*charge;
        let mut m = Matcher::new(&src, &pat, charge);
        while at <= src.len() {
            m.reset();
            if let Some(e) = m.do_match(at, 0)? {
                if Some(e) != last {
                    let start = at;
                    at = e;
                    last = Some(e);
                    m.flush()?;
                    return Ok(MultiValue::from_iter(m.captures(lua, Some((start, e)))?));
                }
            }
            at += 1;
        }
        m.flush()?;
        Ok(MultiValue::new())
    })
}

/// `string.gsub`.
pub(super) fn gsub(
    lua: &Lua,
    charge: Charge<'_>,
    (s, p, repl, max): (mlua::String, mlua::String, Value, Option<i64>),
) -> mlua::Result<(mlua::String, i64)> {
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let repl_text = match &repl {
        Value::String(t) => Some(t.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(n) => Some(lua_number_text(*n).into_bytes()),
        Value::Function(_) | Value::Table(_) => None,
        other => {
            return Err(error(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                other.type_name()
            )))
        }
    };
    let max = max.unwrap_or(src.len() as i64 + 1);
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let mut m = Matcher::new(&src, pat, charge);
    let mut out: Vec<u8> = Vec::new();
    let mut at = 0usize;
    let mut last: Option<usize> = None;
    let mut n = 0i64;
    while n < max {
        m.reset();
        match m.do_match(at, 0)? {
            Some(e) if Some(e) != last => {
                n += 1;
                add_value(lua, &m, &mut out, at, e, &repl, repl_text.as_deref())?;
                at = e;
                last = Some(e);
            }
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if anchor {
            break;
        }
        if out.len() as u64 >= BYTES_PER_UNIT * STEPS_CHUNK {
            charge(out.len() as u64 / BYTES_PER_UNIT)?;
        }
    }
    out.extend_from_slice(&src[at.min(src.len())..]);
    m.flush()?;
    charge(out.len() as u64 / BYTES_PER_UNIT)?;
    Ok((lua.create_string(&out)?, n))
}

/// How Lua prints a float (`%.14g`, with `.0` for integral values).
fn lua_number_text(n: f64) -> String {
    if n.is_finite() && n == n.trunc() && n.abs() < 1e15 {
        format!("{n:.1}")
    } else {
        format!("{n}")
    }
}

fn add_value(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    repl: &Value,
    repl_text: Option<&[u8]>,
) -> mlua::Result<()> {
    let value = match (repl, repl_text) {
        (_, Some(text)) => {
            let mut i = 0;
            while i < text.len() {
                let c = text[i];
                i += 1;
                if c != b'%' {
                    out.push(c);
                    continue;
                }
                let d = text.get(i).copied().unwrap_or(0);
                i += 1;
                match d {
                    b'%' => out.push(b'%'),
                    b'0' => out.extend_from_slice(&m.src[s..e]),
                    b'1'..=b'9' => {
                        let v = m.capture_value(lua, (d - b'1') as usize, s, e)?;
                        out.extend_from_slice(&value_text(&v));
                    }
                    _ => return Err(error("invalid use of '%' in replacement string")),
                }
            }
            return Ok(());
        }
        (Value::Function(f), None) => {
            let args = m.captures(lua, Some((s, e)))?;
            f.call::<Value>(MultiValue::from_iter(args))?
        }
        (Value::Table(t), None) => {
            let key = m.capture_value(lua, 0, s, e)?;
            Table::get::<Value>(t, key)?
        }
        _ => unreachable!("the replacement was checked"),
    };
    match value {
        Value::Nil | Value::Boolean(false) => out.extend_from_slice(&m.src[s..e]),
        Value::String(t) => out.extend_from_slice(&t.as_bytes()),
        Value::Integer(_) | Value::Number(_) => out.extend_from_slice(&value_text(&value)),
        other => {
            return Err(error(format!(
                "invalid replacement value (a {})",
                other.type_name()
            )))
        }
    }
    Ok(())
}

fn value_text(v: &Value) -> Vec<u8> {
    match v {
        Value::String(t) => t.as_bytes().to_vec(),
        Value::Integer(i) => i.to_string().into_bytes(),
        Value::Number(n) => lua_number_text(*n).into_bytes(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_budget(_: u64) -> mlua::Result<()> {
        Ok(())
    }

    /// The port gives Lua's own answers on a spread of patterns.
    #[test]
    fn the_port_matches_lua_on_a_spread_of_patterns() {
        let lua = Lua::new();
        let cases: &[(&str, &str)] = &[
            ("hello world", "o w"),
            ("hello world", "(%w+) (%w+)"),
            ("key = value", "^(%w+)%s*=%s*(%w+)$"),
            ("  trim  ", "^%s*(.-)%s*$"),
            ("THE (quick) fox", "%((%a+)%)"),
            ("f(a(b)c)d", "%b()"),
            ("THE (quick) fox", "%f[%a]%a+"),
            ("abcabc", "(a)(b)c%1"),
            ("aaa", "a-b"),
            ("aaab", "a-b"),
            ("x=1, y=2", "()=()"),
            ("[test]", "[%[%]]"),
            ("a.b", "%."),
            ("abc", "[^a]+"),
            ("2024-12-07", "(%d+)-(%d+)-(%d+)"),
            ("", ".*"),
            ("abc", "$"),
            ("a+b", "a%+b"),
            ("zzz", "[a-c]"),
        ];
        let native: Table = lua.globals().get("string").unwrap();
        let native_find: Function = native.get("find").unwrap();
        let native_match: Function = native.get("match").unwrap();
        for (s, p) in cases {
            let args = || {
                (
                    lua.create_string(s).unwrap(),
                    lua.create_string(p).unwrap(),
                    None::<i64>,
                    None::<Value>,
                )
            };
            let ours = find(&lua, &no_budget, args(), true).unwrap();
            let theirs: MultiValue = native_find.call((*s, *p)).unwrap();
            assert_eq!(
                format!("{ours:?}"),
                format!("{theirs:?}"),
                "find {s:?} {p:?}"
            );
            let ours = find(&lua, &no_budget, args(), false).unwrap();
            let theirs: MultiValue = native_match.call((*s, *p)).unwrap();
            assert_eq!(
                format!("{ours:?}"),
                format!("{theirs:?}"),
                "match {s:?} {p:?}"
            );
        }
    }

    /// A pattern that backtracks without end is charged step by step and
    /// stopped by the budget.
    #[test]
    fn a_backtracking_pattern_is_charged_until_the_budget_stops_it() {
        let lua = Lua::new();
        let spent = std::cell::Cell::new(0u64);
        let budget = |n: u64| {
            spent.set(spent.get() + n);
            if spent.get() > 1_000_000 {
                Err(error("budget"))
            } else {
                Ok(())
            }
        };
        let subject = "a".repeat(5000);
        let pattern = format!("{}b", "a*".repeat(20));
        let args = (
            lua.create_string(&subject).unwrap(),
            lua.create_string(&pattern).unwrap(),
            None,
            None,
        );
        let err = find(&lua, &budget, args, true).unwrap_err();
        assert!(err.to_string().contains("budget"), "{err}");
    }
}
