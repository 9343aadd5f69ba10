/*
 * source_graph.h - what the two files of the graph source share
 *
 * source_graph.c: the [source NAME] checks of type = graph, the mapping of
 * users and groups, full and delta pulls, the SOURCE_OPS. source_graph_http.c:
 * libcurl, the OAuth 2.0 token and paged GETs. SOURCE_GRAPH is the open
 * source; both files fill parts of it.
 */
#ifndef RG_SOURCE_GRAPH_H
#define RG_SOURCE_GRAPH_H

#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "syncd.h"

#define SOURCE_GRAPH_TOP_MAX    999     /* Graph's largest $top */

/* Results of one request. */
#define GRAPH_OK        0
#define GRAPH_ERR      -1
#define GRAPH_GONE      1       /* 410 or "resync required": the delta link is dead */
#define GRAPH_NOTFOUND  2       /* 404: the object is gone */
#define GRAPH_FORBIDDEN 3       /* 403, with err: the application may not read it */

/* A response body. */
typedef struct source_graph_buf {
    char *data;
    size_t len;
    size_t size;
    int too_big;
} SOURCE_GRAPH_BUF;

/* One open Graph source. */
typedef struct source_graph {
    const SOURCE_CONF *conf;        /* borrowed: lives until close */
    char *login;                    /* login_url, no trailing '/' */
    char *graph;                    /* graph_url, no trailing '/' */
    char *api;                      /* graph + "/v1.0" */
    char *origin;                   /* "https://host[:port]/" of graph_url */
    char *token_url;
    /* source_graph_http.c */
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
    SOURCE_GRAPH_BUF body;
    EVP_PKEY *key;                  /* client certificate credential */
    char *x5t;
    long long requests;
    /* source_graph.c, during a pull */
    SYNC_SINK *sink;
    SOURCE_OBJ obj;
    int delta;                      /* incremental pull: non-recipients are deleted */
    char **unread;                  /* a delta's ids whose re-read found nothing (yet) */
    size_t nunread;
    long long users, groups, contacts, members, disabled, put, gone;
} SOURCE_GRAPH;

/* source_graph_http_now - a monotonic clock in milliseconds */
long long source_graph_http_now(void);

/* source_graph_http_origin - "https://host[:port]/" of an https:// URL (malloc'd), or NULL */
char *source_graph_http_origin(const char *url);

/*
 * source_graph_http_open - the libcurl handle (and, with client_cert_file,
 * the key and x5t) for a source whose conf, token_url and graph are set:
 * 0, or -1 with err. source_graph_http_close frees what it and the
 * requests hold; both are safe on a partly opened source.
 */
int source_graph_http_open(SOURCE_GRAPH *sg, char *err, size_t errlen);
void source_graph_http_close(SOURCE_GRAPH *sg);

/*
 * source_graph_http_get - GET a Graph URL as a JSON object, with the
 * token, throttling and retries: GRAPH_OK with *out (json_decref it),
 * GRAPH_FORBIDDEN (403) with err,
 * GRAPH_GONE, GRAPH_NOTFOUND, or GRAPH_ERR with err.
 */
int source_graph_http_get(SOURCE_GRAPH *sg, const char *url, json_t **out, char *err, size_t errlen);

/* Called for each object of a page; 0, or -1 (err set) to stop. */
typedef int (*SOURCE_GRAPH_ITEM_FN)(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen);

/*
 * source_graph_http_decode - the body of a 200 answer to url as a JSON
 * object: GRAPH_OK with *out (json_decref it), or GRAPH_ERR with err.
 */
int source_graph_http_decode(const char *body, size_t len, const char *url, json_t **out,
                             char *err, size_t errlen);

/*
 * source_graph_page - one page of url: each object of its "value" to fn,
 * and *next its @odata.nextLink (malloc'd) or NULL. GRAPH_OK, or
 * GRAPH_ERR with err (no "value" array, an entry that is not an object,
 * or fn's failure). The paged GET and the fuzz target share it.
 */
int source_graph_page(SOURCE_GRAPH *sg, json_t *page, const char *url, SOURCE_GRAPH_ITEM_FN fn, void *ctx,
                      char **next, char *err, size_t errlen);

/*
 * source_graph_http_pages - every page from url on: each object of
 * "value" to fn, then @odata.nextLink, until a page without one; only
 * one page is held at a time. *delta_link (when not NULL) gets the last
 * page's @odata.deltaLink (required then; malloc'd). GRAPH_OK, GRAPH_GONE
 * or GRAPH_NOTFOUND (of the first page), or GRAPH_ERR with err.
 */
int source_graph_http_pages(SOURCE_GRAPH *sg, const char *url, SOURCE_GRAPH_ITEM_FN fn, void *ctx,
                            char **delta_link, char *err, size_t errlen);

#endif
