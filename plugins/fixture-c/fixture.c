/*
 * fixture-c: a C plugin for tests and benchmarks. Compiled once per case,
 * with a macro choosing what is wrong with it:
 *
 *   (none)            a well-formed plugin "cfx" (enzymes below)
 *   CFX_NO_ENTRY      exports no cep_plugin_v1
 *   CFX_NULL          cep_plugin_v1 returns NULL
 *   CFX_ABI_MAJOR=n   the descriptor claims ABI major n
 *   CFX_SMALL         cep_plugin_desc.struct_size is too small
 *   CFX_BAD_WORD      the plugin name is not a word
 *   CFX_NUL           the plugin name contains a NUL byte
 *   CFX_ADAPTER       adds adapter "cfeed", which offers `cfx/in` inputs
 *                     from its own thread as fast as the host takes them
 *                     (CFX_INPUTS=n stops it after n inputs)
 *
 * Enzymes: cfx.empty (cfx/empty) does nothing; cfx.write (cfx/write) writes
 * its payload at its target; cfx.fail (cfx/fail) fails with a message;
 * cfx.deny (cfx/deny) writes outside its grant and records what the host
 * answered under /data/cfx/deny/{code,message}.
 */
#define _POSIX_C_SOURCE 200809L
#include "cep.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static const cep_host_api *H;

static cep_status empty(const cep_host_api *host, cep_call *call, void *user) {
    (void)host; (void)call; (void)user;
    return CEP_OK;
}

static cep_status write_payload(const cep_host_api *host, cep_call *call, void *user) {
    (void)user;
    cep_value v;
    cep_status s = host->payload(call, &v);
    if (s != CEP_OK) return s;
    cep_str target = host->target(call);
    if (target.len == 0) return CEP_OK;
    return host->write(call, target, &v);
}

static cep_status fail(const cep_host_api *host, cep_call *call, void *user) {
    (void)user;
    host->set_error(call, CEP_S("the probe is unplugged"));
    return CEP_ERR_FAILED;
}

static cep_status deny(const cep_host_api *host, cep_call *call, void *user) {
    (void)user;
    cep_value v = cep_i64(1);
    cep_status s = host->write(call, CEP_S("/data/other/x"), &v);
    cep_str message = host->last_error(call);
    cep_value code = cep_i64(s), text = cep_text(message.ptr, message.len);
    cep_status a = host->write(call, CEP_S("/data/cfx/deny/code"), &code);
    cep_status b = host->write(call, CEP_S("/data/cfx/deny/message"), &text);
    return a != CEP_OK ? a : b;
}

static const cep_enzyme_desc ENZYMES[] = {
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("cfx.empty"),
      .signal = CEP_STR("cfx/empty"), .call = empty },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("cfx.write"),
      .signal = CEP_STR("cfx/write"), .call = write_payload },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("cfx.fail"),
      .signal = CEP_STR("cfx/fail"), .call = fail },
    { .header = CEP_HEADER(cep_enzyme_desc), .name = CEP_STR("cfx.deny"),
      .signal = CEP_STR("cfx/deny"), .call = deny },
};

#ifdef CFX_ADAPTER
#ifndef CFX_INPUTS
#define CFX_INPUTS 0ULL /* unbounded */
#endif
static struct {
    cep_sink *sink;
    pthread_t thread;
    atomic_bool running;
    unsigned long long limit;
} feed;

static void *flood(void *arg) {
    (void)arg;
    unsigned long long sent = 0;
    struct timespec wait = { 0, 50000 };
    while (atomic_load(&feed.running) && (feed.limit == 0 || sent < feed.limit)) {
        cep_value v = cep_i64((int64_t)sent);
        cep_status s = H->sink_inject(feed.sink, CEP_S("cfx/in"), cep_cstr(NULL), &v);
        if (s == CEP_OK) sent++;
        else nanosleep(&wait, NULL); /* full: back off; closed: dropped, counted by the host */
    }
    return NULL;
}

static cep_status feed_start(const cep_host_api *host, cep_sink *sink, void *user) {
    (void)host; (void)user;
    feed.limit = CFX_INPUTS;
    feed.sink = sink;
    atomic_store(&feed.running, true);
    return pthread_create(&feed.thread, NULL, flood, NULL) == 0 ? CEP_OK : CEP_ERR_FAILED;
}

static void feed_stop(const cep_host_api *host, void *user) {
    (void)host; (void)user;
    atomic_store(&feed.running, false);
    pthread_join(feed.thread, NULL);
}

static const cep_adapter_desc ADAPTERS[] = {
    { .header = CEP_HEADER(cep_adapter_desc), .name = CEP_STR("cfeed"),
      .start = feed_start, .stop = feed_stop },
};
static const cep_str CAPS[] = { CEP_STR("write:/data/cfx"), CEP_STR("emit:cfx"), CEP_STR("threads") };
#define ADAPTER_COUNT 1
#define CAP_COUNT 3
#else
#define ADAPTERS NULL
static const cep_str CAPS[] = { CEP_STR("write:/data/cfx"), CEP_STR("emit:cfx") };
#define ADAPTER_COUNT 0
#define CAP_COUNT 2
#endif

#if defined(CFX_BAD_WORD)
#define NAME CEP_STR("Not A Word")
#elif defined(CFX_NUL)
#define NAME CEP_STR("cf\0x")
#else
#define NAME CEP_STR("cfx")
#endif

static const cep_plugin_desc PLUGIN = {
#if defined(CFX_ABI_MAJOR)
    .header = { CFX_ABI_MAJOR, 0, sizeof(cep_plugin_desc) },
#elif defined(CFX_SMALL)
    .header = { CEP_ABI_MAJOR, CEP_ABI_MINOR, 16 },
#else
    .header = CEP_HEADER(cep_plugin_desc),
#endif
    .name = NAME,
    .version = CEP_STR("0.1.0"),
    .enzymes = ENZYMES, .enzyme_count = sizeof ENZYMES / sizeof ENZYMES[0],
    .adapters = ADAPTERS, .adapter_count = ADAPTER_COUNT,
    .capabilities = CAPS, .capability_count = CAP_COUNT,
};

#ifdef CFX_NO_ENTRY
const cep_plugin_desc *cfx_plugin(const cep_host_api *host);
const cep_plugin_desc *cfx_plugin(const cep_host_api *host)
#else
const cep_plugin_desc *cep_plugin_v1(const cep_host_api *host)
#endif
{
    H = host;
#ifdef CFX_NULL
    (void)PLUGIN;
    return NULL;
#else
    return &PLUGIN;
#endif
}
