-- The sandbox of cep's Lua plugins, run once in each VM before any script.
-- It closes what would break determinism or escape the host, bounds what
-- one call can do, and returns the functions the host needs: one building
-- a plugin's environment and one reseeding math.random.
--
-- The VM was opened with the base, table, string, math, utf8 and coroutine
-- libraries only: no io, os, debug or package (so no require, no clock).
-- `host` holds the host's side: `over` (whether the running call's budget
-- is spent), `charge` (adds work to it), and the budgeted library
-- functions (`find`, `match`, `gmatch`, `gsub`, `rep`, `settle`).

local host = ...
local over, charge, settle = host.over, host.charge, host.settle
local rawnext, rawtostring, sort = next, tostring, table.sort
local rawpcall, rawxpcall, rawerror, rawselect = pcall, xpcall, error, select
local rawsetmetatable, rawgetmetatable, rawtype = setmetatable, getmetatable, type
local resume, close = coroutine.resume, coroutine.close
local format, cfind, csub, randomseed = string.format, string.find, string.sub, math.randomseed
local pack, unpack = table.pack, table.unpack
local tinsert, tremove, tmove, tconcat = table.insert, table.remove, table.move, table.concat
local ulen, ucodepoint, uoffset, uchar = utf8.len, utf8.codepoint, utf8.offset, utf8.char
local rawtonumber = tonumber

-- pairs in a deterministic order. Lua's own order follows string hashes,
-- which Lua 5.4 seeds randomly per VM: numbers first (ascending), then
-- strings (byte order), then false before true. Other key types have no
-- stable order and raise an error.
local function rank(k)
  local t = rawtype(k)
  if t == "number" then return 0 elseif t == "string" then return 1 elseif t == "boolean" then return 2 end
  rawerror("pairs: a table keyed by a " .. t .. " has no deterministic order", 4)
end
local function before(a, b)
  local ra, rb = rank(a), rank(b)
  if ra ~= rb then return ra < rb end
  if ra == 2 then return (not a) and b end
  return a < b
end
local function sorted_pairs(t)
  local mt = rawgetmetatable(t)
  if rawtype(mt) == "table" and mt.__pairs then return mt.__pairs(t) end
  local keys, n = {}, 0
  for k in rawnext, t do n = n + 1; keys[n] = k end
  charge(n)
  sort(keys, before)
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end

-- tostring without addresses ("table", not "table: 0x5581..."): addresses
-- differ between runs and must never reach the state.
local function safe_tostring(v)
  local t = rawtype(v)
  if t == "table" or t == "function" or t == "thread" or t == "userdata" then
    local mt = rawgetmetatable(v)
    if rawtype(mt) == "table" and mt.__tostring then return rawtostring(v) end
    return t
  end
  return rawtostring(v)
end

-- string.format with %s through safe_tostring, and no %p.
local FLAGS = "-+ #0123456789."
local function safe_format(fmt, ...)
  if rawtype(fmt) ~= "string" or not cfind(fmt, "%", 1, true) then
    return settle(format(fmt, ...))
  end
  charge(#fmt)
  local args, n, at = pack(...), 0, 1
  while true do
    local s = cfind(fmt, "%", at, true)
    if not s then break end
    if csub(fmt, s + 1, s + 1) == "%" then
      at = s + 2
    else
      local e = s + 1
      while e <= #fmt and cfind(FLAGS, csub(fmt, e, e), 1, true) do e = e + 1 end
      local conversion = csub(fmt, e, e)
      n = n + 1
      if conversion == "p" then
        rawerror("string.format: %p prints an address, which is not deterministic", 2)
      elseif conversion == "s" and n <= args.n then
        args[n] = safe_tostring(args[n])
      end
      at = e + 1
    end
  end
  return settle(format(fmt, unpack(args, 1, args.n)))
end

-- Once the call's budget is spent, nothing may catch the error that stops
-- it: every catching function passes such an error on.
local function pass(ok, ...)
  if not ok and over() then rawerror((...), 0) end
  return ok, ...
end
local function guarded_pcall(f, ...) return pass(rawpcall(f, ...)) end
-- An error raised by the budget's hook runs the message handler inside the
-- hook, where no hook fires: a script's handler is not run at all then.
local function guarded_xpcall(f, handler, ...)
  if rawtype(handler) ~= "function" then return pass(rawxpcall(f, handler, ...)) end
  return pass(rawxpcall(f, function(e)
    if over() then return e end
    return handler(e)
  end, ...))
end
local function guarded_resume(co, ...) return pass(resume(co, ...)) end
local function guarded_close(co) return pass(close(co)) end

-- Finalizers would run during the collector's step after a beat, outside
-- any call and its budget: refused.
local function safe_setmetatable(t, mt)
  if rawtype(mt) == "table" and rawget(mt, "__gc") ~= nil then
    rawerror("setmetatable: __gc finalizers are not allowed (they would run outside any call)", 2)
  end
  return rawsetmetatable(t, mt)
end

-- Library functions whose work grows with their arguments are charged to
-- the budget (`settle` charges by the size of what they return; the rest
-- before they run, by what they will touch).
local function settled(f) return function(...) return settle(f(...)) end end
local function rawlen_of(t) if rawtype(t) == "table" then return rawlen(t) end return 0 end
local function length_of(s) if rawtype(s) == "string" then return #s end return 0 end

local safe_string = {
  byte = settled(string.byte), char = settled(string.char), format = safe_format,
  len = string.len, lower = settled(string.lower), upper = settled(string.upper),
  reverse = settled(string.reverse), sub = settled(string.sub),
  pack = settled(string.pack), packsize = string.packsize, unpack = settled(string.unpack),
  find = host.find, match = host.match, gmatch = host.gmatch, gsub = host.gsub, rep = host.rep,
}
local safe_table = {
  concat = settled(tconcat), pack = settled(pack), unpack = settled(unpack),
  insert = function(t, ...)
    if rawselect("#", ...) >= 2 then charge(rawlen_of(t)) end
    return tinsert(t, ...)
  end,
  remove = function(t, pos)
    if pos ~= nil then charge(rawlen_of(t)) end
    return tremove(t, pos)
  end,
  move = function(a1, f, e, t, a2)
    if rawtype(f) == "number" and rawtype(e) == "number" and e >= f then charge(e - f + 1) end
    return tmove(a1, f, e, t, a2)
  end,
  sort = function(t, cmp)
    local n = rawlen_of(t)
    local log = 1
    while (1 << log) < n do log = log + 1 end
    charge(n * log)
    return sort(t, cmp)
  end,
}
local safe_utf8 = {
  char = settled(uchar), charpattern = utf8.charpattern, codes = utf8.codes,
  codepoint = function(s, ...) charge(length_of(s) // 32); return settle(ucodepoint(s, ...)) end,
  len = function(s, ...) charge(length_of(s) // 32); return ulen(s, ...) end,
  offset = function(s, ...) charge(length_of(s) // 32); return uoffset(s, ...) end,
}
local function safe_tonumber(v, base)
  charge(length_of(v) // 32)
  return rawtonumber(v, base)
end

-- The library string methods reach: the safe functions, in a table no
-- script can reach or change. `getmetatable("")` gives each plugin a view
-- of its own `string` table instead, so one plugin cannot change another's
-- strings.
local string_methods = {}
for k, v in rawnext, string do string_methods[k] = v end
for k, v in rawnext, safe_string do string_methods[k] = v end
string_methods.dump = nil
local string_meta = rawgetmetatable("")
string_meta.__index = string_methods
string_meta.__metatable = false

local function copy(src, over_with)
  local out = {}
  for k, v in rawnext, src do out[k] = v end
  for k, v in rawnext, over_with or {} do out[k] = v end
  return out
end

-- Reseeds math.random (xoshiro256**): the host calls it with the beat
-- number at the first Lua call of each beat.
local function seed(n) randomseed(n) end

-- The text of an error object: strings as they are; a table with
-- __tostring through it; anything else by its type, never its address.
local function error_text(e)
  local t = rawtype(e)
  if t == "string" or t == "number" then return e end
  local mt = rawgetmetatable(e)
  if (t == "table" or t == "userdata") and rawtype(mt) == "table" and mt.__tostring then
    local ok, text = rawpcall(rawtostring, e)
    if ok and rawtype(text) == "string" then return text end
  end
  return "(error object is a " .. t .. " value)"
end

-- error and assert raise text only: an error object that is not a string
-- would be rendered with its address where it reaches the host.
local function safe_error(e, level)
  if rawtype(e) ~= "string" then e = error_text(e) end
  level = level or 1
  if level > 0 then level = level + 1 end
  return rawerror(e, level)
end
local function safe_assert(v, message, ...)
  if v then return v, message, ... end
  if message == nil then return rawerror("assertion failed!", 0) end
  if rawtype(message) ~= "string" then message = error_text(message) end
  return rawerror(message, 0)
end

-- A host function answers `true, result` or `false, message`; the
-- environment's `cep` functions raise the message as an ordinary error at
-- the script's line. (No `cep` function takes more than five arguments.)
local function bind(raw)
  return function(a, b, c, d, e)
    local ok, r = raw(a, b, c, d, e)
    if ok then return r end
    rawerror(r, 2)
  end
end

local function environment(raw_cep)
  local cep = {}
  for k, v in rawnext, raw_cep do
    if rawtype(v) == "function" then cep[k] = bind(v) else cep[k] = v end
  end
  local env = {
    assert = safe_assert, error = safe_error, ipairs = ipairs, pairs = sorted_pairs,
    pcall = guarded_pcall, xpcall = guarded_xpcall, select = rawselect,
    tonumber = safe_tonumber, tostring = safe_tostring, type = rawtype,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset,
    setmetatable = safe_setmetatable, _VERSION = _VERSION,
    string = copy(string, safe_string), table = copy(table, safe_table),
    math = copy(math), utf8 = copy(utf8, safe_utf8),
    coroutine = copy(coroutine, { resume = guarded_resume, close = guarded_close }),
    cep = cep,
  }
  env.string.dump = nil
  env.math.randomseed = nil
  local string_view = { __index = env.string }
  env.getmetatable = function(v)
    local t = rawtype(v)
    if t == "string" then return string_view end
    if t == "userdata" then return nil end
    return rawgetmetatable(v)
  end
  env._G = env
  return env
end

return environment, seed
