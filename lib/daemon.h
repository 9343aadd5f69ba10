/*
 * daemon.h - process plumbing shared by the daemons
 *
 * Detaching, pid files and dropping privileges after the listeners are
 * bound (so a daemon may bind port 25 or a socket in /run as root and
 * then run as its own unprivileged user).
 */
#ifndef RG_DAEMON_H
#define RG_DAEMON_H

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

/* daemon_pidfile - write our pid to path (empty: none); 0 or -1 */
int daemon_pidfile(const char *path, char *err, size_t errlen);
void daemon_pidfile_remove(const char *path);

#endif
