-- watch: an example Lua plugin. It watches the store's puts and the
-- thermostat, and reports.
--
-- - watch.put (store/put): counts the store's puts (one per beat); every
--   10th emits watch/report with the count;
-- - watch.report (watch/report): records the report, and with cep.delay
--   writes a follow-up exactly 3 beats later;
-- - watch.ctor / watch.dtor: the organ's lifecycle.

local ROOT = "/data/watch"

local function count(path)
  return cep.read(path) or 0
end

return {
  name = "watch",
  version = "0.1.0",
  capabilities = { "write:" .. ROOT, "emit:watch" },
  organs = {
    { kind = "watch", root = ROOT, label = "watches the store",
      constructor = "watch.ctor", destructor = "watch.dtor" },
  },
  enzymes = {
    { name = "watch.ctor", signal = "organ/watch/ctor",
      run = function() cep.write(ROOT .. "/puts", 0) end },
    { name = "watch.dtor", signal = "organ/watch/dtor",
      run = function() cep.write(ROOT .. "/closed", cep.beat()) end },
    { name = "watch.put", signal = "store/put", emits = true, stateful = true,
      run = function(payload)
        -- The store puts one item per beat; every 10th put is reported.
        local puts = count(ROOT .. "/puts") + 1
        cep.write(ROOT .. "/puts", puts)
        cep.write(ROOT .. "/last_item", payload)
        if puts % 10 == 0 then cep.emit("watch/report", nil, puts) end
      end },
    { name = "watch.report", signal = "watch/report",
      run = function(puts)
        local at = cep.beat()
        cep.append(ROOT .. "/reports", string.format("%d puts at beat %d", puts, at))
        cep.delay(3, function()
          cep.write(ROOT .. "/followed_up", string.format("report of beat %d followed up at beat %d", at, cep.beat()))
        end)
      end },
  },
}
