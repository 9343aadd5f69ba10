/*
 * source_graph_http.c - HTTPS, tokens and paging for the graph source of rcptgate-syncd
 *
 * What source_graph.c needs to talk to Microsoft Graph, over libcurl:
 *
 *   - one easy handle per open source (connections are reused, HTTP/2
 *     where libcurl has it), HTTPS only, the certificate and host name
 *     always verified (ca_file adds a CA bundle), the usual proxy
 *     variables honoured by libcurl, connect_timeout and timeout (the
 *     whole request), no redirects;
 *   - the OAuth 2.0 client-credentials token from
 *     LOGIN_URL/TENANT/oauth2/v2.0/token for GRAPH_URL/.default, with a
 *     client secret or a client assertion: a JWT signed RS256 with the
 *     client key (OpenSSL), carrying the certificate's SHA-1 thumbprint
 *     as x5t. The token is kept in this file (across pulls: the daemon
 *     opens the source anew for each) until shortly before it expires;
 *     a 401 from Graph drops it and the request is tried once more with
 *     a new one;
 *   - GET with throttling and retries: 429 and 503 honour Retry-After (at
 *     most SOURCE_GRAPH_HTTP_WAIT_MAX s a time, SOURCE_GRAPH_HTTP_THROTTLE_MAX
 *     times a request); other server errors and network failures (a
 *     truncated answer too) are tried SOURCE_GRAPH_HTTP_RETRY_MAX more
 *     times after 1, 2 s; a certificate that does not verify is not;
 *   - pages: "value" of each page to a callback, then @odata.nextLink,
 *     one page in memory at a time. A next or delta link must lead to
 *     graph_url's own origin: the token is never sent anywhere else. An
 *     empty page whose nextLink is the link it was fetched with, more
 *     than SOURCE_PAGES_MAX pages, or SIGTERM between pages fail the pull
 *     (source_pages_check): a server must not keep a pull going forever.
 *
 * Secrets (the client secret, the form, the token) are zeroed after use.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "log.h"
#include "source_graph.h"
#include "xalloc.h"

/*
 * One response, at most. Graph's pages are 1 to 3 MB (999 users); the
 * JSON tree of a page takes up to about 75 times its size (16 MB of
 * "{}," took 2 GB), so the cap bounds the memory too.
 */
#define SOURCE_GRAPH_HTTP_PAGE_MAX   (16 * 1024 * 1024)
#define SOURCE_GRAPH_HTTP_TOKEN_LIFE_MAX 86400           /* s: a longer expires_in is taken as this */
#define SOURCE_GRAPH_HTTP_WAIT_MAX   120                 /* s: one Retry-After, at most */
#define SOURCE_GRAPH_HTTP_WAIT_DEF   5                   /* s: 429/503 without Retry-After */
#define SOURCE_GRAPH_HTTP_THROTTLE_MAX 8                 /* 429/503 answers per request */
#define SOURCE_GRAPH_HTTP_RETRY_MAX  2                   /* retries after other failures */
#define SOURCE_GRAPH_HTTP_JWT_LIFE   600                 /* s: a client assertion's life */

/*
 * The tokens, kept between pulls (the daemon opens a source anew for
 * each), one per credential: a few sources, so a short list.
 */
typedef struct source_graph_http_token {
    struct source_graph_http_token *next;
    char *key;                      /* token_url, client_id, graph_url, credential file */
    char *token;                    /* NULL: none yet, or dropped */
    long long renew_at;             /* monotonic ms */
} SOURCE_GRAPH_HTTP_TOKEN;

static SOURCE_GRAPH_HTTP_TOKEN *source_graph_http_tokens;

/* source_graph_http_now - a monotonic clock in milliseconds */
long long source_graph_http_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* source_graph_http_sleep - wait ms, or less when a signal asks us to stop; 0 or -1 stopped */
static int source_graph_http_sleep(long long ms)
{
    long long end = source_graph_http_now() + ms;

    while (!source_stopping()) {
        long long left = end - source_graph_http_now();
        struct timespec ts;

        if (left <= 0)
            return 0;
        if (left > 100)
            left = 100;
        ts.tv_sec = 0;
        ts.tv_nsec = (long) left * 1000000L;
        (void) nanosleep(&ts, NULL);
    }
    return -1;
}

/* source_graph_http_origin - "https://host[:port]/" of an https URL, or NULL */
char *source_graph_http_origin(const char *url)
{
    size_t n;

    if (strncasecmp(url, "https://", 8) != 0)
        return NULL;
    n = 8 + strcspn(url + 8, "/?#");
    if (n == 8)
        return NULL;
    return xasprintf("%.*s/", (int) n, url);
}

/* ------------------------------------------------------------ HTTP */

/* source_graph_http_write - libcurl's write callback: append to the body, bounded */
static size_t source_graph_http_write(char *ptr, size_t size, size_t nmemb, void *ctx)
{
    SOURCE_GRAPH_BUF *b = ctx;
    size_t n = size * nmemb;

    if (b->len + n + 1 > SOURCE_GRAPH_HTTP_PAGE_MAX) {
        b->too_big = 1;
        return 0;                       /* libcurl fails the transfer */
    }
    if (b->len + n + 1 > b->size) {
        while (b->len + n + 1 > b->size)
            b->size = b->size ? 2 * b->size : 65536;
        b->data = xrealloc(b->data, b->size);
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

/* source_graph_http_body_reset - empty the body; a large buffer is given back */
static void source_graph_http_body_reset(SOURCE_GRAPH_BUF *b)
{
    if (b->size > 4 * 1024 * 1024) {
        free(b->data);
        b->data = NULL;
        b->size = 0;
    }
    b->len = 0;
    b->too_big = 0;
    if (b->data)
        b->data[0] = 0;
}

/*
 * source_graph_http_perform - one HTTP exchange: GET url, or POST form when
 * form is not NULL; bearer token when given. 0 with *status, or -1 with
 * err (network, TLS, timeout, truncated); *tls_failed for a certificate
 * that does not verify (no use retrying).
 */
static int source_graph_http_perform(SOURCE_GRAPH *sg, const char *url, const char *form, const char *token,
                                     long *status, long long *retry_after, int *tls_failed,
                                char *err, size_t errlen)
{
    struct curl_slist *hdr = NULL;
    char *auth = NULL;
    curl_off_t ra = -1;
    CURLcode rc;

    *status = 0;
    *retry_after = -1;
    *tls_failed = 0;
    source_graph_http_body_reset(&sg->body);
    sg->curl_err[0] = 0;
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (token) {
        auth = xasprintf("Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    curl_easy_setopt(sg->curl, CURLOPT_URL, url);
    curl_easy_setopt(sg->curl, CURLOPT_HTTPHEADER, hdr);
    if (form) {
        curl_easy_setopt(sg->curl, CURLOPT_POSTFIELDS, form);
    } else {
        curl_easy_setopt(sg->curl, CURLOPT_HTTPGET, 1L);
    }
    sg->requests++;
    rc = curl_easy_perform(sg->curl);
    curl_easy_setopt(sg->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    xfree_secret(auth);
    if (rc != CURLE_OK) {
        /*
         * Only a certificate that does not verify is for good.
         * CURLE_SSL_CONNECT_ERROR is any failed handshake, a connection
         * reset by a proxy or load balancer in the middle of it included:
         * tried again like any network error (a handshake that can never
         * work fails after the same few tries).
         */
        *tls_failed = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE;
        if (sg->body.too_big)
            snprintf(err, errlen, "%s: the answer is larger than %d MB", url, SOURCE_GRAPH_HTTP_PAGE_MAX >> 20);
        else
            snprintf(err, errlen, "%s: %s", url, sg->curl_err[0] ? sg->curl_err : curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(sg->curl, CURLINFO_RESPONSE_CODE, status);
    if (curl_easy_getinfo(sg->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
        *retry_after = (long long) ra;
    return 0;
}

/* source_graph_http_error_text - Graph's or the token endpoint's error code and message, into buf */
static const char *source_graph_http_error_text(SOURCE_GRAPH *sg, char *buf, size_t size)
{
    json_t *j = json_loadb(sg->body.data ? sg->body.data : "", sg->body.len, 0, NULL);
    json_t *e;
    const char *code = NULL, *msg = NULL;

    buf[0] = 0;
    if (j == NULL)
        return buf;
    if ((e = json_object_get(j, "error")) != NULL && json_is_object(e)) {
        code = json_string_value(json_object_get(e, "code"));
        msg = json_string_value(json_object_get(e, "message"));
    } else {
        code = json_string_value(e);
        msg = json_string_value(json_object_get(j, "error_description"));
    }
    snprintf(buf, size, "%s%s%s%.300s", code ? ": " : "", code ? code : "", msg ? ": " : "", msg ? msg : "");
    for (char *p = buf; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    json_decref(j);
    return buf;
}

/* source_graph_http_gone - does an error answer say the delta state is dead? */
static int source_graph_http_gone(SOURCE_GRAPH *sg, long status)
{
    char text[512];

    if (status == 410)
        return 1;
    if (status < 400 || status >= 500)
        return 0;
    source_graph_http_error_text(sg, text, sizeof(text));
    return strcasestr(text, "resyncRequired") != NULL || strcasestr(text, "syncStateNotFound") != NULL
        || strcasestr(text, "syncStateInvalid") != NULL;
}

/* ------------------------------------------------------------ the token */

/* source_graph_http_b64url - base64url without padding of n bytes */
static char *source_graph_http_b64url(const unsigned char *in, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *) out, in, (int) n);

    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = 0;
    for (char *p = out; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    return out;
}

/* source_graph_http_load_cert - the key and the certificate's x5t (SHA-1 thumbprint); 0 or -1 */
static int source_graph_http_load_cert(SOURCE_GRAPH *sg, char *err, size_t errlen)
{
    const SOURCE_CONF *c = sg->conf;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509 *x = NULL;
    BIO *bio;
    FILE *fp;

    if ((fp = fopen(c->client_cert_file, "r")) == NULL) {
        snprintf(err, errlen, "client_cert_file %s: %s", c->client_cert_file, strerror(errno));
        return -1;
    }
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    if (x == NULL || X509_digest(x, EVP_sha1(), md, &mdlen) != 1) {
        snprintf(err, errlen, "client_cert_file %s: not a PEM certificate", c->client_cert_file);
        X509_free(x);
        return -1;
    }
    X509_free(x);
    sg->x5t = source_graph_http_b64url(md, mdlen);
    /* The key was read with the configuration (before privileges were dropped). */
    if (c->client_key == NULL) {
        snprintf(err, errlen, "client_key_file %s could not be read", c->client_key_file);
        return -1;
    }
    if ((bio = BIO_new_mem_buf(c->client_key, -1)) != NULL)
        sg->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (sg->key == NULL || EVP_PKEY_get_base_id(sg->key) != EVP_PKEY_RSA) {
        snprintf(err, errlen, "client_key_file %s: not an unencrypted PEM RSA key", c->client_key_file);
        return -1;
    }
    return 0;
}

/* source_graph_http_assertion - a signed JWT (RS256) for the token endpoint; NULL with err */
static char *source_graph_http_assertion(SOURCE_GRAPH *sg, char *err, size_t errlen)
{
    unsigned char jti[16];
    char jti_hex[33];
    time_t now = time(NULL);
    json_t *h, *p;
    char *hs, *ps, *h64, *p64, *input, *sig64, *jwt = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = NULL;

    if (RAND_bytes(jti, sizeof(jti)) != 1) {
        snprintf(err, errlen, "no random bytes for the client assertion");
        return NULL;
    }
    for (size_t i = 0; i < sizeof(jti); i++)
        snprintf(jti_hex + 2 * i, 3, "%02x", jti[i]);
    h = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "x5t", sg->x5t);
    p = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "aud", sg->token_url, "iss", sg->conf->client_id,
                  "sub", sg->conf->client_id, "jti", jti_hex, "nbf", (json_int_t) now,
                  "iat", (json_int_t) now, "exp", (json_int_t) now + SOURCE_GRAPH_HTTP_JWT_LIFE);
    hs = json_dumps(h, JSON_COMPACT);
    ps = json_dumps(p, JSON_COMPACT);
    json_decref(h);
    json_decref(p);
    if (hs == NULL || ps == NULL)
        log_fatal("out of memory building the client assertion");
    h64 = source_graph_http_b64url((unsigned char *) hs, strlen(hs));
    p64 = source_graph_http_b64url((unsigned char *) ps, strlen(ps));
    free(hs);
    free(ps);
    input = xasprintf("%s.%s", h64, p64);
    free(h64);
    free(p64);
    if ((md = EVP_MD_CTX_new()) == NULL
        || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, sg->key) != 1
        || EVP_DigestSign(md, NULL, &siglen, (unsigned char *) input, strlen(input)) != 1
        || (sig = xmalloc(siglen)) == NULL
        || EVP_DigestSign(md, sig, &siglen, (unsigned char *) input, strlen(input)) != 1) {
        snprintf(err, errlen, "signing the client assertion failed");
    } else {
        sig64 = source_graph_http_b64url(sig, siglen);
        jwt = xasprintf("%s.%s", input, sig64);
        free(sig64);
    }
    EVP_MD_CTX_free(md);
    free(sig);
    free(input);
    return jwt;
}

/* source_graph_http_cache_key - who a cached token belongs to */
static char *source_graph_http_cache_key(SOURCE_GRAPH *sg)
{
    return xasprintf("%s %s %s %s", sg->token_url, sg->conf->client_id, sg->graph,
                     *sg->conf->client_secret_file ? sg->conf->client_secret_file
                     : sg->conf->client_cert_file);
}

/* source_graph_http_cached - the token entry of a source's credential (made when new) */
static SOURCE_GRAPH_HTTP_TOKEN *source_graph_http_cached(SOURCE_GRAPH *sg)
{
    char *key = source_graph_http_cache_key(sg);
    SOURCE_GRAPH_HTTP_TOKEN *e;

    for (e = source_graph_http_tokens; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            free(key);
            return e;
        }
    }
    e = xcalloc(1, sizeof(*e));
    e->key = key;
    e->next = source_graph_http_tokens;
    source_graph_http_tokens = e;
    return e;
}

/* source_graph_http_forget - drop a source's cached token (Graph said 401) */
static void source_graph_http_forget(SOURCE_GRAPH *sg)
{
    SOURCE_GRAPH_HTTP_TOKEN *e = source_graph_http_cached(sg);

    xfree_secret(e->token);
    e->token = NULL;
}

/*
 * source_graph_http_token - a valid access token: the cached one, or a new one
 * from the token endpoint. The returned string lives until the next call.
 */
static const char *source_graph_http_token(SOURCE_GRAPH *sg, char *err, size_t errlen)
{
    const SOURCE_CONF *c = sg->conf;
    SOURCE_GRAPH_HTTP_TOKEN *e = source_graph_http_cached(sg);
    char *id = NULL, *scope = NULL, *cred = NULL, *form = NULL, *assertion = NULL;
    json_t *j = NULL;
    const char *tok;
    long status = 0;
    long long ra, expires;
    int tls_failed, rc = -1;
    char text[512];

    if (e->token && source_graph_http_now() < e->renew_at)
        return e->token;
    xfree_secret(e->token);
    e->token = NULL;
    if (*c->client_secret_file && c->client_secret == NULL) {
        snprintf(err, errlen, "client_secret_file %s could not be read", c->client_secret_file);
        return NULL;
    }
    if (*c->client_cert_file && (assertion = source_graph_http_assertion(sg, err, errlen)) == NULL)
        return NULL;
    id = curl_easy_escape(sg->curl, c->client_id, 0);
    scope = xasprintf("%s/.default", sg->graph);
    {
        char *s = curl_easy_escape(sg->curl, scope, 0);

        free(scope);
        scope = xstrdup(s);
        curl_free(s);
    }
    if (assertion) {
        char *a = curl_easy_escape(sg->curl, assertion, 0);

        cred = xasprintf("client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type"
                         "%%3Ajwt-bearer&client_assertion=%s", a);
        curl_free(a);
    } else {
        char *s = curl_easy_escape(sg->curl, c->client_secret, 0);

        cred = xasprintf("client_secret=%s", s);
        memset(s, 0, strlen(s));        /* curl_free does not zero it */
        curl_free(s);
    }
    form = xasprintf("grant_type=client_credentials&client_id=%s&scope=%s&%s", id, scope, cred);
    for (int attempt = 0; attempt <= SOURCE_GRAPH_HTTP_RETRY_MAX && !source_stopping(); attempt++) {
        if (attempt > 0 && source_graph_http_sleep(1000LL << (attempt - 1)) < 0)
            break;
        if (source_graph_http_perform(sg, sg->token_url, form, NULL, &status, &ra, &tls_failed,
                                      err, errlen) < 0) {
            if (tls_failed)
                break;
            continue;
        }
        if (status == 429 || status >= 500) {
            snprintf(err, errlen, "%s: HTTP %ld%s", sg->token_url, status,
                     source_graph_http_error_text(sg, text, sizeof(text)));
            if (ra > SOURCE_GRAPH_HTTP_WAIT_MAX)
                ra = SOURCE_GRAPH_HTTP_WAIT_MAX;
            if (ra > 0 && source_graph_http_sleep(ra * 1000) < 0)
                break;
            continue;
        }
        break;
    }
    curl_free(id);
    free(scope);
    xfree_secret(cred);
    xfree_secret(form);
    xfree_secret(assertion);
    if (status == 0 || status == 429 || status >= 500)
        return NULL;                    /* err says why */
    if (status != 200) {
        char *echo;

        source_graph_http_error_text(sg, text, sizeof(text));
        /* An endpoint that quotes the request back must not put the secret in the log. */
        if ((echo = strstr(text, "client_secret")) != NULL || (echo = strstr(text, "client_assertion")) != NULL)
            snprintf(echo, sizeof(text) - (size_t) (echo - text), "[...]");
        snprintf(err, errlen, "the token endpoint %s refused client %s: HTTP %ld%s", sg->token_url,
                 c->client_id, status, text);
        return NULL;
    }
    if ((j = json_loadb(sg->body.data, sg->body.len, 0, NULL)) == NULL
        || (tok = json_string_value(json_object_get(j, "access_token"))) == NULL || *tok == 0) {
        snprintf(err, errlen, "%s: no access_token in the answer", sg->token_url);
    } else {
        json_t *ei = json_object_get(j, "expires_in");

        /* expires_in is a number, or (v1 endpoints) a string holding one */
        expires = json_is_integer(ei) ? (long long) json_integer_value(ei)
            : json_is_string(ei) ? atoll(json_string_value(ei)) : 3600;
        if (expires < 1)
            expires = 1;
        if (expires > SOURCE_GRAPH_HTTP_TOKEN_LIFE_MAX)
            expires = SOURCE_GRAPH_HTTP_TOKEN_LIFE_MAX;
        e->token = xstrdup(tok);
        /* Renew shortly before it expires: 5 minutes, or a quarter of a short life. */
        e->renew_at = source_graph_http_now()
            + 1000 * (expires - (expires > 1200 ? 300 : expires / 4));
        log_debug("source %s: new access token, valid for %lld s", c->name, expires);
        rc = 0;
    }
    if (j) {
        json_t *t = json_object_get(j, "access_token");

        if (json_is_string(t))
            (void) json_string_set(t, "");      /* do not leave it in freed memory */
        json_decref(j);
    }
    if (sg->body.data)
        memset(sg->body.data, 0, sg->body.len);
    return rc == 0 ? e->token : NULL;
}

/*
 * source_graph_http_get - GET a Graph URL as JSON, with the token, throttling
 * and retries. GRAPH_OK with *out (json_decref it), GRAPH_GONE,
 * GRAPH_NOTFOUND, or GRAPH_ERR with err.
 */
int source_graph_http_get(SOURCE_GRAPH *sg, const char *url, json_t **out, char *err, size_t errlen)
{
    int renewed = 0, throttled = 0, retries = 0;
    char text[512];

    *out = NULL;
    for (;;) {
        const char *token;
        long status;
        long long ra, wait;
        int tls_failed;

        if (source_stopping()) {
            snprintf(err, errlen, "stopping on a signal");
            return GRAPH_ERR;
        }
        if ((token = source_graph_http_token(sg, err, errlen)) == NULL)
            return GRAPH_ERR;
        if (source_graph_http_perform(sg, url, NULL, token, &status, &ra, &tls_failed, err, errlen) < 0) {
            if (tls_failed || sg->body.too_big || retries >= SOURCE_GRAPH_HTTP_RETRY_MAX)
                return GRAPH_ERR;
            log_warn("source %s: %s; trying again", sg->conf->name, err);
            if (source_graph_http_sleep(1000LL << retries++) < 0)
                return GRAPH_ERR;
            continue;
        }
        if (status == 200)
            return source_graph_http_decode(sg->body.data, sg->body.len, url, out, err, errlen);
        if (status == 401 && !renewed) {
            /* Expired or revoked in the middle of a pull: one new token, once. */
            log_info("source %s: Graph refused the access token (401); getting a new one", sg->conf->name);
            source_graph_http_forget(sg);
            renewed = 1;
            continue;
        }
        if (status == 429 || status == 503) {
            if (throttled++ >= SOURCE_GRAPH_HTTP_THROTTLE_MAX) {
                snprintf(err, errlen, "%s: still throttled (HTTP %ld) after %d waits", url, status,
                         SOURCE_GRAPH_HTTP_THROTTLE_MAX);
                return GRAPH_ERR;
            }
            wait = ra > 0 ? ra : SOURCE_GRAPH_HTTP_WAIT_DEF;
            if (wait > SOURCE_GRAPH_HTTP_WAIT_MAX)
                wait = SOURCE_GRAPH_HTTP_WAIT_MAX;
            log_info("source %s: Graph is throttling (HTTP %ld); waiting %lld s as Retry-After asks",
                     sg->conf->name, status, wait);
            if (source_graph_http_sleep(wait * 1000) < 0) {
                snprintf(err, errlen, "stopping on a signal");
                return GRAPH_ERR;
            }
            continue;
        }
        if (source_graph_http_gone(sg, status))
            return GRAPH_GONE;
        if (status == 404)
            return GRAPH_NOTFOUND;
        snprintf(err, errlen, "%s: HTTP %ld%s", url, status,
                 source_graph_http_error_text(sg, text, sizeof(text)));
        if (status == 403)
            return GRAPH_FORBIDDEN;     /* err says it too: a caller may go on without it */
        if (status >= 500 && retries < SOURCE_GRAPH_HTTP_RETRY_MAX) {
            log_warn("source %s: %s; trying again", sg->conf->name, err);
            if (source_graph_http_sleep(1000LL << retries++) < 0)
                return GRAPH_ERR;
            continue;
        }
        return GRAPH_ERR;
    }
}

/* source_graph_http_decode - a 200 answer's body as a JSON object */
int source_graph_http_decode(const char *body, size_t len, const char *url, json_t **out,
                             char *err, size_t errlen)
{
    json_error_t je;

    if ((*out = json_loadb(body ? body : "", len, 0, &je)) == NULL) {
        snprintf(err, errlen, "%s: malformed JSON (line %d, column %d: %s)", url, je.line,
                 je.column, je.text);
        return GRAPH_ERR;
    }
    if (!json_is_object(*out)) {
        snprintf(err, errlen, "%s: the answer is not a JSON object", url);
        json_decref(*out);
        *out = NULL;
        return GRAPH_ERR;
    }
    return GRAPH_OK;
}

/* source_graph_page - each object of one page's "value" to fn; its @odata.nextLink */
int source_graph_page(SOURCE_GRAPH *sg, json_t *page, const char *url, SOURCE_GRAPH_ITEM_FN fn, void *ctx,
                      char **next, char *err, size_t errlen)
{
    json_t *value, *item;
    const char *link;
    size_t i;

    *next = NULL;
    if ((value = json_object_get(page, "value")) == NULL || !json_is_array(value)) {
        snprintf(err, errlen, "%s: the answer has no \"value\" array", url);
        return GRAPH_ERR;
    }
    json_array_foreach(value, i, item) {
        if (!json_is_object(item)) {
            snprintf(err, errlen, "%s: an entry of \"value\" is not an object", url);
            return GRAPH_ERR;
        }
        if (fn(sg, item, ctx, err, errlen) < 0)
            return GRAPH_ERR;
    }
    if ((link = json_string_value(json_object_get(page, "@odata.nextLink"))) != NULL)
        *next = xstrdup(link);
    return GRAPH_OK;
}

/*
 * source_graph_http_pages - every page from url on: each object of "value" to
 * fn, then @odata.nextLink, until a page without one. *delta_link (when
 * not NULL) gets the last page's @odata.deltaLink (required then).
 * GRAPH_OK, GRAPH_GONE, GRAPH_NOTFOUND (the first page), or GRAPH_ERR.
 */
int source_graph_http_pages(SOURCE_GRAPH *sg, const char *url, SOURCE_GRAPH_ITEM_FN fn, void *ctx,
                            char **delta_link, char *err, size_t errlen)
{
    char *next = xstrdup(url), *before = NULL;
    long long pages = 0;

    if (delta_link)
        *delta_link = NULL;
    while (next) {
        json_t *page = NULL;
        char *link;
        const char *dl;
        size_t entries;
        int rc = source_graph_http_get(sg, next, &page, err, errlen);

        if (rc != GRAPH_OK) {
            free(next);
            free(before);
            if (rc == GRAPH_NOTFOUND && pages > 0) {
                /* Only the first page may say "no such object"; a lost next page is a failure. */
                snprintf(err, errlen, "page %lld of %s is gone (404)", pages + 1, url);
                return GRAPH_ERR;
            }
            return rc;
        }
        rc = source_graph_page(sg, page, next, fn, ctx, &link, err, errlen);
        entries = json_array_size(json_object_get(page, "value"));
        /* The same nextLink again on an empty page, no end, or SIGTERM: fail, nothing applied. */
        if (rc == GRAPH_OK
            && source_pages_check(&pages, next, strlen(next), link, link ? strlen(link) : 0,
                                  (long long) entries, url, err, errlen) < 0) {
            free(link);
            rc = GRAPH_ERR;
        } else if (rc == GRAPH_OK && link != NULL
                   && (strcmp(link, next) == 0 || (before != NULL && strcmp(link, before) == 0))) {
            /*
             * Graph's skip tokens move on with every page: a link back to
             * this page or the one before, entries or not, is a loop that
             * would put the same objects (and members) again and again.
             */
            snprintf(err, errlen, "%s: page %lld links back to %s page; the listing would never end",
                     url, pages, strcmp(link, next) == 0 ? "itself as the next" : "the previous");
            free(link);
            rc = GRAPH_ERR;
        }
        free(before);
        before = next;
        next = NULL;
        if (rc != GRAPH_OK) {
            json_decref(page);
            free(before);
            return GRAPH_ERR;
        }
        if (link != NULL) {
            next = link;
        } else if (delta_link
                   && (dl = json_string_value(json_object_get(page, "@odata.deltaLink"))) != NULL) {
            *delta_link = xstrdup(dl);
        }
        json_decref(page);
        if (next && strncasecmp(next, sg->origin, strlen(sg->origin)) != 0) {
            snprintf(err, errlen, "a next link leads away from graph_url (%s): %.200s", sg->origin, next);
            free(next);
            free(before);
            return GRAPH_ERR;
        }
    }
    free(before);
    if (delta_link && *delta_link == NULL) {
        snprintf(err, errlen, "%s: the last page has no @odata.deltaLink", url);
        return GRAPH_ERR;
    }
    if (delta_link && strncasecmp(*delta_link, sg->origin, strlen(sg->origin)) != 0) {
        snprintf(err, errlen, "the delta link leads away from graph_url (%s): %.200s", sg->origin, *delta_link);
        free(*delta_link);
        *delta_link = NULL;
        return GRAPH_ERR;
    }
    return GRAPH_OK;
}

/* source_graph_http_progress - libcurl's progress callback (at least once a second): stop on a signal */
static int source_graph_http_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                                      curl_off_t ulnow)
{
    (void) arg;
    (void) dltotal;
    (void) dlnow;
    (void) ultotal;
    (void) ulnow;
    return source_stopping() ? 1 : 0;
}

/* source_graph_http_open - the libcurl handle and the client certificate of a new source */
int source_graph_http_open(SOURCE_GRAPH *sg, char *err, size_t errlen)
{
    static int curl_ready;

    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, errlen, "libcurl could not be initialised");
            return -1;
        }
        curl_ready = 1;
    }
    if (*sg->conf->client_cert_file && source_graph_http_load_cert(sg, err, errlen) < 0)
        return -1;
    if ((sg->curl = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "libcurl: no handle");
        return -1;
    }
    curl_easy_setopt(sg->curl, CURLOPT_ERRORBUFFER, sg->curl_err);
    curl_easy_setopt(sg->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(sg->curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(sg->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(sg->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(sg->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (*sg->conf->ca_file)
        curl_easy_setopt(sg->curl, CURLOPT_CAINFO, sg->conf->ca_file);
    curl_easy_setopt(sg->curl, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(sg->curl, CURLOPT_CONNECTTIMEOUT_MS, (long) sg->conf->connect_timeout_ms);
    curl_easy_setopt(sg->curl, CURLOPT_TIMEOUT_MS, (long) sg->conf->timeout_ms);
    curl_easy_setopt(sg->curl, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(sg->curl, CURLOPT_USERAGENT, PACKAGE_NAME "-syncd/" PACKAGE_VERSION);
    curl_easy_setopt(sg->curl, CURLOPT_WRITEFUNCTION, source_graph_http_write);
    curl_easy_setopt(sg->curl, CURLOPT_WRITEDATA, &sg->body);
    /* A SIGTERM ends a transfer too (a server that trickles could hold one for timeout, up to an hour). */
    curl_easy_setopt(sg->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(sg->curl, CURLOPT_XFERINFOFUNCTION, source_graph_http_progress);
    return 0;
}

/* source_graph_http_close - what source_graph_http_open() and the requests hold */
void source_graph_http_close(SOURCE_GRAPH *sg)
{
    if (sg->curl)
        curl_easy_cleanup(sg->curl);
    sg->curl = NULL;
    EVP_PKEY_free(sg->key);
    sg->key = NULL;
    if (sg->body.data)
        memset(sg->body.data, 0, sg->body.size);
    free(sg->body.data);
    sg->body.data = NULL;
    free(sg->x5t);
    sg->x5t = NULL;
}
