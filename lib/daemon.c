/*
 * daemon.c - process plumbing shared by the daemons
 *
 * A daemon binds its listeners first (perhaps as root), then detaches,
 * writes its pid file and drops to its unprivileged user. Each step
 * reports failures through err and leaves the decision (usually: exit at
 * startup) to the caller. daemon_drop() checks afterwards that the old
 * identity really cannot be regained, because a half-dropped daemon is
 * worse than one that refuses to start.
 *
 * Under systemd (Type=notify) the daemons run in the foreground as their
 * own user from the start, and say READY=1 only once their listeners are
 * bound and their store is open: daemon_notify() and daemon_ready().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "daemon.h"
#include "log.h"

/* daemon_detach - fork into the background, new session, stdio to /dev/null */
int daemon_detach(char *err, size_t errlen)
{
    pid_t pid;
    int fd;

    if ((fd = open("/dev/null", O_RDWR)) < 0) {
        snprintf(err, errlen, "open /dev/null: %s", strerror(errno));
        return -1;
    }
    if ((pid = fork()) < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid > 0)
        _exit(0);                       /* the parent's job is done */
    if (setsid() < 0) {
        snprintf(err, errlen, "setsid: %s", strerror(errno));
        close(fd);
        return -1;
    }

    /* Paths in the config are absolute; "/" keeps no file system busy. */
    if (chdir("/") < 0) {
        snprintf(err, errlen, "chdir /: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
        snprintf(err, errlen, "dup2: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (fd > 2)
        close(fd);
    return 0;
}

/* daemon_drop - become user with its primary group only */
int daemon_drop(const char *user, char *err, size_t errlen)
{
    struct passwd *pw;
    uid_t uid;
    gid_t gid;

    if (user == NULL || *user == 0 || geteuid() != 0)
        return 0;
    errno = 0;
    if ((pw = getpwnam(user)) == NULL) {
        snprintf(err, errlen, "user \"%s\": %s", user,
                 errno ? strerror(errno) : "no such user");
        return -1;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    if (uid == 0) {
        snprintf(err, errlen, "user \"%s\" has uid 0: refusing to run as root under another name", user);
        return -1;
    }

    /* Groups first: once the uid is gone we could no longer change them. */
    if (setgroups(1, &gid) < 0) {
        snprintf(err, errlen, "setgroups(%ld): %s", (long) gid, strerror(errno));
        return -1;
    }
    if (setgid(gid) < 0) {
        snprintf(err, errlen, "setgid(%ld): %s", (long) gid, strerror(errno));
        return -1;
    }
    if (setuid(uid) < 0) {
        snprintf(err, errlen, "setuid(%ld): %s", (long) uid, strerror(errno));
        return -1;
    }

    /* Verify: the new ids hold, and root cannot be taken back. */
    if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid) {
        snprintf(err, errlen, "privileges not dropped to user \"%s\"", user);
        return -1;
    }
    if (setuid(0) == 0 || seteuid(0) == 0) {
        snprintf(err, errlen, "could regain root after dropping to \"%s\"", user);
        return -1;
    }
    return 0;
}

/* daemon_user_exists - 1 if the user is known to the system */
int daemon_user_exists(const char *user)
{
    return user != NULL && *user != 0 && getpwnam(user) != NULL;
}

/* daemon_check_user - cfg check callback: empty, or a user that exists */
int daemon_check_user(const char *value, char *err, size_t errlen)
{
    if (*value == 0 || daemon_user_exists(value))
        return 0;
    snprintf(err, errlen, "user \"%s\" does not exist", value);
    return -1;
}

/*
 * daemon_pidfile_fopen - open an existing pid file for reading, not
 * through a symbolic link: the directory may be the daemon user's.
 */
static FILE *daemon_pidfile_fopen(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    FILE *fp;

    if (fd < 0)
        return NULL;
    if ((fp = fdopen(fd, "r")) == NULL)
        close(fd);
    return fp;
}

/*
 * daemon_pidfile_create - create tmp for writing, as a new file only.
 * The pid file's directory is usually writable by the daemon's user,
 * and we are root here: a symbolic link or file planted at tmp would
 * otherwise make root truncate whatever it names. A stale tmp (ours from
 * a crash, or planted) is removed first; unlink() does not follow links,
 * and O_EXCL|O_NOFOLLOW refuse anything planted after that.
 */
static int daemon_pidfile_create(const char *tmp, char *err, size_t errlen)
{
    int fd;

    if (unlink(tmp) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s: remove stale temporary file: %s", tmp, strerror(errno));
        return -1;
    }
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }

    /* Readable by all despite the umask: the daemon, once not root, reads it to remove it. */
    if (fchmod(fd, 0644) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    return fd;
}

/* daemon_pidfile_live - the pid in an existing pid file, if that process lives */
static long daemon_pidfile_live(const char *path)
{
    char buf[32];
    FILE *fp;
    long pid = 0;

    if ((fp = daemon_pidfile_fopen(path)) == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), fp) != NULL)
        pid = strtol(buf, NULL, 10);
    fclose(fp);
    if (pid <= 0 || pid == (long) getpid())
        return 0;
    if (kill((pid_t) pid, 0) == 0 || errno == EPERM)
        return pid;
    return 0;
}

/* daemon_pidfile - write our pid to path (empty: none); 0 or -1 */
int daemon_pidfile(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    char line[32];
    long other;
    int fd;
    int n;

    if (path == NULL || *path == 0)
        return 0;
    if ((other = daemon_pidfile_live(path)) != 0) {
        snprintf(err, errlen, "%s: already running as pid %ld", path, other);
        return -1;
    }

    /* Write a temporary file and rename it: readers never see half a pid. */
    if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long) getpid()) >= (int) sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    n = snprintf(line, sizeof(line), "%ld\n", (long) getpid());
    if ((fd = daemon_pidfile_create(tmp, err, errlen)) < 0)
        return -1;
    if (write(fd, line, (size_t) n) != n || close(fd) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "rename %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* daemon_pidfile_remove - remove our pid file, but not another process's */
void daemon_pidfile_remove(const char *path)
{
    char buf[32];
    FILE *fp;

    if (path == NULL || *path == 0 || (fp = daemon_pidfile_fopen(path)) == NULL)
        return;
    if (fgets(buf, sizeof(buf), fp) != NULL && strtol(buf, NULL, 10) == (long) getpid())
        (void) unlink(path);
    fclose(fp);
}

/* daemon_become - detach, pid file, privileges (see daemon.h) */
void daemon_become(const char *ident, int foreground, const char *pidfile,
                   const char *user, const char *section)
{
    char err[512];

    if (!foreground) {
        long other = pidfile && *pidfile ? daemon_pidfile_live(pidfile) : 0;

        /* Said here, on stderr and with exit 70: once detached it reached only syslog, and the start exited 0. */
        if (other != 0)
            log_fatal("%s: already running as pid %ld", pidfile, other);
        if (daemon_detach(err, sizeof(err)) < 0)
            log_fatal("%s", err);
        log_init(ident, 0, 1);
    }
    if (daemon_pidfile(pidfile, err, sizeof(err)) < 0)
        log_fatal("%s", err);
    if (*user == 0) {
        if (geteuid() == 0)
            log_warn("running as root: set [%s] user to an unprivileged user", section);
    } else if (geteuid() != 0) {
        /* Started as a user already (systemd's User=): only say when it is not ours. */
        struct passwd *pw = getpwnam(user);

        if (pw == NULL || pw->pw_uid != geteuid())
            log_warn("[%s] user = %s, but started without root as uid %ld: cannot switch, staying",
                     section, user, (long) geteuid());
    } else if (daemon_drop(user, err, sizeof(err)) < 0) {
        daemon_pidfile_remove(pidfile);
        log_fatal("%s", err);
    }
}

/* daemon_notify - one state line to systemd, if it asked for them */
void daemon_notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    static int warned;
    const char *ns = getenv("NOTIFY_SOCKET");
    int rc;

    if (ns == NULL || *ns == 0)
        return;
    /* Keep NOTIFY_SOCKET: RELOADING and STOPPING come later. */
    if ((rc = sd_notify(0, state)) < 0 && !warned) {
        warned = 1;
        log_warn("sd_notify: %s", strerror(-rc));
    }
#else
    (void) state;
#endif
}

/* daemon_ready - READY=1 the first time, STATUS= every time */
void daemon_ready(const char *status)
{
    static int ready;
    char line[600];

    snprintf(line, sizeof(line), "%sSTATUS=%s", ready ? "" : "READY=1\n", status);
    ready = 1;
    daemon_notify(line);
}

/* daemon_hold_signals - block HUP, TERM and INT until the loop watches them */
void daemon_hold_signals(sigset_t *old)
{
    sigset_t hold;

    sigemptyset(&hold);
    sigaddset(&hold, SIGHUP);
    sigaddset(&hold, SIGTERM);
    sigaddset(&hold, SIGINT);
    sigprocmask(SIG_BLOCK, &hold, old);
}

/* daemon_release_signals - the saved mask again; pending signals arrive now */
void daemon_release_signals(const sigset_t *old)
{
    sigprocmask(SIG_SETMASK, old, NULL);
}
