/*
 * rdma_pair: net/rdma.c against a real RDMA device (soft-RoCE in the test VM), with a fake
 * host: a fake slab of chunk-sized slots that pin() fills with a pattern the reader can
 * check, reusing unpinned slots as a cache would, so a chunk unpinned too early shows up
 * as wrong bytes or a wrong CRC.
 *
 *   rdma_pair self ADDR PORT               the in-process suite (server and client context)
 *   rdma_pair serve ADDR PORT CHUNK        a server; prints "ready", runs until killed
 *   rdma_pair fetch ADDR PORT CHUNK N      fetches N chunks from a server and checks them
 *   rdma_pair survive ADDR PORT CHUNK      fetches until the server is killed; checks that
 *                                          the failure is fast and clean, then that
 *                                          reconnecting fails without leaking
 *   rdma_pair hold ADDR PORT CHUNK         fetches 2 chunks keeping their leases, prints
 *                                          "holding" and waits to be killed
 *   rdma_pair regbench                     times chunk memory registration (files mode)
 *                                          for sizes 64 KiB .. 256 MiB
 *
 * With RDMA_PAIR_FILES=1 in the environment both fake hosts keep their slots in a file of a
 * cache store (cache/store.h, a huge-page tmpfs), as the daemon does with the cache in
 * files: the context has no slab and registers a region per chunk; the server punches a
 * slot out (which forgets its region) before it refills it, and the requester punches its
 * destination out before every fetch, as an evicted slot refilled would be.
 *
 * Descriptors (DESC_REQ, DESC, RELEASE) do not cross the RDMA connection: as the daemon
 * sends them over its TLS link, rdma_pair sends them over a plain TCP stream to the same
 * port number (rdma_cm has its own port space), where the server answers each with
 * rdma_ctx_answer() and ends the stream's leases when it closes (rdma_ctx_drop_owner()).
 *
 * CHUNK takes K/M suffixes. Output: one "ok NAME ..." or "FAIL NAME: ..." line per check,
 * then "rdma_pair: N passed, M failed". Exit status 0 only when nothing failed.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include "common/config.h"
#include "common/crc.h"
#include "common/deadline.h"
#include "common/log.h"
#include "cache/store.h"
#include "net/rdma.h"

#define MAX_SLOTS 8
#define KEY_ENOENT 0xe0e0e0e0ull   /* pin() says -ENOENT */
#define KEY_EIO 0xe1e1e1e1ull      /* pin() says -EIO */
#define KEY_SLOW 0x51515151ull     /* pin() takes 2 s */
#define FETCH_MS 20000

static unsigned passed, failed;
static bool files_mode;           /* RDMA_PAIR_FILES=1: slots in a cache store file */

static void ok(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ok(const char *name, const char *fmt, ...)
{
	va_list ap;
	printf("ok %s", name);
	if (fmt) {
		va_start(ap, fmt);
		putchar(' ');
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	passed++;
}

static void fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	failed++;
}

static const uint8_t good_ticket[RDMA_TICKET_LEN] = {
	0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
	0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x01,
};

/* ---- the pattern a chunk holds: 8-byte words of a hash of (file key, word index) ---- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb93e1a85ec53ull;
	return x ^ (x >> 33);
}

static void pattern_fill(uint8_t *dst, uint64_t key, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint64_t w = mix64(key * 0x9e3779b97f4a7c15ull + (off + i) / 8);
		size_t k = (off + i) % 8, n = 8 - k < len - i ? 8 - k : len - i;
		memcpy(dst + i, (uint8_t *)&w + k, n);
		i += n;
	}
}

/* Returns the offset of the first wrong byte, or -1. */
static long pattern_check(const uint8_t *p, uint64_t key, uint64_t off, size_t len)
{
	uint8_t buf[4096];
	for (size_t i = 0; i < len; i += sizeof(buf)) {
		size_t n = len - i < sizeof(buf) ? len - i : sizeof(buf);
		pattern_fill(buf, key, off + i, n);
		if (memcmp(buf, p + i, n))
			for (size_t k = 0; k < n; k++)
				if (buf[k] != p[i + k])
					return (long)(i + k);
	}
	return -1;
}

/* ---- the fake host ---- */

struct fake {
	pthread_mutex_t lock;
	uint8_t *slab;
	size_t slot_size;
	unsigned nslots, next;
	bool valid[MAX_SLOTS];
	uint64_t key[MAX_SLOTS], chunk[MAX_SLOTS];
	size_t len[MAX_SLOTS];
	uint32_t crc[MAX_SLOTS];
	unsigned pins[MAX_SLOTS];
	uint64_t pinned, unpinned, fills, tickets_checked; /* protected by lock */
	struct cache_store *store;       /* files mode */
	struct cache_store_file file;    /* files mode: the slots, slot_size apart */
};

static unsigned stores_made;

static int fake_init(struct fake *f, size_t slot_size, unsigned nslots)
{
	char dir[96], err[512];
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->slot_size = slot_size;
	f->nslots = nslots;
	if (!files_mode) {
		f->slab = aligned_alloc(4096, slot_size * nslots);
		if (!f->slab)
			return -ENOMEM;
		memset(f->slab, 0, slot_size * nslots);
		return 0;
	}
	snprintf(dir, sizeof(dir), "/tmp/rdma_pair-store.%d.%u", (int)getpid(), stores_made++);
	f->store = cache_store_new(dir, slot_size * nslots, false, true, err, sizeof(err));
	if (!f->store) {
		fprintf(stderr, "rdma_pair: %s\n", err);
		return -errno;
	}
	int rc = cache_store_file_create(f->store, 1, slot_size * nslots, &f->file);
	if (rc == 0)
		rc = cache_store_alloc(&f->file, 0, slot_size * nslots);
	if (rc) {
		fprintf(stderr, "rdma_pair: a store file of %zu bytes: %s\n", slot_size * nslots,
			strerror(-rc));
		return rc;
	}
	f->slab = f->file.map;
	return 0;
}

static void fake_release(struct fake *f)
{
	if (f->store) {
		cache_store_set_forget(f->store, NULL, NULL);
		cache_store_file_release(&f->file, false);
		cache_store_free(f->store, false);
	} else {
		free(f->slab);
	}
	pthread_mutex_destroy(&f->lock);
}

/* Files mode: slot @s's bytes are given back (its region forgotten first) and taken anew,
 * as the cache evicts a chunk and fills another into its hole. Lock held. */
static void do_fake_refresh(struct fake *f, unsigned s)
{
	if (!f->store)
		return;
	cache_store_punch(&f->file, (uint64_t)s * f->slot_size, f->slot_size);
	if (cache_store_alloc(&f->file, (uint64_t)s * f->slot_size, f->slot_size))
		fprintf(stderr, "rdma_pair: cannot take slot %u's bytes again\n", s);
}

/* Evicts every unpinned slot (files mode: punches it out); the next fill takes slot 0. */
static unsigned fake_evict_all(struct fake *f)
{
	unsigned n = 0;
	pthread_mutex_lock(&f->lock);
	for (unsigned s = 0; s < f->nslots; s++)
		if (!f->pins[s] && f->valid[s]) {
			do_fake_refresh(f, s);
			f->valid[s] = false;
			n++;
		}
	f->next = 0;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static int fake_pin(void *ctx, const struct proto_get *g, struct cache_span *span, uint32_t *crc)
{
	struct fake *f = ctx;
	if (g->file_key == KEY_ENOENT)
		return -ENOENT;
	if (g->file_key == KEY_EIO)
		return -EIO;
	if (g->file_key == KEY_SLOW)
		usleep(2000000);
	if (g->chunk_size != f->slot_size)
		return -EINVAL;
	uint64_t off = g->chunk * g->chunk_size;
	size_t len = g->file_size - off < g->chunk_size ? g->file_size - off : g->chunk_size;
	pthread_mutex_lock(&f->lock);
	unsigned s;
	for (s = 0; s < f->nslots; s++)
		if (f->valid[s] && f->key[s] == g->file_key && f->chunk[s] == g->chunk)
			break;
	if (s == f->nslots) {
		/* A miss: reuse an unpinned slot, as the cache evicts. */
		for (unsigned k = 0; k < f->nslots && s == f->nslots; k++) {
			unsigned c = (f->next + k) % f->nslots;
			if (!f->pins[c])
				s = c;
		}
		if (s == f->nslots) {
			pthread_mutex_unlock(&f->lock);
			return -EBUSY;
		}
		f->next = (s + 1) % f->nslots;
		if (f->valid[s])
			do_fake_refresh(f, s);
		uint8_t *p = f->slab + s * f->slot_size;
		pattern_fill(p, g->file_key, off, len);
		f->crc[s] = mows_crc32(0, p, len);
		f->valid[s] = true;
		f->key[s] = g->file_key;
		f->chunk[s] = g->chunk;
		f->len[s] = len;
		f->fills++;
	}
	f->pins[s]++;
	f->pinned++;
	*span = (struct cache_span){ .data = f->slab + s * f->slot_size, .len = f->len[s],
				     .slot = s };
	*crc = f->crc[s];
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static void fake_unpin(void *ctx, struct cache_span *span)
{
	struct fake *f = ctx;
	pthread_mutex_lock(&f->lock);
	if (span->slot < f->nslots && f->pins[span->slot])
		f->pins[span->slot]--;
	else
		fprintf(stderr, "rdma_pair: unpin of slot %u that is not pinned\n", span->slot);
	f->unpinned++;
	pthread_mutex_unlock(&f->lock);
}

static bool fake_ticket_ok(void *ctx, const uint8_t ticket[RDMA_TICKET_LEN])
{
	struct fake *f = ctx;
	pthread_mutex_lock(&f->lock);
	f->tickets_checked++;
	pthread_mutex_unlock(&f->lock);
	return !memcmp(ticket, good_ticket, RDMA_TICKET_LEN);
}

static void fake_counts(struct fake *f, uint64_t *pinned, uint64_t *unpinned)
{
	pthread_mutex_lock(&f->lock);
	*pinned = f->pinned;
	*unpinned = f->unpinned;
	pthread_mutex_unlock(&f->lock);
}

/* ---- plumbing ---- */

struct side {
	struct mows_config cfg;
	struct fake fake;
	struct rdma_ctx *r;          /* NULL once freed; under rlock for the descriptor threads */
	pthread_rwlock_t rlock;
	int tcp;                     /* the descriptor service's listener, or -1 */
};

static void forget_region(void *ctx, const void *addr, size_t len)
{
	rdma_ctx_forget(ctx, addr, len);
}

static int side_init(struct side *s, size_t chunk, unsigned slots)
{
	char err[512];
	config_defaults(&s->cfg);
	pthread_rwlock_init(&s->rlock, NULL);
	s->tcp = -1;
	if (fake_init(&s->fake, chunk, slots))
		return -ENOMEM;
	struct rdma_host host = { .pin = fake_pin, .unpin = fake_unpin,
				  .ticket_ok = fake_ticket_ok, .ctx = &s->fake };
	/* Files mode: no slab; a region per chunk, forgotten when the store punches it. */
	s->r = rdma_ctx_new(&s->cfg, files_mode ? NULL : s->fake.slab,
			    files_mode ? 0 : chunk * slots, &host, err, sizeof(err));
	if (!s->r) {
		fprintf(stderr, "rdma_pair: rdma_ctx_new: %s\n", err);
		return -errno;
	}
	if (s->fake.store)
		cache_store_set_forget(s->fake.store, forget_region, s->r);
	return 0;
}

static struct sockaddr_in addr_of(const char *ip, unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &sa.sin_addr);
	return sa;
}

/* ---- the descriptor link: a TCP stream, frames of u32 length (big-endian) + message ---- */

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* the peer is gone, as a reset TLS link would say */
			return n < 0 && errno != EPIPE ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly @len bytes by @dl (NULL: no limit). EOF is -ECONNRESET. */
static int read_full(int fd, void *buf, size_t len, const struct deadline *dl)
{
	uint8_t *p = buf;
	while (len) {
		if (dl) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			int64_t ms = deadline_left_ms(dl);
			if (ms <= 0)
				return -ETIMEDOUT;
			int k = poll(&pf, 1, ms > 60000 ? 60000 : (int)ms);
			if (k < 0 && errno != EINTR)
				return -errno;
			if (k <= 0)
				continue;
		}
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int frame_send(int fd, const void *msg, size_t len)
{
	uint8_t buf[4 + RDMA_MSG_MAX];
	uint32_t be = htonl((uint32_t)len);
	if (len > RDMA_MSG_MAX)
		return -EMSGSIZE;
	memcpy(buf, &be, 4);
	memcpy(buf + 4, msg, len);
	return write_full(fd, buf, 4 + len);
}

/* The server's side of one stream: answers until EOF, then ends the stream's leases. */
struct dconn {
	struct side *sv;
	int fd;
};

static void *dconn_main(void *arg)
{
	struct dconn *d = arg;
	uint8_t req[RDMA_MSG_MAX], ans[RDMA_MSG_MAX];
	uint32_t be;
	while (read_full(d->fd, &be, 4, NULL) == 0 && ntohl(be) <= sizeof(req) &&
	       read_full(d->fd, req, ntohl(be), NULL) == 0) {
		pthread_rwlock_rdlock(&d->sv->rlock);
		ssize_t n = rdma_ctx_answer(d->sv->r, d, req, ntohl(be), ans, sizeof(ans));
		pthread_rwlock_unlock(&d->sv->rlock);
		if (n < 0 || (n > 0 && frame_send(d->fd, ans, (size_t)n)))
			break;
	}
	pthread_rwlock_rdlock(&d->sv->rlock);
	rdma_ctx_drop_owner(d->sv->r, d);
	pthread_rwlock_unlock(&d->sv->rlock);
	close(d->fd);
	free(d);
	return NULL;
}

static void *daccept_main(void *arg)
{
	struct side *sv = arg;
	for (;;) {
		int fd = accept(sv->tcp, NULL, NULL);
		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0)
			return NULL;
		struct dconn *d = malloc(sizeof(*d));
		pthread_t t;
		if (d) {
			*d = (struct dconn){ .sv = sv, .fd = fd };
			if (pthread_create(&t, NULL, dconn_main, d) == 0) {
				pthread_detach(t);
				continue;
			}
			free(d);
		}
		close(fd);
	}
}

/* Starts the descriptor service on @tcp (bound and listening). */
static void desc_service(struct side *sv, int tcp)
{
	pthread_t t;
	sv->tcp = tcp;
	if (pthread_create(&t, NULL, daccept_main, sv) == 0)
		pthread_detach(t);
}

/* Frees the server's context so that no descriptor thread uses it afterwards. */
static void side_free_ctx(struct side *sv)
{
	pthread_rwlock_wrlock(&sv->rlock);
	if (sv->fake.store) {
		pthread_mutex_lock(&sv->fake.lock);
		cache_store_set_forget(sv->fake.store, NULL, NULL);
		pthread_mutex_unlock(&sv->fake.lock);
	}
	rdma_ctx_free(sv->r);
	sv->r = NULL;
	pthread_rwlock_unlock(&sv->rlock);
}

/* The requester's side: a connection's stream, found again when it is closed. */
struct plink {
	struct transport_conn *c;
	int fd;
	struct plink *next;
};
static pthread_mutex_t plinks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct plink *plinks;

static int plink_send(void *ctx, const void *msg, size_t len, const struct deadline *dl)
{
	struct plink *l = ctx;
	(void)dl;
	return frame_send(l->fd, msg, len);
}

static int plink_call(void *ctx, const void *req, size_t len, void *ans, size_t cap,
		      size_t *anslen, const struct deadline *dl)
{
	struct plink *l = ctx;
	uint32_t be;
	int rc = frame_send(l->fd, req, len);
	if (rc == 0)
		rc = read_full(l->fd, &be, 4, dl);
	if (rc == 0 && ntohl(be) > cap)
		rc = -EPROTO;
	if (rc == 0)
		rc = read_full(l->fd, ans, ntohl(be), dl);
	if (rc == 0)
		*anslen = ntohl(be);
	return rc;
}

static struct sockaddr_in addr_of(const char *ip, unsigned port);

/* An RDMA connection with its descriptor stream, or NULL with errno set. */
static struct transport_conn *dial(struct side *cl, const char *ip, unsigned port,
				   const uint8_t *ticket, int ms)
{
	struct sockaddr_in sa = addr_of(ip, port);
	struct deadline dl = deadline_in_ms(ms);
	struct transport_conn *c = rdma_ctx_connect(cl->r, (struct sockaddr *)&sa, sizeof(sa),
						    ticket ? ticket : good_ticket, &dl);
	if (!c)
		return NULL;
	struct plink *l = calloc(1, sizeof(*l));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!l || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno ? errno : ENOMEM;
		if (fd >= 0)
			close(fd);
		free(l);
		rdma_transport.close(c);
		errno = e;
		return NULL;
	}
	*l = (struct plink){ .c = c, .fd = fd };
	struct rdma_desc_link ops = { .call = plink_call, .send = plink_send, .ctx = l };
	rdma_conn_set_link(c, &ops);
	pthread_mutex_lock(&plinks_lock);
	l->next = plinks;
	plinks = l;
	pthread_mutex_unlock(&plinks_lock);
	return c;
}

/* Closes a dial()ed connection and its stream (the server then ends its leases). */
static void undial(struct transport_conn *c)
{
	struct plink *l = NULL;
	pthread_mutex_lock(&plinks_lock);
	for (struct plink **pp = &plinks; *pp; pp = &(*pp)->next)
		if ((*pp)->c == c) {
			l = *pp;
			*pp = l->next;
			break;
		}
	pthread_mutex_unlock(&plinks_lock);
	rdma_transport.close(c);
	if (l) {
		close(l->fd);
		free(l);
	}
}

static size_t chunk_len(uint64_t file_size, uint64_t chunk, size_t chunk_size)
{
	uint64_t off = chunk * chunk_size;
	return file_size - off < chunk_size ? file_size - off : chunk_size;
}

/* Fetches one chunk into client slot @slot and checks bytes and CRC. Returns 0 or -errno;
 * a wrong byte or CRC is -EBADMSG with the detail in @why. */
static int fetch_check(struct side *cl, struct transport_conn *c, uint64_t key,
		       uint64_t file_size, uint64_t chunk, unsigned slot, int ms, char *why,
		       size_t whylen)
{
	size_t cs = cl->fake.slot_size, len = chunk_len(file_size, chunk, cs);
	uint8_t *dst = cl->fake.slab + slot * cs;
	struct transport_chunk_req req = { .file_key = key, .file_size = file_size,
					   .mtime_ns = 1, .chunk = chunk,
					   .chunk_size = (uint32_t)cs, .fill = true };
	struct deadline dl = deadline_in_ms(ms);
	uint32_t crc = 0;
	if (cl->fake.store) { /* fresh pages, as a slot evicted and refilled gets */
		pthread_mutex_lock(&cl->fake.lock);
		do_fake_refresh(&cl->fake, slot);
		pthread_mutex_unlock(&cl->fake.lock);
	}
	memset(dst, 0xee, len);
	int rc = rdma_transport.fetch(c, &req, dst, len, &crc, &dl);
	if (rc) {
		snprintf(why, whylen, "fetch of chunk %llu: %s", (unsigned long long)chunk,
			 strerror(-rc));
		return rc;
	}
	long bad = pattern_check(dst, key, chunk * cs, len);
	uint32_t got = mows_crc32(0, dst, len);
	if (bad >= 0 || got != crc) {
		snprintf(why, whylen, "chunk %llu: first wrong byte at %ld, crc %08x, sent %08x",
			 (unsigned long long)chunk, bad, got, crc);
		return -EBADMSG;
	}
	return 0;
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The open fd count once it has stopped changing (connections of this process's own
 * server may still be going away). */
static unsigned stable_fds(void)
{
	unsigned n = open_fds(), same = 0;
	for (int i = 0; i < 60 && same < 4; i++) {
		usleep(50000);
		unsigned m = open_fds();
		same = m == n ? same + 1 : 0;
		n = m;
	}
	return n;
}

/* Waits up to 3 s for the open fd count to come back to @want (a serving thread of this
 * process may still be tearing a connection down); returns the last count. */
static unsigned fds_back_to(unsigned want)
{
	unsigned n = open_fds();
	for (int i = 0; i < 60 && n != want; i++) {
		usleep(50000);
		n = open_fds();
	}
	return n;
}

/* Waits up to @ms for the server's leases to drop to 0 and pins to match unpins. */
static bool settled(struct side *sv, int ms, struct rdma_counters *st)
{
	struct deadline dl = deadline_in_ms(ms);
	uint64_t pinned, unpinned;
	do {
		rdma_stats(sv->r, st);
		fake_counts(&sv->fake, &pinned, &unpinned);
		if (!st->leases_active && pinned == unpinned)
			return true;
		usleep(50000);
	} while (!deadline_passed(&dl));
	return false;
}

static size_t parse_size(const char *s)
{
	uint64_t v = 0;
	if (config_parse_size(s, &v) || !v) {
		fprintf(stderr, "rdma_pair: bad size '%s'\n", s);
		exit(2);
	}
	return (size_t)v;
}

/* ---- the in-process suite ---- */

struct worker {
	struct side *cl;
	const char *ip;
	unsigned port, slot;
	uint64_t key;
	int rc;
	char why[256];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct transport_conn *c = dial(w->cl, w->ip, w->port, NULL, 10000);
	if (!c) {
		w->rc = -errno;
		snprintf(w->why, sizeof(w->why), "connect: %s", strerror(errno));
		return NULL;
	}
	for (uint64_t k = 0; k < 12 && !w->rc; k++)
		w->rc = fetch_check(w->cl, c, w->key, 6 * w->cl->fake.slot_size, k % 6, w->slot,
				    FETCH_MS, w->why, sizeof(w->why));
	undial(c);
	return NULL;
}

static void self_basic(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	size_t cs = cl->fake.slot_size;
	char why[256];
	struct rdma_counters before, after, st;
	int rc = 0;

	rdma_stats(cl->r, &before);
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("connect", "%s", strerror(errno));
		return;
	}
	ok("connect", "device %s", rdma_ctx_device(cl->r));

	/* A file of 3.5 chunks: the last chunk is short. */
	uint64_t size = 3 * cs + cs / 2 + 13;
	for (uint64_t k = 0; k < 4 && !rc; k++)
		rc = fetch_check(cl, c, 0x1234, size, k, (unsigned)(k % 2), FETCH_MS, why,
				 sizeof(why));
	rdma_stats(cl->r, &after);
	uint64_t reads = after.reads_posted - before.reads_posted;
	uint64_t bytes = after.bytes_read - before.bytes_read;
	if (rc)
		fail("fetch_file", "%s", why);
	else if (bytes != size || reads < (size + (1u << 20) - 1) >> 20)
		fail("fetch_file", "%llu bytes in %llu READs for a %llu-byte file",
		     (unsigned long long)bytes, (unsigned long long)reads, (unsigned long long)size);
	else
		ok("fetch_file", "%llu bytes in 4 chunks, %llu RDMA READs",
		   (unsigned long long)bytes, (unsigned long long)reads);

	/* More chunks than the server has slots: its slots are reused between leases. */
	rc = 0;
	for (uint64_t k = 0; k < 24 && !rc; k++)
		rc = fetch_check(cl, c, 0x777 + k % 3, 5 * cs, (k * 7) % 5, 0, FETCH_MS, why,
				 sizeof(why));
	if (rc)
		fail("slot_reuse", "%s", why);
	else
		ok("slot_reuse", "24 chunks of 15 through %u server slots", sv->fake.nslots);

	/* The server's status comes back, and the connection stays usable. */
	struct transport_chunk_req req = { .file_key = KEY_ENOENT, .file_size = cs,
					   .chunk_size = (uint32_t)cs };
	struct deadline dl = deadline_in_ms(FETCH_MS);
	uint32_t crc;
	int r1 = rdma_transport.fetch(c, &req, cl->fake.slab, cs, &crc, &dl);
	req.file_key = KEY_EIO;
	int r2 = rdma_transport.fetch(c, &req, cl->fake.slab, cs, &crc, &dl);
	rc = fetch_check(cl, c, 0x99, cs, 0, 1, FETCH_MS, why, sizeof(why));
	if (r1 != -ENOENT || r2 != -EIO || rc)
		fail("status", "ENOENT key: %d, EIO key: %d, then %s", r1, r2, rc ? why : "ok");
	else
		ok("status", "-ENOENT and -EIO passed through; connection still works");

	/* A destination outside the registered slab is refused before anything is sent (slab
	 * mode: files mode registers the chunk the cache hands it, wherever it is). */
	if (files_mode)
		goto out_leases;
	uint8_t *outside = malloc(cs);
	req.file_key = 0x99;
	r1 = outside ? rdma_transport.fetch(c, &req, outside, cs, &crc, &dl) : -ENOMEM;
	r2 = rdma_transport.fetch(c, &req, cl->fake.slab + cl->fake.nslots * cs - 8, 16, &crc, &dl);
	free(outside);
	rc = fetch_check(cl, c, 0x99, cs, 0, 0, FETCH_MS, why, sizeof(why));
	if (r1 != -EINVAL || r2 != -EINVAL || rc)
		fail("dst_outside_mr", "outside: %d, straddling: %d, then %s", r1, r2,
		     rc ? why : "ok");
	else
		ok("dst_outside_mr", "-EINVAL; connection still works");
out_leases:
	if (!settled(sv, 3000, &st))
		fail("leases_released", "%llu leases still active after RELEASE",
		     (unsigned long long)st.leases_active);
	else
		ok("leases_released", "%llu granted, 0 active, pins == unpins",
		   (unsigned long long)st.leases_granted);

	/* A length that disagrees with the server's: protocol error, connection broken,
	 * lease still released. */
	req.file_key = 0x99;
	req.file_size = cs;
	r1 = rdma_transport.fetch(c, &req, cl->fake.slab, cs - 1, &crc, &dl);
	r2 = rdma_transport.fetch(c, &req, cl->fake.slab, cs, &crc, &dl);
	bool clean = settled(sv, 5000, &st);
	if (r1 != -EPROTO || r2 == 0 || !clean)
		fail("length_mismatch", "first %d, then %d, leases active %llu", r1, r2,
		     (unsigned long long)st.leases_active);
	else
		ok("length_mismatch", "-EPROTO, connection broken (%s), no lease left",
		   strerror(-r2));
	undial(c);
}

static void self_refusals(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	uint8_t bad[RDMA_TICKET_LEN];
	struct rdma_counters st0, st;
	memcpy(bad, good_ticket, sizeof(bad));
	bad[0] ^= 1;

	rdma_stats(sv->r, &st0);
	struct transport_conn *c = dial(cl, ip, port, bad, 10000);
	int e = errno;
	rdma_stats(sv->r, &st);
	if (c || e != EACCES || st.conns_refused != st0.conns_refused + 1 ||
	    st.leases_granted != st0.leases_granted)
		fail("bad_ticket", "connect %s (%s), refused %llu", c ? "succeeded" : "failed",
		     strerror(e), (unsigned long long)(st.conns_refused - st0.conns_refused));
	else
		ok("bad_ticket", "refused with EACCES; no lease, no key");
	if (c)
		undial(c);

	uint64_t t0 = mono_ns();
	c = dial(cl, ip, port + 1, NULL, 10000);
	e = errno;
	uint64_t ms = (mono_ns() - t0) / 1000000;
	if (c || ms > 5000)
		fail("no_listener", "connect %s (%s) after %llu ms", c ? "succeeded" : "failed",
		     strerror(e), (unsigned long long)ms);
	else
		ok("no_listener", "%s after %llu ms", strerror(e), (unsigned long long)ms);
	if (c)
		undial(c);

	/* Failed connections leave nothing behind. */
	unsigned fds0 = stable_fds();
	for (int i = 0; i < 20; i++) {
		c = dial(cl, ip, i % 2 ? port + 1 : port, bad, 5000);
		if (c)
			undial(c);
	}
	unsigned fds1 = fds_back_to(fds0);
	if (fds1 != fds0)
		fail("failed_connects_no_leak", "%u open fds before, %u after 20", fds0, fds1);
	else
		ok("failed_connects_no_leak", "%u fds before and after 20 refused connects", fds0);
}

static void self_leases(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	char why[256];
	struct rdma_counters st0, st;
	int rc = 0;

	/* A requester that never releases: its leases expire and are unpinned. */
	rdma_ctx_test_lease_ms(sv->r, 400);
	rdma_stats(sv->r, &st0);
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("lease_expiry", "connect: %s", strerror(errno));
		return;
	}
	rdma_conn_test_keep_leases(c);
	for (uint64_t k = 0; k < 2 && !rc; k++)
		rc = fetch_check(cl, c, 0x4242, 2 * cl->fake.slot_size, k, (unsigned)k, FETCH_MS,
				 why, sizeof(why));
	bool clean = settled(sv, 4000, &st);
	if (rc || !clean || st.leases_expired - st0.leases_expired < 2)
		fail("lease_expiry", "%s; active %llu, expired %llu", rc ? why : "fetched",
		     (unsigned long long)st.leases_active,
		     (unsigned long long)(st.leases_expired - st0.leases_expired));
	else
		ok("lease_expiry", "2 unreleased leases expired and were unpinned");
	undial(c);

	/* Leases belong to the descriptor link: closing it ends the ones it holds, long
	 * before they would expire. */
	rdma_ctx_test_lease_ms(sv->r, 60000);
	c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("lease_link_close", "connect: %s", strerror(errno));
		return;
	}
	rdma_conn_test_keep_leases(c);
	unsigned got = 0;
	for (uint64_t k = 0; k < 3; k++) {
		rc = fetch_check(cl, c, 0x5151 + k, cl->fake.slot_size, 0, 0, FETCH_MS, why,
				 sizeof(why));
		if (rc)
			break;
		got++;
	}
	rdma_stats(sv->r, &st);
	uint64_t active = st.leases_active;
	undial(c);
	clean = settled(sv, 4000, &st);
	if (got != 3 || active != 3 || !clean)
		fail("lease_link_close", "%u fetched (%s), %llu active; after close %llu active",
		     got, rc ? why : "ok", (unsigned long long)active,
		     (unsigned long long)st.leases_active);
	else
		ok("lease_link_close", "3 leases held; closing the link released all 3");
	rdma_ctx_test_lease_ms(sv->r, 10000);
}

/*
 * The digest: descriptors came over the link, never the RDMA connection; a READ whose bytes
 * were altered on the way (MOWS_TEST_RDMA_CORRUPT) is refused with -EBADMSG and its lease
 * still released; the holder computes a chunk's SHA-256 once, not per read; a requester
 * with rdma_verify = crc32 gets the CRC only.
 */
static void self_digest(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	size_t cs = cl->fake.slot_size;
	char why[256] = "";
	struct rdma_counters s0, s1, c0, c1, st;
	rdma_stats(sv->r, &s0);
	rdma_stats(cl->r, &c0);
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	int rc = c ? 0 : -errno;
	for (int i = 0; i < 3 && rc == 0; i++)
		rc = fetch_check(cl, c, 0xd16e57, cs, 0, 0, FETCH_MS, why, sizeof(why));
	rdma_stats(sv->r, &s1);
	rdma_stats(cl->r, &c1);
	if (rc || c1.descs - c0.descs != 3 || c1.digests_checked - c0.digests_checked != 3 ||
	    s1.digests_computed - s0.digests_computed != 1 || s1.msgs_refused)
		fail("digest_sha256", "%s; descs %llu, checked %llu, computed %llu, rdma msgs %llu",
		     rc ? why : "fetched", (unsigned long long)(c1.descs - c0.descs),
		     (unsigned long long)(c1.digests_checked - c0.digests_checked),
		     (unsigned long long)(s1.digests_computed - s0.digests_computed),
		     (unsigned long long)s1.msgs_refused);
	else
		ok("digest_sha256", "3 reads of one chunk: 3 descriptors over the link, 3 SHA-256 "
		   "checks, 1 computed by the holder, 0 messages over RDMA");
	cl->cfg.rdma_verify = RDMA_VERIFY_CRC32;
	rc = c ? fetch_check(cl, c, 0xc3c32, cs, 0, 1, FETCH_MS, why, sizeof(why)) : rc;
	rdma_stats(sv->r, &st);
	cl->cfg.rdma_verify = RDMA_VERIFY_SHA256;
	if (rc || st.digests_computed != s1.digests_computed)
		fail("digest_crc32", "%s; holder computed %llu SHA-256", rc ? why : "fetched",
		     (unsigned long long)(st.digests_computed - s1.digests_computed));
	else
		ok("digest_crc32", "rdma_verify = crc32: no SHA-256 on the holder");
	if (c)
		undial(c);

	struct side bad;
	setenv("MOWS_TEST_RDMA_CORRUPT", "1", 1);
	rc = side_init(&bad, cs, 2);
	unsetenv("MOWS_TEST_RDMA_CORRUPT");
	c = rc ? NULL : dial(&bad, ip, port, NULL, 10000);
	rc = c ? fetch_check(&bad, c, 0xbadbad, cs, 0, 0, FETCH_MS, why, sizeof(why)) : -ENOTCONN;
	rdma_stats(bad.r, &st);
	if (c)
		undial(c);
	bool clean = settled(sv, 4000, &s1);
	if (rc != -EBADMSG || strstr(why, "first wrong byte") || st.digest_mismatches != 1 ||
	    !clean)
		fail("tampered_read_refused", "fetch gave %d (%s), mismatches %llu, leases %llu", rc,
		     why, (unsigned long long)st.digest_mismatches,
		     (unsigned long long)s1.leases_active);
	else
		ok("tampered_read_refused", "a flipped byte in the READ: -EBADMSG from the digest "
		   "check, the lease released");
	if (bad.r)
		rdma_ctx_free(bad.r);
	fake_release(&bad.fake);
}

static void self_timeout(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	char why[256];
	struct rdma_counters st;
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("deadline", "connect: %s", strerror(errno));
		return;
	}
	uint64_t t0 = mono_ns();
	int rc = fetch_check(cl, c, KEY_SLOW, cl->fake.slot_size, 0, 0, 500, why, sizeof(why));
	uint64_t ms = (mono_ns() - t0) / 1000000;
	int rc2 = fetch_check(cl, c, 0x99, cl->fake.slot_size, 0, 0, 500, why, sizeof(why));
	undial(c);
	bool clean = settled(sv, 8000, &st);
	if (rc != -ETIMEDOUT || ms > 1500 || rc2 == 0 || !clean)
		fail("deadline", "slow pin gave %d after %llu ms, then %d; leases %llu", rc,
		     (unsigned long long)ms, rc2, (unsigned long long)st.leases_active);
	else
		ok("deadline", "-ETIMEDOUT after %llu ms (deadline 500), connection broken, the "
		   "late lease released", (unsigned long long)ms);
}

/*
 * A deadline that passes while READs are in flight: fetch() returns -ETIMEDOUT, and once it
 * has returned nothing writes into the destination any more (the slot may be reused at
 * once). The deadlines are stepped in 1 ms from a quarter of a measured fetch's time until
 * three land in the middle of the READs.
 */
static void self_deadline_mid_read(struct side *sv, struct side *cl, const char *ip,
				   unsigned port)
{
	size_t cs = cl->fake.slot_size;
	uint8_t *dst = cl->fake.slab + 3 * cs, *snap = malloc(cs);
	struct rdma_counters a, b, st;
	struct transport_chunk_req req = { .file_key = 0xabc, .file_size = cs,
					   .chunk_size = (uint32_t)cs };
	uint32_t crc;
	int hits = 0, late_writes = 0, tries = 0, early = 0, done = 0, other = 0;

	/* Warm the server's slot so that the time goes into the READs, and time a fetch. */
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	struct deadline dl = deadline_in_ms(FETCH_MS);
	int rc = c && snap ? rdma_transport.fetch(c, &req, dst, cs, &crc, &dl) : -ENOMEM;
	uint64_t t0 = mono_ns();
	if (rc == 0)
		rc = rdma_transport.fetch(c, &req, dst, cs, &crc, &dl);
	if (rc) {
		fail("deadline_mid_read", "setup failed: %s", strerror(-rc));
		if (c)
			undial(c);
		free(snap);
		return;
	}
	int full_ms = (int)((mono_ns() - t0) / 1000000) + 1;
	for (int ms = 1; ms <= 2 * full_ms + 20 && hits < 3; ms++, tries++) {
		dl = deadline_in_ms(ms);
		memset(dst, 0xee, cs);
		rdma_stats(cl->r, &a);
		rc = rdma_transport.fetch(c, &req, dst, cs, &crc, &dl);
		rdma_stats(cl->r, &b);
		memcpy(snap, dst, cs);
		if (rc == -ETIMEDOUT && b.reads_posted > a.reads_posted &&
		    b.bytes_read - a.bytes_read < cs) {
			usleep(300000);
			late_writes += memcmp(snap, dst, cs) != 0;
			hits++;
		} else if (rc == -ETIMEDOUT) {
			early++;
		} else if (rc == 0) {
			done++;
			continue;
		} else {
			other++;
		}
		undial(c);
		c = dial(cl, ip, port, NULL, 10000);
		if (!c)
			break;
	}
	if (c)
		undial(c);
	free(snap);
	bool clean = settled(sv, 5000, &st);
	if (late_writes || !hits || !clean)
		fail("deadline_mid_read", "a warm fetch takes %d ms; %d tries: %d timed out during "
		     "READs (%d of them with writes after fetch() returned), %d before, %d "
		     "completed, %d other errors; leases %llu", full_ms, tries, hits, late_writes,
		     early, done, other, (unsigned long long)st.leases_active);
	else
		ok("deadline_mid_read", "a warm fetch takes %d ms; %d of %d deadlines passed during "
		   "the READs, and no byte changed after fetch() returned", full_ms, hits, tries);
}

static void self_churn(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	char why[256] = "";
	struct rdma_counters st;
	unsigned fds0 = stable_fds(), n = 0;
	int rc = 0;
	for (; n < 30 && !rc; n++) {
		struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
		if (!c) {
			rc = -errno;
			snprintf(why, sizeof(why), "connect %u: %s", n, strerror(errno));
			break;
		}
		rc = fetch_check(cl, c, 0x600 + n, cl->fake.slot_size, 0, 0, FETCH_MS, why,
				 sizeof(why));
		undial(c);
	}
	unsigned fds1 = fds_back_to(fds0);
	bool clean = settled(sv, 3000, &st);
	if (rc || fds1 != fds0 || !clean)
		fail("churn", "%s; fds %u -> %u; leases %llu", rc ? why : "fetched", fds0, fds1,
		     (unsigned long long)st.leases_active);
	else
		ok("churn", "30 x connect/fetch/close, %u fds before and after", fds0);
}

static void self_parallel(struct side *cl, const char *ip, unsigned port)
{
	struct worker w[4];
	pthread_t t[4];
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){ .cl = cl, .ip = ip, .port = port, .slot = i,
					.key = 0xa000 + i };
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	int bad = -1;
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		if (w[i].rc && bad < 0)
			bad = (int)i;
	}
	if (bad >= 0)
		fail("parallel", "worker %d: %s", bad, w[bad].why);
	else
		ok("parallel", "4 connections x 12 chunks at once");
}

/* A registration over the memlock limit says what to change. Root has CAP_IPC_LOCK, which
 * ignores the limit, so the child becomes nobody first. */
static void self_memlock(void)
{
	int pfd[2];
	char msg[600] = "";
	if (pipe(pfd)) {
		fail("memlock_message", "pipe: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit rl = { 64 << 10, 64 << 10 };
		struct mows_config cfg;
		struct rdma_host host = { 0 };
		char err[512] = "";
		int e = 0;
		config_defaults(&cfg);
		size_t len = 8u << 20;
		void *slab = aligned_alloc(4096, len);
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || setgid(65534) || setuid(65534)) {
			snprintf(err, sizeof(err), "setup: %s", strerror(errno));
		} else {
			memset(slab, 1, len);
			struct rdma_ctx *r = rdma_ctx_new(&cfg, slab, len, &host, err, sizeof(err));
			e = r ? 0 : errno;
			if (r)
				snprintf(err, sizeof(err), "registered 8 MiB over a 64 KiB limit");
			rdma_ctx_free(r);
		}
		dprintf(pfd[1], "%d %s", e, err);
		_exit(0);
	}
	close(pfd[1]);
	ssize_t n = read(pfd[0], msg, sizeof(msg) - 1);
	close(pfd[0]);
	waitpid(pid, NULL, 0);
	msg[n > 0 ? n : 0] = '\0';
	int e = atoi(msg);
	if ((e == ENOMEM || e == EPERM) && strstr(msg, "memlock") && strstr(msg, "unlimited"))
		ok("memlock_message", "%s", strchr(msg, ' ') + 1);
	else if (e == EACCES && strstr(msg, "rdma"))
		ok("memlock_message", "(nobody may not open the device here: %s)", msg);
	else
		fail("memlock_message", "errno %d: %s", e, msg);
}

/*
 * Files mode: a chunk evicted (its hole punched) and another filled into the same place gets
 * new pages. Its old region must be gone, or the NIC would serve the old pages: the server's
 * digest (computed from the new bytes) would then refuse them, and a requester's READ would
 * land in pages its slot no longer has (the pattern check fails).
 */
static void self_files_evict(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	char why[256];
	struct rdma_counters a, b, c0, c1;
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("files_evict", "connect: %s", strerror(errno));
		return;
	}
	size_t cs = cl->fake.slot_size;
	fake_evict_all(&sv->fake);
	rdma_stats(cl->r, &c0);
	int rc = fetch_check(cl, c, 0xa1, cs, 0, 0, FETCH_MS, why, sizeof(why)); /* slot 0 */
	rdma_stats(sv->r, &a);
	unsigned evicted = fake_evict_all(&sv->fake);
	rdma_stats(sv->r, &b);
	if (!rc)
		rc = fetch_check(cl, c, 0xb2, cs, 0, 0, FETCH_MS, why, sizeof(why)); /* slot 0 again */
	if (!rc)
		rc = fetch_check(cl, c, 0xb2, cs, 0, 0, FETCH_MS, why, sizeof(why)); /* a hit */
	rdma_stats(cl->r, &c1);
	undial(c);
	if (rc)
		fail("files_evict", "%s", why);
	else if (!a.regions_active || b.regions_active || b.regions_forgotten <= a.regions_forgotten ||
		 !evicted)
		fail("files_evict", "server regions %llu -> %llu after evicting %u slots, "
		     "forgotten %llu -> %llu", (unsigned long long)a.regions_active,
		     (unsigned long long)b.regions_active, evicted,
		     (unsigned long long)a.regions_forgotten,
		     (unsigned long long)b.regions_forgotten);
	else if (c1.regions_registered - c0.regions_registered < 3 ||
		 c1.regions_active != c0.regions_active)
		fail("files_evict", "requester registered %llu regions for 3 fetches into punched "
		     "slots, active %llu -> %llu",
		     (unsigned long long)(c1.regions_registered - c0.regions_registered),
		     (unsigned long long)c0.regions_active, (unsigned long long)c1.regions_active);
	else
		ok("files_evict", "the server's region went with the evicted chunk (%llu forgotten) "
		   "and the chunk refilled in its place was read right, twice; the requester "
		   "registered a region per punched slot (%llu)",
		   (unsigned long long)(b.regions_forgotten - a.regions_forgotten),
		   (unsigned long long)(c1.regions_registered - c0.regions_registered));
}

/*
 * Files mode: a leased chunk is pinned, so eviction passes it by and its region stays; once
 * the lease ends (here: the link closes) the chunk is evicted and its region goes with it.
 */
static void self_files_lease(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	char why[256];
	struct rdma_counters a, b, d;
	fake_evict_all(&sv->fake);
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("files_lease_pins_region", "connect: %s", strerror(errno));
		return;
	}
	rdma_conn_test_keep_leases(c);
	int rc = fetch_check(cl, c, 0xc3, cl->fake.slot_size, 0, 0, FETCH_MS, why, sizeof(why));
	rdma_stats(sv->r, &a);
	unsigned held = fake_evict_all(&sv->fake);
	rdma_stats(sv->r, &b);
	undial(c); /* the server ends the link's leases */
	bool clean = settled(sv, 5000, &d);
	unsigned after = fake_evict_all(&sv->fake);
	rdma_stats(sv->r, &d);
	if (rc)
		fail("files_lease_pins_region", "%s", why);
	else if (held || a.leases_active != 1 || b.regions_active != a.regions_active ||
		 b.regions_forgotten != a.regions_forgotten)
		fail("files_lease_pins_region", "with the lease held: %u evicted, leases %llu, "
		     "regions %llu -> %llu, forgotten %llu -> %llu", held,
		     (unsigned long long)a.leases_active, (unsigned long long)a.regions_active,
		     (unsigned long long)b.regions_active, (unsigned long long)a.regions_forgotten,
		     (unsigned long long)b.regions_forgotten);
	else if (!clean || after != 1 || d.regions_active != 0 ||
		 d.regions_forgotten != b.regions_forgotten + 1)
		fail("files_lease_pins_region", "after the lease ended: settled %d, %u evicted, "
		     "regions %llu, forgotten %llu -> %llu", clean, after,
		     (unsigned long long)d.regions_active, (unsigned long long)b.regions_forgotten,
		     (unsigned long long)d.regions_forgotten);
	else
		ok("files_lease_pins_region", "a leased chunk was not evicted and kept its region; "
		   "once the lease ended it was, and its region went with it");
}

/* rdma_ctx_free() with a connected, idle requester: bounded, and the requester then fails
 * fast instead of waiting for its deadline. */
static void self_free_server(struct side *sv, struct side *cl, const char *ip, unsigned port)
{
	char why[256];
	struct transport_conn *c = dial(cl, ip, port, NULL, 10000);
	if (!c) {
		fail("free_server", "connect: %s", strerror(errno));
		return;
	}
	int rc = fetch_check(cl, c, 0x31, cl->fake.slot_size, 0, 0, FETCH_MS, why, sizeof(why));
	uint64_t t0 = mono_ns();
	side_free_ctx(sv);
	uint64_t free_ms = (mono_ns() - t0) / 1000000;
	uint64_t pinned, unpinned;
	fake_counts(&sv->fake, &pinned, &unpinned);
	usleep(200000);
	t0 = mono_ns();
	int rc2 = fetch_check(cl, c, 0x31, cl->fake.slot_size, 0, 0, FETCH_MS, why, sizeof(why));
	uint64_t fail_ms = (mono_ns() - t0) / 1000000;
	undial(c);
	if (rc || free_ms > 5000 || pinned != unpinned || rc2 == 0 || fail_ms > 5000)
		fail("free_server", "fetch %d; free took %llu ms; pins %llu/%llu; next fetch %d "
		     "after %llu ms", rc, (unsigned long long)free_ms, (unsigned long long)pinned,
		     (unsigned long long)unpinned, rc2, (unsigned long long)fail_ms);
	else
		ok("free_server", "freed in %llu ms with a peer connected; its next fetch: %s "
		   "after %llu ms", (unsigned long long)free_ms, strerror(-rc2),
		   (unsigned long long)fail_ms);
}

static int run_self(const char *ip, unsigned port)
{
	struct side sv, cl;
	char err[512];
	size_t cs = 4u << 20;

	if (side_init(&sv, cs, 6) || side_init(&cl, cs, 4)) {
		fail("setup", "no usable RDMA device");
		return 1;
	}
	/* The RDMA listener and a TCP listener share the port number: rdma_cm has its own
	 * port space. */
	struct sockaddr_in sa = addr_of(ip, port);
	int one = 1, tcp = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(tcp, (struct sockaddr *)&sa, sizeof(sa)) || listen(tcp, 16))
		fail("tcp_same_port", "TCP bind %s:%u: %s", ip, port, strerror(errno));
	desc_service(&sv, tcp);
	if (rdma_ctx_listen(sv.r, ip, (uint16_t)port, err, sizeof(err))) {
		fail("listen", "%s", err);
		return 1;
	}
	ok("listen", "RDMA and TCP both on %s:%u", ip, port);
	self_refusals(&sv, &cl, ip, port);
	self_basic(&sv, &cl, ip, port);
	self_leases(&sv, &cl, ip, port);
	self_digest(&sv, &cl, ip, port);
	self_timeout(&sv, &cl, ip, port);
	self_deadline_mid_read(&sv, &cl, ip, port);
	self_churn(&sv, &cl, ip, port);
	self_parallel(&cl, ip, port);
	if (files_mode) {
		self_files_evict(&sv, &cl, ip, port);
		self_files_lease(&sv, &cl, ip, port);
	}
	self_memlock();
	self_free_server(&sv, &cl, ip, port);
	shutdown(tcp, SHUT_RDWR);
	struct rdma_counters st;
	rdma_stats(cl.r, &st);
	printf("rdma_pair: client counters: reads_posted %llu, bytes_read %llu, fetches %llu, "
	       "fetch_errors %llu, completion_errors %llu, conns_out %llu\n",
	       (unsigned long long)st.reads_posted, (unsigned long long)st.bytes_read,
	       (unsigned long long)st.fetches, (unsigned long long)st.fetch_errors,
	       (unsigned long long)st.completion_errors, (unsigned long long)st.conns_out);
	rdma_ctx_free(cl.r);
	fake_release(&sv.fake);
	fake_release(&cl.fake);
	return 0;
}

/* ---- the two-process modes ---- */

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static int run_serve(const char *ip, unsigned port, size_t cs)
{
	struct side sv;
	char err[512];
	if (side_init(&sv, cs, 3))
		return 1;
	if (rdma_ctx_listen(sv.r, ip, (uint16_t)port, err, sizeof(err))) {
		fprintf(stderr, "rdma_pair: %s\n", err);
		return 1;
	}
	struct sockaddr_in sa = addr_of(ip, port);
	int one = 1, tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(tcp, (struct sockaddr *)&sa, sizeof(sa)) || listen(tcp, 16)) {
		fprintf(stderr, "rdma_pair: descriptor service on TCP %s:%u: %s\n", ip, port,
			strerror(errno));
		return 1;
	}
	desc_service(&sv, tcp);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("ready\n");
	fflush(stdout);
	while (!quit)
		pause();
	struct rdma_counters st;
	uint64_t pinned, unpinned;
	rdma_stats(sv.r, &st);
	fake_counts(&sv.fake, &pinned, &unpinned);
	printf("rdma_pair: server: %llu connections, %llu leases granted, %llu active, "
	       "%llu expired; %llu pins, %llu unpins\n", (unsigned long long)st.conns_in,
	       (unsigned long long)st.leases_granted, (unsigned long long)st.leases_active,
	       (unsigned long long)st.leases_expired, (unsigned long long)pinned,
	       (unsigned long long)unpinned);
	side_free_ctx(&sv);
	fake_release(&sv.fake);
	return 0;
}

static int run_fetch(const char *ip, unsigned port, size_t cs, unsigned count)
{
	struct side cl;
	char why[256];
	int rc = 0;
	if (side_init(&cl, cs, 2))
		return 1;
	struct transport_conn *c = dial(&cl, ip, port, NULL, 10000);
	if (!c) {
		fail("fetch", "connect: %s", strerror(errno));
		return 1;
	}
	uint64_t t0 = mono_ns();
	for (unsigned k = 0; k < count && !rc; k++)
		rc = fetch_check(&cl, c, 0xf00d, (uint64_t)count * cs - 1, k, k % 2, FETCH_MS, why,
				 sizeof(why));
	uint64_t ms = (mono_ns() - t0) / 1000000;
	struct rdma_counters st;
	rdma_stats(cl.r, &st);
	if (rc)
		fail("fetch", "%s", why);
	else
		ok("fetch", "%u chunks of %zu bytes (the last one short) in %llu ms, %llu READs, "
		   "%llu bytes, completion errors %llu", count, cs, (unsigned long long)ms,
		   (unsigned long long)st.reads_posted, (unsigned long long)st.bytes_read,
		   (unsigned long long)st.completion_errors);
	undial(c);
	rdma_ctx_free(cl.r);
	fake_release(&cl.fake);
	return 0;
}

static int run_survive(const char *ip, unsigned port, size_t cs)
{
	struct side cl;
	char why[256] = "";
	int rc = 0;
	unsigned done = 0;
	uint64_t t0 = 0;
	if (side_init(&cl, cs, 2))
		return 1;
	/* CRC only: a 32 MiB SHA-256 on the server takes seconds under TCG, and the kill is
	 * meant to land during the READs, not during the descriptor. */
	cl.cfg.rdma_verify = RDMA_VERIFY_CRC32;
	struct transport_conn *c = dial(&cl, ip, port, NULL, 10000);
	if (!c) {
		fail("survive", "connect: %s", strerror(errno));
		return 1;
	}
	printf("fetching\n");
	fflush(stdout);
	/* Kept going until the server dies; each fetch has a 60 s deadline, so a hang would
	 * show as a slow failure rather than a fast one. */
	for (uint64_t k = 0; !rc && done < 10000; k++) {
		t0 = mono_ns();
		rc = fetch_check(&cl, c, 0xdead, 1000 * (uint64_t)cs, k % 1000, (unsigned)(k % 2),
				 60000, why, sizeof(why));
		done += rc == 0;
	}
	uint64_t ms = (mono_ns() - t0) / 1000000;
	struct rdma_counters st;
	rdma_stats(cl.r, &st);
	undial(c);
	if (rc == -EBADMSG)
		fail("server_killed", "wrong bytes: %s", why);
	else if (rc != -ECONNRESET && rc != -EIO)
		fail("server_killed", "after %u chunks: %s after %llu ms", done, strerror(-rc),
		     (unsigned long long)ms);
	else if (ms > 10000)
		fail("server_killed", "%s only after %llu ms", strerror(-rc), (unsigned long long)ms);
	else
		ok("server_killed", "%u chunks good, then %s after %llu ms in the interrupted "
		   "fetch (%llu READs posted, %llu completion errors)", done, strerror(-rc),
		   (unsigned long long)ms, (unsigned long long)st.reads_posted,
		   (unsigned long long)st.completion_errors);
	/* The server is gone: connecting fails within its deadline and leaks nothing. */
	unsigned fds0 = open_fds(), refused = 0;
	uint64_t worst = 0;
	for (int i = 0; i < 10; i++) {
		uint64_t t = mono_ns();
		c = dial(&cl, ip, port, NULL, 3000);
		uint64_t took = (mono_ns() - t) / 1000000;
		worst = took > worst ? took : worst;
		if (c)
			undial(c);
		else
			refused++;
	}
	unsigned fds1 = open_fds();
	if (refused != 10 || fds1 != fds0 || worst > 4000)
		fail("reconnect_dead_server", "%u of 10 refused, fds %u -> %u, slowest %llu ms",
		     refused, fds0, fds1, (unsigned long long)worst);
	else
		ok("reconnect_dead_server", "10 refused (slowest %llu ms), %u fds before and after",
		   (unsigned long long)worst, fds0);
	rdma_ctx_free(cl.r);
	fake_release(&cl.fake);
	return 0;
}

static int run_hold(const char *ip, unsigned port, size_t cs)
{
	struct side cl;
	char why[256];
	int rc = 0;
	if (side_init(&cl, cs, 2))
		return 1;
	struct transport_conn *c = dial(&cl, ip, port, NULL, 10000);
	if (!c) {
		fail("hold", "connect: %s", strerror(errno));
		return 1;
	}
	rdma_conn_test_keep_leases(c);
	for (unsigned k = 0; k < 2 && !rc; k++)
		rc = fetch_check(&cl, c, 0x401d, 2 * cs, k, k, FETCH_MS, why, sizeof(why));
	if (rc) {
		fail("hold", "%s", why);
		return 1;
	}
	printf("holding\n");
	fflush(stdout);
	for (;;)
		pause();
}

/*
 * Files mode: how long registering one chunk region takes, by size, on pages of a huge-page
 * tmpfs file already filled (as a chunk is when it is first served). Prints one line per
 * size; the median of 5.
 */
static int run_regbench(void)
{
	static const size_t sizes[] = { 64u << 10, 1u << 20, 2u << 20, 4u << 20, 16u << 20,
					64u << 20, 256u << 20 };
	struct side s;
	files_mode = true;
	if (side_init(&s, 256u << 20, 1)) {
		fail("regbench", "setup failed");
		return 1;
	}
	memset(s.fake.slab, 0x3c, 256u << 20);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t ns[5];
		int rc = 0;
		for (unsigned k = 0; k < 5 && !rc; k++) {
			struct rdma_counters a, b;
			rdma_stats(s.r, &a);
			rc = rdma_ctx_test_register(s.r, s.fake.slab, sizes[i]);
			rdma_stats(s.r, &b);
			ns[k] = b.region_reg_ns - a.region_reg_ns;
			rdma_ctx_forget(s.r, s.fake.slab, sizes[i]);
		}
		if (rc) {
			fail("regbench", "%zu bytes: %s", sizes[i], strerror(-rc));
			break;
		}
		for (unsigned x = 0; x < 5; x++)
			for (unsigned y = x + 1; y < 5; y++)
				if (ns[y] < ns[x]) {
					uint64_t t = ns[x];
					ns[x] = ns[y];
					ns[y] = t;
				}
		printf("regbench %zu KiB: %llu us (%.1f us per MiB)\n", sizes[i] >> 10,
		       (unsigned long long)(ns[2] / 1000),
		       (double)ns[2] / 1000.0 / ((double)sizes[i] / (1 << 20)));
	}
	/* What a chunk evicted and filled again costs the store itself: punch and take anew. */
	for (unsigned i = 1; i <= 4; i++) {
		size_t len = (size_t)1 << (18 + 2 * i); /* 1, 4, 16, 64 MiB */
		uint64_t t0 = mono_ns();
		cache_store_punch(&s.fake.file, 0, len);
		int rc = cache_store_alloc(&s.fake.file, 0, len);
		uint64_t us = (mono_ns() - t0) / 1000;
		printf("refill %zu KiB: %llu us (punch and populate)%s\n", len >> 10,
		       (unsigned long long)us, rc ? " FAILED" : "");
	}
	ok("regbench", NULL);
	rdma_ctx_free(s.r);
	fake_release(&s.fake);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("RDMA_PAIR_DEBUG") ? LOG_DEBUG : LOG_WARNING);
	files_mode = getenv("RDMA_PAIR_FILES") && !strcmp(getenv("RDMA_PAIR_FILES"), "1");
	if (argc == 4 && !strcmp(argv[1], "self"))
		run_self(argv[2], (unsigned)atoi(argv[3]));
	else if (argc == 5 && !strcmp(argv[1], "serve"))
		return run_serve(argv[2], (unsigned)atoi(argv[3]), parse_size(argv[4]));
	else if (argc == 6 && !strcmp(argv[1], "fetch"))
		run_fetch(argv[2], (unsigned)atoi(argv[3]), parse_size(argv[4]),
			  (unsigned)atoi(argv[5]));
	else if (argc == 5 && !strcmp(argv[1], "hold"))
		return run_hold(argv[2], (unsigned)atoi(argv[3]), parse_size(argv[4]));
	else if (argc == 2 && !strcmp(argv[1], "regbench"))
		run_regbench();
	else if (argc == 5 && !strcmp(argv[1], "survive"))
		run_survive(argv[2], (unsigned)atoi(argv[3]), parse_size(argv[4]));
	else {
		fprintf(stderr, "usage: rdma_pair self ADDR PORT | serve ADDR PORT CHUNK | "
			"fetch ADDR PORT CHUNK N | survive ADDR PORT CHUNK | hold ADDR PORT CHUNK | "
			"regbench\n");
		return 2;
	}
	printf("rdma_pair: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
