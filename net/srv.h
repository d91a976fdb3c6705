/*
 * DNS SRV lookups for peer names (RFC 2782). A `peers` entry (or peers_file line) without a
 * port is a SRV name, as a Kubernetes headless service publishes one per named port
 * (_mows._tcp.mows.default.svc.cluster.local): every target and port in the answer becomes
 * a member, each target then resolved to its addresses as a HOST:PORT entry would be.
 * Priorities and weights are kept but not used: every target is a member alike.
 *
 * The lookup goes through libresolv (res_nquery, with a resolver state of its own, so it is
 * safe on any thread) and the answer is parsed with ns_initparse/ns_parserr; srv_parse() is
 * the parsing alone, pure, so a canned message can test it (test/check_srv.c).
 */
#ifndef MOWS_NET_SRV_H
#define MOWS_NET_SRV_H

#include <stddef.h>
#include <stdint.h>

#define SRV_NAME_MAX 256

struct srv_target {
	uint16_t priority, weight, port;
	char target[SRV_NAME_MAX];    /* no trailing dot */
};

/*
 * Parses the DNS answer @msg (@len bytes) and stores up to @max of its SRV records (answer
 * section, class IN) in @out, in answer order, their count in *@n. Other records are skipped,
 * and so is a SRV record whose target is "." (RFC 2782: no service there) or whose port is 0.
 * Returns 0, -ENOENT when the answer has no usable SRV record, or -EBADMSG for a message that
 * does not parse (truncated, a bad name, a SRV record shorter than its fixed part). Never
 * reads outside [msg, msg + len). Any thread.
 */
int srv_parse(const uint8_t *msg, size_t len, struct srv_target *out, unsigned max,
	      unsigned *n);

/*
 * Looks @name up (type SRV, class IN) and parses the answer as srv_parse() does. Returns 0,
 * -ENOENT (no such name, or no SRV record), -EAGAIN (the resolver failed or timed out: try
 * again later, keep what was known), or -EBADMSG. Blocks for the resolver's own timeouts
 * (resolv.conf). Any thread.
 */
int srv_resolve(const char *name, struct srv_target *out, unsigned max, unsigned *n);

#endif
