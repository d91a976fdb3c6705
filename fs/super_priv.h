/*
 * What the supervisor (fs/supervisor.c) and a serving child (fs/super_child.c) share: the
 * environment a child is started with, the messages on their socket (SOCK_SEQPACKET, one
 * struct super_msg each; SM_FD carries the /dev/fuse descriptor as SCM_RIGHTS) and the size
 * of the table of opens. Not for other files.
 */
#ifndef MOWS_FS_SUPER_PRIV_H
#define MOWS_FS_SUPER_PRIV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/supervisor.h"

#define OPENS_SLOTS 65536u
#define INIT_MAX 128

#define ENV_SOCK "MOWS_SUPER_FD"
#define ENV_FUSE "MOWS_FUSE_FD"
#define ENV_OPENS "MOWS_OPENS_FD"
#define ENV_INIT "MOWS_INIT"       /* "P:HEX": P 1 when passthrough was negotiated */
#define ENV_RESTARTS "MOWS_RESTARTS"
#define ENV_TEST_FAIL "MOWS_TEST_CHILD_FAIL_IF" /* tests: a child exits at start while it exists */
#define ENV_TEST_CRASH "MOWS_TEST_CHILD_CRASH_IF" /* tests: a child dies at a crash point, once */

/* child -> supervisor: SM_FD, SM_INIT, SM_READY, SM_UPGRADE; the answer: SM_OK or SM_ERR */
enum { SM_FD = 1, SM_INIT, SM_READY, SM_UPGRADE, SM_OK, SM_ERR };

struct super_msg {
	uint32_t type, flag, len;  /* flag: SM_INIT's passthrough; len: of data */
	char data[PATH_MAX];
};

#define MSG_SIZE(n) (offsetof(struct super_msg, data) + (n))

/*
 * systemd's file descriptor store (fs/super_store.c), so that the mount outlives the
 * supervisor too: under systemd (NOTIFY_SOCKET set; the unit sets FileDescriptorStoreMax)
 * the supervisor stores the /dev/fuse descriptor, the table of opens and a small state memfd
 * (the INIT to replay, the restart count). When the supervisor dies (a crash, the watchdog's
 * SIGABRT, an OOM kill) and systemd starts the service again (Restart=), the new supervisor
 * gets them back (LISTEN_FDS, by name) and serves the same mount as after a child's death:
 * no reader sees an error. A clean stop removes them. Single-threaded: the supervisor's.
 */
struct super_saved {
	int fuse_fd, opens_fd, state_fd;
	uint8_t init[INIT_MAX];
	size_t init_len;
	bool init_pt;
	unsigned restarts;
};

/* Whether the FUSE connection behind /dev/fuse descriptor @fd still exists (no POLLERR:
 * not unmounted nor aborted). */
bool super_fuse_alive(int fd);
/* A new state memfd (close-on-exec), or -1 with errno set. */
int super_store_new_state(void);
/* Writes @sv's INIT and restart count into @state_fd. 0 or -errno. */
int super_store_write(int state_fd, const struct super_saved *sv);
/*
 * Takes back what systemd stored for a mount of @mountpoint: 1 with @sv filled (the caller
 * owns its three descriptors), 0 when there is nothing usable (what there was is closed and
 * removed from the store, saying why), or -errno.
 */
int super_store_adopt(const char *mountpoint, struct super_saved *sv);
/* Stores @sv's three descriptors: 1, 0 when not under systemd, or -errno. */
int super_store_push(const struct super_saved *sv);
/* Asks systemd to drop what we stored (a clean stop). */
void super_store_forget(void);

static inline size_t super_opens_bytes(void)
{
	return OPENS_SLOTS * sizeof(struct mows_open_rec);
}

#endif
