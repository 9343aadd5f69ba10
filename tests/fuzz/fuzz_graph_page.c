/*
 * fuzz_graph_page - libFuzzer target: Microsoft Graph JSON pages to recipients
 *
 * Drives what syncd does with the body of a Graph answer: the JSON
 * decoding (source_graph_http_decode), the page walk (source_graph_page:
 * "value", @odata.nextLink) and the mapping of each object in
 * syncd/source_graph.c (included here: its mapping functions are static).
 * The first byte picks the page: 0 a full pull's users, 1 a users delta
 * page (@removed, changed users), 2 a group's members page; bit 2 sets
 * shared_unlicensed. Objects that would make syncd fetch more over HTTP
 * (a group, a delta entry without the properties the mapping needs) are
 * not handed on: no network here.
 *
 * Checked, in a sink that stands for the store: a put object has a
 * non-empty identity, a known kind, at least one address, every address
 * already in its normal form (addr_key gives it back unchanged) and
 * unique, logins lowercase; a delete names a lowercase id; log lines are
 * printable.
 */
#include "config.h"

#include "../../syncd/source_graph.c"

#include "addr.h"

#include "fuzz_common.h"

/* syncd.c's globals, which the source code reads. */
volatile sig_atomic_t syncd_stopping;
const char *syncd_conf_path = "fuzz.conf";

/* fuzz_put - the sink's put: what the store would get */
static int fuzz_put(SYNC_SINK *sink, const STORE_OBJECT *obj)
{
    char norm[ADDR_KEY_SIZE], why[256];

    (void) sink;
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "put %s %s %zu addresses, first %s\n", obj->guid, obj->kind, obj->n_addresses,
                obj->n_addresses ? obj->addresses[0] : "-");
    fuzz_check(obj->guid != NULL && *obj->guid);
    fuzz_check(strcmp(obj->kind, STORE_KIND_USER) == 0 || strcmp(obj->kind, STORE_KIND_SHARED) == 0
               || strcmp(obj->kind, STORE_KIND_CONTACT) == 0 || strcmp(obj->kind, STORE_KIND_GROUP) == 0);
    fuzz_check(obj->n_addresses > 0);
    for (size_t i = 0; i < obj->n_addresses; i++) {
        const char *a = obj->addresses[i];

        fuzz_check(addr_key(a, strlen(a), 0, norm, why, sizeof(why)) == 0 && strcmp(a, norm) == 0);
        for (size_t j = 0; j < i; j++)
            fuzz_check(strcmp(a, obj->addresses[j]) != 0);
    }
    for (size_t i = 0; i < obj->n_logins; i++)
        for (const char *p = obj->logins[i]; *p; p++)
            fuzz_check(!isupper((unsigned char) *p));
    return 0;
}

/* fuzz_del - the sink's delete */
static int fuzz_del(SYNC_SINK *sink, const char *guid)
{
    (void) sink;
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "del %s\n", guid);
    fuzz_check(guid != NULL && *guid);
    for (const char *p = guid; *p; p++)
        fuzz_check(!isupper((unsigned char) *p));
    return 0;
}

/* fuzz_users_delta_cb - a delta entry, unless it would need another GET */
static int fuzz_users_delta_cb(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen)
{
    if (json_object_get(item, "@removed") == NULL)
        for (const char *const *p = source_graph_users.needed; *p; p++)
            if (json_object_get(item, *p) == NULL)
                return 0;
    return source_graph_delta_cb(sg, item, ctx, err, errlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    SOURCE_CONF conf;
    SOURCE_GRAPH sg;
    SYNC_SINK sink;
    json_t *page;
    char err[1024], *next = NULL;
    int mode, rc;

    if (!ready) {
        fuzz_quiet("fuzz_graph_page");
        ready = 1;
    }
    if (size < 1)
        return 0;
    mode = data[0];
    memset(&conf, 0, sizeof(conf));
    conf.name = "fuzz";
    conf.shared_unlicensed = (mode & 4) != 0;
    memset(&sink, 0, sizeof(sink));
    sink.put = fuzz_put;
    sink.del = fuzz_del;
    memset(&sg, 0, sizeof(sg));
    sg.conf = &conf;
    sg.graph = "https://graph.microsoft.com";
    sg.api = "https://graph.microsoft.com/v1.0";
    sg.origin = "https://graph.microsoft.com/";
    sg.sink = &sink;
    source_obj_init(&sg.obj, conf.name);
    if (source_graph_http_decode((const char *) data + 1, size - 1, "page", &page, err, sizeof(err)) != GRAPH_OK) {
        fuzz_check(strncmp(err, "page: ", 6) == 0);
        source_obj_free(&sg.obj);
        return 0;
    }
    switch (mode & 3) {
    case 1:
        sg.delta = 1;
        rc = source_graph_page(&sg, page, "page", fuzz_users_delta_cb, (void *) &source_graph_users,
                               &next, err, sizeof(err));
        break;
    case 2:
        sg.obj.kind = STORE_KIND_GROUP;
        rc = source_graph_page(&sg, page, "page", source_graph_member, NULL, &next, err, sizeof(err));
        for (size_t i = 0; i < sg.obj.members.n; i++)
            for (const char *p = sg.obj.members.v[i]; *p; p++)
                fuzz_check(!isupper((unsigned char) *p));
        break;
    default:
        rc = source_graph_page(&sg, page, "page", source_graph_user_cb, NULL, &next, err, sizeof(err));
        break;
    }
    fuzz_check(rc == GRAPH_OK || rc == GRAPH_ERR);
    fuzz_check(rc == GRAPH_OK || next == NULL);
    free(next);
    json_decref(page);
    source_obj_free(&sg.obj);
    return 0;
}
