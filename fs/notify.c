#include "fs/notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/mows.h"
#include "fs/supervisor.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define RETRY_MS 100             /* between probes until the first one succeeds */
#define STATUS_MS 2000           /* between probes without a watchdog */

struct notify {
	struct mows *m;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;               /* protected by lock */
	uint64_t watchdog_us;    /* 0: no watchdog */
};

/*
 * Under a supervisor the unit's main process is the supervisor: messages go on its behalf
 * (root may name another pid), so NotifyAccess=main accepts them from any serving process.
 */
static pid_t on_behalf_of(const struct mows *m)
{
	return m->super ? getppid() : 0;
}

/* Whether the mount answered a statfs() as a FUSE file system. */
static bool probe(struct notify *n)
{
	struct statfs sf;
	if (statfs(n->m->mountpoint, &sf) < 0)
		return false;
	return sf.f_type == FUSE_SUPER_MAGIC;
}

static void send_status(struct notify *n, bool ready)
{
	struct cache_stats st;
	char used[32], max[32], read[32];
	cache_get_stats(n->m->cache, &st);
	uint64_t looks = st.hits + st.misses;
	sd_pid_notifyf(on_behalf_of(n->m), 0, "%sSTATUS=serving %s: %s of %s cached, hit ratio %.1f%%, %s read",
		   ready ? "READY=1\n" : "", n->m->mountpoint,
		   config_format_size(st.used_memory, used, sizeof(used)),
		   config_format_size(st.max_memory, max, sizeof(max)),
		   looks ? 100.0 * (double)st.hits / (double)looks : 0.0,
		   config_format_size(st.bytes_read, read, sizeof(read)));
}

/* Sleeps @ms or until stopped; returns false on stop. */
static bool nap(struct notify *n, uint64_t ms)
{
	struct deadline dl = deadline_in_ms((int64_t)ms);
	pthread_mutex_lock(&n->lock);
	while (!n->stop && deadline_cond_wait(&n->cond, &n->lock, &dl) == 0)
		;
	bool go_on = !n->stop;
	pthread_mutex_unlock(&n->lock);
	return go_on;
}

static void *notify_main(void *arg)
{
	struct notify *n = arg;
	bool ready = false, failing = false;
	uint64_t period_ms = n->watchdog_us ? n->watchdog_us / 2000 : STATUS_MS;
	if (!period_ms)
		period_ms = 1;
	do {
		if (!probe(n)) {
			if (ready && !failing)
				log_warn("%s does not answer statfs: no watchdog ping until it does",
					 n->m->mountpoint);
			failing = true;
			continue;
		}
		failing = false;
		if (n->watchdog_us)
			sd_pid_notify(on_behalf_of(n->m), 0, "WATCHDOG=1");
		send_status(n, !ready);
		if (!ready)
			log_info("%s serves: told systemd READY=1", n->m->mountpoint);
		ready = true;
	} while (nap(n, ready ? period_ms : RETRY_MS));
	return NULL;
}

int notify_start(struct mows *m)
{
	if (!getenv("NOTIFY_SOCKET"))
		return 0;
	struct notify *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->m = m;
	uint64_t us = 0;
	if (sd_watchdog_enabled(0, &us) > 0)
		n->watchdog_us = us;
	pthread_mutex_init(&n->lock, NULL);
	deadline_cond_init(&n->cond);
	int rc = pthread_create(&n->thread, NULL, notify_main, n);
	if (rc) {
		free(n);
		return -rc;
	}
	m->notify = n;
	return 0;
}

void notify_stop(struct mows *m)
{
	struct notify *n = m->notify;
	if (!n)
		return;
	if (!(m->super && super_child_handover())) /* a handover: the service goes on */
		sd_pid_notify(on_behalf_of(m), 0, "STOPPING=1");
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	pthread_join(n->thread, NULL);
	free(n);
	m->notify = NULL;
}
