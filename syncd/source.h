/*
 * source.h - the directory source interface of rcptgate-syncd
 *
 * One small table of functions per backend, one file per backend
 * (source_ldap.c, source_file.c, source_graph.c), in the manner of
 * OpenSMTPD's table backends. A source pulls objects and hands each to a
 * SYNC_SINK; it never touches the store itself, so one apply path
 * (sync_apply.c) holds the shrink guard and the transaction rules for all.
 */
#ifndef RG_SOURCE_H
#define RG_SOURCE_H

#include <stddef.h>

#include "params_source.h"
#include "store_sync.h"

/* Where a pull delivers objects. */
typedef struct sync_sink {
    /* put - one object (borrowed: copy what must outlive the call); 0 or -1 to abort */
    int (*put)(struct sync_sink *sink, const STORE_OBJECT *obj);
    /* del - an object removed since the cookie (incremental pulls only) */
    int (*del)(struct sync_sink *sink, const char *guid);
    void *ctx;
    /* what a source could not use (bad addresses ...), for the run summary */
    long long skipped;
} SYNC_SINK;

typedef struct source SOURCE;

/* Results of pulls and waits. */
#define SOURCE_OK       0
#define SOURCE_ERR     -1       /* directory failure: apply nothing, retry later (EX_TEMPFAIL) */
#define SOURCE_FULL     1       /* incremental impossible (cookie expired, DC changed): do a full pull */

typedef struct source_ops {
    const char *type;
    /* open - connect and bind; NULL with err on failure */
    SOURCE *(*open)(const SOURCE_CONF *conf, char *err, size_t errlen);
    /* full - every object; *cookie (malloc'd) is the state to resume incremental pulls from */
    int (*full)(SOURCE *src, SYNC_SINK *sink, char **cookie, char **invocation_id, char *err, size_t errlen);
    /* incremental - changes since cookie; SOURCE_FULL when a full pull is needed; NULL if unsupported */
    int (*incremental)(SOURCE *src, const char *cookie, const char *invocation_id, SYNC_SINK *sink,
                       char **new_cookie, char **new_invocation_id, char *err, size_t errlen);
    /*
     * wait - persistent mode: block up to timeout_ms for a change
     * notification; 1 change (pull incrementally now), 0 timeout, -1
     * error. NULL when the backend has none (the daemon then polls). A
     * backend that applies changes as they stream (RFC 4533 refreshAndPersist)
     * may deliver them to the sink inside incremental() instead.
     */
    int (*wait)(SOURCE *src, int timeout_ms, char *err, size_t errlen);
    void (*close)(SOURCE *src);
} SOURCE_OPS;

extern const SOURCE_OPS source_ldap_ops;
extern const SOURCE_OPS source_file_ops;
extern const SOURCE_OPS source_graph_ops;

/*
 * source_graph_validate - the settings of a type = graph source (in
 * source_graph.c): each problem reported as file:line; the error count
 */
int source_graph_validate(const char *file, int line, const char *name, const SOURCE_CONF *conf);

/* source_ops_find - the backend for a type, or NULL */
const SOURCE_OPS *source_ops_find(const char *type);

#endif
