/*
 * The fetch plan: on a miss, whom this node asks for a chunk, in which order, and who reads
 * it from storage. A pure function of its input (no I/O, no locks, no allocation), so every
 * policy question has one place to be answered and one Check suite (test/check_plan.c).
 *
 * Input: the live members for placement (this node among them), ranked for the chunk by
 * the balanced ownership map (net/owners.h) or place_rank(); `replicas` owners; optional holder hints (members known to hold the chunk).
 * Output: steps, tried one after another until one delivers; each says whom to ask and
 * whether that node should fill the chunk from its storage when it does not hold it (only
 * an owner, as the plan reckons ownership after the failures before it, is asked to fill).
 * When every step fails, this node reads the backing itself.
 *
 *   1. Hinted holders, in rank order, without fill (at most PLAN_MAX_HINTS).
 *   2. Members in rank order. A member at rank r is asked with fill when r < replicas + f,
 *      f = owner-walk steps before it (each step is tried only when all before it failed, so
 *      f failed owners pass ownership down the ranking).
 *   3. When this node is at such an owner rank itself, the plan asks without fill the
 *      next-ranked member, then up to PLAN_PROBES - 1 more of the next-ranked members that ran
 *      well before this node started (plan_input.older; one of them owned the chunk before
 *      we and other new nodes joined, if the cluster was warm: several nodes joining at
 *      once take the top ranks from the old owner) and ends with self_owner set: we fill
 *      from storage only when no live node that placement ranks near the top holds it.
 *   4. At most replicas + PLAN_EXTRA owner-walk steps.
 *   5. probe_only (we fill the chunk for a peer that asked us as its owner): no step asks
 *      for a fill, since a fill could wait on other fills (net/peer.h). The plan is the
 *      hints and the first PLAN_PROBES members in rank order, then self_owner.
 * With fewer than two members the plan is empty and self_owner is set.
 *
 * The swarm (net/swarm.h) sits on top of the plan, not in it: an owner asked with fill (a
 * step with fill, to a peer whose HELLO says SWARM) may answer REDIRECT naming an earlier
 * requester of the chunk; the step then asks that holder with GET WAIT and, when it fails,
 * the same owner again with NOREDIRECT (net/peer.c run_step()). Steps without fill (hints,
 * probes) are never redirected, so rule 5 still holds: a fill for a peer waits on no fill.
 */
#ifndef MOWS_NET_PLAN_H
#define MOWS_NET_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#define PLAN_EXTRA 3
#define PLAN_PROBES 8
#define PLAN_MAX_HINTS 2
#define PLAN_MAX_REPLICAS 8
#define PLAN_MAX_STEPS (PLAN_MAX_HINTS + PLAN_MAX_REPLICAS + PLAN_EXTRA + PLAN_PROBES)

struct plan_input {
	uint64_t file_key;
	uint64_t chunk;
	const uint64_t *hashes;   /* node hashes of the live members, this node included */
	unsigned n;
	unsigned self;            /* index of this node in @hashes */
	unsigned replicas;        /* owners per chunk (clamped to PLAN_MAX_REPLICAS) */
	const bool *holds;        /* NULL, or n flags: member i is known to hold the chunk */
	bool probe_only;          /* never ask a member to fill (rule 5) */
	const bool *older;        /* NULL, or n flags: member i ran well before this node
				     started; only such members are probed (rules 3 and 5) */
	bool ranked;              /* @order holds the ranking already (net/owners.h), else
				     plan_make() ranks by place_rank() */
};

struct plan_step {
	unsigned member;          /* index into plan_input.hashes, never self */
	bool fill;                /* ask it to read storage when it does not hold the chunk */
};

struct plan {
	struct plan_step step[PLAN_MAX_STEPS];
	unsigned n;
	bool self_owner;          /* this node is an owner: storage is its to read */
};

/*
 * Makes the plan for @in into @out. @order is in->n entries: the chunk's ranking when
 * in->ranked, else scratch space that plan_make() fills with place_rank(). Returns 0, or
 * -EINVAL when self is out of range. Thread-safe.
 */
int plan_make(const struct plan_input *in, unsigned *order, struct plan *out);

#endif
