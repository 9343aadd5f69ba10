/*
 * paths.c - the files and directories a program writes, checked for its user
 *
 * See paths.h. The checks ask the kernel (access(2) as the user) rather
 * than reading mode bits, so that supplementary groups, ACLs and
 * read-only mounts give the answer the daemon will later get; stat(2)
 * only supplies the owner and mode for the message. A root process
 * forks a child that drops to the user for this: the parent never
 * changes identity until it means to (paths_act_as()).
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "paths.h"
#include "xalloc.h"

#ifndef RG_LOCALSTATEDIR
#define RG_LOCALSTATEDIR "/var"
#endif

typedef struct paths_item {
    int kind;                   /* PATHS_DIR_WRITE ... | PATHS_SOFT, PATHS_ADVISE */
    const char *what;           /* "store directory" */
    char *path;
    int mode;                   /* for a directory: the mode the fix gives it */
} PATHS_ITEM;

struct paths {
    int count;
    PATHS_ITEM item[PATHS_MAX];
};

/* Who the checks run as, for the messages. */
typedef struct paths_who {
    char user[64];
    char group[64];
    uid_t uid;
    int named;                  /* user was configured (the fix may chown to it) */
} PATHS_WHO;

/* paths_umask - set PATHS_UMASK; every program's first step */
void paths_umask(void)
{
    (void) umask(PATHS_UMASK);
}

/* paths_create - an empty list */
PATHS *paths_create(void)
{
    return xcalloc(1, sizeof(PATHS));
}

/* paths_free - the list and its paths; NULL is fine */
void paths_free(PATHS *pl)
{
    if (pl == NULL)
        return;
    for (int i = 0; i < pl->count; i++)
        free(pl->item[i].path);
    free(pl);
}

/* paths_add - one place, unless empty or already listed */
void paths_add(PATHS *pl, int kind, const char *what, const char *path, int mode)
{
    if (path == NULL || *path == 0)
        return;
    for (int i = 0; i < pl->count; i++) {
        PATHS_ITEM *it = &pl->item[i];

        if ((it->kind & ~PATHS_FLAGS) == (kind & ~PATHS_FLAGS) && strcmp(it->path, path) == 0) {
            /* Listed for two reasons: hard if either is (a flag stays when both have it). */
            it->kind &= kind | ~PATHS_FLAGS;
            return;
        }
    }
    if (pl->count >= PATHS_MAX)
        log_panic("paths_add: more than %d places", PATHS_MAX);
    pl->item[pl->count].kind = kind;
    pl->item[pl->count].what = what;
    pl->item[pl->count].path = xstrdup(path);
    pl->item[pl->count].mode = mode;
    pl->count++;
}

/* paths_add_file_dir - the directory a file is created in */
void paths_add_file_dir(PATHS *pl, int soft, const char *what, const char *file, int mode)
{
    const char *slash;
    char *dir;

    if (file == NULL || *file == 0)
        return;
    if ((slash = strrchr(file, '/')) == NULL)
        dir = xstrdup(".");
    else if (slash == file)
        dir = xstrdup("/");
    else
        dir = xstrndup(file, (size_t) (slash - file));
    paths_add(pl, PATHS_DIR_WRITE | (soft ? PATHS_SOFT : 0), what, dir, mode);
    free(dir);
}

/* paths_add_store - the store's directory, the store and its -wal and -shm files */
void paths_add_store(PATHS *pl, int soft, const char *store_path)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    int flag = soft ? PATHS_SOFT : 0;

    if (store_path == NULL || *store_path == 0 || strcmp(store_path, ":memory:") == 0)
        return;
    /* SQLite creates -wal and -shm beside the store: the directory must be writable. */
    paths_add_file_dir(pl, soft, "store directory", store_path, 0750);
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char *p = xasprintf("%s%s", store_path, suffix[i]);

        paths_add(pl, PATHS_FILE_WRITE | flag, "store file", p, 0);
        free(p);
    }
}

/* paths_add_store_read - the store's places for a reader: reach the directory, read the files */
void paths_add_store_read(PATHS *pl, int soft, const char *store_path)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    int flag = soft ? PATHS_SOFT : 0;
    const char *slash;

    if (store_path == NULL || *store_path == 0 || strcmp(store_path, ":memory:") == 0)
        return;
    if ((slash = strrchr(store_path, '/')) != NULL && slash != store_path) {
        char *dir = xstrndup(store_path, (size_t) (slash - store_path));

        paths_add(pl, PATHS_DIR_EXISTS | flag, "store directory", dir, 0750);
        free(dir);
    }
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char *p = xasprintf("%s%s", store_path, suffix[i]);

        paths_add(pl, PATHS_FILE_READ | flag, "store file", p, 0);
        free(p);
    }
}

/* paths_add_listeners - the directory of every unix: listener */
void paths_add_listeners(PATHS *pl, const char *list)
{
    LISTEN_ADDR la[LISTEN_MAX];
    char err[256];
    int n = listen_parse_list(list, la, LISTEN_MAX, err, sizeof(err));

    /* Postfix must reach the socket: its directory is searchable by all. */
    for (int i = 0; i < n; i++)
        if (la[i].is_unix)
            paths_add_file_dir(pl, 0, "socket directory", la[i].path, 0755);
}

/* paths_owner - the name of uid, or its number */
static const char *paths_owner(uid_t uid, char *buf, size_t size)
{
    struct passwd *pw = getpwuid(uid);

    if (pw != NULL)
        snprintf(buf, size, "%s", pw->pw_name);
    else
        snprintf(buf, size, "%ld", (long) uid);
    return buf;
}

/* paths_report - one problem: an error, or a warning for a soft place when not strict */
static int paths_report(const PATHS_ITEM *it, int strict, const char *fmt, ...) RG_PRINTF(3, 4);

static int paths_report(const PATHS_ITEM *it, int strict, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if ((it->kind & PATHS_ADVISE) || ((it->kind & PATHS_SOFT) && !strict)) {
        log_warn("%s", line);
        return 0;
    }
    log_err("%s", line);
    return 1;
}

/* paths_blocker - the first directory above path that who cannot search */
static int paths_blocker(const char *path, char *out, size_t size)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        buf[i] = 0;
        if (access(buf, X_OK) < 0 && errno == EACCES) {
            snprintf(out, size, "%s", buf);
            return 0;
        }
        buf[i] = path[i];
    }
    return -1;
}

/* paths_unreachable - the message for a place a parent directory hides */
static int paths_unreachable(const PATHS_ITEM *it, const PATHS_WHO *who, int strict)
{
    char blocker[4096];
    char owner[64];
    struct stat st;

    if (paths_blocker(it->path, blocker, sizeof(blocker)) == 0 && lstat(blocker, &st) == 0)
        return paths_report(it, strict, "%s %s cannot be reached by user %s: directory %s "
                            "(owner %s, mode %04o) does not let it pass: chmod o+x %s",
                            it->what, it->path, who->user, blocker,
                            paths_owner(st.st_uid, owner, sizeof(owner)),
                            (unsigned) (st.st_mode & 07777), blocker);
    return paths_report(it, strict, "%s %s cannot be reached by user %s: %s",
                        it->what, it->path, who->user, strerror(EACCES));
}

/* paths_not_writable - the message for a place the user may not write */
static int paths_not_writable(const PATHS_ITEM *it, const PATHS_WHO *who, const struct stat *st,
                              int strict)
{
    char owner[64];
    int err = errno;

    if (err == EROFS)
        return paths_report(it, strict, "%s %s is on a read-only file system", it->what, it->path);
    if (err != EACCES && err != EPERM)
        return paths_report(it, strict, "%s %s: %s", it->what, it->path, strerror(err));
    paths_owner(st->st_uid, owner, sizeof(owner));
    if (st->st_uid == who->uid)
        return paths_report(it, strict, "%s %s is not writable by user %s (owner %s, mode %04o): "
                            "chmod u+rw%s %s", it->what, it->path, who->user, owner,
                            (unsigned) (st->st_mode & 07777), S_ISDIR(st->st_mode) ? "x" : "",
                            it->path);
    if (who->named)
        return paths_report(it, strict, "%s %s is not writable by user %s (owner %s): chown %s %s",
                            it->what, it->path, who->user, owner, who->user, it->path);
    return paths_report(it, strict, "%s %s is not writable by user %s (owner %s): run as %s, "
                        "or set user in the config to the user that owns it",
                        it->what, it->path, who->user, owner, owner);
}

/* paths_check_dir - a directory: there, reachable, a directory, writable if need be */
static int paths_check_dir(const PATHS_ITEM *it, const PATHS_WHO *who, int strict)
{
    struct stat st;

    if (stat(it->path, &st) < 0) {
        if (errno == EACCES)
            return paths_unreachable(it, who, strict);
        if (errno != ENOENT && errno != ENOTDIR)
            return paths_report(it, strict, "%s %s: %s", it->what, it->path, strerror(errno));
        if (who->named)
            return paths_report(it, strict, "%s %s does not exist: install -d -o %s -g %s -m %04o %s",
                                it->what, it->path, who->user, who->group,
                                (unsigned) it->mode, it->path);
        return paths_report(it, strict, "%s %s does not exist: mkdir -p -m %04o %s",
                            it->what, it->path, (unsigned) it->mode, it->path);
    }
    if (!S_ISDIR(st.st_mode))
        return paths_report(it, strict, "%s %s is not a directory", it->what, it->path);
    if (access(it->path, X_OK) < 0)
        return paths_unreachable(it, who, strict);
    if ((it->kind & ~PATHS_FLAGS) == PATHS_DIR_WRITE && access(it->path, W_OK | X_OK) < 0)
        return paths_not_writable(it, who, &st, strict);
    return 0;
}

/* paths_check_file - a file the user reads (and writes, unless PATHS_FILE_READ), if it exists */
static int paths_check_file(const PATHS_ITEM *it, const PATHS_WHO *who, int strict)
{
    struct stat st;

    if (lstat(it->path, &st) < 0) {
        /* Absent is fine (created later); a hidden directory is reported for it. */
        if (errno == ENOENT || errno == ENOTDIR || errno == EACCES)
            return 0;
        return paths_report(it, strict, "%s %s: %s", it->what, it->path, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return paths_report(it, strict, "%s %s is a symbolic link, which is not followed: "
                            "put the file itself there", it->what, it->path);
    if (!S_ISREG(st.st_mode))
        return paths_report(it, strict, "%s %s is not a regular file", it->what, it->path);
    if ((it->kind & ~PATHS_FLAGS) == PATHS_FILE_READ) {
        char owner[64];

        if (access(it->path, R_OK) < 0)
            return paths_report(it, strict, "%s %s is not readable by user %s (owner %s, mode %04o): "
                                "give the user the file's group, or chmod g+r %s", it->what, it->path,
                                who->user, paths_owner(st.st_uid, owner, sizeof(owner)),
                                (unsigned) (st.st_mode & 07777), it->path);
    } else if (access(it->path, R_OK | W_OK) < 0) {
        return paths_not_writable(it, who, &st, strict);
    }
    if ((st.st_mode & S_IRWXO) && !(it->kind & PATHS_PUBLIC))
        log_warn("%s %s can be read by every local user (mode %04o): chmod o-rwx %s",
                 it->what, it->path, (unsigned) (st.st_mode & 07777), it->path);
    return 0;
}

/* paths_is_file - a file place (else a directory) */
static int paths_is_file(int kind)
{
    kind &= ~PATHS_FLAGS;
    return kind == PATHS_FILE_WRITE || kind == PATHS_FILE_READ;
}

/* paths_check_all - every place, as whoever we are now */
static int paths_check_all(const PATHS *pl, const PATHS_WHO *who, int strict)
{
    int errors = 0;

    /* Directories first: a file below a missing directory says nothing new. */
    for (int i = 0; i < pl->count; i++)
        if (!paths_is_file(pl->item[i].kind))
            errors += paths_check_dir(&pl->item[i], who, strict);
    for (int i = 0; i < pl->count; i++)
        if (paths_is_file(pl->item[i].kind))
            errors += paths_check_file(&pl->item[i], who, strict);
    return errors;
}

/* paths_who_set - names for the messages */
static void paths_who_set(PATHS_WHO *who, const struct passwd *pw, int named)
{
    struct group *gr = getgrgid(pw->pw_gid);

    snprintf(who->user, sizeof(who->user), "%s", pw->pw_name);
    if (gr != NULL)
        snprintf(who->group, sizeof(who->group), "%s", gr->gr_name);
    else
        snprintf(who->group, sizeof(who->group), "%ld", (long) pw->pw_gid);
    who->uid = pw->pw_uid;
    who->named = named;
}

/* paths_check - every place as user; the number of errors */
int paths_check(const PATHS *pl, const char *user, int strict)
{
    struct passwd *pw;
    PATHS_WHO who;
    char err[512];
    pid_t pid;
    struct sigaction old_chld;
    int status;

    memset(&who, 0, sizeof(who));
    if (pl == NULL || pl->count == 0)
        return 0;

    /* Not root, or root staying root: we are the user the program runs as. */
    if (geteuid() != 0 || user == NULL || *user == 0
        || (pw = getpwnam(user)) == NULL || pw->pw_uid == 0) {
        struct passwd *me = getpwuid(geteuid());

        if (me != NULL) {
            paths_who_set(&who, me, 0);
        } else {
            snprintf(who.user, sizeof(who.user), "%ld", (long) geteuid());
            snprintf(who.group, sizeof(who.group), "%ld", (long) getegid());
            who.uid = geteuid();
        }
        return paths_check_all(pl, &who, strict);
    }

    /*
     * Root for user: a child becomes the user and asks the kernel. SIGCHLD
     * ignored (inherited from a supervisor) would make waitpid() fail with
     * ECHILD: the default is restored for the child's life.
     */
    paths_who_set(&who, pw, 1);
    fflush(NULL);
    {
        struct sigaction dfl;

        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGCHLD, &dfl, &old_chld);
    }
    if ((pid = fork()) < 0) {
        log_err("checking directories as user %s: fork: %s", user, strerror(errno));
        sigaction(SIGCHLD, &old_chld, NULL);
        return 1;
    }
    if (pid == 0) {
        int errors;

        if (daemon_drop(user, err, sizeof(err)) < 0) {
            log_err("checking directories as user %s: %s", user, err);
            _exit(1);
        }
        errors = paths_check_all(pl, &who, strict);
        fflush(NULL);
        _exit(errors > 255 ? 255 : errors);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            log_err("checking directories as user %s: waitpid: %s", user, strerror(errno));
            sigaction(SIGCHLD, &old_chld, NULL);
            return 1;
        }
    }
    sigaction(SIGCHLD, &old_chld, NULL);
    if (!WIFEXITED(status)) {
        log_err("checking directories as user %s: the check was killed by signal %d", user,
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return 1;
    }
    return WEXITSTATUS(status);
}

/* paths_act_as - root: check strictly as user, then become user */
int paths_act_as(const PATHS *pl, const char *user, const char *section)
{
    struct passwd *pw;
    char err[512];

    if (geteuid() != 0 || user == NULL || *user == 0)
        return 0;
    errno = 0;
    if ((pw = getpwnam(user)) == NULL) {
        log_err("[%s] user \"%s\" does not exist, and files written as root would be "
                "unusable by the daemons: create it (useradd --system --home-dir %s "
                "--shell /usr/sbin/nologin %s) or set [%s] user to the user the daemons run as",
                section, user, RG_LOCALSTATEDIR "/lib/rcptgate", user, section);
        return -1;
    }
    if (pw->pw_uid == 0)
        return 0;
    if (paths_check(pl, user, 1) != 0) {
        log_err("not writing as root what user %s ([%s] user) must own: fix the above first",
                user, section);
        return -1;
    }
    if (daemon_drop(user, err, sizeof(err)) < 0) {
        log_err("%s", err);
        return -1;
    }
    return 0;
}

/* paths_require - -n or a daemon's start: check, and exit 73 on errors */
void paths_require(const PATHS *pl, const char *user, int check_only, const char *conf)
{
    int errors = paths_check(pl, user, check_only);

    if (errors != 0)
        log_fatal_code(RG_EX_CANTCREAT, "%s: %d problem%s with the directories and files to write%s",
                       conf, errors, errors == 1 ? "" : "s", check_only ? "" : "; not starting");
}
