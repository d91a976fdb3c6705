/* SRV lookups for peer names: see srv.h. */
#include "net/srv.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#define SRV_FIXED 6               /* priority, weight, port */
#define ANSWER_MAX 65536

/* One SRV record's data into @out. Returns 0, 1 (skip it) or -EBADMSG. */
static int srv_rdata(const ns_msg *h, const ns_rr *rr, struct srv_target *out)
{
	const uint8_t *rd = ns_rr_rdata(*rr);
	if (ns_rr_rdlen(*rr) < SRV_FIXED + 1)
		return -EBADMSG;
	out->priority = ns_get16(rd);
	out->weight = ns_get16(rd + 2);
	out->port = ns_get16(rd + 4);
	int k = ns_name_uncompress(ns_msg_base(*h), ns_msg_end(*h), rd + SRV_FIXED, out->target,
				   sizeof(out->target));
	if (k < 0 || k != ns_rr_rdlen(*rr) - SRV_FIXED)
		return -EBADMSG;
	size_t tl = strlen(out->target);
	if (tl && out->target[tl - 1] == '.')
		out->target[--tl] = '\0';
	return !tl || !strcmp(out->target, ".") || !out->port ? 1 : 0;
}

int srv_parse(const uint8_t *msg, size_t len, struct srv_target *out, unsigned max,
	      unsigned *n)
{
	ns_msg h;
	ns_rr rr;
	*n = 0;
	if (len > ANSWER_MAX || ns_initparse(msg, (int)len, &h) < 0)
		return -EBADMSG;
	for (int i = 0; i < ns_msg_count(h, ns_s_an); i++) {
		if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
			return -EBADMSG;
		if (ns_rr_type(rr) != ns_t_srv || ns_rr_class(rr) != ns_c_in)
			continue;
		struct srv_target t;
		int rc = srv_rdata(&h, &rr, &t);
		if (rc < 0)
			return rc;
		if (rc == 0 && *n < max)
			out[(*n)++] = t;
	}
	return *n ? 0 : -ENOENT;
}

int srv_resolve(const char *name, struct srv_target *out, unsigned max, unsigned *n)
{
	struct __res_state st;
	*n = 0;
	uint8_t *answer = malloc(ANSWER_MAX);
	if (!answer)
		return -EAGAIN;
	memset(&st, 0, sizeof(st));
	if (res_ninit(&st)) {
		free(answer);
		return -EAGAIN;
	}
	int len = res_nquery(&st, name, ns_c_in, ns_t_srv, answer, ANSWER_MAX);
	int herr = st.res_h_errno;
	res_nclose(&st);
	int rc = len < 0 ? (herr == HOST_NOT_FOUND || herr == NO_DATA ? -ENOENT : -EAGAIN) :
		 srv_parse(answer, len > ANSWER_MAX ? ANSWER_MAX : (size_t)len, out, max, n);
	free(answer);
	return rc;
}
