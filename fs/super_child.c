/* A serving process's side of the supervisor: see fs/supervisor.h. */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/log.h"
#include "fs/mows.h"
#include "fs/super_priv.h"

#define SUPER_ANSWER_MS 5000 /* a child waits this long for an answer to an upgrade */

/* ---- the table of opens (a memfd the supervisor holds, mapped by every child) ---- */

/* Linear probing; keys are never removed, a record without opens is reused. */
static struct mows_open_rec *opens_find(struct mows_open_rec *t, uint64_t nodeid, bool create)
{
	uint32_t start = (uint32_t)fmix64(nodeid) % OPENS_SLOTS;
	struct mows_open_rec *reuse = NULL;
	for (uint32_t k = 0; k < OPENS_SLOTS; k++) {
		struct mows_open_rec *r = &t[(start + k) % OPENS_SLOTS];
		if (r->nodeid == nodeid)
			return r;
		if (!reuse && !r->plain && !r->pt)
			reuse = r;
		if (!r->nodeid)
			break;
	}
	if (!create || !reuse)
		return NULL;
	reuse->nodeid = nodeid;
	reuse->backing_id = -1;
	return reuse;
}

struct super_child {
	int sock;                     /* to the supervisor */
	int fuse_fd;                  /* inherited, or -1 */
	struct mows_open_rec *opens;  /* the shared table, or NULL */
	unsigned restarts;
	uint8_t init[INIT_MAX];
	size_t init_len;
	bool init_pt;
	pthread_mutex_t lock;         /* one exchange on sock at a time */
};

static _Atomic bool handover_flag;
static struct fuse_session *handover_se;

static int env_fd(const char *name)
{
	const char *v = getenv(name);
	char *end;
	long fd = v ? strtol(v, &end, 10) : -1;
	return v && *end == '\0' && fd >= 0 && fd < INT_MAX && fcntl((int)fd, F_GETFD) >= 0 ?
		       (int)fd : -1;
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s);
	if (n % 2 || n / 2 > cap)
		return -EINVAL;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return 0;
}

bool super_is_child(void)
{
	return getenv(ENV_SOCK) != NULL;
}

int super_child_attach(struct mows *m, char *err, size_t errlen)
{
	m->super = NULL;
	if (!getenv(ENV_SOCK))
		return 0;
	struct super_child *sc = calloc(1, sizeof(*sc));
	if (!sc) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&sc->lock, NULL);
	sc->sock = env_fd(ENV_SOCK);
	sc->fuse_fd = getenv(ENV_FUSE) ? env_fd(ENV_FUSE) : -1;
	int ofd = env_fd(ENV_OPENS);
	const char *init = getenv(ENV_INIT), *restarts = getenv(ENV_RESTARTS);
	sc->restarts = restarts ? (unsigned)strtoul(restarts, NULL, 10) : 0;
	if (init && (init[0] != '0' && init[0] != '1'))
		init = NULL;
	if (sc->sock < 0 || (getenv(ENV_FUSE) && sc->fuse_fd < 0) || ofd < 0 ||
	    (init && (init[1] != ':' || hex_decode(init + 2, sc->init, sizeof(sc->init),
						   &sc->init_len)))) {
		snprintf(err, errlen, "started by a mows-fuse supervisor with an environment it "
			 "does not understand (%s, %s, %s, %s): start mows-fuse itself, not its "
			 "serving process", ENV_SOCK, ENV_FUSE, ENV_OPENS, ENV_INIT);
		free(sc);
		return -EINVAL;
	}
	sc->init_pt = init && init[0] == '1';
	void *p = mmap(NULL, super_opens_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, ofd, 0);
	close(ofd);
	sc->opens = p == MAP_FAILED ? NULL : p;
	if (!sc->opens)
		log_warn("supervisor: cannot map the table of opens: %s; opens made before a "
			 "restart are not known to this process", strerror(errno));
	const char *fail_if = getenv(ENV_TEST_FAIL);
	if (fail_if && access(fail_if, F_OK) == 0) {
		snprintf(err, errlen, "%s=%s exists: this serving process exits (a test)",
			 ENV_TEST_FAIL, fail_if);
		free(sc);
		return -EINVAL;
	}
	unsetenv(ENV_SOCK), unsetenv(ENV_FUSE), unsetenv(ENV_OPENS), unsetenv(ENV_INIT);
	m->super = sc;
	return 0;
}

void super_child_free(struct super_child *sc)
{
	if (!sc)
		return;
	if (sc->opens)
		munmap(sc->opens, super_opens_bytes());
	close(sc->sock);
	pthread_mutex_destroy(&sc->lock);
	free(sc);
}

int super_child_fuse_fd(const struct super_child *sc)
{
	return sc->fuse_fd;
}

unsigned super_child_restarts(const struct super_child *sc)
{
	return sc ? sc->restarts : 0;
}

static int child_send(struct super_child *sc, const struct super_msg *msg, int fd)
{
	struct iovec iov = { (void *)msg, MSG_SIZE(msg->len) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	pthread_mutex_lock(&sc->lock);
	ssize_t n = sendmsg(sc->sock, &mh, MSG_NOSIGNAL);
	pthread_mutex_unlock(&sc->lock);
	return n < 0 ? -errno : 0;
}

int super_child_send_fd(struct super_child *sc, int fuse_fd)
{
	struct super_msg msg = { .type = SM_FD };
	return child_send(sc, &msg, fuse_fd);
}

const void *super_child_init(const struct super_child *sc, size_t *len, bool *pt)
{
	*len = sc->init_len;
	*pt = sc->init_pt;
	return sc->init_len ? sc->init : NULL;
}

void super_child_report_init(struct super_child *sc, const void *init_in, size_t len, bool pt)
{
	struct super_msg msg = { .type = SM_INIT, .flag = pt };
	msg.len = (uint32_t)(len < INIT_MAX ? len : INIT_MAX);
	memcpy(msg.data, init_in, msg.len);
	int rc = child_send(sc, &msg, -1);
	if (rc)
		log_err("supervisor: cannot record the INIT of this mount: %s; a restarted "
			"serving process will not be able to serve it", strerror(-rc));
}

void super_child_test_crash(const char *where)
{
	const char *path = getenv(ENV_TEST_CRASH);
	if (!path || unlink(path) < 0)
		return;
	log_warn("%s: dying %s (a test)", ENV_TEST_CRASH, where);
	raise(SIGKILL);
}

void super_child_ready(struct super_child *sc)
{
	struct super_msg msg = { .type = SM_READY };
	child_send(sc, &msg, -1);
}

int super_child_upgrade(struct super_child *sc, const char *binary, char *out, size_t outlen)
{
	struct super_msg msg = { .type = SM_UPGRADE };
	msg.len = (uint32_t)snprintf(msg.data, sizeof(msg.data), "%s", binary) + 1;
	if (msg.len > sizeof(msg.data))
		return -ENAMETOOLONG;
	int rc = child_send(sc, &msg, -1);
	if (rc)
		return rc;
	/* Only this thread reads the socket (the control thread serves one upgrade at a time
	 * under sc->lock); the supervisor answers at once. */
	pthread_mutex_lock(&sc->lock);
	struct pollfd p = { .fd = sc->sock, .events = POLLIN };
	ssize_t n = -1;
	if (poll(&p, 1, SUPER_ANSWER_MS) == 1)
		n = recv(sc->sock, &msg, sizeof(msg), 0);
	pthread_mutex_unlock(&sc->lock);
	if (n < (ssize_t)MSG_SIZE(0) || msg.len >= sizeof(msg.data))
		return n < 0 ? -ETIMEDOUT : -EPROTO;
	msg.data[msg.len] = '\0';
	snprintf(out, outlen, "%s", msg.data);
	return msg.type == SM_OK ? 0 : -EINVAL;
}

static void on_handover(int sig)
{
	(void)sig;
	atomic_store(&handover_flag, true);
	if (handover_se)
		fuse_session_exit(handover_se);
}

void super_child_signals(struct super_child *sc, void *se)
{
	(void)sc;
	struct sigaction sa = { .sa_handler = on_handover };
	sigemptyset(&sa.sa_mask);
	handover_se = se;
	sigaction(SIGUSR2, &sa, NULL);
}

bool super_child_handover(void)
{
	return atomic_load(&handover_flag);
}

struct mows_open_rec *super_opens_rec(struct super_child *sc, uint64_t nodeid, bool create)
{
	return sc && sc->opens ? opens_find(sc->opens, nodeid, create) : NULL;
}

void super_opens_foreach(struct super_child *sc, void (*fn)(void *arg, uint64_t nodeid),
			 void *arg)
{
	if (!sc || !sc->opens)
		return;
	for (uint32_t k = 0; k < OPENS_SLOTS; k++)
		if (sc->opens[k].nodeid && (sc->opens[k].plain || sc->opens[k].pt))
			fn(arg, sc->opens[k].nodeid);
}
