/*
 * Cluster prefetch: each node fills the chunks it owns (net/owners.h), so that a cluster
 * reads its model from storage once and every node can then take any chunk from its owner.
 *
 * Serving side: a table of jobs, one per (run, file), started by the first PREFETCH of that
 * pair (a peer's, or our own for our share) and polled by the later ones. A job fixes its
 * share when it starts (the chunks this node owns for the member set of that moment) and
 * PF_THREADS threads fill the chunks of every job as the owner would for a peer
 * (cache_serve_chunk with fill: holders first, then storage), never through the cache's
 * fill queue. The table lock is a leaf: nothing else is taken while it is held.
 *
 * Driving side (peers_prefetch_cluster): one authenticated link to each live peer for the
 * command's length, PREFETCH on it for every file until each peer says DONE, and the same
 * for this node through pf_request(); at most PF_WINDOW files unfinished per node at once.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/hash.h"
#include "common/log.h"
#include "net/owners.h"
#include "net/peer_priv.h"

#define PF_MAX_JOBS 64           /* jobs a node keeps (running or finished) */
#define PF_THREADS 4             /* threads filling jobs' chunks */
#define PF_WINDOW 16             /* files a driver keeps unfinished per node */
#define PF_ROUND_MS 100          /* pause between polling rounds */
#define PF_STALL_MS 60000        /* no byte filled anywhere for this long: give up */
#define PF_DISAGREE_MS 20000     /* a node places over another set this long: give up */

struct pf_job {
	uint64_t run_id, key;
	struct cache_file *f;     /* referenced until the job finishes, then NULL */
	uint64_t *chunks;         /* the share: chunk indices this node owns */
	unsigned nchunks;
	unsigned next;            /* next chunk to hand out */
	unsigned running;         /* chunks being filled now */
	uint64_t done, total;     /* bytes of the share */
	int err;                  /* first fill error, positive errno */
	uint64_t finished_ns;     /* 0 while chunks are left */
};

struct pf_table {
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* work was queued, or stop */
	struct pf_job *jobs[PF_MAX_JOBS];  /* protected by lock */
	bool stop;                /* protected by lock */
	pthread_t threads[PF_THREADS];
	unsigned nthreads;
};

/* ---- the share ---- */

/* The digest of the member set (and ownership map) a node ranks chunks with right now. */
static uint64_t placement_digest(struct peers *p, const uint64_t *hashes, unsigned n)
{
	uint64_t *s = malloc((n ? n : 1) * sizeof(*s));
	uint64_t h = FNV64_BASIS;
	if (!s)
		return 0;
	memcpy(s, hashes, n * sizeof(*s));
	for (unsigned i = 1; i < n; i++) /* insertion sort: member sets are small */
		for (unsigned k = i; k > 0 && s[k - 1] > s[k]; k--) {
			uint64_t x = s[k];
			s[k] = s[k - 1];
			s[k - 1] = x;
		}
	for (unsigned i = 0; i < n; i++) {
		uint64_t be = htobe64(s[i]);
		h = fnv1a64(h, &be, sizeof(be));
	}
	free(s);
	uint64_t map;
	unsigned members;
	owners_digest(p->owners, &map, &members);
	if (members == n && n >= 2) {
		uint64_t be = htobe64(map);
		h = fnv1a64(h, &be, sizeof(be));
	}
	return h;
}

/* Fills @j's share of @size bytes: the chunks where this node (hashes[n - 1]) is an owner. */
static int job_share(struct peers *p, struct pf_job *j, uint64_t size, const uint64_t *hashes,
		     unsigned n)
{
	uint64_t cs = cache_chunk_size(p->cache);
	uint64_t nch = size ? (size - 1) / cs + 1 : 0;
	unsigned replicas = p->cfg->replicas ? p->cfg->replicas : 1;
	unsigned *order = n >= 2 ? malloc(n * sizeof(*order)) : NULL;
	if (nch > UINT32_MAX || (n >= 2 && !order))
		goto out_nomem;
	j->chunks = malloc((nch ? nch : 1) * sizeof(*j->chunks));
	if (!j->chunks)
		goto out_nomem;
	for (uint64_t c = 0; c < nch; c++) {
		bool own = n < 2;
		if (!own)
			owners_rank(p->owners, j->key, c, hashes, n, order);
		for (unsigned r = 0; !own && r < replicas && r < n; r++)
			own = order[r] == n - 1;
		if (!own)
			continue;
		j->chunks[j->nchunks++] = c;
		j->total += size - c * cs < cs ? size - c * cs : cs;
	}
	free(order);
	return 0;
out_nomem:
	free(order);
	return -ENOMEM;
}

static struct cache_file *file_for(struct peers *p, const struct proto_prefetch *rq)
{
	struct cache_file *f = cache_file_by_key(p->cache, rq->file_key);
	if (f && (cache_file_size(f) != rq->file_size ||
		  cache_file_mtime_ns(f) != rq->mtime_ns)) {
		cache_file_put(p->cache, f);
		f = NULL;
	}
	if (!f)
		f = p->host.open_key(p->host.ctx, rq->file_key, rq->file_size, rq->mtime_ns);
	return f;
}

static void job_free(struct peers *p, struct pf_job *j)
{
	if (!j)
		return;
	if (j->f)
		cache_file_put(p->cache, j->f);
	free(j->chunks);
	free(j);
}

/* A new job for @rq, its share fixed now. Returns NULL with *@status a positive errno. */
static struct pf_job *job_new(struct peers *p, const struct proto_prefetch *rq, int *status)
{
	struct member **ms;
	uint64_t *hashes;
	unsigned n = peers_live(p, &ms, &hashes);
	struct pf_job *j = NULL;
	*status = ENOMEM;
	if (n == 0)
		goto out;
	if (placement_digest(p, hashes, n) != rq->placement) {
		*status = EAGAIN;
		goto out;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		goto out;
	j->run_id = rq->run_id;
	j->key = rq->file_key;
	j->f = file_for(p, rq);
	if (!j->f)
		*status = ENOENT;
	else if (job_share(p, j, rq->file_size, hashes, n) == 0)
		*status = 0;
out:
	peers_live_put(p, ms, hashes, n);
	if (*status) {
		job_free(p, j);
		return NULL;
	}
	return j;
}

/* ---- the table ---- */

static void job_status(const struct pf_job *j, struct proto_prefetch_status *st)
{
	st->done = j->done;
	st->total = j->total;
	st->flags = j->finished_ns ? PROTO_PREFETCH_DONE : 0;
	st->status = j->finished_ns && j->err ? EIO : 0;
}

/* Lock held. The job of (@run, @key), or NULL. */
static struct pf_job *do_find(struct pf_table *t, uint64_t run, uint64_t key)
{
	for (unsigned i = 0; i < PF_MAX_JOBS; i++)
		if (t->jobs[i] && t->jobs[i]->run_id == run && t->jobs[i]->key == key)
			return t->jobs[i];
	return NULL;
}

/* Lock held. A free slot, or the one of the job that finished longest ago; -1 if none. */
static int do_slot(struct pf_table *t)
{
	int best = -1;
	for (unsigned i = 0; i < PF_MAX_JOBS; i++) {
		struct pf_job *j = t->jobs[i];
		if (!j)
			return (int)i;
		if (j->finished_ns && (best < 0 || j->finished_ns < t->jobs[best]->finished_ns))
			best = (int)i;
	}
	return best;
}

void pf_request(struct peers *p, const struct proto_prefetch *rq,
		struct proto_prefetch_status *st)
{
	struct pf_table *t = p->pf;
	memset(st, 0, sizeof(*st));
	if (!t || rq->chunk_size != cache_chunk_size(p->cache)) {
		st->status = t ? EINVAL : ENOTSUP;
		return;
	}
	pthread_mutex_lock(&t->lock);
	struct pf_job *j = do_find(t, rq->run_id, rq->file_key);
	if (j)
		job_status(j, st);
	pthread_mutex_unlock(&t->lock);
	if (j)
		return;
	int status;
	struct pf_job *nj = job_new(p, rq, &status), *old = NULL;
	if (!nj) {
		st->status = status;
		return;
	}
	if (nj->nchunks == 0)
		nj->finished_ns = mono_ns();
	pthread_mutex_lock(&t->lock);
	j = do_find(t, rq->run_id, rq->file_key); /* another request of the pair won the race */
	int slot = j ? -1 : do_slot(t);
	if (slot >= 0) {
		old = t->jobs[slot];
		t->jobs[slot] = j = nj;
		nj = NULL;
		pthread_cond_broadcast(&t->cond);
	}
	if (j)
		job_status(j, st);
	else
		st->status = EBUSY;
	pthread_mutex_unlock(&t->lock);
	job_free(p, old);
	job_free(p, nj);
}

/* Fills one chunk as its owner; returns 0 and its length, or -errno. */
static int fill_one(struct peers *p, struct cache_file *f, uint64_t chunk, size_t *len)
{
	int rc = -EIO;
	for (int attempt = 0; attempt < 2 && rc; attempt++) {
		struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
		struct cache_span span;
		uint32_t crc;
		rc = cache_serve_chunk(p->cache, f, chunk, true, &dl, &span, &crc);
		if (rc == 0) {
			*len = span.len;
			cache_read_done(p->cache, &span, 1);
		}
	}
	return rc;
}

/* Lock held. The first job with chunks left to hand out, or NULL (none, or stop). */
static struct pf_job *do_next_work(struct pf_table *t)
{
	for (unsigned i = 0; i < PF_MAX_JOBS && !t->stop; i++)
		if (t->jobs[i] && t->jobs[i]->next < t->jobs[i]->nchunks)
			return t->jobs[i];
	return NULL;
}

static void *pf_main(void *arg)
{
	struct peers *p = arg;
	struct pf_table *t = p->pf;
	pthread_mutex_lock(&t->lock);
	for (;;) {
		struct pf_job *j = do_next_work(t);
		if (!j && t->stop)
			break;
		if (!j) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		uint64_t chunk = j->chunks[j->next++];
		j->running++;
		pthread_mutex_unlock(&t->lock);
		size_t len = 0;
		int rc = fill_one(p, j->f, chunk, &len); /* j lives while running > 0 */
		if (rc)
			log_debug("prefetch: chunk %" PRIu64 " of %s: %s", chunk,
				  cache_file_relpath(j->f), strerror(-rc));
		pthread_mutex_lock(&t->lock);
		j->running--;
		if (rc == 0)
			j->done += len;
		else if (!j->err)
			j->err = -rc;
		struct cache_file *put = NULL;
		if (j->next == j->nchunks && j->running == 0 && !j->finished_ns) {
			j->finished_ns = mono_ns();
			put = j->f;
			j->f = NULL;
		}
		if (put) {
			pthread_mutex_unlock(&t->lock);
			cache_file_put(p->cache, put);
			pthread_mutex_lock(&t->lock);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int pf_start(struct peers *p)
{
	struct pf_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	p->pf = t;
	int rc = 0;
	for (; t->nthreads < PF_THREADS && rc == 0; t->nthreads += rc == 0)
		rc = -pthread_create(&t->threads[t->nthreads], NULL, pf_main, p);
	if (rc)
		pf_stop(p);
	return rc;
}

void pf_stop(struct peers *p)
{
	struct pf_table *t = p->pf;
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	for (unsigned i = 0; i < t->nthreads; i++)
		pthread_join(t->threads[i], NULL);
	p->pf = NULL;
	for (unsigned i = 0; i < PF_MAX_JOBS; i++)
		job_free(p, t->jobs[i]);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t);
}

/* ---- driving a cluster prefetch ---- */

enum { PF_NEW, PF_ACTIVE, PF_FINISHED };

struct pf_drive_node {
	struct member *m;         /* referenced; NULL for this node */
	struct link *l;           /* to m, for the command's length */
	uint32_t next_id;
	uint8_t *state;           /* per file: PF_NEW, PF_ACTIVE, PF_FINISHED */
	uint64_t *done, *total;   /* per file, as the node last said */
	unsigned active, left;    /* files PF_ACTIVE; files not PF_FINISHED */
	uint64_t disagree_since_ns;  /* 0 unless the node answers EAGAIN */
};

struct pf_drive {
	struct peers *p;
	const struct peer_pf_file *files;
	size_t nfiles;
	uint64_t run_id, placement;
	struct pf_drive_node *nodes;
	struct peer_pf_node *out;
	unsigned n;
};

/* One PREFETCH to node @k for file @i, over its link or to ourselves. Returns 0 or -errno. */
static int ask(struct pf_drive *d, unsigned k, size_t i, struct proto_prefetch_status *st)
{
	struct pf_drive_node *nd = &d->nodes[k];
	struct proto_prefetch rq = { .run_id = d->run_id, .file_key = d->files[i].key,
				     .file_size = d->files[i].size,
				     .mtime_ns = d->files[i].mtime_ns, .placement = d->placement,
				     .chunk_size = (uint32_t)cache_chunk_size(d->p->cache) };
	if (!nd->m) {
		pf_request(d->p, &rq, st);
		return 0;
	}
	uint8_t buf[PROTO_PREFETCH_LEN];
	struct proto_hdr hdr;
	struct deadline dl = deadline_in_ms(d->p->cfg->request_timeout_ms);
	uint32_t id = ++nd->next_id;
	proto_prefetch_encode(buf, &rq);
	int rc = link_send_frame(nd->l, PROTO_PREFETCH, id, buf, sizeof(buf), &dl);
	if (rc == 0)
		rc = link_recv_frame(nd->l, &hdr, buf, sizeof(buf), &dl);
	if (rc == 0 && (hdr.type != PROTO_PREFETCH_STATUS || hdr.req_id != id))
		rc = -EPROTO;
	if (rc == 0)
		rc = proto_prefetch_status_decode(buf, hdr.len, st);
	return rc;
}

/* Records node @k's answer about file @i. Returns 0, or -errno: the node's share failed. */
static int take_answer(struct pf_drive *d, unsigned k, size_t i,
		       const struct proto_prefetch_status *st, uint64_t now)
{
	struct pf_drive_node *nd = &d->nodes[k];
	if (st->status == EAGAIN || st->status == EBUSY) {
		if (st->status == EAGAIN && !nd->disagree_since_ns)
			nd->disagree_since_ns = now;
		if (st->status == EAGAIN && now - nd->disagree_since_ns > PF_DISAGREE_MS * 1000000ull)
			return -EAGAIN;
		return 0;
	}
	nd->disagree_since_ns = 0;
	if (st->status && st->status != EIO)
		return -st->status;
	if (nd->state[i] == PF_NEW) {
		nd->state[i] = PF_ACTIVE;
		nd->active++;
	}
	nd->done[i] = st->done;
	nd->total[i] = st->total;
	if (st->flags & PROTO_PREFETCH_DONE) {
		nd->state[i] = PF_FINISHED;
		nd->active--;
		nd->left--;
	}
	return st->status ? -EIO : 0;
}

/* One round for node @k: polls its active files, starts new ones up to PF_WINDOW. */
static void node_round(struct pf_drive *d, unsigned k, uint64_t now)
{
	struct pf_drive_node *nd = &d->nodes[k];
	struct peer_pf_node *o = &d->out[k];
	for (size_t i = 0; i < d->nfiles && nd->left && !o->err; i++) {
		if (nd->state[i] == PF_FINISHED || (nd->state[i] == PF_NEW && nd->active >= PF_WINDOW))
			continue;
		struct proto_prefetch_status st;
		int rc = ask(d, k, i, &st);
		if (rc == 0)
			rc = take_answer(d, k, i, &st, now);
		if (rc) {
			o->err = rc;
			log_warn("prefetch --cluster: node %s: %s", o->node_id,
				 rc == -EAGAIN ? "places chunks over another member set (check "
				 "mowsctl peers on each node)" : strerror(-rc));
		}
	}
	o->done = o->total = 0;
	for (size_t i = 0; i < d->nfiles; i++) {
		o->done += nd->done[i];
		o->total += nd->total[i];
	}
	o->finished = nd->left == 0 || o->err;
}

static int drive_init(struct pf_drive *d)
{
	struct member **ms;
	uint64_t *hashes;
	unsigned n = peers_live(d->p, &ms, &hashes);
	int rc = n ? 0 : -ENOMEM;
	d->placement = n ? placement_digest(d->p, hashes, n) : 0;
	d->nodes = n ? calloc(n, sizeof(*d->nodes)) : NULL;
	d->out = n ? calloc(n, sizeof(*d->out)) : NULL;
	if (n && (!d->nodes || !d->out))
		rc = -ENOMEM;
	for (unsigned k = 0; rc == 0 && k < n; k++) {
		struct pf_drive_node *nd = &d->nodes[k];
		nd->state = calloc(d->nfiles + 1, 1);
		nd->done = calloc(d->nfiles + 1, sizeof(*nd->done));
		nd->total = calloc(d->nfiles + 1, sizeof(*nd->total));
		if (!nd->state || !nd->done || !nd->total)
			rc = -ENOMEM;
		nd->left = (unsigned)d->nfiles;
		nd->m = ms[k];
		pthread_mutex_lock(&d->p->lock);
		snprintf(d->out[k].node_id, sizeof(d->out[k].node_id), "%s",
			 ms[k] ? ms[k]->node_id : d->p->node_id);
		if (ms[k])
			member_get(ms[k]);
		pthread_mutex_unlock(&d->p->lock);
		d->n++;
	}
	peers_live_put(d->p, ms, hashes, n);
	return rc;
}

/* Opens a link to every peer; a peer that cannot be reached has its share failed. */
static void drive_connect(struct pf_drive *d)
{
	for (unsigned k = 0; k < d->n; k++) {
		struct pf_drive_node *nd = &d->nodes[k];
		if (!nd->m)
			continue;
		struct deadline dl = deadline_in_ms(d->p->cfg->request_timeout_ms);
		int rc = 0;
		nd->l = peers_link_open(d->p, nd->m, &dl, &rc);
		if (!nd->l) {
			d->out[k].err = rc ? rc : -EHOSTUNREACH;
			d->out[k].finished = true;
			log_warn("prefetch --cluster: cannot reach node %s: %s", d->out[k].node_id,
				 strerror(-d->out[k].err));
		}
	}
}

static void drive_release(struct pf_drive *d)
{
	for (unsigned k = 0; k < d->n; k++) {
		struct pf_drive_node *nd = &d->nodes[k];
		link_free(nd->l);
		pthread_mutex_lock(&d->p->lock);
		member_put(nd->m);
		pthread_mutex_unlock(&d->p->lock);
		free(nd->state);
		free(nd->done);
		free(nd->total);
	}
	free(d->nodes);
}

/* Whether the daemon stops: waits up to @ms on stop_fd. */
static bool stopping_in(struct peers *p, int ms)
{
	struct pollfd pf = { .fd = p->stop_fd, .events = POLLIN };
	return poll(&pf, 1, ms) > 0;
}

static int drive(struct pf_drive *d, peers_pf_progress progress, void *arg)
{
	uint64_t model = 0, last_done = UINT64_MAX, last_change = mono_ns();
	for (size_t i = 0; i < d->nfiles; i++)
		model += d->files[i].size;
	unsigned replicas = d->p->cfg->replicas ? d->p->cfg->replicas : 1;
	uint64_t expect = model * (replicas < d->n ? replicas : d->n);
	for (;;) {
		uint64_t now = mono_ns(), done = 0, total = 0;
		bool all = true;
		for (unsigned k = 0; k < d->n; k++) {
			if (!d->out[k].finished)
				node_round(d, k, now);
			done += d->out[k].done;
			total += d->out[k].total;
			all = all && d->out[k].finished;
		}
		if (done != last_done) {
			last_done = done;
			last_change = now;
		}
		total = total > expect || all ? total : expect;
		if (progress && !progress(arg, done, total, d->n))
			return -ECANCELED;
		if (all)
			return 0;
		if (now - last_change > PF_STALL_MS * 1000000ull) {
			for (unsigned k = 0; k < d->n; k++)
				if (!d->out[k].finished)
					d->out[k].err = -ETIMEDOUT;
			return 0;
		}
		if (stopping_in(d->p, PF_ROUND_MS))
			return -ECANCELED;
	}
}

int peers_prefetch_cluster(struct peers *p, const struct peer_pf_file *files, size_t nfiles,
			   peers_pf_progress progress, void *arg, struct peer_pf_node **nodes,
			   unsigned *nnodes)
{
	struct pf_drive d = { .p = p, .files = files, .nfiles = nfiles };
	*nodes = NULL;
	*nnodes = 0;
	while (d.run_id == 0)
		if (getrandom(&d.run_id, sizeof(d.run_id), 0) != sizeof(d.run_id))
			return -errno;
	int rc = drive_init(&d);
	if (rc == 0) {
		drive_connect(&d);
		rc = drive(&d, progress, arg);
	}
	drive_release(&d);
	for (unsigned k = 0; rc == 0 && k < d.n; k++)
		if (d.out[k].err)
			rc = -EIO;
	if (rc == 0 || rc == -EIO) {
		*nodes = d.out;
		*nnodes = d.n;
	} else {
		free(d.out);
	}
	return rc;
}
