/*
 * The supervisor (supervise = on): the mount outlives the process that serves it.
 *
 * mows-fuse started with supervise = on stays as a small supervisor and runs the serving
 * process (the same binary, same arguments) as its child. The first child mounts as a
 * daemon without a supervisor would and hands the /dev/fuse descriptor to the supervisor
 * (SCM_RIGHTS), together with the INIT request the kernel sent and whether passthrough was
 * negotiated. From then on the supervisor holds the descriptor, so the FUSE connection lives
 * while no child does. When the child dies (SIGKILL, crash, OOM) or hands over
 * (`mowsctl upgrade`, or SIGUSR2 to the supervisor), the supervisor:
 *   1. tells the kernel to resend the requests the dead child had read and not answered
 *      (FUSE_NOTIFY_RESEND, kernels whose INIT offered protocol 7.40 or later);
 *   2. starts the next child (the new binary for an upgrade) at once, passing the
 *      descriptor (inherited), the saved INIT and the count of restarts in its environment.
 * A child that finds a saved INIT feeds it to libfuse as the first request it reads (libfuse
 * 3.14 answers nothing before an INIT) and swallows libfuse's reply: the kernel negotiates
 * once per connection. Node ids and file handles mean the same to every child (fs/inode.c,
 * fs/ops.c), and the open counts of every inode (which mode, which backing id) live in a
 * table the supervisor holds (a memfd every child maps), so a new child keeps the rule that
 * all opens of an inode share one mode and pins the cache files that passthrough readers use.
 *
 * A child that dies within SUPER_FAST_EXIT_MS of its start (or before it was serving) is a
 * crash loop: the next start waits 0.5 s, then 1, 2, 4 ... up to 30 s, one log line each
 * time; an upgrade whose new binary never served goes back to the previous binary.
 *
 * The supervisor is single-threaded (signalfd + poll) and never touches the cache or FUSE
 * requests. Stopping it (SIGTERM, SIGINT, SIGHUP) stops the child, then unmounts.
 * fs/supervisor.c is the supervisor process, fs/super_child.c a serving process's side
 * (super_child_*, super_opens_*), fs/super_priv.h what they share.
 */
#ifndef MOWS_FS_SUPERVISOR_H
#define MOWS_FS_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mows;
struct super_child;

/* One inode's opens, shared by every serving process of the mount. */
struct mows_open_rec {
	uint64_t nodeid;      /* 0: never used; a record with no opens may be reused */
	uint32_t plain, pt;   /* opens served through the daemon / in passthrough mode */
	int32_t backing_id;   /* while pt */
	uint32_t unused;
};

/*
 * The wait before the next start after @fast_exits quick exits in a row: none for the
 * first (a process that ran a while and died is restarted at once, and so is one quick
 * exit), then 0.5 s doubling up to 30 s.
 */
uint64_t super_backoff_ms(unsigned fast_exits);

/*
 * Runs the supervisor for @m (configured, not prepared): starts children with @argv until
 * it is stopped or the mount ends. Returns the exit status of mows-fuse.
 */
int super_run(struct mows *m, char **argv);

/* Whether a supervisor started this process (its environment says so). */
bool super_is_child(void);

/*
 * In a child: reads what the supervisor passed in the environment into m->super (NULL when
 * not supervised). 0, or -EINVAL with a message in @err.
 */
int super_child_attach(struct mows *m, char *err, size_t errlen);
void super_child_free(struct super_child *sc);

/* The inherited /dev/fuse descriptor, or -1 (the first child mounts and hands it over). */
int super_child_fuse_fd(const struct super_child *sc);
/* Hands the mounted device to the supervisor. 0 or -errno. */
int super_child_send_fd(struct super_child *sc, int fuse_fd);
/*
 * The INIT request body a previous child answered (kernel's struct fuse_init_in), or NULL
 * when this child is the first; *@pt: passthrough was negotiated.
 */
const void *super_child_init(const struct super_child *sc, size_t *len, bool *pt);
/* Records the INIT this child is about to answer (before the reply is written). */
void super_child_report_init(struct super_child *sc, const void *init_in, size_t len, bool pt);
/*
 * Tests: when MOWS_TEST_CHILD_CRASH_IF names a file that exists, removes it and dies here
 * (SIGKILL), so a test can place a crash at the worst moment (@where, logged) once.
 */
void super_child_test_crash(const char *where);
/* Says the child is serving (resets the crash-loop count). */
void super_child_ready(struct super_child *sc);
/*
 * mowsctl upgrade: asks the supervisor to hand the mount to @binary ("" for the binary at
 * the path this one was started from). 0 with the supervisor's answer in @msg, or -errno.
 * The supervisor then stops this process (SIGUSR2): see super_child_handover().
 */
int super_child_upgrade(struct super_child *sc, const char *binary, char *msg, size_t len);
/* Whether this process is stopping to hand over (SIGUSR2): leave the mount and the cache. */
bool super_child_handover(void);
/* Installs the SIGUSR2 handler that ends the session loop @se for a handover. */
void super_child_signals(struct super_child *sc, void *se);
/* How many times the mount's serving process was replaced (0 when not supervised, NULL). */
unsigned super_child_restarts(const struct super_child *sc);

/*
 * The open record of @nodeid in the shared table; with @create, a new or reusable one. NULL
 * when there is none (or the table is full). Caller holds ino_lock.
 */
struct mows_open_rec *super_opens_rec(struct super_child *sc, uint64_t nodeid, bool create);
/* Calls @fn for every node id with opens, at start. */
void super_opens_foreach(struct super_child *sc, void (*fn)(void *arg, uint64_t nodeid),
			 void *arg);

#endif
