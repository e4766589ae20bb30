-- The sandbox of cep's Lua plugins, run once in each VM before any script.
-- It closes what would break determinism or escape the host, and returns a
-- function building one plugin's environment.
--
-- The VM was opened with the base, table, string, math, utf8 and coroutine
-- libraries only: no io, os, debug or package (so no require, no clock).

local rawnext, rawtostring, sort = next, tostring, table.sort
local format, randomseed = string.format, math.randomseed

-- pairs in a deterministic order. Lua's own order follows string hashes,
-- which Lua 5.4 seeds randomly per VM: numbers first (ascending), then
-- strings (byte order), then false before true. Other key types have no
-- stable order and raise an error.
local function rank(k)
  local t = type(k)
  if t == "number" then return 0 elseif t == "string" then return 1 elseif t == "boolean" then return 2 end
  error("pairs: a table keyed by a " .. t .. " has no deterministic order", 4)
end
local function before(a, b)
  local ra, rb = rank(a), rank(b)
  if ra ~= rb then return ra < rb end
  if ra == 2 then return (not a) and b end
  return a < b
end
local function sorted_pairs(t)
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__pairs then return mt.__pairs(t) end
  local keys, n = {}, 0
  for k in rawnext, t do n = n + 1; keys[n] = k end
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
  local t = type(v)
  if t == "table" or t == "function" or t == "thread" or t == "userdata" then
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tostring then return rawtostring(v) end
    return t
  end
  return rawtostring(v)
end

local function safe_format(fmt, ...)
  if type(fmt) == "string" and fmt:find("%%p") then
    error("string.format: %p prints an address, which is not deterministic", 2)
  end
  return format(fmt, ...)
end

-- The shared library tables lose what a script must not have; each plugin
-- gets its own copies, so one plugin cannot change another's.
string.dump = nil
string.format = safe_format
math.randomseed = nil

local function copy(src)
  local out = {}
  for k, v in rawnext, src do out[k] = v end
  return out
end

-- Reseeds math.random (xoshiro256**): the host calls it with the beat
-- number at the first Lua call of each beat.
local function seed(n) randomseed(n) end

local function environment(cep)
  local env = {
    assert = assert, error = error, ipairs = ipairs, pairs = sorted_pairs,
    pcall = pcall, xpcall = xpcall, select = select, tonumber = tonumber,
    tostring = safe_tostring, type = type, rawequal = rawequal, rawget = rawget,
    rawlen = rawlen, rawset = rawset, getmetatable = getmetatable,
    setmetatable = setmetatable, _VERSION = _VERSION,
    string = copy(string), table = copy(table), math = copy(math),
    utf8 = copy(utf8), coroutine = copy(coroutine), cep = cep,
  }
  env._G = env
  return env
end

return environment, seed
