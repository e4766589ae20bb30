/*
 * sensor: an example C adapter. A simulated temperature probe with a
 * heater, running on its own thread at its own pace.
 *
 * The probe's thread offers one reading (`sensor/reading`, an integer in
 * tenths of a degree) every CEP_SENSOR_PERIOD_US microseconds (default
 * 500). The host captures readings at the next beat boundary; the adapter
 * never touches the tree. After each beat the adapter reads the committed
 * /data/thermo/heater (the thermostat organ's decision) and the simulated
 * room warms or cools accordingly: a closed loop through the heartbeat.
 *
 * A full input queue (CEP_ERR_FULL) makes the thread wait and offer the
 * same reading again; after shutdown begins (CEP_ERR_CLOSED) its readings
 * are dropped (the host counts them) until the host stops it.
 *
 * Build: cc -std=c11 -O2 -shared -fPIC -pthread -I include -o libsensor.so plugins/sensor/sensor.c
 */
#define _POSIX_C_SOURCE 200809L
#include "cep.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static const cep_host_api *H;

static struct {
    cep_sink *sink;
    pthread_t thread;
    atomic_bool running;
    atomic_bool heater;     /* last committed heater state */
    atomic_ullong offered;  /* readings accepted by the host */
    long period_us;
} probe;

static void pause_us(long us) {
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static void *run(void *arg) {
    (void)arg;
    double temp = 18.0;       /* degrees */
    uint32_t noise = 2463534242u;
    while (atomic_load(&probe.running)) {
        /* The room: the heater warms it, the outside cools it. */
        temp += atomic_load(&probe.heater) ? 0.05 : -0.03;
        noise ^= noise << 13; noise ^= noise >> 17; noise ^= noise << 5;
        int64_t tenths = (int64_t)(temp * 10.0) + (int64_t)(noise % 3) - 1;
        cep_value v = cep_i64(tenths);
        for (;;) {
            cep_status s = H->sink_inject(probe.sink, CEP_S("sensor/reading"), cep_cstr(NULL), &v);
            if (s == CEP_ERR_FULL && atomic_load(&probe.running)) {
                pause_us(100); /* back-pressure: wait, offer it again */
                continue;
            }
            if (s == CEP_OK) atomic_fetch_add(&probe.offered, 1);
            break;
        }
        pause_us(probe.period_us);
    }
    return NULL;
}

static cep_status start(const cep_host_api *host, cep_sink *sink, void *user) {
    (void)host; (void)user;
    const char *period = getenv("CEP_SENSOR_PERIOD_US");
    probe.period_us = period ? atol(period) : 500;
    probe.sink = sink;
    atomic_store(&probe.running, true);
    if (pthread_create(&probe.thread, NULL, run, NULL) != 0) {
        atomic_store(&probe.running, false);
        return CEP_ERR_FAILED;
    }
    return CEP_OK;
}

static void commit(const cep_host_api *host, cep_view *view, void *user) {
    (void)host; (void)user;
    cep_value heater;
    if (H->view_read(view, CEP_S("/data/thermo/heater"), &heater) == CEP_OK
        && heater.kind == CEP_VALUE_BOOL)
        atomic_store(&probe.heater, heater.as_bool);
}

static void stop(const cep_host_api *host, void *user) {
    (void)host; (void)user;
    atomic_store(&probe.running, false);
    pthread_join(probe.thread, NULL);
}

static const cep_adapter_desc ADAPTERS[] = {
    { .header = CEP_HEADER(cep_adapter_desc), .name = CEP_STR("probe"),
      .label = CEP_STR("simulated temperature probe"),
      .start = start, .commit = commit, .stop = stop },
};

static const cep_str CAPS[] = { CEP_STR("threads"), CEP_STR("emit:sensor") };

static const cep_plugin_desc PLUGIN = {
    .header = CEP_HEADER(cep_plugin_desc),
    .name = CEP_STR("sensor"),
    .version = CEP_STR("0.1.0"),
    .adapters = ADAPTERS, .adapter_count = 1,
    .capabilities = CAPS, .capability_count = 2,
};

const cep_plugin_desc *cep_plugin_v1(const cep_host_api *host) {
    if (host->header.abi_major != CEP_ABI_MAJOR) return NULL;
    H = host;
    return &PLUGIN;
}
