#include "net/plan.h"

#include <errno.h>
#include <string.h>

#include "net/place.h"

static bool planned(const struct plan *p, unsigned member)
{
	for (unsigned i = 0; i < p->n; i++)
		if (p->step[i].member == member)
			return true;
	return false;
}

static void add_step(struct plan *p, unsigned member, bool fill)
{
	if (p->n < PLAN_MAX_STEPS)
		p->step[p->n++] = (struct plan_step){ .member = member, .fill = fill };
}

static void add_hints(const struct plan_input *in, const unsigned *order, struct plan *p)
{
	unsigned hints = 0;
	for (unsigned pos = 0; pos < in->n && in->holds && hints < PLAN_MAX_HINTS; pos++) {
		unsigned m = order[pos];
		if (m != in->self && in->holds[m]) {
			add_step(p, m, false);
			hints++;
		}
	}
}

/*
 * Asks, without fill, up to PLAN_PROBES members ranked after @pos and not planned yet: the
 * first of them always (it owned the chunk before we joined, if only we joined), the others
 * only when they ran well before us (in->older).
 */
static void add_probes(const struct plan_input *in, const unsigned *order, unsigned pos,
		       struct plan *p)
{
	unsigned probes = 0;
	for (unsigned k = pos; k < in->n && probes < PLAN_PROBES; k++)
		if (order[k] != in->self && !planned(p, order[k]) &&
		    (!in->older || probes == 0 || in->older[order[k]])) {
			add_step(p, order[k], false);
			probes++;
		}
}

int plan_make(const struct plan_input *in, unsigned *order, struct plan *out)
{
	memset(out, 0, sizeof(*out));
	if (in->n < 2) {
		out->self_owner = true;
		return 0;
	}
	if (in->self >= in->n)
		return -EINVAL;
	unsigned owners = in->replicas ? in->replicas : 1;
	if (owners > PLAN_MAX_REPLICAS)
		owners = PLAN_MAX_REPLICAS;
	if (!in->ranked)
		place_rank(in->file_key, in->chunk, in->hashes, in->n, order);
	add_hints(in, order, out);
	if (in->probe_only) {
		add_probes(in, order, 0, out);
		out->self_owner = true;
		return 0;
	}
	unsigned walked = 0;
	for (unsigned pos = 0; pos < in->n && walked < owners + PLAN_EXTRA; pos++) {
		unsigned m = order[pos];
		bool owner = pos < owners + walked;
		if (m == in->self) {
			if (!owner)
				continue;
			add_probes(in, order, pos + 1, out);
			out->self_owner = true;
			return 0;
		}
		if (planned(out, m)) {
			/* A hinted holder said no already; as an owner it still may fill. */
			if (!owner)
				continue;
		}
		add_step(out, m, owner);
		walked++;
	}
	return 0;
}
