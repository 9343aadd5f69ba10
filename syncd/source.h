/*
 * source.h - the directory source interface of rcptgate-syncd
 *
 * One small table of functions per backend, one file per backend
 * (source_ldap.c, source_file.c, source_graph.c), in the manner of
 * OpenSMTPD's table backends. A source pulls objects and hands each to a
 * SYNC_SINK; it never touches the store itself, so one apply path
 * (sync_apply.c) holds the shrink guard and the transaction rules for all.
 * syncd.c knows a backend only through this table (its settings checked
 * by validate, persistence by can_persist and wait, a SIGHUP passed on by
 * reload), and a backend knows the daemon only through source_stopping().
 */
#ifndef RG_SOURCE_H
#define RG_SOURCE_H

#include <signal.h>
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
    /*
     * validate - the settings of a [source NAME] of this type, beyond the
     * checks every type shares; each problem logged as file:line; the
     * error count. NULL: nothing more to check.
     */
    int (*validate)(const char *file, int line, const char *name, const SOURCE_CONF *conf);
    /*
     * can_persist - 1 when mode = persistent works with these settings
     * (the daemon then keeps the connection and calls wait), 0 when it
     * must poll. NULL: never (wait is then not used).
     */
    int (*can_persist)(const SOURCE_CONF *conf);
    /* reload - SIGHUP: forget what was learnt about the directory (refused rights ...); NULL: nothing */
    void (*reload)(void);
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

/* source_can_persist - its backend's can_persist for conf (0 without wait or can_persist) */
int source_can_persist(const SOURCE_CONF *conf);

/* source_ops_reload - SIGHUP: call every backend's reload */
void source_ops_reload(void);

/*
 * source_stop_flag - the daemon's stop flag (set by its signal handlers),
 * read by source_stopping(); NULL (the default): never stop. Backends ask
 * source_stopping() between entries and while they wait, and give up the
 * pull as failed; they never see the daemon's globals.
 */
void source_stop_flag(volatile sig_atomic_t *flag);
int source_stopping(void);

/* The most pages one paged listing may take (source_pages_check). */
#define SOURCE_PAGES_MAX    1000000

/*
 * source_pages_check - after one page of a paged listing (LDAP paged
 * results, Graph @odata.nextLink): may the pull ask for the next one?
 * asked is the continuation this page was asked with (empty for the
 * first), next the one it returned (empty: the last page), entries how
 * many it held, *pages the pages so far (counted here). -1 with err
 * (naming what) when a page handed back the continuation it was asked
 * with and nothing else (a server that would be asked the same forever),
 * after SOURCE_PAGES_MAX pages, or when the daemon was told to stop
 * (entry callbacks see the flag only while entries come); else 0.
 */
int source_pages_check(long long *pages, const void *asked, size_t asked_len, const void *next,
                       size_t next_len, long long entries, const char *what, char *err, size_t errlen);

#endif
