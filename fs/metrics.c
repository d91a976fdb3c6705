#include "fs/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/mows.h"
#include "fs/supervisor.h"
#include "net/peer.h"
#include "net/tcp.h"

#ifndef MOWS_VERSION
#define MOWS_VERSION "unknown"
#endif

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define MAX_SCRAPERS 8
#define SCRAPE_TIMEOUT_S 10

struct metrics {
	struct mows *m;
	int fd;                  /* bound listening socket; MHD owns it once started */
	struct MHD_Daemon *mhd;
};

/* ---- formatting ---- */

static void family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *out, const char *name, const char *help, uint64_t v)
{
	family(out, name, "counter", help);
	fprintf(out, "%s %" PRIu64 "\n", name, v);
}

static void gauge(FILE *out, const char *name, const char *help, uint64_t v)
{
	family(out, name, "gauge", help);
	fprintf(out, "%s %" PRIu64 "\n", name, v);
}

static void histogram(FILE *out, const char *name, const char *help, const struct hist_copy *h)
{
	uint64_t cum = 0;
	family(out, name, "histogram", help);
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		cum += h->bucket[b];
		fprintf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
			(double)hist_bounds_ns[b] / 1e9, cum);
	}
	fprintf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
	fprintf(out, "%s_sum %.9f\n%s_count %" PRIu64 "\n", name, (double)h->sum_ns / 1e9, name,
		h->count);
}

/* The operator's name for a fill source: storage (the backing directory) or peer. */
static const char *source_label(const char *name)
{
	return strcmp(name, "backing") == 0 ? "storage" : strcmp(name, "peers") == 0 ? "peer" :
									     name;
}

static void format_sources(FILE *out, struct mows *m, const struct cache_stats *st)
{
	const char *name;
	uint64_t bytes;
	family(out, "mows_read_bytes_total", "counter",
	       "Bytes handed to readers, by where they came from: cache (ready when asked for), "
	       "or the source a reader waited for");
	fprintf(out, "mows_read_bytes_total{source=\"cache\"} %" PRIu64 "\n", st->bytes_read_hit);
	unsigned n = cache_source_stats(m->cache, 0, &name, &bytes);
	for (unsigned k = 0; k < n && k < CACHE_MAX_SOURCES; k++) {
		cache_source_stats(m->cache, k, &name, &bytes);
		fprintf(out, "mows_read_bytes_total{source=\"%s\"} %" PRIu64 "\n",
			source_label(name), st->bytes_read_from[k]);
	}
	family(out, "mows_fill_bytes_total", "counter", "Bytes filled into the cache, by source");
	for (unsigned k = 0; k < n; k++) {
		cache_source_stats(m->cache, k, &name, &bytes);
		fprintf(out, "mows_fill_bytes_total{source=\"%s\"} %" PRIu64 "\n",
			source_label(name), bytes);
	}
}

static void format_cache(FILE *out, const struct cache_stats *st)
{
	gauge(out, "mows_cache_capacity_bytes", "Memory reserved for cached chunks",
	      st->max_memory);
	gauge(out, "mows_cache_used_bytes", "Memory in chunks that are cached or being filled",
	      st->used_memory);
	gauge(out, "mows_cache_chunk_size_bytes", "Size of one cache chunk", st->chunk_size);
	uint32_t used = (uint32_t)(st->chunk_size ? st->used_memory / st->chunk_size : 0);
	family(out, "mows_cache_chunks", "gauge", "Cache chunk slots by state");
	fprintf(out, "mows_cache_chunks{state=\"cached\"} %u\n", st->slots_ready);
	fprintf(out, "mows_cache_chunks{state=\"filling\"} %u\n",
		used > st->slots_ready ? used - st->slots_ready : 0);
	fprintf(out, "mows_cache_chunks{state=\"free\"} %u\n",
		st->slots > used ? st->slots - used : 0);
	counter(out, "mows_cache_hits_total", "Chunk lookups by readers that found the chunk ready",
		st->hits);
	counter(out, "mows_cache_misses_total", "Chunk lookups by readers that had to wait",
		st->misses);
	counter(out, "mows_fills_total", "Chunk fills finished, failed ones included", st->fills);
	counter(out, "mows_fill_errors_total", "Chunk fills that failed", st->fill_errors);
	counter(out, "mows_evictions_total", "Cached chunks dropped to make room", st->evictions);
	histogram(out, "mows_fill_duration_seconds",
		  "Time one chunk fill spent in its sources", &st->fill_latency);
}

enum { PEER_UP, PEER_DOWN, PEER_QUARANTINED, PEER_GONE, PEER_LEFT, PEER_NSTATES };
static const char *const peer_states[PEER_NSTATES] = {
	"up", "down", "quarantined", "gone", "left",
};
enum { TR_TCP, TR_RDMA, TR_NONE, TR_N };
static const char *const transports[TR_N] = { "tcp", "rdma", "none" };

struct peer_totals {
	unsigned state[PEER_NSTATES];
	uint64_t in[TR_N], out;      /* out: chunks served over TCP, the only ones net/ counts */
	uint64_t errors, bad_crc;
	uint64_t quarantines;        /* times a peer was quarantined, since start */
	struct peers_swarm_counters swarm;
};

/* Sums the peers' snapshot (taken under their lock; summed and formatted without it). */
static void peer_totals(struct mows *m, struct peer_totals *t)
{
	struct peers_snapshot s;
	memset(t, 0, sizeof(*t));
	if (!m->peers || peers_snapshot(m->peers, &s))
		return;
	t->quarantines = s.quarantines;
	t->swarm = s.swarm;
	for (unsigned i = 0; i < s.n; i++) {
		const struct peer_info *pi = &s.peers[i];
		for (unsigned k = 0; k < PEER_NSTATES; k++)
			t->state[k] += !strcmp(pi->state, peer_states[k]);
		unsigned k = !strcmp(pi->transport, "tcp")    ? TR_TCP
			     : !strcmp(pi->transport, "rdma") ? TR_RDMA
							      : TR_NONE;
		t->in[k] += pi->bytes_in;
		t->out += pi->bytes_out;
		t->errors += pi->errors;
		t->bad_crc += pi->bad_crc;
	}
	peers_snapshot_release(&s);
}

/* The swarm's events (net/swarm.h), one family labelled by event; the names are the keys
 * of "swarm" in mowsctl peers --json. */
static void format_swarm(FILE *out, const struct peers_swarm_counters *w)
{
	const struct { const char *name; uint64_t v; } ev[] = {
		{ "redirects_sent", w->redirects_sent },     { "redirected", w->redirected },
		{ "from_holder", w->from_holder },           { "fallbacks", w->fallbacks },
		{ "served_as_holder", w->served_as_holder }, { "relayed", w->relayed },
		{ "relays_stopped", w->relays_stopped },     { "holder_parked", w->holder_parked },
		{ "holder_misses", w->holder_misses },
		{ "owner_relayed", w->owner_relayed },
		{ "storage_unowned", w->storage_unowned },
	};
	family(out, "mows_swarm_events_total", "counter",
	       "Swarm scale-out: as owner, requests handed to an earlier requester (redirects_sent); "
	       "as requester, redirects received, chunks a holder served, fallbacks to the owner, "
	       "chunks it did not own but read from storage (storage_unowned); "
	       "as holder, requests served, relayed while arriving, relays stopped, parked, missed");
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		fprintf(out, "mows_swarm_events_total{event=\"%s\"} %" PRIu64 "\n", ev[i].name,
			ev[i].v);
}

static void format_peers(FILE *out, struct mows *m, const struct cache_stats *st)
{
	struct peer_totals t;
	peer_totals(m, &t);
	family(out, "mows_peers", "gauge", "Peers of this node by state");
	for (unsigned s = 0; s < PEER_NSTATES; s++)
		fprintf(out, "mows_peers{state=\"%s\"} %u\n", peer_states[s], t.state[s]);
	family(out, "mows_peer_bytes_total", "counter",
	       "Chunk bytes exchanged with peers: in by the transport that carried them, out "
	       "as sent over TCP (one-sided RDMA reads by peers are not seen here)");
	for (unsigned k = 0; k < TR_N; k++)
		fprintf(out, "mows_peer_bytes_total{direction=\"in\",transport=\"%s\"} %" PRIu64
			"\n", transports[k], t.in[k]);
	fprintf(out, "mows_peer_bytes_total{direction=\"out\",transport=\"tcp\"} %" PRIu64 "\n",
		t.out);
	counter(out, "mows_peer_errors_total", "Failed chunk requests to peers", t.errors);
	gauge(out, "mows_peers_quarantined", "Peers quarantined now for sending bad chunks",
	      t.state[PEER_QUARANTINED]);
	counter(out, "mows_peer_quarantines_total",
		"Times a peer was quarantined for sending chunks with bad CRCs", t.quarantines);
	format_swarm(out, &t.swarm);
	family(out, "mows_crc_mismatches_total", "counter",
	       "CRC-32 mismatches: whole files read from storage against the manifest, chunks "
	       "received from peers against the sender's CRC");
	fprintf(out, "mows_crc_mismatches_total{source=\"storage\"} %" PRIu64 "\n",
		st->crc_mismatches);
	fprintf(out, "mows_crc_mismatches_total{source=\"peer\"} %" PRIu64 "\n", t.bad_crc);
}

/* Opens the kernel serves itself: their reads never reach mows, so only opens count. */
static void format_passthrough(FILE *out, struct mows *m)
{
	counter(out, "mows_passthrough_opens_total",
		"Opens served in FUSE passthrough mode: the kernel reads them from the cache's "
		"files, and none of their reads are in mows_read_bytes_total",
		atomic_load(&m->pt_opens));
	counter(out, "mows_passthrough_opened_bytes_total",
		"File bytes made readable through passthrough opens: each adds its file's size, "
		"however much of it is then read", atomic_load(&m->pt_bytes_opened));
	gauge(out, "mows_passthrough_open_files", "Passthrough opens not closed yet",
	      atomic_load(&m->pt_open_now));
}

int metrics_format(struct mows *m, char **buf, size_t *len)
{
	struct cache_stats st;
	struct hist_copy reads;
	cache_get_stats(m->cache, &st);
	hist_read(&m->read_latency, &reads);
	*buf = NULL;
	FILE *out = open_memstream(buf, len);
	if (!out)
		return -ENOMEM;
	family(out, "mows_build_info", "gauge", "Version of this mows-fuse; always 1");
	fprintf(out, "mows_build_info{version=\"%s\"} 1\n", MOWS_VERSION);
	format_sources(out, m, &st);
	format_cache(out, &st);
	format_peers(out, m, &st);
	counter(out, "mows_restarts_total",
		"Times the mount's serving process was replaced (supervise = on)",
		super_child_restarts(m->super));
	histogram(out, "mows_read_duration_seconds",
		  "Time from a FUSE read request to its reply", &reads);
	format_passthrough(out, m);
	bool bad = ferror(out);
	if (fclose(out) || bad) {
		free(*buf);
		*buf = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* ---- HTTP ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, char *body,
			     size_t len, bool owned, const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result rc = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_len, void **state)
{
	(void)version, (void)upload, (void)upload_len, (void)state;
	static char not_found[] = "not found: mows serves /metrics\n";
	static char not_allowed[] = "only GET and HEAD\n";
	struct metrics *mx = cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
			     sizeof(not_allowed) - 1, false, "text/plain");
	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1, false,
			     "text/plain");
	char *body;
	size_t len;
	if (metrics_format(mx->m, &body, &len))
		return MHD_NO;
	return reply(conn, MHD_HTTP_OK, body, len, true, CONTENT_TYPE);
}

static void mhd_log(void *arg, const char *fmt, va_list ap)
{
	(void)arg;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warn("metrics: %s", line);
}

struct metrics *metrics_new(struct mows *m, const char *listen, char *err, size_t errlen)
{
	char why[512];
	struct metrics *mx = calloc(1, sizeof(*mx));
	if (!mx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	mx->m = m;
	mx->fd = tcp_listen(listen, why, sizeof(why));
	if (mx->fd < 0) {
		/* tcp_listen() names the value as "listen 'X': ": say metrics_listen instead. */
		const char *rest = strstr(why, "': ");
		snprintf(err, errlen, "metrics_listen '%s': %s", listen, rest ? rest + 3 : why);
		free(mx);
		return NULL;
	}
	return mx;
}

int metrics_start(struct metrics *mx)
{
	mx->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
				   NULL, handle, mx, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				   MHD_OPTION_LISTEN_SOCKET, mx->fd,
				   MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_SCRAPERS,
				   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SCRAPE_TIMEOUT_S,
				   MHD_OPTION_END);
	if (!mx->mhd)
		return -EIO;
	return 0;
}

void metrics_free(struct metrics *mx)
{
	if (!mx)
		return;
	if (mx->mhd)
		MHD_stop_daemon(mx->mhd); /* closes the listening socket */
	else
		close(mx->fd);
	free(mx);
}
