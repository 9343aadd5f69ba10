/*
 * spool.c - rcptgate-smtpd's mail queue on disk (see spool.h)
 *
 * A message file is its envelope (spool_text.c has its format), a blank
 * line, and the message. The first three lines have fixed offsets, so
 * the warned flag and the size are written in place; a recipient's
 * state byte is the first byte of its line and its offset is remembered
 * (in the SPOOL_RCPT, and in a small per-spool cache for spool_mark(),
 * which only gets the id; a miss reads the envelope again). A file's
 * size must be what its size line says, so a truncated file is reported
 * as damaged, not delivered short. defer/ID, the reasons, is written to
 * defer/tmp.ID and renamed, not fsynced.
 *
 * Ids are only [0-9A-Z], checked on every call, so a name the admin
 * command passes on (user input) can never leave the spool. Moves use
 * renameat2(RENAME_NOREPLACE) where the filesystem has it, so two files
 * can never collapse into one.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "spool_int.h"
#include "xalloc.h"

#define SPOOL_TRIGGER       "trigger"
#define SPOOL_DEFER         "defer"
#define SPOOL_TMP_PREFIX    "tmp."
#define SPOOL_WBUF          65536       /* spool_write()'s buffer */
#define SPOOL_CACHE         1024        /* remembered recipient offsets (one message a slot) */

/* A message's recipient state offsets, for spool_mark(). */
typedef struct spool_offsets {
    char id[SPOOL_ID_LEN];              /* "" = empty slot */
    size_t n;
    long long *off;
} SPOOL_OFFSETS;

struct spool {
    char *dir;
    int dir_fd;
    int in_fd;                          /* incoming/ */
    int def_fd;                         /* deferred/ */
    int hold_fd;                        /* hold/ */
    int reason_fd;                      /* defer/ */
    int trigger_fd;                     /* the FIFO, opened by spool_trigger_fd() */
    int batch;                          /* spool_set_batch(): no directory fsync per move */
    SPOOL_OFFSETS cache[SPOOL_CACHE];
};

struct spool_file {
    SPOOL *sp;
    int fd;
    char id[SPOOL_ID_LEN];
    size_t nrcpt;
    long long *off;                     /* each recipient's state byte */
    long long body_off;
    long long body_len;                 /* bytes given to spool_write() */
    char *buf;                          /* not yet written */
    size_t blen;
    int error;                          /* errno of a failed write, sticky */
};

/* ------------------------------------------------------------ ids */

/* spool_id_new - see spool.h */
void spool_id_new(char id[SPOOL_ID_LEN])
{
    static unsigned counter;
    struct timeval tv;

    gettimeofday(&tv, NULL);
    snprintf(id, SPOOL_ID_LEN, "%08llX%05lX%06lX%04X", (unsigned long long) tv.tv_sec & 0xffffffffULL,
             (unsigned long) tv.tv_usec & 0xfffffUL, (unsigned long) getpid() & 0xffffffUL,
             ++counter & 0xffffU);
}

/* spool_id_valid - see spool.h */
int spool_id_valid(const char *id)
{
    size_t n = 0;

    if (id == NULL)
        return 0;
    for (; id[n] != '\0'; n++)
        if (n >= SPOOL_ID_LEN - 1 || !((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'A' && id[n] <= 'Z')))
            return 0;
    return n > 0;
}

/* spool_id_time - see spool.h */
long long spool_id_time(const char *id)
{
    long long t = 0;

    if (!spool_id_valid(id))
        return -1;
    for (int i = 0; i < 8; i++) {
        char c = id[i];

        if (c >= '0' && c <= '9')
            t = t * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F')
            t = t * 16 + (c - 'A' + 10);
        else
            return -1;
    }
    return t;
}

/* ------------------------------------------------------------ small helpers */

/* spool_queue_fd - the directory fd of a queue name, -1 (EINVAL) for another name */
static int spool_queue_fd(const SPOOL *sp, const char *queue)
{
    if (queue != NULL && strcmp(queue, SPOOL_DEFERRED) == 0)
        return sp->def_fd;
    if (queue != NULL && strcmp(queue, SPOOL_HOLD) == 0)
        return sp->hold_fd;
    if (queue != NULL && strcmp(queue, SPOOL_INCOMING) == 0)
        return sp->in_fd;
    errno = EINVAL;
    return -1;
}

/* spool_move - rename without replacing (falls back to renameat where the filesystem lacks it) */
static int spool_move(int from_fd, const char *from, int to_fd, const char *to)
{
    if (renameat2(from_fd, from, to_fd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* no RENAME_NOREPLACE here: check, then rename (ids are unique; this is a belt) */
    if (faccessat(to_fd, to, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(from_fd, from, to_fd, to);
}

/* spool_write_all - write len bytes, restarting on short writes; -1 errno */
static int spool_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

/* ------------------------------------------------------------ opening */

/* spool_subdir - open (and with create make) one directory under dir_fd */
static int spool_subdir(int dir_fd, const char *dir, const char *name, int create, char *err, size_t errlen)
{
    int fd;

    if (create && mkdirat(dir_fd, name, 0700) < 0) {
        if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s/%s: %s", dir, name, strerror(errno));
            return -1;
        }
    } else if (create && fsync(dir_fd) < 0) {
        /* The new directory's entry on disk before any message is committed into it. */
        snprintf(err, errlen, "cannot sync %s after making %s: %s", dir, name, strerror(errno));
        return -1;
    }
    /* Never through a link: whoever owns the spool could point one at root's files. */
    fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        snprintf(err, errlen, "cannot open %s/%s: %s%s", dir, name,
                 errno == ELOOP || errno == ENOTDIR ? "a symbolic link or not a directory" : strerror(errno),
                 errno == ENOENT ? " (not a queue directory?)" : "");
    return fd;
}

/* spool_queued - is id in deferred/ or hold/? */
static int spool_queued(const SPOOL *sp, const char *id)
{
    struct stat st;

    return fstatat(sp->def_fd, id, &st, AT_SYMLINK_NOFOLLOW) == 0
        || fstatat(sp->hold_fd, id, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * spool_sweep - remove the entries of dir_fd that doomed() names (never
 * "." ones), then fsync it. doomed gets sp and prefix back.
 */
static void spool_sweep(int dir_fd, int (*doomed)(const SPOOL *, const char *, const char *),
                        const SPOOL *sp, const char *prefix)
{
    int fd = dup(dir_fd);
    DIR *d;
    struct dirent *de;

    if (fd < 0)
        return;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return;
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && doomed(sp, de->d_name, prefix))
            unlinkat(dir_fd, de->d_name, 0);
    closedir(d);
    fsync(dir_fd);
}

/* spool_prefixed - doomed() of spool_clear: every name, or those starting with prefix */
static int spool_prefixed(const SPOOL *sp, const char *name, const char *prefix)
{
    (void) sp;
    return prefix == NULL || strncmp(name, prefix, strlen(prefix)) == 0;
}

/* spool_orphan - doomed() of defer/: reasons whose message is gone (deleted during a delivery) */
static int spool_orphan(const SPOOL *sp, const char *name, const char *prefix)
{
    (void) prefix;
    return spool_id_valid(name) && !spool_queued(sp, name);
}

/* spool_clear - remove what a directory holds (every entry when prefix is NULL, else those starting with it) */
static void spool_clear(int dir_fd, const char *prefix)
{
    spool_sweep(dir_fd, spool_prefixed, NULL, prefix);
}

/* spool_open - see spool.h */
SPOOL *spool_open(const char *dir, int create, char *err, size_t errlen)
{
    SPOOL *sp;
    struct stat st;

    if (dir == NULL || *dir == '\0') {
        snprintf(err, errlen, "no queue directory configured");
        return NULL;
    }
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create queue directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    sp = xcalloc(1, sizeof(*sp));
    sp->dir = xstrdup(dir);
    sp->in_fd = sp->def_fd = sp->hold_fd = sp->reason_fd = sp->trigger_fd = -1;
    sp->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dir_fd < 0) {
        if (errno == ENOENT)
            snprintf(err, errlen, "queue directory %s does not exist", dir);
        else
            snprintf(err, errlen, "cannot open queue directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    if ((sp->in_fd = spool_subdir(sp->dir_fd, dir, SPOOL_INCOMING, create, err, errlen)) < 0
        || (sp->def_fd = spool_subdir(sp->dir_fd, dir, SPOOL_DEFERRED, create, err, errlen)) < 0
        || (sp->hold_fd = spool_subdir(sp->dir_fd, dir, SPOOL_HOLD, create, err, errlen)) < 0
        || (sp->reason_fd = spool_subdir(sp->dir_fd, dir, SPOOL_DEFER, create, err, errlen)) < 0)
        goto fail;
    if (create) {
        if (mkfifoat(sp->dir_fd, SPOOL_TRIGGER, 0600) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s/%s: %s", dir, SPOOL_TRIGGER, strerror(errno));
            goto fail;
        }
        if (fstatat(sp->dir_fd, SPOOL_TRIGGER, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISFIFO(st.st_mode)) {
            snprintf(err, errlen, "%s/%s is not a FIFO: remove it", dir, SPOOL_TRIGGER);
            goto fail;
        }
    }
    if (create == 2) {
        /*
         * One smtpd per spool: a second one would deliver the same files
         * and clear the first one's incoming/. The lock lives as long as
         * dir_fd (spool_close), across the fork of a daemon too.
         */
        if (flock(sp->dir_fd, LOCK_EX | LOCK_NB) < 0) {
            if (errno == EWOULDBLOCK)
                snprintf(err, errlen, "queue directory %s is in use by another rcptgate-smtpd", dir);
            else
                snprintf(err, errlen, "cannot lock queue directory %s: %s", dir, strerror(errno));
            goto fail;
        }
        spool_clear(sp->in_fd, NULL);   /* never acknowledged: the client still has them */
        spool_clear(sp->reason_fd, SPOOL_TMP_PREFIX);
        spool_sweep(sp->reason_fd, spool_orphan, sp, NULL);
    }
    return sp;

fail:
    spool_close(sp);
    return NULL;
}

/* spool_cache_drop - forget a slot */
static void spool_cache_drop(SPOOL_OFFSETS *c)
{
    free(c->off);
    c->off = NULL;
    c->n = 0;
    c->id[0] = '\0';
}

/* spool_close - see spool.h */
void spool_close(SPOOL *sp)
{
    if (sp == NULL)
        return;
    int fds[] = {sp->dir_fd, sp->in_fd, sp->def_fd, sp->hold_fd, sp->reason_fd, sp->trigger_fd};

    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (size_t i = 0; i < SPOOL_CACHE; i++)
        spool_cache_drop(&sp->cache[i]);
    free(sp->dir);
    free(sp);
}

/* spool_dir - see spool.h */
const char *spool_dir(const SPOOL *sp)
{
    return sp->dir;
}

/* ------------------------------------------------------------ the offsets cache */

/* spool_cache_slot - the slot an id hashes to */
static SPOOL_OFFSETS *spool_cache_slot(SPOOL *sp, const char *id)
{
    uint32_t h = 2166136261u;

    for (const char *p = id; *p != '\0'; p++)
        h = (h ^ (unsigned char) *p) * 16777619u;
    return &sp->cache[h % SPOOL_CACHE];
}

/* spool_cache_put - remember id's offsets (copied) */
static void spool_cache_put(SPOOL *sp, const char *id, const long long *off, size_t n)
{
    SPOOL_OFFSETS *c = spool_cache_slot(sp, id);

    spool_cache_drop(c);
    if (n == 0)
        return;
    c->off = xmalloc(n * sizeof(*off));
    memcpy(c->off, off, n * sizeof(*off));
    c->n = n;
    snprintf(c->id, sizeof(c->id), "%s", id);
}

/* spool_cache_forget - a message is gone */
static void spool_cache_forget(SPOOL *sp, const char *id)
{
    SPOOL_OFFSETS *c = spool_cache_slot(sp, id);

    if (strcmp(c->id, id) == 0)
        spool_cache_drop(c);
}

/* ------------------------------------------------------------ writing */

/* spool_create - see spool.h */
SPOOL_FILE *spool_create(SPOOL *sp, const SPOOL_ENV *env, char *err, size_t errlen)
{
    SPOOL_FILE *f;
    char *text = NULL;
    size_t len = 0;
    int fd;

    if (!spool_id_valid(env->id)) {
        snprintf(err, errlen, "invalid queue id");
        return NULL;
    }
    if (env->sender == NULL || (env->nrcpt > 0 && env->rcpt == NULL)) {
        snprintf(err, errlen, "%s: no sender or recipients", env->id);
        return NULL;
    }
    for (size_t i = 0; i < env->nrcpt; i++) {
        char st = env->rcpt[i].state;

        if (env->rcpt[i].addr == NULL
            || (st != SPOOL_RCPT_TODO && st != SPOOL_RCPT_DONE && st != SPOOL_RCPT_FAILED)) {
            snprintf(err, errlen, "%s: recipient %zu has no address or a bad state", env->id, i);
            return NULL;
        }
    }

    f = xcalloc(1, sizeof(*f));
    f->off = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof(*f->off));
    text = spool_text_envelope(env, f->off, &len);
    if (len > SPOOL_ENV_MAX) {
        snprintf(err, errlen, "%s: envelope too large (%zu bytes, at most %d)", env->id, len, SPOOL_ENV_MAX);
        goto fail;
    }
    fd = openat(sp->in_fd, env->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s/%s/%s: %s", sp->dir, SPOOL_INCOMING, env->id, strerror(errno));
        goto fail;
    }
    f->sp = sp;
    f->fd = fd;
    snprintf(f->id, sizeof(f->id), "%s", env->id);
    f->nrcpt = env->nrcpt;
    f->body_off = (long long) len;
    if (spool_write_all(fd, text, len) < 0) {
        snprintf(err, errlen, "cannot write %s/%s/%s: %s", sp->dir, SPOOL_INCOMING, env->id, strerror(errno));
        spool_abort(f);
        free(text);
        return NULL;
    }
    free(text);
    f->buf = xmalloc(SPOOL_WBUF);
    return f;

fail:
    free(text);
    free(f->off);
    free(f);
    return NULL;
}

/* spool_flush - write what the buffer holds; -1 errno */
static int spool_flush(SPOOL_FILE *f)
{
    if (f->error) {
        errno = f->error;
        return -1;
    }
    if (f->blen > 0 && spool_write_all(f->fd, f->buf, f->blen) < 0) {
        f->error = errno ? errno : EIO;
        return -1;
    }
    f->blen = 0;
    return 0;
}

/* spool_write - see spool.h */
int spool_write(SPOOL_FILE *f, const void *buf, size_t len)
{
    if (f->error) {
        errno = f->error;
        return -1;
    }
    f->body_len += (long long) len;
    if (f->blen + len > SPOOL_WBUF) {
        if (spool_flush(f) < 0)
            return -1;
        if (len >= SPOOL_WBUF) {
            if (spool_write_all(f->fd, buf, len) < 0) {
                f->error = errno ? errno : EIO;
                return -1;
            }
            return 0;
        }
    }
    memcpy(f->buf + f->blen, buf, len);
    f->blen += len;
    return 0;
}

/* spool_pwrite_byte - one byte at off; -1 errno */
static int spool_pwrite_byte(int fd, long long off, char c)
{
    ssize_t n;

    do
        n = pwrite(fd, &c, 1, (off_t) off);
    while (n < 0 && errno == EINTR);
    if (n == 1)
        return 0;
    if (n >= 0)
        errno = EIO;
    return -1;
}

/* spool_set_state - see spool.h */
int spool_set_state(SPOOL_FILE *f, size_t idx, char state)
{
    if (idx >= f->nrcpt || (state != SPOOL_RCPT_TODO && state != SPOOL_RCPT_DONE && state != SPOOL_RCPT_FAILED)) {
        errno = EINVAL;
        return -1;
    }
    if (spool_pwrite_byte(f->fd, f->off[idx], state) < 0) {
        f->error = errno;
        return -1;
    }
    return 0;
}

/* spool_file_free - close and free, the file itself left alone */
static void spool_file_free(SPOOL_FILE *f)
{
    if (f->fd >= 0)
        close(f->fd);
    free(f->buf);
    free(f->off);
    free(f);
}

/* spool_commit - see spool.h */
int spool_commit(SPOOL_FILE *f, long long next_try, char *err, size_t errlen)
{
    SPOOL *sp = f->sp;
    char size[SPOOL_SIZE_DIGITS + 1];
    struct timespec ts[2];
    const char *step;
    int in_deferred = 0;

    step = "write";
    if (spool_flush(f) < 0)
        goto fail;
    snprintf(size, sizeof(size), "%0*lld", SPOOL_SIZE_DIGITS, f->body_len);
    if (pwrite(f->fd, size, SPOOL_SIZE_DIGITS, (off_t) SPOOL_SIZE_OFF) != SPOOL_SIZE_DIGITS) {
        if (errno == 0)
            errno = EIO;
        goto fail;
    }
    /* the next try is the mtime: set before the fsync, so it is durable with the data */
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[1] = ts[0];
    if (next_try > 0) {
        ts[1].tv_sec = (time_t) next_try;
        ts[1].tv_nsec = 0;
    }
    step = "set the time of";
    if (futimens(f->fd, ts) < 0)
        goto fail;
    step = "fsync";
    if (fsync(f->fd) < 0)
        goto fail;
    step = "rename into deferred/";
    if (spool_move(sp->in_fd, f->id, sp->def_fd, f->id) < 0)
        goto fail;
    in_deferred = 1;
    step = "fsync the directory of";
    if (fsync(sp->def_fd) < 0)
        goto fail;
    spool_cache_put(sp, f->id, f->off, f->nrcpt);
    spool_file_free(f);
    return 0;

fail:
    snprintf(err, errlen, "cannot %s %s/%s/%s: %s", step, sp->dir, in_deferred ? SPOOL_DEFERRED : SPOOL_INCOMING,
             f->id, strerror(errno ? errno : EIO));
    /* nothing was queued: the client hears 4xx and still has the message */
    if (!in_deferred) {
        unlinkat(sp->in_fd, f->id, 0);
    } else if (unlinkat(sp->def_fd, f->id, 0) < 0 && (errno != ENOENT || unlinkat(sp->hold_fd, f->id, 0) < 0)) {
        /* (a hold can move it meanwhile) Left queued: the client's retry makes a second copy. */
        size_t n = strlen(err);

        snprintf(err + n, errlen - n, "; and it cannot be taken back (%s): it may be delivered twice",
                 strerror(errno));
    } else {
        (void) fsync(sp->def_fd);
    }
    spool_file_free(f);
    return -1;
}

/* spool_abort - see spool.h */
void spool_abort(SPOOL_FILE *f)
{
    if (f == NULL)
        return;
    unlinkat(f->sp->in_fd, f->id, 0);
    spool_file_free(f);
}

/* ------------------------------------------------------------ reading */

/*
 * spool_read_env - read the envelope (up to and with the blank line) from
 * fd at offset 0 into a new buffer: 0, or -1 with err (damaged or I/O).
 * *hlen is the envelope's length including the blank line.
 */
static int spool_read_env(int fd, const char *id, char **out, size_t *hlen, char *err, size_t errlen)
{
    size_t size = 8192, len = 0, scan = 0;
    char *buf = xmalloc(size + 1);
    int rc = -1;

    for (;;) {
        ssize_t n;

        if (len == size) {
            /* the envelope and its blank line fit in SPOOL_ENV_MAX + 1: never read more */
            if (size >= SPOOL_ENV_MAX + 1) {
                snprintf(err, errlen, "%s: damaged: no end of envelope in its first %d bytes", id, SPOOL_ENV_MAX);
                rc = -2;
                break;
            }
            size = size * 2 > SPOOL_ENV_MAX + 1 ? SPOOL_ENV_MAX + 1 : size * 2;
            buf = xrealloc(buf, size + 1);
        }
        n = pread(fd, buf + len, size - len, (off_t) len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: read error: %s", id, strerror(errno));
            break;
        }
        if (n == 0) {
            snprintf(err, errlen, "%s: damaged: truncated envelope (%zu bytes, no blank line)", id, len);
            rc = -2;
            break;
        }
        len += (size_t) n;
        buf[len] = '\0';
        for (; scan + 1 < len; scan++) {
            if (buf[scan] == '\n' && buf[scan + 1] == '\n') {
                if (scan + 2 > SPOOL_ENV_MAX) {
                    snprintf(err, errlen, "%s: damaged: envelope over %d bytes", id, SPOOL_ENV_MAX);
                    free(buf);
                    return -2;
                }
                *hlen = scan + 2;
                buf[scan + 1] = '\0';
                *out = buf;
                return 0;
            }
        }
    }
    free(buf);
    return rc;
}

/* spool_read_reasons - defer/id into env (best effort: what cannot be read is lost words) */
static void spool_read_reasons(SPOOL *sp, SPOOL_ENV *env)
{
    int fd = openat(sp->reason_fd, env->id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    char *buf;
    ssize_t n;

    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SPOOL_ENV_MAX || st.st_size == 0) {
        close(fd);
        return;
    }
    buf = xmalloc((size_t) st.st_size + 1);
    n = pread(fd, buf, (size_t) st.st_size, 0);
    close(fd);
    if (n <= 0) {
        free(buf);
        return;
    }
    spool_text_parse_reasons(buf, (size_t) n, env);
    free(buf);
}

/* spool_load - see spool.h */
int spool_load(SPOOL *sp, const char *queue, const char *id, SPOOL_ENV *env, int *fd_out,
               char *err, size_t errlen)
{
    int qfd = spool_queue_fd(sp, queue), fd, rc;
    struct stat st;
    char *text = NULL;
    size_t hlen = 0;
    long long *off;

    memset(env, 0, sizeof(*env));
    if (fd_out != NULL)
        *fd_out = -1;
    if (qfd < 0 || !spool_id_valid(id)) {
        snprintf(err, errlen, "invalid queue or queue id");
        errno = EINVAL;
        return -1;
    }
    fd = openat(qfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s/%s/%s: %s", sp->dir, queue, id, strerror(errno));
        return errno == ELOOP ? -2 : -1;        /* a symbolic link is not ours */
    }
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat %s/%s/%s: %s", sp->dir, queue, id, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s/%s/%s: damaged: not a regular file", sp->dir, queue, id);
        close(fd);
        return -2;
    }
    if ((rc = spool_read_env(fd, id, &text, &hlen, err, errlen)) < 0
        || spool_text_parse_envelope(id, text, hlen, env, err, errlen) < 0) {
        free(text);
        close(fd);
        return rc < 0 ? rc : -2;        /* what parses badly is damaged */
    }
    free(text);
    env->body_offset = (long long) hlen;
    env->next_try = (long long) st.st_mtim.tv_sec;
    /* Compared by subtraction: a damaged size near LLONG_MAX must not overflow. */
    if ((long long) st.st_size - env->body_offset != env->size) {
        snprintf(err, errlen, "%s: damaged: %lld bytes, the envelope says %lld of it and %lld of message", id,
                 (long long) st.st_size, env->body_offset, env->size);
        spool_env_free(env);
        close(fd);
        return -2;
    }
    off = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof(*off));
    for (size_t i = 0; i < env->nrcpt; i++)
        off[i] = env->rcpt[i].offset;
    spool_cache_put(sp, id, off, env->nrcpt);
    free(off);
    spool_read_reasons(sp, env);
    if (fd_out != NULL && lseek(fd, (off_t) env->body_offset, SEEK_SET) >= 0)
        *fd_out = fd;
    else
        close(fd);
    return 0;
}

/* spool_env_free - see spool.h */
void spool_env_free(SPOOL_ENV *env)
{
    if (env == NULL)
        return;
    free(env->sender);
    free(env->mail_params);
    free(env->envid);
    free(env->client.name);
    free(env->client.addr);
    free(env->client.helo);
    free(env->client.proto);
    free(env->client.login);
    for (size_t i = 0; i < env->nrcpt; i++) {
        free(env->rcpt[i].addr);
        free(env->rcpt[i].orcpt);
        free(env->rcpt[i].dsn);
        free(env->rcpt[i].reason);
    }
    free(env->rcpt);
    memset(env, 0, sizeof(*env));
}

/* ------------------------------------------------------------ changing queued messages */

/* spool_open_queued - open id read-write in deferred/ or hold/ (it may move meanwhile); fd, -2 gone, -1 error */
static int spool_open_queued(SPOOL *sp, const char *id)
{
    /* deferred, hold, deferred again: a move between two tries is not "gone" */
    int order[3] = {sp->def_fd, sp->hold_fd, sp->def_fd};

    for (int i = 0; i < 3; i++) {
        int fd = openat(order[i], id, O_RDWR | O_CLOEXEC | O_NOFOLLOW);

        if (fd >= 0)
            return fd;
        if (errno != ENOENT)
            return -1;
    }
    return -2;
}

/* spool_poke - write one byte at off after checking what is there (ok(pre) and a newline before when nl); fdatasync */
static int spool_poke(int fd, long long off, char c, int nl)
{
    char pre[2];
    struct stat st;
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
    int e;

    /* the byte there must be what we expect: a wrong offset must never damage a message */
    if (off < 1 || pread(fd, pre, 2, (off_t) off - 1) != 2 || (nl && pre[0] != '\n')
        || (nl && pre[1] != SPOOL_RCPT_TODO && pre[1] != SPOOL_RCPT_DONE && pre[1] != SPOOL_RCPT_FAILED)
        || (!nl && pre[1] != '0' && pre[1] != '1')) {
        close(fd);
        errno = EIO;
        return -1;
    }
    /* The mtime is the next try: a mark leaves it as it was (a write would make the message due now). */
    if (fstat(fd, &st) < 0 || spool_pwrite_byte(fd, off, c) < 0
        || (ts[1] = st.st_mtim, futimens(fd, ts) < 0) || fdatasync(fd) < 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

/* spool_find_offsets - id's state byte offsets: from the cache, else read again; 0, 1 gone, -1 */
static int spool_find_offsets(SPOOL *sp, const char *id, size_t idx, long long *off)
{
    SPOOL_OFFSETS *c = spool_cache_slot(sp, id);
    SPOOL_ENV env;
    char err[256];
    int rc;

    if (strcmp(c->id, id) == 0 && idx < c->n) {
        *off = c->off[idx];
        return 0;
    }
    if ((rc = spool_load(sp, SPOOL_DEFERRED, id, &env, NULL, err, sizeof(err))) == 1)
        rc = spool_load(sp, SPOOL_HOLD, id, &env, NULL, err, sizeof(err));
    if (rc != 0)
        return rc > 0 ? rc : -1;        /* damaged or unreadable: an error here */
    if (idx >= env.nrcpt) {
        spool_env_free(&env);
        errno = EINVAL;
        return -1;
    }
    *off = env.rcpt[idx].offset;
    spool_env_free(&env);
    return 0;
}

/* spool_mark - see spool.h */
int spool_mark(SPOOL *sp, const char *id, size_t idx, char state)
{
    long long off;
    int fd, rc;

    if (!spool_id_valid(id) || (state != SPOOL_RCPT_TODO && state != SPOOL_RCPT_DONE && state != SPOOL_RCPT_FAILED)) {
        errno = EINVAL;
        return -1;
    }
    if ((rc = spool_find_offsets(sp, id, idx, &off)) != 0)
        return rc;
    if ((fd = spool_open_queued(sp, id)) == -2)
        return 1;
    if (fd < 0)
        return -1;
    if (spool_poke(fd, off, state, 1) < 0) {
        if (errno == EIO)
            spool_cache_forget(sp, id);
        return -1;
    }
    return 0;
}

/* spool_mark_warned - see spool.h */
int spool_mark_warned(SPOOL *sp, const char *id)
{
    char head[sizeof(SPOOL_MAGIC) - 1 + sizeof(SPOOL_WARNED) - 1];
    int fd;

    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if ((fd = spool_open_queued(sp, id)) == -2)
        return 1;
    if (fd < 0)
        return -1;
    if (pread(fd, head, sizeof(head), 0) != (ssize_t) sizeof(head)
        || memcmp(head, SPOOL_MAGIC SPOOL_WARNED, sizeof(head)) != 0) {
        close(fd);
        errno = EIO;
        return -1;
    }
    return spool_poke(fd, SPOOL_WARNED_OFF, '1', 0);
}

/* spool_reason_save - see spool.h */
int spool_reason_save(SPOOL *sp, const SPOOL_ENV *env)
{
    char tmp[SPOOL_ID_LEN + sizeof(SPOOL_TMP_PREFIX)], *text;
    size_t len;
    int fd, rc = 0;

    if (!spool_id_valid(env->id)) {
        errno = EINVAL;
        return -1;
    }
    text = spool_text_reasons(env, &len);
    snprintf(tmp, sizeof(tmp), "%s%s", SPOOL_TMP_PREFIX, env->id);
    fd = openat(sp->reason_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        rc = -1;
    else {
        if (spool_write_all(fd, text, len) < 0)
            rc = -1;
        if (close(fd) < 0)
            rc = -1;
        if (rc == 0 && renameat(sp->reason_fd, tmp, sp->reason_fd, env->id) < 0)
            rc = -1;
        if (rc < 0) {
            int e = errno;

            unlinkat(sp->reason_fd, tmp, 0);
            errno = e;
        } else if (!spool_queued(sp, env->id)) {
            /* Deleted (rcptgate queue delete) while it was being delivered: no reasons left behind. */
            unlinkat(sp->reason_fd, env->id, 0);
        }
    }
    free(text);
    return rc;
}

/* spool_retry_at - see spool.h */
int spool_retry_at(SPOOL *sp, const char *id, long long when)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t) when, 0}};

    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if (utimensat(sp->def_fd, id, ts, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    return errno == ENOENT ? 1 : -1;
}

/* spool_dsync - fsync a queue directory after a move, unless in a batch */
static int spool_dsync(const SPOOL *sp, int fd)
{
    return sp->batch ? 0 : fsync(fd);
}

/* spool_set_batch - see spool.h */
void spool_set_batch(SPOOL *sp, int on)
{
    sp->batch = on;
}

/* spool_writable - see spool.h */
int spool_writable(SPOOL *sp)
{
    /* A dot name: never a queue id, so nothing lists or loads it. */
    int fd = openat(sp->in_fd, ".probe", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    int err;

    if (fd < 0)
        return -1;
    err = write(fd, "x", 1) == 1 ? 0 : (errno ? errno : EIO);
    close(fd);
    if (unlinkat(sp->in_fd, ".probe", 0) < 0 && err == 0)
        err = errno;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

/* spool_sync - see spool.h */
int spool_sync(SPOOL *sp)
{
    int rc = 0;

    if (fsync(sp->def_fd) < 0)
        rc = -1;
    if (fsync(sp->hold_fd) < 0)
        rc = -1;
    return rc;
}

/* spool_corrupt - see spool.h */
int spool_corrupt(SPOOL *sp, const char *id)
{
    int cfd;

    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    spool_cache_forget(sp, id);
    if (mkdirat(sp->dir_fd, SPOOL_CORRUPT, 0700) == 0)
        (void) fsync(sp->dir_fd);       /* its entry on disk before a file is moved in */
    else if (errno != EEXIST)
        return -1;
    if ((cfd = openat(sp->dir_fd, SPOOL_CORRUPT, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return -1;
    if (spool_move(sp->def_fd, id, cfd, id) < 0) {
        int e = errno;

        close(cfd);
        errno = e;
        return e == ENOENT ? 1 : -1;
    }
    (void) unlinkat(sp->reason_fd, id, 0);
    (void) spool_dsync(sp, cfd);
    close(cfd);
    return spool_dsync(sp, sp->def_fd) < 0 ? -1 : 0;
}

/* spool_corrupt_count - see spool.h */
long long spool_corrupt_count(SPOOL *sp)
{
    int fd = openat(sp->dir_fd, SPOOL_CORRUPT, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    long long n = 0;
    DIR *d;
    struct dirent *de;

    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return -1;
    }
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* spool_remove - see spool.h */
int spool_remove(SPOOL *sp, const char *id)
{
    int gone = 1, failed = 0;
    int qfds[2] = {sp->def_fd, sp->hold_fd};

    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    spool_cache_forget(sp, id);
    for (int i = 0; i < 2; i++) {
        if (unlinkat(qfds[i], id, 0) == 0) {
            gone = 0;
            if (spool_dsync(sp, qfds[i]) < 0)
                failed = 1;
        } else if (errno != ENOENT)
            failed = 1;
    }
    /* a hold racing with this delete: it may have moved to deferred/ after the first unlink */
    if (gone && unlinkat(sp->def_fd, id, 0) == 0) {
        gone = 0;
        spool_dsync(sp, sp->def_fd);
    }
    if (unlinkat(sp->reason_fd, id, 0) < 0 && errno != ENOENT)
        failed = 1;
    if (failed)
        return -1;
    return gone;
}

/* spool_hold - see spool.h */
int spool_hold(SPOOL *sp, const char *id)
{
    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if (spool_move(sp->def_fd, id, sp->hold_fd, id) < 0)
        return errno == ENOENT ? 1 : -1;
    /* Both directories: POSIX does not promise that the new entry's sync removes the old one. */
    return spool_dsync(sp, sp->hold_fd) < 0 || spool_dsync(sp, sp->def_fd) < 0 ? -1 : 0;
}

/* spool_release - see spool.h */
int spool_release(SPOOL *sp, const char *id)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};

    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    /* due now before it is seen in deferred/ */
    if (utimensat(sp->hold_fd, id, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 1 : -1;
    if (spool_move(sp->hold_fd, id, sp->def_fd, id) < 0)
        return errno == ENOENT ? 1 : -1;
    return spool_dsync(sp, sp->def_fd) < 0 || spool_dsync(sp, sp->hold_fd) < 0 ? -1 : 0;
}

/* spool_scan - see spool.h */
long long spool_scan(SPOOL *sp, const char *queue,
                     int (*cb)(void *arg, const char *id, long long mtime, long long size), void *arg)
{
    int qfd = spool_queue_fd(sp, queue), fd;
    DIR *d;
    struct dirent *de;
    long long seen = 0;

    if (qfd < 0)
        return -1;
    if ((fd = openat(qfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -1;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return -1;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        struct stat st;

        if (!spool_id_valid(de->d_name))
            continue;
        if (fstatat(qfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;                   /* gone meanwhile (moved, delivered, deleted) */
        seen++;
        if (cb != NULL && cb(arg, de->d_name, (long long) st.st_mtim.tv_sec, (long long) st.st_size) != 0)
            break;
    }
    if (de == NULL && errno != 0) {
        closedir(d);
        return -1;
    }
    closedir(d);
    return seen;
}

/* spool_find - see spool.h */
const char *spool_find(SPOOL *sp, const char *id)
{
    struct stat st;

    if (!spool_id_valid(id))
        return NULL;
    for (int i = 0; i < 3; i++) {
        int qfd = i == 1 ? sp->hold_fd : sp->def_fd;

        if (fstatat(qfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            return i == 1 ? SPOOL_HOLD : SPOOL_DEFERRED;
    }
    return NULL;
}

/* ------------------------------------------------------------ resources, trigger */

/* spool_space_ok - see spool.h */
int spool_space_ok(SPOOL *sp, long long size, long long minfree)
{
    struct statvfs vfs;
    unsigned long long avail, need;

    if (fstatvfs(sp->dir_fd, &vfs) < 0)
        return -1;
    avail = (unsigned long long) vfs.f_bavail * (unsigned long long) vfs.f_frsize;
    need = (unsigned long long) (size > 0 ? size : 0) + (unsigned long long) (minfree > 0 ? minfree : 0);
    return avail > need ? 1 : 0;
}

/* spool_trigger_fd - see spool.h */
int spool_trigger_fd(SPOOL *sp)
{
    struct stat st;

    if (sp->trigger_fd >= 0)
        return sp->trigger_fd;
    /*
     * Read and write: the FIFO then always has a writer (us), so a reader
     * never sees end of file between two triggers (no busy wakeups), and
     * spool_trigger() finds a reader as long as smtpd runs.
     */
    sp->trigger_fd = openat(sp->dir_fd, SPOOL_TRIGGER, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (sp->trigger_fd >= 0 && (fstat(sp->trigger_fd, &st) < 0 || !S_ISFIFO(st.st_mode))) {
        close(sp->trigger_fd);
        sp->trigger_fd = -1;
        errno = EINVAL;
    }
    return sp->trigger_fd;
}

/* spool_trigger - see spool.h */
int spool_trigger(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    int fd, rc = 0;

    if (snprintf(path, sizeof(path), "%s/%s", dir, SPOOL_TRIGGER) >= (int) sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* nonblocking: ENXIO when no process has the read end open (smtpd not running) */
    if ((fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (write(fd, "F", 1) < 0 && errno != EAGAIN)
        rc = -1;                        /* EAGAIN: the pipe is full of triggers already */
    close(fd);
    return rc;
}
