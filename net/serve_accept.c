/*
 * Inbound admission: the listener, the unauthenticated budget (per-address limit, eviction
 * of the oldest handshake), a thread per link while it runs its handshake, the authenticated
 * budget (max_connections); an authenticated link goes to serve_conn() (net/serve.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "net/auth.h"
#include "net/serve_priv.h"
#include "net/tcp.h"

#define RATELIMIT_MS 10000

struct serve_arg {
	struct peers *p;
	unsigned slot;            /* in p->pending while unauthenticated */
	struct link *link;
	struct sockaddr_storage from;
	socklen_t fromlen;
	char addr[INET6_ADDRSTRLEN];
};

/* Lock held. Whether to log now; *@suppressed gets how many were left out before. */
static bool do_ratelimit(struct peer_ratelimit *r, uint64_t now, unsigned *suppressed)
{
	if (now < r->next_ns) {
		r->suppressed++;
		return false;
	}
	*suppressed = r->suppressed;
	r->suppressed = 0;
	r->next_ns = now + (uint64_t)RATELIMIT_MS * 1000000;
	return true;
}

/* The address a peer listens on: where it connected from, at its HELLO's port. */
static socklen_t listen_addr(const struct serve_arg *a, uint16_t port,
			     struct sockaddr_storage *out)
{
	*out = a->from;
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons(port);
	return a->fromlen;
}

static void log_handshake_failure(struct peers *p, const struct serve_arg *a, int rc)
{
	unsigned skipped = 0;
	pthread_mutex_lock(&p->lock);
	bool refused = rc == -EACCES || rc == -EPROTO;
	bool log = refused && do_ratelimit(&p->rl_auth, mono_ns(), &skipped);
	pthread_mutex_unlock(&p->lock);
	if (log)
		log_warn("peer connection from %s failed authentication; it got nothing (%s; "
			 "%u more such failures not logged)", a->addr, link_strerror(a->link),
			 skipped);
	else if (!refused)
		log_debug("peer connection from %s: handshake: %s %s", a->addr, strerror(-rc),
			  link_strerror(a->link));
}

/* Leaves the unauthenticated budget; with @ok, joins the authenticated one if there is room. */
static bool authenticated(struct peers *p, struct serve_arg *a, bool ok)
{
	unsigned skipped = 0;
	pthread_mutex_lock(&p->lock);
	p->pending[a->slot].link = NULL;
	bool room = ok && p->nauth < p->cfg->max_connections;
	if (room)
		p->nauth++;
	else if (ok)
		p->refused_auth++;
	bool log = ok && !room && do_ratelimit(&p->rl_refuse, mono_ns(), &skipped);
	pthread_mutex_unlock(&p->lock);
	if (log)
		log_warn("peers: refusing an authenticated connection from %s: %u already "
			 "(max_connections; %u more refusals not logged)", a->addr,
			 p->cfg->max_connections, skipped);
	return room;
}

static void *serve_main(void *arg)
{
	struct serve_arg *a = arg;
	struct peers *p = a->p;
	struct proto_hello them;
	struct deadline dl = deadline_in_ms(SERVE_HANDSHAKE_MS);
	int rc = link_handshake(a->link, &p->self, AUTH_ROLE_SERVER, &them, &dl);
	if (rc)
		log_handshake_failure(p, a, rc);
	if (authenticated(p, a, rc == 0)) {
		struct sockaddr_storage sa;
		socklen_t len = listen_addr(a, them.listen_port, &sa);
		struct member *m = peers_inbound(p, them.node_id, (struct sockaddr *)&sa, len);
		serve_conn(p, a->link, m, &them); /* nauth drops when the link ends */
	} else {
		link_free(a->link);
	}
	free(a);
	pthread_mutex_lock(&p->lock);
	p->nserving--;
	pthread_cond_broadcast(&p->stop_cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- admission ---- */

static struct in6_addr addr_key(const struct sockaddr_storage *ss)
{
	struct in6_addr a = { 0 };
	if (ss->ss_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)ss)->sin6_addr;
	} else {
		a.s6_addr[10] = a.s6_addr[11] = 0xff;
		memcpy(&a.s6_addr[12], &((const struct sockaddr_in *)ss)->sin_addr, 4);
	}
	return a;
}

/*
 * Lock held. Finds a pending slot for a connection from @from: refuses past the per-address
 * limit; when the budget is used up, shuts down the oldest handshake (its thread ends at
 * once) so that a flood can delay a real peer by at most one handshake, never lock it out.
 * Returns the slot or -1.
 */
static int do_pending_slot(struct peers *p, const struct in6_addr *from)
{
	unsigned same = 0, live = 0;
	int free_slot = -1, oldest = -1;
	for (unsigned i = 0; i < 2 * SERVE_UNAUTH_MAX; i++) {
		struct serve_pending *sp = &p->pending[i];
		if (!sp->link) {
			free_slot = free_slot < 0 ? (int)i : free_slot;
			continue;
		}
		if (!memcmp(&sp->from, from, sizeof(*from)))
			same++;
		if (sp->evicted)
			continue;
		live++;
		if (oldest < 0 || sp->since_ns < p->pending[oldest].since_ns)
			oldest = (int)i;
	}
	if (same >= SERVE_UNAUTH_PER_ADDR || free_slot < 0)
		return -1;
	if (live >= SERVE_UNAUTH_MAX && oldest >= 0) {
		p->pending[oldest].evicted = true;
		link_shutdown(p->pending[oldest].link); /* a syscall that does not block */
	}
	return free_slot;
}

static void refuse(struct peers *p, const char *addr, const char *why)
{
	unsigned skipped = 0;
	pthread_mutex_lock(&p->lock);
	p->refused_unauth++;
	bool log = do_ratelimit(&p->rl_refuse, mono_ns(), &skipped);
	pthread_mutex_unlock(&p->lock);
	if (log)
		log_warn("peers: refusing a connection from %s: %s (%u more refusals not logged)",
			 addr, why, skipped);
}

static int spawn(struct serve_arg *a)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, serve_main, a);
	pthread_attr_destroy(&attr);
	return -rc;
}

static void admit(struct peers *p, int fd, const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct serve_arg *a = calloc(1, sizeof(*a));
	char host[INET6_ADDRSTRLEN] = "?";
	getnameinfo((const struct sockaddr *)ss, sslen, host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST);
	if (!a || tcp_setup(fd) || !(a->link = link_new(fd))) {
		if (!a || !a->link)
			close(fd);
		free(a);
		return;
	}
	a->p = p;
	a->from = *ss;
	a->fromlen = sslen;
	snprintf(a->addr, sizeof(a->addr), "%s", host);
	struct in6_addr key = addr_key(ss);
	pthread_mutex_lock(&p->lock);
	int slot = p->stopping ? -1 : do_pending_slot(p, &key);
	if (slot >= 0) {
		p->pending[slot] = (struct serve_pending){ .link = a->link, .from = key,
							   .since_ns = mono_ns() };
		a->slot = (unsigned)slot;
		p->nserving++;
	}
	pthread_mutex_unlock(&p->lock);
	if (slot < 0) {
		refuse(p, host, "too many unauthenticated connections from it");
		goto out_free;
	}
	if (spawn(a) == 0)
		return;
	pthread_mutex_lock(&p->lock);
	p->pending[slot].link = NULL;
	p->nserving--;
	pthread_mutex_unlock(&p->lock);
out_free:
	link_free(a->link);
	free(a);
}

/* EMFILE / ENFILE: wait (or stop) instead of spinning on a listener that stays readable. */
static bool accept_backoff(struct peers *p, int err, unsigned *ms)
{
	pthread_mutex_lock(&p->lock);
	bool first = p->accept_errors++ == 0 || *ms == 0;
	pthread_mutex_unlock(&p->lock);
	*ms = *ms ? (*ms * 2 > 1000 ? 1000 : *ms * 2) : 100;
	if (first)
		log_err("peers: cannot accept connections: %s; this process is out of file "
			"descriptors; pausing accepts (raise LimitNOFILE / ulimit -n, or lower "
			"max_connections)", strerror(err));
	struct pollfd pf = { .fd = p->stop_fd, .events = POLLIN };
	return poll(&pf, 1, (int)*ms) == 0;
}

static void *listener_main(void *arg)
{
	struct peers *p = arg;
	unsigned backoff_ms = 0;
	while (wait_readable_or_stop(p->listen_fd, p->stop_fd) > 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(p->listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
		if (fd >= 0) {
			if (backoff_ms)
				log_info("peers: accepting connections again");
			backoff_ms = 0;
			admit(p, fd, &ss, len);
		} else if ((errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
			    errno == ENOBUFS) && !accept_backoff(p, errno, &backoff_ms)) {
			break;
		}
	}
	return NULL;
}

int serve_accept_start(struct peers *p)
{
	return -pthread_create(&p->listener, NULL, listener_main, p);
}

void serve_accept_stop(struct peers *p)
{
	pthread_join(p->listener, NULL);
	/* Every handshake thread ends by its own deadline or at stop_fd; what they use must
	 * outlive them, so wait for the last without a limit. */
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < 2 * SERVE_UNAUTH_MAX; i++)
		if (p->pending[i].link)
			link_shutdown(p->pending[i].link);
	while (p->nserving)
		pthread_cond_wait(&p->stop_cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
}
