/* The supervisor process: see fs/supervisor.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <unistd.h>

#include "common/deadline.h"
#include "common/log.h"
#include "fs/mows.h"
#include "fs/super_priv.h"

#define SUPER_FAST_EXIT_MS 5000    /* a child that dies sooner after its start: a crash loop */
#define SUPER_BACKOFF_MIN_MS 500
#define SUPER_BACKOFF_MAX_MS 30000
#define SUPER_STOP_WAIT_MS 30000   /* a stopping child gets this long, then SIGKILL */
#define NOTIFY_RESEND 7            /* enum fuse_notify_code, kernel 6.9+ (protocol 7.40) */
#define RESEND_MINOR 40

struct super {
	struct mows *m;
	char **argv;
	char binary[PATH_MAX], prev_binary[PATH_MAX];
	int fuse_fd;                /* the mount's device, once the first child handed it over */
	int opens_fd;
	int state_fd;               /* for systemd's fd store (fs/super_priv.h), or -1 */
	int sig_fd;
	int sock;                   /* our end of the current child's socket, or -1 */
	int report_fd;              /* to the process that started us (daemon mode), or -1 */
	pid_t child;
	uint64_t child_start_ns, died_ns, next_start_ns, stop_by_ns;
	bool child_ready, child_dead, handover, stopping, upgrading;
	bool stored;                /* our descriptors are in systemd's fd store */
	unsigned restarts, fast_exits;
	uint8_t init[INIT_MAX];
	size_t init_len;
	bool init_pt;
	int exit_status;
};

static void report_start(struct super *s, uint8_t status)
{
	if (s->report_fd < 0)
		return;
	if (write(s->report_fd, &status, 1) != 1)
		log_warn("supervisor: cannot report the start to the parent: %s", strerror(errno));
	close(s->report_fd);
	s->report_fd = -1;
}

/* Daemon mode: the caller waits until the first child mounted (or failed), we go on. */
static int detach(struct super *s)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		uint8_t status = 1;
		close(p[1]);
		while (read(p[0], &status, 1) < 0 && errno == EINTR)
			;
		_exit(status);
	}
	close(p[0]);
	setsid();
	s->report_fd = p[1];
	return 0;
}

static void quiet_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return;
	dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
	out[2 * n] = '\0';
}

static int keep_open(int fd)
{
	int fl = fcntl(fd, F_GETFD);
	return fl < 0 ? -1 : fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
}

/* In the forked child, before exec: only async-signal-safe-ish work (we are single-threaded). */
static void exec_child(struct super *s, int sock)
{
	char v[32], init[2 * INIT_MAX + 3];
	sigset_t none;
	sigemptyset(&none);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL); /* ours are blocked for the signalfd */
	keep_open(sock), keep_open(s->opens_fd);
	snprintf(v, sizeof(v), "%d", sock);
	setenv(ENV_SOCK, v, 1);
	snprintf(v, sizeof(v), "%d", s->opens_fd);
	setenv(ENV_OPENS, v, 1);
	snprintf(v, sizeof(v), "%u", s->restarts);
	setenv(ENV_RESTARTS, v, 1);
	const char *wd = getenv("WATCHDOG_PID"); /* systemd's, naming us: the child pings */
	if (wd && atol(wd) == (long)getppid()) {
		snprintf(v, sizeof(v), "%d", (int)getpid());
		setenv("WATCHDOG_PID", v, 1);
	}
	if (s->fuse_fd >= 0) {
		keep_open(s->fuse_fd);
		snprintf(v, sizeof(v), "%d", s->fuse_fd);
		setenv(ENV_FUSE, v, 1);
	}
	if (s->init_len) {
		init[0] = s->init_pt ? '1' : '0';
		init[1] = ':';
		hex_encode(s->init, s->init_len, init + 2);
		setenv(ENV_INIT, init, 1);
	}
	execv(s->binary, s->argv);
	fprintf(stderr, "mows-fuse: supervisor: cannot run %s: %s\n", s->binary, strerror(errno));
	_exit(127);
}

static int spawn(struct super *s)
{
	int sv[2];
	sigset_t all, old;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		exec_child(s, sv[1]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	int e = errno;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return -e;
	}
	s->sock = sv[0];
	s->child = pid;
	s->child_ready = s->child_dead = false;
	s->child_start_ns = mono_ns();
	log_info("supervisor: started serving process %d (%s)%s", (int)pid, s->binary,
		 s->restarts ? "" : "; it mounts");
	return 0;
}

/* Whether the FUSE connection still exists (POLLERR once it is unmounted or aborted). */
static bool connection_alive(const struct super *s)
{
	return s->fuse_fd >= 0 && super_fuse_alive(s->fuse_fd);
}

static unsigned init_minor(const struct super *s)
{
	uint32_t minor = 0;
	if (s->init_len >= 8)
		memcpy(&minor, s->init + 4, sizeof(minor));
	return minor;
}

/* Requests the dead child read and never answered go back to the queue, marked as resent. */
static void resend(struct super *s)
{
	struct { uint32_t len; int32_t error; uint64_t unique; } oh = { 16, NOTIFY_RESEND, 0 };
	if (!s->init_len) { /* the INIT itself may be what the dead child had read */
		if (write(s->fuse_fd, &oh, sizeof(oh)) < 0)
			log_debug("supervisor: FUSE_NOTIFY_RESEND: %s", strerror(errno));
		return;
	}
	if (init_minor(s) < RESEND_MINOR) {
		log_info("supervisor: the kernel (FUSE protocol 7.%u) cannot resend requests; "
			 "those the old process had read get no answer until they are interrupted",
			 init_minor(s));
		return;
	}
	if (write(s->fuse_fd, &oh, sizeof(oh)) != (ssize_t)sizeof(oh))
		log_warn("supervisor: FUSE_NOTIFY_RESEND failed: %s", strerror(errno));
}

static const char *exit_text(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	return buf;
}

uint64_t super_backoff_ms(unsigned fast_exits)
{
	if (fast_exits < 2)
		return 0;
	unsigned shift = fast_exits - 2 < 16 ? fast_exits - 2 : 16;
	uint64_t ms = (uint64_t)SUPER_BACKOFF_MIN_MS << shift;
	return ms < SUPER_BACKOFF_MAX_MS ? ms : SUPER_BACKOFF_MAX_MS;
}

/* Plans the next child after a crash: at once, or after a backoff in a crash loop. */
static void plan_restart(struct super *s, int status)
{
	char why[96];
	uint64_t lived_ms = (s->died_ns - s->child_start_ns) / 1000000;
	bool fast = !s->child_ready || lived_ms < SUPER_FAST_EXIT_MS;
	s->fast_exits = fast ? s->fast_exits + 1 : 0;
	if (s->upgrading && !s->child_ready) {
		log_err("supervisor: the new binary %s never served; going back to %s", s->binary,
			s->prev_binary);
		snprintf(s->binary, sizeof(s->binary), "%s", s->prev_binary);
		s->upgrading = false;
	}
	uint64_t delay_ms = super_backoff_ms(s->fast_exits);
	if (delay_ms)
		log_err("supervisor: serving process %d %s %.1f s after its start (%u quick exits "
			"in a row): next start in %.1f s", (int)s->child,
			exit_text(status, why, sizeof(why)), (double)lived_ms / 1000, s->fast_exits,
			(double)delay_ms / 1000);
	else
		log_err("supervisor: serving process %d %s; starting a new one", (int)s->child,
			exit_text(status, why, sizeof(why)));
	s->next_start_ns = s->died_ns + delay_ms * 1000000;
}

/* What systemd keeps for us, so the mount outlives this process too (fs/super_priv.h). */
static void store_save(struct super *s)
{
	struct super_saved sv = { .fuse_fd = s->fuse_fd, .opens_fd = s->opens_fd,
				  .state_fd = s->state_fd, .init_len = s->init_len,
				  .init_pt = s->init_pt, .restarts = s->restarts };
	if (s->fuse_fd < 0 || s->state_fd < 0 || !s->init_len)
		return;
	memcpy(sv.init, s->init, s->init_len);
	int rc = super_store_write(s->state_fd, &sv);
	if (rc == 0 && !s->stored) {
		rc = super_store_push(&sv);
		s->stored = rc > 0;
		if (s->stored)
			log_info("supervisor: gave the mount's descriptors to systemd's fd store: "
				 "if the unit sets FileDescriptorStoreMax, a restart of the service "
				 "keeps the mount");
		rc = rc < 0 ? rc : 0;
	}
	if (rc)
		log_warn("supervisor: cannot keep the mount's state in systemd's fd store: %s; "
			 "the mount ends if this supervisor dies", strerror(-rc));
}

/* A previous supervisor of this mount died and systemd kept its descriptors: serve on. */
static int store_adopt(struct super *s)
{
	struct super_saved sv;
	int rc = super_store_adopt(s->m->mountpoint, &sv);
	if (rc <= 0)
		return rc;
	close(s->opens_fd);
	if (s->state_fd >= 0)
		close(s->state_fd);
	s->fuse_fd = sv.fuse_fd;
	s->opens_fd = sv.opens_fd;
	s->state_fd = sv.state_fd;
	memcpy(s->init, sv.init, sv.init_len);
	s->init_len = sv.init_len;
	s->init_pt = sv.init_pt;
	s->restarts = sv.restarts + 1;
	s->stored = true;
	s->died_ns = mono_ns();
	log_info("supervisor: took the mount of %s back from systemd's fd store (the previous "
		 "supervisor ended); starting a serving process for it", s->m->mountpoint);
	resend(s);
	store_save(s);
	return 1;
}

static void child_message(struct super *s);

static void child_exited(struct super *s, int status)
{
	char why[96];
	s->died_ns = mono_ns();
	/* What it sent before it died (the device, its INIT) counts: read it first. */
	s->child_dead = true;
	for (int k = 0; k < 64 && s->sock >= 0; k++) {
		struct pollfd p = { .fd = s->sock, .events = POLLIN };
		if (poll(&p, 1, 0) != 1)
			break;
		child_message(s);
	}
	if (s->sock >= 0)
		close(s->sock);
	s->sock = -1;
	if (s->fuse_fd < 0) { /* it never mounted: a start-up failure, reported as it was */
		s->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		s->stopping = true;
		report_start(s, (uint8_t)s->exit_status);
	} else if (s->stopping) {
		s->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		log_info("supervisor: serving process %d %s", (int)s->child,
			 exit_text(status, why, sizeof(why)));
	} else if (!connection_alive(s)) {
		log_info("supervisor: the mount has ended; serving process %d %s", (int)s->child,
			 exit_text(status, why, sizeof(why)));
		s->stopping = true;
	} else {
		s->restarts++;
		if (s->handover) {
			log_info("supervisor: serving process %d handed over; starting %s",
				 (int)s->child, s->binary);
			s->next_start_ns = s->died_ns;
			s->fast_exits = 0;
		} else {
			plan_restart(s, status);
		}
		s->handover = false;
		resend(s);
		store_save(s);
	}
	s->child = 0;
}

static void reap(struct super *s)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (pid == s->child)
			child_exited(s, status);
}

static void answer(struct super *s, bool reply, int type, const char *text)
{
	if (!reply)
		return;
	struct super_msg msg = { .type = (uint32_t)type };
	msg.len = (uint32_t)snprintf(msg.data, sizeof(msg.data), "%s", text);
	if (msg.len >= sizeof(msg.data))
		msg.len = sizeof(msg.data) - 1;
	send(s->sock, &msg, MSG_SIZE(msg.len), MSG_NOSIGNAL);
}

/* Hands the mount to @binary (empty: ours again); with @reply, answers the child's request. */
static void upgrade(struct super *s, const char *binary, bool reply)
{
	char path[PATH_MAX], text[PATH_MAX + 128];
	struct stat st;
	if (!binary[0])
		binary = s->binary;
	errno = 0;
	if (!realpath(binary, path) || stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
	    access(path, X_OK) < 0) {
		snprintf(text, sizeof(text), "binary '%s': %s; give the path of an executable "
			 "mows-fuse", binary, errno ? strerror(errno) : "not a regular file");
		answer(s, reply, SM_ERR, text);
		return;
	}
	if (s->handover || s->stopping || s->child_dead) {
		answer(s, reply, SM_ERR, "a handover or stop is already under way; try again in a moment");
		return;
	}
	snprintf(s->prev_binary, sizeof(s->prev_binary), "%s", s->binary);
	snprintf(s->binary, sizeof(s->binary), "%s", path);
	s->upgrading = strcmp(s->prev_binary, s->binary) != 0;
	s->handover = true;
	snprintf(text, sizeof(text), "handing the mount to %s (serving process %d stops)",
		 s->binary, (int)s->child);
	answer(s, reply, SM_OK, text);
	log_info("supervisor: %s", text);
	kill(s->child, SIGUSR2);
}

static int recv_msg(struct super *s, struct super_msg *msg, int *fd)
{
	struct iovec iov = { msg, sizeof(*msg) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	*fd = -1;
	ssize_t n = recvmsg(s->sock, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return n == 0 ? -EPIPE : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	if ((size_t)n < MSG_SIZE(0) || msg->len > (size_t)n - MSG_SIZE(0))
		return -EPROTO;
	return 0;
}

static void child_message(struct super *s)
{
	struct super_msg msg;
	int fd;
	int rc = recv_msg(s, &msg, &fd);
	if (rc) {
		if (rc == -EPIPE) { /* the child is gone; SIGCHLD follows */
			close(s->sock);
			s->sock = -1;
		}
		return;
	}
	if (msg.type == SM_FD && fd >= 0 && s->fuse_fd < 0) {
		s->fuse_fd = fd;
		report_start(s, 0);
		if (!s->m->foreground)
			quiet_stdio();
		return;
	}
	if (fd >= 0)
		close(fd);
	if (msg.type == SM_INIT && msg.len <= sizeof(s->init)) {
		memcpy(s->init, msg.data, msg.len);
		s->init_len = msg.len;
		s->init_pt = msg.flag;
		store_save(s);
	} else if (msg.type == SM_READY) {
		s->child_ready = true;
		if (s->restarts)
			log_info("supervisor: serving again with process %d, %.0f ms after the last "
				 "one ended", (int)s->child,
				 (double)(mono_ns() - s->died_ns) / 1e6);
		s->upgrading = false;
	} else if (msg.type == SM_UPGRADE) {
		msg.data[msg.len < sizeof(msg.data) ? msg.len : sizeof(msg.data) - 1] = '\0';
		upgrade(s, msg.data, true);
	}
}

static void on_signal(struct super *s)
{
	struct signalfd_siginfo si;
	while (read(s->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			reap(s);
		} else if (si.ssi_signo == SIGUSR2) {
			if (s->child > 0 && s->fuse_fd >= 0 && !s->stopping)
				upgrade(s, "", false);
		} else if (si.ssi_signo != SIGUSR2 && !s->stopping) {
			log_info("supervisor: stopping on signal %u", si.ssi_signo);
			s->stopping = true;
			s->stop_by_ns = mono_ns() + (uint64_t)SUPER_STOP_WAIT_MS * 1000000;
			if (s->child > 0)
				kill(s->child, SIGTERM);
		}
	}
}

static int poll_timeout(const struct super *s)
{
	uint64_t now = mono_ns(), until = 0;
	if (s->child <= 0 && !s->stopping)
		until = s->next_start_ns;
	else if (s->child > 0 && s->stopping)
		until = s->stop_by_ns;
	else
		return -1;
	return until <= now ? 0 : (int)((until - now) / 1000000 + 1);
}

/* The mount and the cache tmpfs go with the supervisor, as with a daemon without one. */
static void teardown(struct super *s)
{
	struct mows *m = s->m;
	if (s->fuse_fd >= 0 && connection_alive(s) &&
	    umount2(m->mountpoint, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		log_warn("supervisor: cannot unmount %s: %s", m->mountpoint, strerror(errno));
	struct statfs sf;
	if (s->fuse_fd >= 0 && !m->cfg.warm_restart && m->cfg.cache_store != STORE_SLAB &&
	    m->cfg.cache_dir[0] && statfs(m->cfg.cache_dir, &sf) == 0 &&
	    sf.f_type == TMPFS_MAGIC && umount2(m->cfg.cache_dir, MNT_DETACH) == 0)
		rmdir(m->cfg.cache_dir);
	if (s->stored)
		super_store_forget();
	if (s->fuse_fd >= 0)
		close(s->fuse_fd);
	if (s->state_fd >= 0)
		close(s->state_fd);
	close(s->opens_fd);
	close(s->sig_fd);
}

static int super_setup(struct super *s)
{
	sigset_t set;
	ssize_t n = readlink("/proc/self/exe", s->binary, sizeof(s->binary) - 1);
	if (n <= 0)
		return -errno;
	s->binary[n] = '\0';
	s->opens_fd = memfd_create("mows-opens", MFD_CLOEXEC);
	if (s->opens_fd < 0 || ftruncate(s->opens_fd, (off_t)super_opens_bytes()) < 0)
		return -errno;
	s->state_fd = super_store_new_state(); /* -1: no fd store, said when it matters */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD), sigaddset(&set, SIGTERM), sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP), sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return s->sig_fd < 0 ? -errno : 0;
}

int super_run(struct mows *m, char **argv)
{
	static struct super s;
	s = (struct super){ .m = m, .argv = argv, .fuse_fd = -1, .opens_fd = -1, .state_fd = -1,
			    .sock = -1, .report_fd = -1 };
	if (geteuid() != 0) {
		fprintf(stderr, "mows-fuse: supervise = on: the supervisor mounts /dev/fuse itself, "
			"which needs root; run as root or set supervise = off\n");
		return 2;
	}
	int rc = super_setup(&s);
	int adopted = rc ? 0 : store_adopt(&s);
	if (adopted < 0)
		log_warn("supervisor: cannot read what systemd passed: %s; mounting afresh",
			 strerror(-adopted));
	if (rc == 0 && !m->foreground)
		rc = detach(&s);
	if (rc) {
		fprintf(stderr, "mows-fuse: supervisor: cannot start: %s\n", strerror(-rc));
		return 1;
	}
	if (adopted > 0) {
		report_start(&s, 0);
		if (!m->foreground)
			quiet_stdio();
	}
	if (!m->foreground && !log_use_journal("mows-fuse"))
		log_use_syslog("mows-fuse");
	while (!s.stopping || s.child > 0) {
		if (s.child <= 0 && !s.stopping && mono_ns() >= s.next_start_ns &&
		    (rc = spawn(&s))) {
			log_err("supervisor: cannot start a serving process: %s", strerror(-rc));
			s.next_start_ns = mono_ns() + (uint64_t)SUPER_BACKOFF_MAX_MS * 1000000;
		}
		struct pollfd p[2] = { { .fd = s.sig_fd, .events = POLLIN },
				       { .fd = s.sock, .events = POLLIN } };
		if (poll(p, s.sock >= 0 ? 2 : 1, poll_timeout(&s)) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			on_signal(&s);
		if (s.sock >= 0 && p[1].revents)
			child_message(&s);
		if (s.stopping && s.child > 0 && mono_ns() >= s.stop_by_ns) {
			log_warn("supervisor: serving process %d did not stop; killing it",
				 (int)s.child);
			kill(s.child, SIGKILL);
			s.stop_by_ns = UINT64_MAX;
		}
	}
	teardown(&s);
	report_start(&s, (uint8_t)(s.exit_status ? s.exit_status : 1));
	log_info("supervisor: the mount of %s ended after %u restarts", m->mountpoint,
		 s.restarts);
	return s.exit_status;
}
