/*
 * mows-fuse: mounts a read-only, cached mirror of a model directory.
 *
 *   mows-fuse [-c FILE] [--backing DIR] [-f] [-o FUSE_OPTS] [--KEY=VALUE...] MOUNTPOINT
 *   mows-fuse --check-config [-c FILE] [--KEY=VALUE...] [MOUNTPOINT]
 *   mows-fuse --list-keys
 *
 * Without --backing it mounts over MOUNTPOINT itself: the directory is opened before the
 * mount hides it and every backing access goes through that descriptor.
 * Exit status: 0 after a clean unmount or SIGTERM, 1 when mounting or running fails, 2 for
 * bad usage or configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cache/backing.h"
#include "cache/meta.h"
#include "common/hash.h"
#include "common/log.h"
#include "fs/metrics.h"
#include "fs/mows.h"
#include "fs/notify.h"
#include "fs/supervisor.h"
#include "net/auth.h"
#include "net/meta_share.h"
#include "net/peer.h"
#include "net/proto.h"

#define EXIT_USAGE 2
#define MAX_OVERRIDES 64

struct options {
	const char *config_file;
	const char *mountpoint;
	const char *keys[MAX_OVERRIDES], *values[MAX_OVERRIDES];
	unsigned n;
	char fuse_opts[1024];
	bool foreground;
	bool check_only; /* --check-config: validate, print, exit; never mount */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mows-fuse [-c FILE] [--backing DIR] [-f] [-o FUSE_OPTIONS] [--KEY=VALUE...] "
		"MOUNTPOINT\n"
		"  -c, --config FILE   read settings from FILE (see mows.conf.example)\n"
		"  --backing DIR       mirror DIR (default: MOUNTPOINT itself, mounted over)\n"
		"  -f, --foreground    stay in the foreground and log to stderr\n"
		"  -o OPTIONS          extra FUSE mount options\n"
		"  --KEY=VALUE         any mows.conf key, overriding the file "
		"(e.g. --max-memory=8G)\n"
		"  --check-config      check the settings as start-up would, print them, exit 0 "
		"(OK) or 2;\n"
		"                      never mounts (MOUNTPOINT optional)\n"
		"  --list-keys         print every mows.conf key with its default, tab-separated\n"
		"  -h, --help          this help\n");
}

static void list_keys(FILE *out)
{
	struct config_key_info k;
	for (size_t i = 0; config_key_at(i, &k); i++)
		fprintf(out, "%s\t%s\t%s\n", k.name, k.def, k.desc);
}

static int add_fuse_opts(struct options *o, const char *opts)
{
	size_t used = strlen(o->fuse_opts);
	int n = snprintf(o->fuse_opts + used, sizeof(o->fuse_opts) - used, ",%s", opts);
	return n < 0 || (size_t)n >= sizeof(o->fuse_opts) - used ? -E2BIG : 0;
}

/* Returns 0, or EXIT_USAGE after printing what is wrong. */
static int parse_args(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "-f") || !strcmp(a, "--foreground")) {
			o->foreground = true;
		} else if (!strcmp(a, "--check-config")) {
			o->check_only = true;
		} else if (!strcmp(a, "--list-keys")) {
			list_keys(stdout);
			exit(0);
		} else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && next) {
			o->config_file = argv[++i];
		} else if (!strcmp(a, "-o") && next) {
			if (add_fuse_opts(o, argv[++i]))
				goto too_long;
		} else if (!strncmp(a, "--", 2) && a[2]) {
			if (o->n == MAX_OVERRIDES)
				goto too_long;
			const char *eq = strchr(a, '=');
			char *key = strndup(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
			if (!config_is_key(key) || (!eq && !next)) {
				fprintf(stderr, "mows-fuse: unknown option '%s'%s; see --help\n", a,
					config_is_key(key) ? " without a value" : "");
				return EXIT_USAGE;
			}
			o->keys[o->n] = key;
			o->values[o->n++] = eq ? eq + 1 : argv[++i];
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "mows-fuse: unknown or incomplete option '%s'; see --help\n",
				a);
			return EXIT_USAGE;
		} else if (!o->mountpoint) {
			o->mountpoint = a;
		} else {
			fprintf(stderr, "mows-fuse: one mountpoint expected, got '%s' and '%s'\n",
				o->mountpoint, a);
			return EXIT_USAGE;
		}
	}
	if (!o->mountpoint && !o->check_only) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return 0;
too_long:
	fprintf(stderr, "mows-fuse: too many or too long options\n");
	return EXIT_USAGE;
}

static int fail(const char *msg)
{
	fprintf(stderr, "mows-fuse: %s\n", msg);
	return EXIT_USAGE;
}

/*
 * Where chunks live. Files on a huge-page tmpfs (cache/store.h) make passthrough possible
 * and take memory as chunks fill; RDMA serves from them too (a memory region per chunk,
 * net/rdma.h). The slab stays only for hugetlb pages (hugepages = on: hugetlbfs cannot back
 * passthrough) or when asked for (cache_store = slab). auto picks files otherwise.
 */
static int choose_store(struct mows *m, char *err, size_t errlen)
{
	struct mows_config *c = &m->cfg;
	(void)err;
	(void)errlen;
	if (c->cache_store == STORE_AUTO && c->hugepages == HUGEPAGES_ON) {
		log_info("cache: in the slab (hugepages = on)");
		c->cache_store = STORE_SLAB;
	}
	if (c->cache_store != STORE_SLAB && !c->cache_dir[0] && m->socket_path[0]) {
		/* /run/mows/<escaped mountpoint>.sock -> .cache */
		snprintf(c->cache_dir, sizeof(c->cache_dir), "%s", m->socket_path);
		char *dot = strrchr(c->cache_dir, '.');
		if (dot && !strcmp(dot, ".sock"))
			strcpy(dot, ".cache");
		else
			strncat(c->cache_dir, ".cache", sizeof(c->cache_dir) - strlen(c->cache_dir) - 1);
	}
	return 0;
}

/* Settings from the file, then the command line, then the paths they imply. */
static int configure(struct mows *m, const struct options *o)
{
	char err[PATH_MAX + 512];
	config_defaults(&m->cfg);
	if (o->config_file && config_load(&m->cfg, o->config_file, err, sizeof(err)))
		return fail(err);
	for (unsigned i = 0; i < o->n; i++)
		if (config_set(&m->cfg, o->keys[i], o->values[i], "command line", err, sizeof(err)))
			return fail(err);
	if (o->mountpoint && !realpath(o->mountpoint, m->mountpoint)) {
		snprintf(err, sizeof(err), "mountpoint '%s': %s (create the directory first)",
			 o->mountpoint, strerror(errno));
		return fail(err);
	}
	if (config_validate(&m->cfg, err, sizeof(err)))
		return fail(err);
	const char *b = m->cfg.backing[0] ? m->cfg.backing : m->mountpoint;
	if (b[0] && !realpath(b, m->backing)) {
		snprintf(err, sizeof(err), "backing '%s': %s; set backing to the model directory", b,
			 strerror(errno));
		return fail(err);
	}
	if (m->cfg.control_socket[0])
		snprintf(m->socket_path, sizeof(m->socket_path), "%s", m->cfg.control_socket);
	else if (m->mountpoint[0])
		config_default_socket(m->mountpoint, m->socket_path, sizeof(m->socket_path));
	if (choose_store(m, err, sizeof(err)))
		return fail(err);
	log_set_level(m->cfg.log_level);
	m->foreground = o->foreground;
	return 0;
}

static void fuse_log_to_mows(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_msg((int)level <= LOG_ERR ? LOG_ERR : (int)level, "fuse: %s", line);
}

/* Raises the mount's readahead so mmap readers fetch 1 MiB at a time, not 128 KiB. */
static void *readahead_main(void *arg)
{
	struct mows *m = arg;
	struct stat st;
	/* stat() through the mount returns only once the kernel has our INIT reply, which
	 * would otherwise lower the readahead again. */
	if (stat(m->mountpoint, &st) < 0) {
		log_warn("cannot stat %s to set its readahead: %s", m->mountpoint,
			 strerror(errno));
		return NULL;
	}
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
		 minor(st.st_dev));
	FILE *fp = fopen(path, "w");
	if (!fp || fprintf(fp, "%u\n", m->cfg.readahead_kb) < 0 || fclose(fp) != 0) {
		log_warn("%s: cannot set readahead to %u KiB: %s; mmap reads will be slower", path,
			 m->cfg.readahead_kb, strerror(errno));
		return NULL;
	}
	log_info("readahead of %s set to %u KiB", m->mountpoint, m->cfg.readahead_kb);
	return NULL;
}

static void start_readahead(struct mows *m)
{
	pthread_t t;
	pthread_attr_t attr;
	if (!m->cfg.readahead_kb)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, readahead_main, m))
		log_warn("cannot start the readahead thread; mmap reads will be slower");
	pthread_attr_destroy(&attr);
}

/* ---- background prefetch (prefetch = on-mount | idle) ---- */

static bool prefetch_go_on(void *arg, uint64_t done, uint64_t total)
{
	(void)done, (void)total;
	return !atomic_load(&((struct mows *)arg)->prefetch_stopping);
}

/* For prefetch = idle: returns once no reader has read for a second (false on stop). */
static bool wait_idle(struct mows *m)
{
	struct cache_stats a, b;
	cache_get_stats(m->cache, &a);
	for (;;) {
		for (int i = 0; i < 10; i++) {
			if (atomic_load(&m->prefetch_stopping))
				return false;
			usleep(100000);
		}
		cache_get_stats(m->cache, &b);
		if (b.bytes_read == a.bytes_read)
			return true;
		a = b;
	}
}

static int prefetch_one(void *arg, const char *relpath, const struct stat *st)
{
	struct mows *m = arg;
	if (m->prefetched + (uint64_t)st->st_size > m->cfg.max_memory) {
		log_info("prefetch: stopping before %s: the rest would not fit in max_memory",
			 relpath);
		return -ENOSPC;
	}
	if (m->cfg.prefetch == PREFETCH_IDLE && !wait_idle(m))
		return -ECANCELED;
	struct cache_file *f = mows_version_at(m, relpath);
	if (!f)
		return 0; /* gone or changed since the walk saw it: the next file */
	int rc = cache_file_prefetch(m->cache, f, prefetch_go_on, m);
	m->prefetched += cache_file_size(f);
	cache_file_put(m->cache, f);
	return rc == -ECANCELED ? rc : 0;
}

static void *prefetch_main(void *arg)
{
	struct mows *m = arg;
	uint64_t t0 = mono_ns();
	int rc = mows_walk(m, "", prefetch_one, m);
	if (rc != -ECANCELED)
		log_info("prefetch: %llu MiB of the mount loaded in %.1f s",
			 (unsigned long long)(m->prefetched >> 20), (double)(mono_ns() - t0) / 1e9);
	return NULL;
}

static int prefetch_start(struct mows *m)
{
	if (m->cfg.prefetch == PREFETCH_OFF)
		return 0;
	int rc = pthread_create(&m->prefetch_thread, NULL, prefetch_main, m);
	m->prefetching = rc == 0;
	return -rc;
}

static void prefetch_stop(struct mows *m)
{
	if (!m->prefetching)
		return;
	atomic_store(&m->prefetch_stopping, true);
	pthread_join(m->prefetch_thread, NULL);
}

/*
 * The checks of files named by the settings that need no resources: start-up runs them
 * first, --check-config runs them alone. Returns 0 or EXIT_USAGE after printing why.
 */
static int preflight(const struct mows *m)
{
	char err[PATH_MAX + 512];
	if (m->backing[0]) {
		int fd = open(m->backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, sizeof(err), "backing '%s': %s; set backing to the model "
				 "directory", m->backing, strerror(errno));
			return fail(err);
		}
		close(fd);
	}
	if (m->cfg.listen[0] && !m->cfg.insecure) {
		uint8_t *secret;
		size_t len;
		if (auth_load_secret(m->cfg.secret_file, &secret, &len, err, sizeof(err)))
			return fail(err);
		auth_secret_free(secret, len);
	}
	return 0;
}

/* --check-config: the start-up checks, then the effective settings on stdout. */
static int check_config(const struct mows *m)
{
	struct config_key_info k;
	char val[CONFIG_PATH_MAX];
	struct rlimit rl;
	int rc = preflight(m);
	if (rc)
		return rc;
	printf("# mows-fuse: configuration OK\n");
	printf("# mountpoint: %s\n", m->mountpoint[0] ? m->mountpoint : "(not given)");
	printf("# backing directory: %s\n", m->backing[0] ? m->backing : "(the mountpoint)");
	printf("# control socket: %s\n", m->socket_path[0] ? m->socket_path : "(from mountpoint)");
	for (size_t i = 0; config_key_at(i, &k); i++)
		if (!config_format_value(&m->cfg, k.name, val, sizeof(val)))
			printf("%s = %s\n", k.name, val);
	/* Not an error: without it RDMA falls back to TCP, which still works. */
	if (m->cfg.listen[0] && m->cfg.transport != TRANSPORT_TCP &&
	    getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < m->cfg.max_memory)
		printf("# note: memlock limit %llu KiB is below max_memory: RDMA would fall back to "
		       "TCP; run with ulimit -l unlimited (LimitMEMLOCK=infinity)\n",
		       (unsigned long long)(rl.rlim_cur >> 10));
	return 0;
}

/*
 * Peer host op: the model's regular files from the metadata snapshot, for balanced
 * ownership (net/owners.h). The generation is a hash of the file keys, so it changes
 * exactly when a file appears, goes or changes (a key covers path, size and mtime).
 */
static int list_model_files(void *ctx, struct place_file **files, size_t *n, uint64_t *gen)
{
	struct cache_meta *snap = cache_tree_meta(ctx);
	if (!snap)
		return -ENOENT;
	size_t count = cache_meta_count(snap), k = 0;
	struct place_file *v = malloc((count ? count : 1) * sizeof(*v));
	uint64_t g = 0;
	for (uint64_t i = 0; v && i < count; i++) {
		const struct stat *st = cache_meta_stat(snap, i);
		char *rel = S_ISREG(st->st_mode) ? cache_meta_relpath(snap, i) : NULL;
		if (!rel)
			continue;
		v[k] = (struct place_file){ .size = (uint64_t)st->st_size,
					   .key = proto_file_key(rel, (uint64_t)st->st_size,
								 mows_mtime_ns(st)) };
		g += fmix64(v[k++].key); /* order-independent */
		free(rel);
	}
	cache_meta_put(snap);
	if (!v)
		return -ENOMEM;
	*files = v;
	*n = k;
	*gen = g;
	return 0;
}

/* Warm restart: opens the version of a file the last daemon kept (cache_adopt()). */
static void adopt_open(void *ctx, const char *relpath)
{
	struct mows *m = ctx;
	cache_file_put(m->cache, mows_version_at(m, relpath));
}

/* Everything that can fail for a reason the user should fix, before mounting. */
static int prepare(struct mows *m)
{
	char err[PATH_MAX + 512];
	if (preflight(m))
		return EXIT_USAGE;
	m->cache = cache_new(&m->cfg, err, sizeof(err));
	if (!m->cache)
		return fail(err);
	if (mows_pt_detect(m, err, sizeof(err)))
		return fail(err);
	struct cache_tree_config tc = {
		.path = m->backing,
		.crc32_file = m->cfg.crc32_file,
		.verify = m->cfg.verify >= VERIFY_FILE,
		.random_access = m->cfg.listen[0] != '\0',
		.file_key = proto_file_key,
	};
	m->tree = cache_tree_new(&tc, m->cache, err, sizeof(err));
	if (!m->tree)
		return fail(err);
	if (m->cfg.listen[0]) {
		struct peer_host_ops host = { .open_key = cache_tree_open_key,
					      .list_files = list_model_files, .ctx = m->tree };
		m->peers = peers_new(&m->cfg, m->cache, &host, err, sizeof(err));
		if (!m->peers)
			return fail(err);
		cache_add_source(m->cache, &peers_source, m->peers); /* before the backing */
		if (m->cfg.metadata_from_peers &&
		    !(m->mshare = meta_share_new(m->peers, m->tree, &m->cfg)))
			return fail("out of memory");
	}
	cache_add_source(m->cache, &cache_backing_source, m->tree);
	cache_set_events(m->cache, &(struct cache_events){ .invalidate = mows_invalidate,
							   .ctx = m });
	if (mows_inodes_init(m) || mows_handles_init(m))
		return fail("out of memory");
	int mrc = m->mshare ? 0 : cache_tree_meta_load(m->tree); /* with peers: in serve() */
	if (mrc) {
		snprintf(err, sizeof(err), "backing '%s': cannot list it: %s", m->backing,
			 strerror(-mrc));
		return fail(err);
	}
	if (m->cfg.warm_restart && !cache_has_store(m->cache))
		log_warn("warm_restart: needs the cache in files (cache_store); starting cold");
	else if (m->cfg.warm_restart)
		cache_adopt(m->cache, adopt_open, m);
	m->control = control_new(m, m->socket_path, err, sizeof(err));
	if (!m->control)
		return fail(err);
	if (m->cfg.metrics_listen[0] &&
	    !(m->metrics = metrics_new(m, m->cfg.metrics_listen, err, sizeof(err)))) {
		control_free(m->control); /* removes the socket file: nothing will serve it */
		m->control = NULL;
		return fail(err);
	}
	return 0;
}

/* Escapes ',' and '\\' for libfuse's -o parser, so a path cannot add mount options. */
static void escape_opt(const char *in, char *out, size_t len)
{
	size_t n = 0;
	for (; *in && n + 2 < len; in++) {
		if (*in == ',' || *in == '\\')
			out[n++] = '\\';
		out[n++] = *in;
	}
	out[n] = '\0';
}

static struct fuse_session *new_session(struct mows *m, const struct options *o)
{
	char opts[3 * PATH_MAX + 2048], fsname[2 * PATH_MAX + 1];
	escape_opt(m->backing, fsname, sizeof(fsname));
	snprintf(opts, sizeof(opts), "ro,default_permissions,subtype=mows,fsname=%s%s%s",
		 fsname, geteuid() == 0 ? ",allow_other" : "", o->fuse_opts);
	char *argv[] = { "mows-fuse", "-o", opts, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se = fuse_session_new(&args, &mows_ops, sizeof(mows_ops), m);
	fuse_opt_free_args(&args);
	return se;
}

/*
 * SIGTERM, SIGINT and SIGHUP end the FUSE loop (libfuse's handler), but the loop then waits
 * for the requests in progress, and a read waiting on a stalled fill held a stop for its
 * fill_timeout (79 s with a backing that stalled). Our handler runs libfuse's, then wakes a
 * thread that fails those waits (cache_abort_waits), so the loop ends at once.
 */
static const int stop_sigs[3] = { SIGTERM, SIGINT, SIGHUP };
static struct sigaction stop_prev[3];
static bool stop_hooked[3];
static sem_t stop_sem;
static pthread_t stop_thread;
static bool stop_started;

static void on_stop_signal(int sig)
{
	int saved = errno;
	for (int k = 0; k < 3; k++)
		if (stop_sigs[k] == sig && stop_prev[k].sa_handler != SIG_DFL)
			stop_prev[k].sa_handler(sig);
	sem_post(&stop_sem);
	errno = saved;
}

static void *stop_main(void *arg)
{
	struct mows *m = arg;
	while (sem_wait(&stop_sem) && errno == EINTR)
		;
	cache_abort_waits(m->cache); /* at a stop without a signal too: nothing waits then */
	return NULL;
}

/* After fuse_set_signal_handlers(): wraps its handlers. Returns 0, or -1 with errno set. */
static int stop_hook_start(struct mows *m)
{
	if (sem_init(&stop_sem, 0, 0))
		return -1;
	int rc = pthread_create(&stop_thread, NULL, stop_main, m);
	if (rc) {
		errno = rc;
		return -1;
	}
	stop_started = true;
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigemptyset(&sa.sa_mask);
	for (int k = 0; k < 3; k++) {
		sigaction(stop_sigs[k], NULL, &stop_prev[k]);
		if (stop_prev[k].sa_handler == SIG_IGN || (stop_prev[k].sa_flags & SA_SIGINFO))
			continue; /* ignored by whoever started us, or not libfuse's: leave it */
		stop_hooked[k] = sigaction(stop_sigs[k], &sa, NULL) == 0;
	}
	return 0;
}

/* Before fuse_remove_signal_handlers(): gives libfuse its handlers back, ends the thread. */
static void stop_hook_end(void)
{
	if (!stop_started)
		return;
	for (int k = 0; k < 3; k++)
		if (stop_hooked[k])
			sigaction(stop_sigs[k], &stop_prev[k], NULL);
	sem_post(&stop_sem);
	pthread_join(stop_thread, NULL);
}

static int serve(struct mows *m)
{
	if (cache_start(m->cache) || stop_hook_start(m) || mows_inval_start(m) ||
	    control_start(m->control) ||
	    (m->peers && peers_start(m->peers))) {
		log_err("cannot start threads: %s", strerror(errno));
		return 1;
	}
	int mrc = m->mshare ? meta_share_first(m->mshare) : 0; /* before the FUSE session serves */
	if (mrc) {
		log_err("backing '%s': cannot list it: %s, and no peer shared its snapshot",
			m->backing, strerror(-mrc));
		return 1;
	}
	if (m->super) /* the opens a previous process left, once the snapshot is there */
		mows_opens_adopt_all(m);
	if (prefetch_start(m) || (m->metrics && metrics_start(m->metrics)) || notify_start(m)) {
		log_err("cannot start threads: %s", strerror(errno));
		return 1;
	}
	start_readahead(m);
	log_info("serving %s from %s (max_memory %llu MiB, chunk %llu KiB, verify %s)",
		 m->mountpoint, m->backing, (unsigned long long)(m->cfg.max_memory >> 20),
		 (unsigned long long)(m->cfg.chunk_size >> 10),
		 config_verify_name(m->cfg.verify));
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (!lc)
		return 1;
	fuse_loop_cfg_set_max_threads(lc, 16);
	fuse_loop_cfg_set_idle_threads(lc, 4);
	if (m->super)
		super_child_ready(m->super);
	int rc = fuse_session_loop_mt(m->se, lc);
	fuse_loop_cfg_destroy(lc);
	/* libfuse reports the signal that ended the loop as a positive number: a clean stop. */
	if (rc > 0)
		log_info("stopping on signal %d", rc);
	else if (rc < 0)
		log_err("FUSE session ended with an error: %s", strerror(-rc));
	return rc < 0 ? 1 : 0;
}

/* A supervised child in daemon mode: what fuse_daemonize() does, but the fork. */
static void child_quiet(void)
{
	int fd = open("/dev/null", O_RDWR);
	if (chdir("/") < 0 || fd < 0)
		log_warn("cannot leave the working directory or open /dev/null: %s",
			 strerror(errno));
	if (fd >= 0) {
		dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

int main(int argc, char **argv)
{
	static struct mows m;
	struct options o = { 0 };
	bool journal = log_use_journal("mows-fuse"); /* systemd made stderr the journal */
	int rc = parse_args(argc, argv, &o);
	if (rc || (rc = configure(&m, &o)))
		return rc;
	if (o.check_only)
		return check_config(&m);
	char err[512];
	if (super_is_child() && !o.foreground && !journal)
		log_use_syslog("mows-fuse"); /* our stderr is the supervisor's /dev/null */
	if (super_child_attach(&m, err, sizeof(err))) {
		log_err("%s", err);
		return EXIT_USAGE;
	}
	if (!m.super && m.cfg.supervise)
		return super_run(&m, argv);
	if (m.super && !m.cfg.warm_restart) {
		/* A restarted child adopts the cache it finds: the index must be kept current. */
		m.cfg.warm_restart = 1;
	}
	/* A restart is on every waiting reader's path: adopting the cache (a CRC of every
	 * chunk) runs ahead of the readers' own work on a busy machine. */
	bool urgent = m.super && super_child_restarts(m.super) && setpriority(PRIO_PROCESS, 0, -10) == 0;
	rc = prepare(&m);
	if (urgent)
		setpriority(PRIO_PROCESS, 0, 0);
	if (rc) {
		cache_free(m.cache); /* detaches the cache tmpfs it may have mounted */
		return rc;
	}
	fuse_set_log_func(fuse_log_to_mows);
	m.se = new_session(&m, &o);
	if (!m.se || fuse_set_signal_handlers(m.se) ||
	    ((m.pt_wanted || m.super) ? mows_pt_mount(&m, m.backing) :
					fuse_session_mount(m.se, m.mountpoint))) {
		/* The control socket was bound already: remove it, or mowsctl would find a
		 * socket that nothing answers (and the next start would have to claim it). */
		control_free(m.control);
		cache_free(m.cache);
		if (!m.se)
			return fail("bad FUSE options (see the messages above)");
		fprintf(stderr, "mows-fuse: cannot mount on %s (see the messages above)\n",
			m.mountpoint);
		return 1;
	}
	if (!journal && !m.foreground)
		log_use_syslog("mows-fuse");
	if (m.super) { /* the supervisor detached; no fork here */
		super_child_signals(m.super, m.se);
		if (!m.foreground)
			child_quiet();
	} else {
		fuse_daemonize(m.foreground);
	}
	rc = serve(&m);
	stop_hook_end();
	log_info("unmounting %s", m.mountpoint);
	fuse_session_unmount(m.se); /* nothing when mows mounted it itself: */
	mows_pt_unmount(&m);
	notify_stop(&m);
	fuse_remove_signal_handlers(m.se);
	prefetch_stop(&m);
	metrics_free(m.metrics);
	control_free(m.control);
	meta_share_stop(m.mshare);
	peers_free(m.peers);
	mows_inval_stop(&m);
	fuse_session_destroy(m.se);
	mows_inodes_release(&m);
	mows_handles_release(&m);
	cache_free(m.cache);
	cache_tree_free(m.tree); /* after the cache: its fill threads read through the tree */
	meta_share_free(m.mshare); /* after the tree: its metadata thread asked it */
	super_child_free(m.super);
	return rc;
}
