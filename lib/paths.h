/*
 * paths.h - the files and directories a program writes, checked for its user
 *
 * Every program (the three daemons with -n and at start, the admin command
 * and rcptgate-syncd --once before they touch the store) lists the places
 * it will create or write files in, and asks: do they exist, and may the
 * configured user write them? Each problem is logged as one line that
 * names the path, the user, the owner and the command that fixes it:
 *
 *   store directory /var/lib/rcptgate is not writable by user rcptgate
 *   (owner root): chown rcptgate /var/lib/rcptgate
 *
 * Run as root with a user set, the checks run in a child process that has
 * become that user, so the kernel's own access rules (groups, ACLs,
 * read-only mounts) decide; otherwise they run as the caller, who is then
 * also who the program will run as.
 *
 * PATHS_UMASK is the umask every program sets first, so that the store,
 * its -wal and -shm files, the stats files and exported maps are 0640 at
 * most: they list every valid address, login and group.
 */
#ifndef RG_PATHS_H
#define RG_PATHS_H

#define PATHS_UMASK     027     /* no write for the group, nothing for others */
#define PATHS_MAX       64      /* places in one list: 2 x LISTEN_MAX sockets and the rest */

/* What a place must be. */
#define PATHS_DIR_WRITE     1   /* a directory the user creates and removes files in */
#define PATHS_DIR_EXISTS    2   /* a directory that must exist and be reachable */
#define PATHS_FILE_WRITE    3   /* a file that, if it exists, the user must read and write */
#define PATHS_FILE_READ     4   /* a file that, if it exists, the user must read */

/*
 * Soft places are checked with the others, but at a daemon's start a
 * problem there is a warning, not a refusal: the daemon answers "try
 * later" for a broken store and recovers when it is fixed.
 */
#define PATHS_SOFT          0x100
/*
 * Advisory places: a problem is a warning everywhere, -n included. The
 * program works as it is; something later will not (a file read again by
 * a reload, after the privileges are dropped).
 */
#define PATHS_ADVISE        0x200
/* A public file (a certificate): others may read it, and no warning says otherwise. */
#define PATHS_PUBLIC        0x400
#define PATHS_FLAGS         (PATHS_SOFT | PATHS_ADVISE | PATHS_PUBLIC)

typedef struct paths PATHS;

/* paths_umask - set PATHS_UMASK; every program's first step */
void paths_umask(void);

/* paths_create/paths_free - an empty list; free accepts NULL */
PATHS *paths_create(void);
void paths_free(PATHS *pl);

/*
 * paths_add - one place: kind (PATHS_* | PATHS_SOFT or PATHS_ADVISE), what it is for
 * messages ("pid file directory"; a string that outlives the list), the
 * path (copied), and for a directory the mode the fix creates it with.
 * An empty path is ignored; a place already listed is not added again.
 */
void paths_add(PATHS *pl, int kind, const char *what, const char *path, int mode);

/*
 * paths_add_file_dir - the directory of file (which the user creates by a
 * rename or anew): a PATHS_DIR_WRITE place; "" adds nothing.
 */
void paths_add_file_dir(PATHS *pl, int soft, const char *what, const char *file, int mode);

/* paths_add_store - the store's directory, the store and its -wal and -shm files */
void paths_add_store(PATHS *pl, int soft, const char *store_path);

/*
 * paths_add_store_read - the same for a reader that never writes the
 * store (smtpd): the directory must be reachable, the files readable
 */
void paths_add_store_read(PATHS *pl, int soft, const char *store_path);

/* paths_add_listeners - the directory of every unix: listener in a list */
void paths_add_listeners(PATHS *pl, const char *list);

/*
 * paths_check - check every place as user (see above); strict makes soft
 * problems errors too. Returns the number of errors, each logged with
 * log_err() (soft ones, when not strict, with log_warn()).
 */
int paths_check(const PATHS *pl, const char *user, int strict);

/*
 * paths_require - what -n and a daemon's start do: paths_check() (strict
 * for -n), and on any error exit RG_EX_CANTCREAT (73) naming conf.
 */
void paths_require(const PATHS *pl, const char *user, int check_only, const char *conf);

/*
 * paths_act_as - for a program that writes the store once and exits (the
 * admin command, rcptgate-syncd --once): run as root with user set, check
 * the places strictly as user and become that user, so that every file
 * it creates belongs to the user the daemons run as. section names the
 * config section of the user key for the messages. Not root, or no user:
 * nothing to do. 0, or -1 with the problems logged.
 */
int paths_act_as(const PATHS *pl, const char *user, const char *section);

#endif
