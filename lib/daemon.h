/*
 * daemon.h - process plumbing shared by the daemons
 *
 * Detaching, pid files and dropping privileges after the listeners are
 * bound (so a daemon may bind port 25 or a socket in /run as root and
 * then run as its own unprivileged user), and telling systemd how the
 * daemon is doing (sd_notify: ready, reloading, stopping).
 */
#ifndef RG_DAEMON_H
#define RG_DAEMON_H

#include <signal.h>
#include <stddef.h>

/* daemon_detach - fork into the background, new session, stdio to /dev/null */
int daemon_detach(char *err, size_t errlen);

/*
 * daemon_drop - become user (its uid, primary gid and no supplementary
 * groups). An empty user leaves things as they are. Only root can drop;
 * otherwise a no-op. 0 or -1 with err set.
 */
int daemon_drop(const char *user, char *err, size_t errlen);

/* daemon_user_exists - 1 if the user is known to the system */
int daemon_user_exists(const char *user);

/*
 * daemon_check_user - cfg check callback for a "user" setting: empty, or
 * a user the system knows; -1 with err set otherwise.
 */
int daemon_check_user(const char *value, char *err, size_t errlen);

/*
 * daemon_pidfile - write our pid to path (empty: none); 0 or -1. Refuses
 * when the file names another process that is still alive.
 */
int daemon_pidfile(const char *path, char *err, size_t errlen);

/* daemon_pidfile_remove - remove path if it still holds our pid */
void daemon_pidfile_remove(const char *path);

/*
 * daemon_become - what every daemon does once its sockets are bound:
 * detach unless foreground (logging then goes to syslog only), write the
 * pid file, and run as user (empty: stay, with a warning when that is
 * root; section names the config section for that warning). Any failure
 * is fatal: a daemon that cannot do these must not run.
 */
void daemon_become(const char *ident, int foreground, const char *pidfile,
                   const char *user, const char *section);

/*
 * daemon_notify - send a state line such as "RELOADING=1" or
 * "STOPPING=1" to the service manager (systemd, Type=notify). A no-op
 * when we were not started with NOTIFY_SOCKET, or built without
 * libsystemd; a failure to send is logged once and otherwise ignored.
 */
void daemon_notify(const char *state);

/*
 * daemon_ready - READY=1 with status as STATUS=, the first time it is
 * called in this process; later calls only update STATUS. Each daemon
 * calls it where its store opens (the listeners are bound by then), so
 * systemd reports the service started only once it can answer.
 */
void daemon_ready(const char *status);

/*
 * daemon_hold_signals - block SIGHUP, SIGTERM and SIGINT until the event
 * loop watches them (daemon_release_signals): a reload or stop sent as
 * soon as the pid file appears (logrotate, a test, systemd) would
 * otherwise meet the default action, and end the daemon. They stay
 * pending, and are handled once released. old keeps the mask to restore.
 */
void daemon_hold_signals(sigset_t *old);

/* daemon_release_signals - restore the mask daemon_hold_signals() saved */
void daemon_release_signals(const sigset_t *old);

#endif
