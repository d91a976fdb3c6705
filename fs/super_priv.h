/*
 * What the supervisor (fs/supervisor.c) and a serving child (fs/super_child.c) share: the
 * environment a child is started with, the messages on their socket (SOCK_SEQPACKET, one
 * struct super_msg each; SM_FD carries the /dev/fuse descriptor as SCM_RIGHTS) and the size
 * of the table of opens. Not for other files.
 */
#ifndef MOWS_FS_SUPER_PRIV_H
#define MOWS_FS_SUPER_PRIV_H

#include <limits.h>
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

static inline size_t super_opens_bytes(void)
{
	return OPENS_SLOTS * sizeof(struct mows_open_rec);
}

#endif
