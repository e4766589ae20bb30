/*
 * thermo: an example C organ. A thermostat under /data/thermo.
 *
 * - constructor thermo.ctor: writes meta/created, the setpoint, count 0,
 *   and starts the thermostat's clock (thermo/tick);
 * - validator thermo.vald: the setpoint exists;
 * - destructor thermo.dtor: records meta/closed;
 * - thermo.reading (sensor/reading): checks a reading (tenths of a degree)
 *   and appends it to readings/;
 * - thermo.tick (thermo/tick): every beat, averages the readings captured
 *   so far into temp, consumes them, switches the heater around the
 *   setpoint, and every 50 beats moves the setpoint (day/night).
 *
 * Build: cc -std=c11 -O2 -shared -fPIC -I include -o libthermo.so plugins/thermo/thermo.c
 */
#include "cep.h"

#include <stdio.h>

#define ROOT "/data/thermo"
#define DAY 215
#define NIGHT 190
#define BAND 5

/* The one cep_host_api the host gave us at load. */
static const cep_host_api *H;

/* Fails the call with `message` (the outcome becomes `fatal`). */
static cep_status fail(cep_call *call, const char *message) {
    H->set_error(call, cep_cstr(message));
    return CEP_ERR_FAILED;
}

/* Reads an integer cell, or `fallback` when it is absent. */
static cep_status read_i64(cep_call *call, cep_str path, int64_t fallback, int64_t *out) {
    cep_value v;
    cep_status s = H->read(call, path, &v);
    if (s != CEP_OK) return s;
    *out = v.kind == CEP_VALUE_I64 ? v.as_i64 : fallback;
    return CEP_OK;
}

/* Evaluates a host call; on failure, fails the enzyme with the host's message. */
#define TRY(expr)                                                   \
    do {                                                            \
        cep_status s_ = (expr);                                     \
        if (s_ != CEP_OK) {                                         \
            cep_str m_ = H->last_error(call);                       \
            H->set_error(call, m_);                                 \
            return s_;                                              \
        }                                                           \
    } while (0)

static cep_status ctor(const cep_host_api *host, cep_call *call, void *user) {
    (void)host; (void)user;
    cep_value beat = cep_i64((int64_t)H->beat(call));
    cep_value setpoint = cep_i64(DAY);
    cep_value zero = cep_i64(0);
    TRY(H->write(call, CEP_S(ROOT "/meta/created"), &beat));
    TRY(H->write(call, CEP_S(ROOT "/setpoint"), &setpoint));
    TRY(H->write(call, CEP_S(ROOT "/count"), &zero));
    TRY(H->emit(call, CEP_S("thermo/tick"), cep_cstr(NULL), NULL, 0));
    return CEP_OK;
}

static cep_status vald(const cep_host_api *host, cep_call *call, void *user) {
    (void)host; (void)user;
    bool exists = false;
    TRY(H->exists(call, CEP_S(ROOT "/setpoint"), &exists));
    return exists ? CEP_OK : fail(call, "thermo: the setpoint is missing");
}

static cep_status dtor(const cep_host_api *host, cep_call *call, void *user) {
    (void)host; (void)user;
    cep_value beat = cep_i64((int64_t)H->beat(call));
    TRY(H->write(call, CEP_S(ROOT "/meta/closed"), &beat));
    return CEP_OK;
}

static cep_status reading(const cep_host_api *host, cep_call *call, void *user) {
    (void)host; (void)user;
    cep_value v;
    TRY(H->payload(call, &v));
    if (v.kind != CEP_VALUE_I64) return fail(call, "a reading is an integer (tenths of a degree)");
    if (v.as_i64 < -500 || v.as_i64 > 1500) return fail(call, "reading out of range");
    TRY(H->append(call, CEP_S(ROOT "/readings"), &v));
    return CEP_OK;
}

static cep_status tick(const cep_host_api *host, cep_call *call, void *user) {
    (void)host; (void)user;
    uint64_t beat = H->beat(call);
    TRY(H->emit(call, CEP_S("thermo/tick"), cep_cstr(NULL), NULL, 0));

    int64_t setpoint, count, temp;
    TRY(read_i64(call, CEP_S(ROOT "/setpoint"), DAY, &setpoint));
    TRY(read_i64(call, CEP_S(ROOT "/count"), 0, &count));
    TRY(read_i64(call, CEP_S(ROOT "/temp"), setpoint, &temp));

    const cep_str *names;
    size_t n = 0;
    TRY(H->children(call, CEP_S(ROOT "/readings"), &names, &n));
    if (n > 0) {
        int64_t sum = 0;
        char path[160];
        for (size_t i = 0; i < n; i++) {
            int len = snprintf(path, sizeof path, ROOT "/readings/%.*s", (int)names[i].len, names[i].ptr);
            cep_str p = { path, (size_t)len };
            int64_t r;
            TRY(read_i64(call, p, 0, &r));
            sum += r;
            TRY(H->remove(call, p));
        }
        temp = sum / (int64_t)n;
        cep_value t = cep_i64(temp), c = cep_i64(count + (int64_t)n);
        TRY(H->write(call, CEP_S(ROOT "/temp"), &t));
        TRY(H->write(call, CEP_S(ROOT "/count"), &c));
    }

    /* Bang-bang control with a band around the setpoint. */
    cep_value heater;
    TRY(H->read(call, CEP_S(ROOT "/heater"), &heater));
    bool on = heater.kind == CEP_VALUE_BOOL && heater.as_bool;
    if (temp < setpoint - BAND) on = true;
    if (temp > setpoint + BAND) on = false;
    cep_value h = cep_bool(on);
    TRY(H->write(call, CEP_S(ROOT "/heater"), &h));

    if (beat % 50 == 0) {
        cep_value next = cep_i64(setpoint == DAY ? NIGHT : DAY);
        TRY(H->write(call, CEP_S(ROOT "/setpoint"), &next));
    }
    return CEP_OK;
}

static const cep_str ROOT_SCOPE[] = { CEP_STR(ROOT) };
static const cep_str AFTER_READING[] = { CEP_STR("thermo.reading") };

static const cep_enzyme_desc ENZYMES[] = {
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("thermo.ctor"),
      .label = CEP_STR("construct the thermostat"), .signal = CEP_STR("organ/thermo/ctor"),
      .flags = CEP_ENZYME_EMITS, .call = ctor },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("thermo.vald"),
      .label = CEP_STR("validate the thermostat"), .signal = CEP_STR("organ/thermo/vald"),
      .call = vald },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("thermo.dtor"),
      .label = CEP_STR("close the thermostat"), .signal = CEP_STR("organ/thermo/dtor"),
      .call = dtor },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("thermo.reading"),
      .label = CEP_STR("record a sensor reading"), .signal = CEP_STR("sensor/reading"),
      .writes = ROOT_SCOPE, .writes_count = 1, .call = reading },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("thermo.tick"),
      .label = CEP_STR("average readings, drive the heater"), .signal = CEP_STR("thermo/tick"),
      .flags = CEP_ENZYME_EMITS, .after = AFTER_READING, .after_count = 1,
      .writes = ROOT_SCOPE, .writes_count = 1, .call = tick },
};

static const cep_organ_desc ORGANS[] = {
    { .header = CEP_HEADER(cep_organ_desc), .kind = CEP_STR("thermo"),
      .label = CEP_STR("a thermostat"), .root = CEP_STR(ROOT),
      .validator = CEP_STR("thermo.vald"), .constructor = CEP_STR("thermo.ctor"),
      .destructor = CEP_STR("thermo.dtor") },
};

static const cep_str CAPS[] = { CEP_STR("write:" ROOT), CEP_STR("emit:thermo") };

static const cep_plugin_desc PLUGIN = {
    .header = CEP_HEADER(cep_plugin_desc),
    .name = CEP_STR("thermo"),
    .version = CEP_STR("0.1.0"),
    .enzymes = ENZYMES, .enzyme_count = sizeof ENZYMES / sizeof ENZYMES[0],
    .organs = ORGANS, .organ_count = 1,
    .capabilities = CAPS, .capability_count = 2,
};

const cep_plugin_desc *cep_plugin_v1(const cep_host_api *host) {
    if (host->header.abi_major != CEP_ABI_MAJOR) return NULL;
    H = host;
    return &PLUGIN;
}
