#include "net/member.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/log.h"
#include "net/gossip.h"
#include "net/place.h"

void members_init(struct members *t)
{
	memset(t, 0, sizeof(*t));
	t->max = MEMBERS_MAX;
}

void member_get(struct member *m)
{
	m->refs++;
}

void member_put(struct member *m)
{
	if (m && --m->refs == 0)
		free(m);
}

static void do_unlist(struct members *t, unsigned i)
{
	struct member *m = t->v[i];
	m->listed = false;
	t->v[i] = t->v[--t->n];
	t->reclaimed++;
}

void members_release(struct members *t)
{
	while (t->n) {
		struct member *m = t->v[t->n - 1];
		do_unlist(t, t->n - 1);
		member_put(m);
	}
	free(t->v);
	t->v = NULL;
	t->cap = 0;
}

struct member *members_find_addr(struct members *t, const struct sockaddr *sa, socklen_t len)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->v[i]->salen == len && !memcmp(&t->v[i]->sa, sa, len))
			return t->v[i];
	return NULL;
}

struct member *members_find_id(struct members *t, const char *node_id)
{
	struct member *found = NULL;
	for (unsigned i = 0; i < t->n; i++) {
		struct member *m = t->v[i];
		if (strcmp(m->node_id, node_id))
			continue;
		if (m->up && !m->self)
			return m;
		found = found ? found : m;
	}
	return found;
}

static void format_addr(struct member *m)
{
	char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
	const struct sockaddr *sa = (const struct sockaddr *)&m->sa;
	getnameinfo(sa, m->salen, host, sizeof(host), port, sizeof(port),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	bool v6 = sa->sa_family == AF_INET6;
	snprintf(m->addr, sizeof(m->addr), "%s%s%s:%.7s", v6 ? "[" : "", host, v6 ? "]" : "",
		 port);
}

static bool do_grow(struct members *t)
{
	if (t->n < t->cap)
		return true;
	unsigned cap = t->cap ? 2 * t->cap : 16;
	struct member **v = realloc(t->v, cap * sizeof(*v));
	if (!v)
		return false;
	t->v = v;
	t->cap = cap;
	return true;
}

struct member *members_add(struct members *t, const struct sockaddr *sa, socklen_t len)
{
	if (t->n >= t->max) {
		if (!t->full_logged)
			log_err("peers: the member table is full (%u entries); new addresses are "
				"ignored until departed ones are reclaimed; check peers / peers_file "
				"for a name that resolves to too many addresses", t->max);
		t->full_logged = true;
		return NULL;
	}
	struct member *m = calloc(1, sizeof(*m));
	if (!m || len > sizeof(m->sa) || !do_grow(t)) {
		free(m);
		return NULL;
	}
	memcpy(&m->sa, sa, len);
	m->salen = len;
	format_addr(m);
	m->refs = 1;
	m->listed = true;
	t->v[t->n++] = m;
	t->added++;
	m->uid = (uint32_t)t->added;
	return m;
}

struct member *members_find_uid(struct members *t, uint32_t uid)
{
	for (unsigned k = 0; uid && k < t->n; k++)
		if (t->v[k]->uid == uid)
			return t->v[k];
	return NULL;
}

void member_set_id(struct member *m, const char *node_id)
{
	snprintf(m->node_id, sizeof(m->node_id), "%s", node_id);
	m->node_hash = place_node_hash(node_id);
}

void members_resolve_begin(struct members *t)
{
	for (unsigned i = 0; i < t->n; i++)
		t->v[i]->resolved = false;
}

struct member *members_resolve_seen(struct members *t, const struct sockaddr *sa,
				    socklen_t len)
{
	struct member *m = members_find_addr(t, sa, len);
	if (!m)
		m = members_add(t, sa, len);
	if (m) {
		m->configured = true;
		m->resolved = true;
		m->gone_since_ns = 0;
	}
	return m;
}

void members_resolve_end(struct members *t, uint64_t now)
{
	for (unsigned i = 0; i < t->n; i++) {
		struct member *m = t->v[i];
		if (m->configured && !m->resolved && !m->gone_since_ns) {
			m->gone_since_ns = now;
			if (m->node_id[0])
				log_info("peer %s (%s) no longer resolves from peers", m->node_id,
					 m->addr);
		}
	}
}

bool member_wanted(const struct member *m)
{
	return m->listed && !m->self && ((m->configured && m->resolved) || m->inbound);
}

bool member_usable(const struct member *m, uint64_t now)
{
	return member_wanted(m) && m->up && m->node_id[0] && m->quarantine_until_ns <= now;
}

/* Not wanted now, and for how long. */
static bool do_departed(const struct member *m, uint64_t now, uint64_t linger_ns)
{
	if (m->configured && m->resolved)
		return false;
	if (m->self)
		return true;
	if (m->inbound && (m->up || !m->gone_since_ns))
		return false;
	return m->gone_since_ns && now - m->gone_since_ns >= linger_ns;
}

unsigned members_reclaim(struct members *t, uint64_t now, uint64_t linger_ns,
			 struct member **out, unsigned max)
{
	unsigned k = 0;
	for (unsigned i = 0; i < t->n && k < max;) {
		struct member *m = t->v[i];
		if (!do_departed(m, now, linger_ns)) {
			i++;
			continue;
		}
		do_unlist(t, i);
		out[k++] = m; /* the table's reference passes to the caller */
	}
	return k;
}

/* Keeps the @cap members that sort first by @before in @best (a small sorted array). */
static void keep_best(struct member **best, unsigned *n, unsigned cap, struct member *m,
		      bool (*before)(const struct member *, const struct member *))
{
	unsigned pos = *n < cap ? (*n)++ : cap;
	while (pos > 0 && before(m, best[pos - 1])) {
		if (pos < cap)
			best[pos] = best[pos - 1];
		pos--;
	}
	if (pos < cap)
		best[pos] = m;
}

/* Probes: never tried first, then the longest untried. */
static bool probe_before(const struct member *a, const struct member *b)
{
	return a->last_probe_ns < b->last_probe_ns;
}

/* Pings: suspects first, then the longest unheard. */
static bool ping_before(const struct member *a, const struct member *b)
{
	if (a->suspect != b->suspect)
		return a->suspect;
	return a->last_seen_ns < b->last_seen_ns;
}

/*
 * The wait doubles per failure up to MEMBERS_BACKOFF_MAX_SHIFT and gets up to a quarter
 * more at random (mixed from this process's clock), so the nodes of a cold burst that all
 * failed to reach one late node do not all come back to it in the same instant.
 */
static bool probe_due(const struct member *m, uint64_t now, uint64_t backoff_ns)
{
	if (m->up || !m->probe_fails)
		return true;
	unsigned shift = m->probe_fails < MEMBERS_BACKOFF_MAX_SHIFT ? m->probe_fails
								   : MEMBERS_BACKOFF_MAX_SHIFT;
	uint64_t wait = backoff_ns << shift;
	wait += fmix64(m->last_probe_ns ^ (uintptr_t)m) % (wait / 4 + 1);
	return now - m->last_probe_ns >= wait;
}

void member_heard_from(struct member *m)
{
	m->probe_fails = 0;
}

unsigned members_ping_budget(unsigned n)
{
	return gossip_log2(n) + 2;
}

unsigned members_pick_round(struct members *t, uint64_t now, unsigned pings, unsigned probes,
			    uint64_t backoff_ns, struct member **out, unsigned max)
{
	unsigned np = 0, nq = 0, k = 0;
	struct member **ping = calloc(pings + 1, sizeof(*ping));
	struct member **probe = calloc(probes + 1, sizeof(*probe));
	for (unsigned i = 0; ping && probe && i < t->n; i++) {
		struct member *m = t->v[i];
		if (!member_wanted(m))
			continue;
		if (m->hb)
			keep_best(ping, &np, pings, m, ping_before);
		else if (probe_due(m, now, backoff_ns))
			keep_best(probe, &nq, probes, m, probe_before);
	}
	for (unsigned j = 0; j < np && k < max; j++)
		out[k++] = ping[j];
	for (unsigned j = 0; j < nq && k < max; j++)
		out[k++] = probe[j];
	free(ping);
	free(probe);
	for (unsigned j = 0; j < k; j++) {
		out[j]->last_probe_ns = now;
		member_get(out[j]);
	}
	return k;
}

bool member_gossiping(const struct member *m)
{
	return (m->caps & PROTO_CAP_GOSSIP) && m->g_inc;
}

bool member_gossip_apply(struct member *m, uint8_t state, uint64_t inc, uint64_t now)
{
	if (!gossip_overrides(inc, state, m->g_inc, m->g_state))
		return false;
	if (state != m->g_state || state == PROTO_GOSSIP_ALIVE)
		m->g_since_ns = now;
	m->g_inc = inc;
	m->g_state = state;
	return true;
}

bool member_suspect_expired(const struct member *m, uint64_t now, uint64_t timeout_ns)
{
	return m->g_state == PROTO_GOSSIP_SUSPECT && now - m->g_since_ns >= timeout_ns;
}

unsigned members_suspects(const struct members *t)
{
	unsigned n = 0;
	for (unsigned i = 0; i < t->n; i++)
		if (t->v[i]->listed && !t->v[i]->self && t->v[i]->g_state == PROTO_GOSSIP_SUSPECT)
			n++;
	return n;
}

static int cmp_hash(const void *a, const void *b)
{
	uint64_t x = (*(struct member *const *)a)->node_hash;
	uint64_t y = (*(struct member *const *)b)->node_hash;
	return x < y ? -1 : x > y;
}

unsigned members_live(struct members *t, uint64_t now, struct member **out, uint64_t *hashes,
		      unsigned max)
{
	unsigned n = 0, k = 0;
	for (unsigned i = 0; i < t->n && n < max; i++)
		if (member_usable(t->v[i], now))
			out[n++] = t->v[i];
	/* One entry per node (a node may answer at several addresses): sort, skip repeats. */
	qsort(out, n, sizeof(*out), cmp_hash);
	for (unsigned i = 0; i < n; i++) {
		if (k && out[k - 1]->node_hash == out[i]->node_hash)
			continue;
		out[k] = out[i];
		hashes[k] = out[k]->node_hash;
		member_get(out[k++]);
	}
	return k;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint64_t members_digest(struct members *t, const char *self_id, uint64_t now, unsigned *count)
{
	const char **ids = malloc((t->n + 1) * sizeof(*ids));
	unsigned n = 0;
	if (!ids) {
		*count = 0;
		return 0;
	}
	ids[n++] = self_id;
	for (unsigned i = 0; i < t->n; i++)
		if (member_usable(t->v[i], now))
			ids[n++] = t->v[i]->node_id;
	qsort(ids, n, sizeof(*ids), cmp_str);
	uint64_t h = FNV64_BASIS;
	unsigned distinct = 0;
	for (unsigned i = 0; i < n; i++) {
		if (i && !strcmp(ids[i], ids[i - 1]))
			continue;
		h = fnv1a64(h, ids[i], strlen(ids[i]) + 1);
		distinct++;
	}
	free(ids);
	*count = distinct;
	return h;
}
