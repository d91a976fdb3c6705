/*
 * Liveness gossip for the peers (net/gossip.h has the rules): learning what PINGs and PONGs
 * carry, building what ours carry, suspicions, deaths and the indirect check (PING_REQ).
 * Called by the heartbeat thread (net/peer.c) and by the peers readers (PING, PING_REQ);
 * every shared field is under peers->lock. See THREADS.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "net/peer_priv.h"

static uint64_t ms_ns(uint64_t ms)
{
	return ms * 1000000;
}

/*
 * How long a heartbeat waits for its PONG: min(peer_timeout, 2 s); for a member we gossip
 * with, max(heartbeat, peer_timeout / 4) if shorter. A missed PONG then only makes it
 * suspect (which it can refute), so the wait need not cover a slow moment, and the
 * heartbeat thread is held less by a member that went silent.
 */
uint32_t peers_hb_timeout_ms(const struct peers *p, bool gossiping)
{
	uint32_t t = p->cfg->peer_timeout_ms < 2000 ? p->cfg->peer_timeout_ms : 2000;
	uint32_t g = p->cfg->peer_timeout_ms / 4;
	if (g < p->cfg->heartbeat_ms)
		g = p->cfg->heartbeat_ms;
	return gossiping && g < t ? g : t;
}


#define GOSSIP_DOWN_MAX 16      /* members one message may mark down */

/* What one message taught us, to act on once the lock is dropped. */
struct gossip_outcome {
	struct member *down[GOSSIP_DOWN_MAX];   /* referenced */
	uint8_t why[GOSSIP_DOWN_MAX];           /* PROTO_GOSSIP_DEAD or _LEFT */
	unsigned ndown;
	bool refuted;
};

/* Lock held. Someone says this node is suspect, dead or gone: outbid it (SWIM). */
static void do_refute(struct peers *p, const struct proto_gossip_event *ev,
		      struct gossip_outcome *o)
{
	if (ev->state == PROTO_GOSSIP_ALIVE || ev->inc < p->self_inc)
		return;
	p->self_inc = ev->inc + 1;
	struct proto_gossip_event alive = { .state = PROTO_GOSSIP_ALIVE, .inc = p->self_inc };
	snprintf(alive.node_id, sizeof(alive.node_id), "%s", p->node_id);
	gossip_queue_push(&p->gq, &alive);
	p->lv.refutations++;
	o->refuted = true;
}

/*
 * Lock held. Merges one belief into every entry of that node (a node may have several
 * addresses). A belief that changes ours is passed on (queued); one that makes an up
 * member dead or gone is acted on in gossip_act(). @fresh: a first incarnation heard is
 * not news to pass on.
 */
static void do_apply(struct peers *p, const struct proto_gossip_event *ev, uint64_t now,
		     struct gossip_outcome *o)
{
	if (!strcmp(ev->node_id, p->node_id)) {
		do_refute(p, ev, o);
		return;
	}
	bool news = false;
	for (unsigned i = 0; i < p->members.n; i++) {
		struct member *m = p->members.v[i];
		if (m->self || !(m->caps & PROTO_CAP_GOSSIP) || strcmp(m->node_id, ev->node_id))
			continue;
		bool known = m->g_inc != 0;
		if (!member_gossip_apply(m, ev->state, ev->inc, now))
			continue;
		news = news || known;
		if (ev->state >= PROTO_GOSSIP_DEAD && m->up && o->ndown < GOSSIP_DOWN_MAX) {
			member_get(m);
			o->why[o->ndown] = ev->state;
			o->down[o->ndown++] = m;
		}
	}
	if (news) {
		gossip_queue_push(&p->gq, ev);
		p->lv.events_learned++;
	}
}

/* Lock held. Learns @g, which @from_id sent (its header says it is alive). */
static void do_learn(struct peers *p, const char *from_id, const struct proto_gossip *g,
		     struct gossip_outcome *o)
{
	uint64_t now = mono_ns();
	memset(o, 0, sizeof(*o));
	if (!g->inc)
		return;
	struct proto_gossip_event alive = { .state = PROTO_GOSSIP_ALIVE, .inc = g->inc };
	snprintf(alive.node_id, sizeof(alive.node_id), "%s", from_id);
	do_apply(p, &alive, now, o);
	for (unsigned i = 0; i < g->n; i++)
		do_apply(p, &g->ev[i], now, o);
}

/* Without the lock: drops the members @o found dead or gone. */
static void gossip_act(struct peers *p, const char *from_id, struct gossip_outcome *o)
{
	char why[PROTO_NODE_ID_MAX + 48];
	for (unsigned i = 0; i < o->ndown; i++) {
		snprintf(why, sizeof(why), "%s (heard from %s)",
			 o->why[i] == PROTO_GOSSIP_LEFT ? "it left" : "declared dead", from_id);
		pthread_mutex_lock(&p->lock);
		if (o->why[i] == PROTO_GOSSIP_LEFT)
			o->down[i]->left = true;
		pthread_mutex_unlock(&p->lock);
		peers_mark_down(p, o->down[i], why);
		pthread_mutex_lock(&p->lock);
		member_put(o->down[i]);
		pthread_mutex_unlock(&p->lock);
	}
	if (o->refuted)
		log_info("peers: %s suspects this node (or says it is gone); refuted with a new "
			 "incarnation", from_id);
}

/*
 * Lock held. The gossip for one message to @to_id: our incarnation, what we believe of the
 * receiver itself when it is not "alive" (so it can refute at once), then the queue.
 */
static void do_gossip_build(struct peers *p, const char *to_id, struct proto_gossip *g)
{
	g->inc = p->self_inc;
	g->n = 0;
	struct member *t = to_id[0] ? members_find_id(&p->members, to_id) : NULL;
	if (t && member_gossiping(t) && t->g_state != PROTO_GOSSIP_ALIVE) {
		g->ev[0] = (struct proto_gossip_event){ .state = t->g_state, .inc = t->g_inc };
		snprintf(g->ev[0].node_id, sizeof(g->ev[0].node_id), "%s", to_id);
		g->n = 1;
	}
	unsigned limit = gossip_retransmits(p->members.n + 1);
	g->n += gossip_queue_take(&p->gq, limit, to_id[0] ? to_id : NULL, g->ev + g->n,
				  PROTO_GOSSIP_MAX - g->n);
	p->lv.events_sent += g->n;
}

/* A PING or PONG payload for @to_id (whose HELLO said @caps) in @buf (PROTO_PING_MAX_LEN). */
ssize_t peers_ping_payload(struct peers *p, const char *to_id, uint16_t caps,
			   const struct proto_ping *ping, uint8_t *buf)
{
	if (!p->gossip || !(caps & PROTO_CAP_GOSSIP)) {
		proto_ping_encode(buf, ping);
		return PROTO_PING_LEN;
	}
	struct proto_gossip g;
	pthread_mutex_lock(&p->lock);
	do_gossip_build(p, to_id, &g);
	pthread_mutex_unlock(&p->lock);
	return proto_ping_gossip_encode(buf, PROTO_PING_MAX_LEN, ping, &g);
}

/* Learns the gossip in a PING or PONG from @from_id and acts on it. */
void peers_gossip_receive(struct peers *p, const char *from_id, const struct proto_gossip *g)
{
	struct gossip_outcome o;
	if (!p->gossip || !g->inc)
		return;
	pthread_mutex_lock(&p->lock);
	do_learn(p, from_id, g, &o);
	pthread_mutex_unlock(&p->lock);
	gossip_act(p, from_id, &o);
}

/* Lock held. @node_id just spoke to us itself (its PONG, or its own PING). */
void peers_do_heard_direct(struct peers *p, const char *node_id, uint64_t now)
{
	for (unsigned i = 0; i < p->members.n; i++)
		if (!strcmp(p->members.v[i]->node_id, node_id))
			p->members.v[i]->g_direct_ns = now;
}

ssize_t peers_pong(struct peers *p, const char *from_id, uint16_t from_caps, const void *ping,
		   uint32_t len, void *out)
{
	struct proto_ping pi;
	struct proto_gossip g;
	if (proto_ping_gossip_decode(ping, len, &pi, &g))
		return -EPROTO;
	peers_gossip_receive(p, from_id, &g);
	pthread_mutex_lock(&p->lock);
	p->lv.pongs++;
	peers_do_heard_direct(p, from_id, mono_ns());
	pthread_mutex_unlock(&p->lock);
	return peers_ping_payload(p, from_id, from_caps, &pi, out);
}

ssize_t peers_ping_req_answer(struct peers *p, const void *req, uint32_t len, void *out)
{
	struct proto_ping_req rq;
	struct proto_ping_req_ack ack = { .age_ms = PROTO_PING_REQ_NEVER };
	if (proto_ping_req_decode(req, len, &rq))
		return -EPROTO;
	uint64_t now = mono_ns(), newest = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->members.n; i++) {
		struct member *m = p->members.v[i];
		if (!strcmp(m->node_id, rq.node_id) && m->g_direct_ns > newest)
			newest = m->g_direct_ns;
	}
	pthread_mutex_unlock(&p->lock);
	if (newest) {
		uint64_t ms = (now - newest) / 1000000;
		ack.age_ms = ms < PROTO_PING_REQ_NEVER ? (uint32_t)ms : PROTO_PING_REQ_NEVER - 1;
	}
	proto_ping_req_ack_encode(out, &ack);
	return PROTO_PING_REQ_ACK_LEN;
}

/*
 * Asks witness @w (on its heartbeat link) whether @id answered it after @since. A witness
 * that fails to answer loses its heartbeat link (its next round probes it again).
 */
static bool witness_heard(struct member *w, const char *id, uint64_t since,
			  uint32_t timeout_ms)
{
	struct deadline dl = deadline_in_ms(timeout_ms);
	uint8_t buf[PROTO_PING_REQ_MAX_LEN];
	struct proto_ping_req rq;
	struct proto_ping_req_ack ack;
	struct proto_hdr hdr;
	snprintf(rq.node_id, sizeof(rq.node_id), "%s", id);
	ssize_t len = proto_ping_req_encode(buf, sizeof(buf), &rq);
	if (len < 0)
		return false;
	uint32_t rid = ++w->hb_id;
	uint64_t sent = mono_ns();
	int rc = link_send_frame(w->hb, PROTO_PING_REQ, rid, buf, (uint32_t)len, &dl);
	if (rc == 0)
		rc = link_recv_frame(w->hb, &hdr, buf, sizeof(buf), &dl);
	if (rc == 0 && (hdr.type != PROTO_PING_REQ_ACK || hdr.req_id != rid ||
			proto_ping_req_ack_decode(buf, hdr.len, &ack)))
		rc = -EPROTO;
	if (rc) {
		log_debug("peer %s: no answer to PING_REQ about %s: %s", w->node_id, id,
			  strerror(-rc));
		link_free(w->hb);
		w->hb = NULL;
		return false;
	}
	log_debug("peer %s heard %s %u ms before answering; our try began %" PRIu64 " ms before",
		  w->node_id, id, ack.age_ms, (sent - since) / 1000000);
	/* It heard @id at least age_ms (+1, the rounding) before it answered, and it answered
	 * after @sent: heard after @since for sure when that still falls after it. */
	return ack.age_ms != PROTO_PING_REQ_NEVER && ms_ns((uint64_t)ack.age_ms + 1) < sent - since;
}

#define WITNESSES 3             /* members a failed heartbeat asks before suspecting */

/*
 * SWIM's indirect probe, answered from memory: a heartbeat to @m failed (its PING went out
 * at @since, or it failed at once); asks up to WITNESSES other gossiping members, one after
 * another, whether @m spoke to them after @since. A helper's reader cannot borrow its own heartbeat link to ping
 * @m afresh, and a new TLS link per question costs more than it saves; with every node
 * pinging O(log n) members a round and pinging each other, a live @m has usually spoken
 * to someone within one PING wait. Returns whether one had heard it.
 */
bool peers_ask_witnesses(struct peers *p, struct member *m, uint64_t since)
{
	struct member *w[WITNESSES];
	char id[PROTO_NODE_ID_MAX + 1];
	unsigned n = 0;
	pthread_mutex_lock(&p->lock);
	snprintf(id, sizeof(id), "%s", m->node_id);
	unsigned cnt = p->members.n, start = cnt ? (unsigned)(p->lv.ping_reqs % cnt) : 0;
	for (unsigned k = 0; k < cnt && n < WITNESSES; k++) {
		struct member *c = p->members.v[(start + k) % cnt];
		if (c == m || c->self || !c->hb || !c->up || !(c->caps & PROTO_CAP_GOSSIP) ||
		    !strcmp(c->node_id, id))
			continue;
		member_get(c);
		w[n++] = c;
	}
	uint32_t timeout = peers_hb_timeout_ms(p, true);
	pthread_mutex_unlock(&p->lock);
	bool heard = false;
	for (unsigned i = 0; i < n && !heard; i++) {
		heard = witness_heard(w[i], id, since, timeout);
		pthread_mutex_lock(&p->lock);
		p->lv.ping_reqs++;
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		member_put(w[i]);
	if (heard)
		p->lv.indirect_alive++;
	pthread_mutex_unlock(&p->lock);
	return heard;
}

/*
 * Lock held. A heartbeat to @m failed: suspect it (and say so) if it was believed alive.
 * The suspicion runs from @since, when the attempt that failed began (its silence began
 * then at the latest). Returns whether it has run out: @m is dead now.
 */
bool peers_do_suspect(struct peers *p, struct member *m, uint64_t since, uint64_t now)
{
	if (m->g_state == PROTO_GOSSIP_ALIVE) {
		member_gossip_apply(m, PROTO_GOSSIP_SUSPECT, m->g_inc, now);
		m->g_since_ns = since;
		struct proto_gossip_event ev = { .state = PROTO_GOSSIP_SUSPECT, .inc = m->g_inc };
		snprintf(ev.node_id, sizeof(ev.node_id), "%s", m->node_id);
		gossip_queue_push(&p->gq, &ev);
		p->lv.suspected++;
	}
	return member_suspect_expired(m, now, ms_ns(p->cfg->peer_timeout_ms));
}

/* @m's suspicion ran out here: dead, for us and (through the queue) for everyone. */
void peers_declare_dead(struct peers *p, struct member *m)
{
	pthread_mutex_lock(&p->lock);
	bool now_dead = member_gossip_apply(m, PROTO_GOSSIP_DEAD, m->g_inc, mono_ns());
	if (now_dead) {
		struct proto_gossip_event ev = { .state = PROTO_GOSSIP_DEAD, .inc = m->g_inc };
		snprintf(ev.node_id, sizeof(ev.node_id), "%s", m->node_id);
		gossip_queue_push(&p->gq, &ev);
		p->lv.declared_dead++;
	}
	pthread_mutex_unlock(&p->lock);
	peers_mark_down(p, m, "suspected for peer_timeout and nobody refuted it");
}

/* Declares dead every member whose suspicion (ours or one we heard of) ran out. */
void peers_check_suspects(struct peers *p)
{
	struct member *dead[64];
	unsigned n = 0;
	uint64_t now = mono_ns(), timeout = ms_ns(p->cfg->peer_timeout_ms);
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->members.n && n < 64; i++) {
		struct member *m = p->members.v[i];
		if (member_gossiping(m) && member_suspect_expired(m, now, timeout)) {
			member_get(m);
			dead[n++] = m;
		}
	}
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		peers_declare_dead(p, dead[i]);
		pthread_mutex_lock(&p->lock);
		member_put(dead[i]);
		pthread_mutex_unlock(&p->lock);
	}
}
