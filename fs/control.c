/*
 * The control socket that mowsctl talks to (unix stream socket, mode 0600, peers must be
 * root or the daemon's user).
 *
 * Protocol (common/ctlproto.h): the client sends one line "COMMAND FORMAT\tARG\tARG...\n"
 * (FORMAT is "json" or "text"); the daemon answers with lines, each starting with a tag:
 *   ". TEXT"                 a line for the client's stdout
 *   "% DONE TOTAL PATH"      progress in bytes (prefetch, verify; prefetch-cluster names
 *                            the cluster instead of a path)
 *   "! TEXT"                 a message for the client's stderr
 *   "= N"                    the end; N is the client's exit status
 * Every name goes out through ctl_escape() (text) or ctl_json_str() (JSON), never raw.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ctlproto.h"
#include "common/log.h"
#include "fs/mows.h"
#include "fs/supervisor.h"
#include "net/peer.h"

#define MAX_CLIENTS 16
#define MAX_REQUEST 65536
#define IO_TIMEOUT_S 10

struct control {
	struct mows *m;
	char path[PATH_MAX];
	int listen_fd, stop_fd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t idle;   /* nclients dropped */
	unsigned nclients;     /* protected by lock */
	bool stopping;         /* protected by lock */
};

struct client {
	struct control *ctl;
	int fd;
	FILE *out;
	bool json;
	uint64_t last_progress_ns;
	const char *current;   /* relpath being worked on, for progress */
	char name[CTL_ESC_MAX]; /* current, escaped for text lines */
};

/* ---- socket setup ---- */

static int make_parent_dir(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Removes a socket left by a daemon that died; refuses to take one that is alive. */
static int claim_path(const struct sockaddr_un *sa, char *err, size_t errlen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen,
			 "control socket %s is in use by another mows-fuse; unmount that one or "
			 "set control_socket", sa->sun_path);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED)
		unlink(sa->sun_path);
	return 0;
}

struct control *control_new(struct mows *m, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control_socket '%s': longer than %zu bytes; choose a shorter "
			 "path", path, sizeof(sa.sun_path) - 1);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return NULL;
	ctl->m = m;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	ctl->stop_fd = -1;
	int rc = make_parent_dir(path);
	if (rc == 0)
		rc = claim_path(&sa, err, errlen);
	if (rc == -EADDRINUSE)
		goto out_free;
	ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	mode_t old = umask(0177); /* the socket is born 0600 */
	rc = ctl->listen_fd < 0 || bind(ctl->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	     listen(ctl->listen_fd, 16) < 0 ? -errno : 0;
	umask(old);
	ctl->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (rc == 0 && ctl->stop_fd < 0)
		rc = -errno;
	if (rc) {
		snprintf(err, errlen, "control_socket '%s': %s; set control_socket to a writable "
			 "path", path, strerror(-rc));
		goto out_close;
	}
	pthread_mutex_init(&ctl->lock, NULL);
	deadline_cond_init(&ctl->idle);
	return ctl;
out_close:
	if (ctl->listen_fd >= 0)
		close(ctl->listen_fd);
	if (ctl->stop_fd >= 0)
		close(ctl->stop_fd);
out_free:
	free(ctl);
	return NULL;
}

/* ---- output ---- */

/* A name as a JSON member @key; a name that is not UTF-8 also gets "@key_escaped". */
static void json_name(FILE *out, const char *key, const char *name)
{
	fprintf(out, "\"%s\":", key);
	if (ctl_json_str(out, name))
		return;
	char e[CTL_ESC_MAX];
	fprintf(out, ",\"%s_escaped\":", key);
	ctl_json_str(out, ctl_escape(e, sizeof(e), name));
}

/* Whether the client went away or the daemon is stopping. */
static bool client_cancelled(struct client *cl)
{
	pthread_mutex_lock(&cl->ctl->lock);
	bool stop = cl->ctl->stopping || ferror(cl->out);
	pthread_mutex_unlock(&cl->ctl->lock);
	return stop;
}

static bool progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct client *cl = arg;
	uint64_t now = mono_ns();
	if (done == total || now - cl->last_progress_ns > 200000000) {
		cl->last_progress_ns = now;
		fprintf(cl->out, "%% %llu %llu %s\n", (unsigned long long)done,
			(unsigned long long)total, cl->name);
		fflush(cl->out);
	}
	return !client_cancelled(cl);
}

/* ---- status ---- */

static const char *file_state(const struct cache_file_status *fs)
{
	if (fs->state != CACHE_FILE_OK)
		return cache_file_state_name(fs->state);
	if (fs->cached_bytes == 0 && fs->size)
		return "cold";
	return fs->cached_bytes == fs->size ? "cached" : "partial";
}

struct status_walk {
	struct client *cl;
	bool first;
};

static void status_file(void *arg, struct cache_file *f)
{
	struct status_walk *w = arg;
	struct cache_file_status fs;
	cache_file_get_status(w->cl->ctl->m->cache, f, &fs);
	FILE *out = w->cl->out;
	if (w->cl->json) {
		fprintf(out, "%s{", w->first ? "" : ",");
		json_name(out, "path", fs.relpath);
		fprintf(out, ",\"size\":%llu,\"cached_bytes\":%llu,\"state\":\"%s\"}",
			(unsigned long long)fs.size, (unsigned long long)fs.cached_bytes,
			file_state(&fs));
	} else {
		char a[32], b[32], e[CTL_ESC_MAX];
		fprintf(out, ". %-9s %8s %8s  %s\n", file_state(&fs),
			config_format_size(fs.cached_bytes, a, sizeof(a)),
			config_format_size(fs.size, b, sizeof(b)), ctl_escape(e, sizeof(e), fs.relpath));
	}
	w->first = false;
}

static double hit_ratio(const struct cache_stats *st)
{
	uint64_t all = st->hits + st->misses;
	return all ? (double)st->hits / (double)all : 0.0;
}

static void status_json(struct client *cl, const struct cache_stats *st)
{
	struct mows *m = cl->ctl->m;
	FILE *out = cl->out;
	fputs(". {", out);
	json_name(out, "mountpoint", m->mountpoint);
	fputc(',', out);
	json_name(out, "backing", m->backing);
	fprintf(out, ",\"pid\":%d,\"restarts\":%u,\"supervised\":%s", (int)getpid(),
		super_child_restarts(m->super), m->super ? "true" : "false");
	fprintf(out, ",\"memory\":{\"max\":%llu,\"used\":%llu,\"hugepages\":\"%s\"}",
		(unsigned long long)st->max_memory, (unsigned long long)st->used_memory,
		st->slab_kind);
	fprintf(out, ",\"chunks\":{\"size\":%llu,\"slots\":%u,\"cached\":%u}",
		(unsigned long long)st->chunk_size, st->slots, st->slots_ready);
	fprintf(out, ",\"hits\":%llu,\"misses\":%llu,\"hit_ratio\":%.4f,\"bytes_read\":%llu",
		(unsigned long long)st->hits, (unsigned long long)st->misses, hit_ratio(st),
		(unsigned long long)st->bytes_read);
	fprintf(out, ",\"readahead_next_file\":%llu", (unsigned long long)st->readahead_next);
	fprintf(out, ",\"fills\":%llu,\"fill_errors\":%llu,\"evictions\":%llu,\"sources\":{",
		(unsigned long long)st->fills, (unsigned long long)st->fill_errors,
		(unsigned long long)st->evictions);
	const char *name;
	uint64_t bytes, backing = 0;
	for (unsigned k = 0; k < cache_source_stats(m->cache, k, &name, &bytes); k++) {
		fprintf(out, "%s\"%s\":%llu", k ? "," : "", name, (unsigned long long)bytes);
		if (!strcmp(name, "backing"))
			backing = bytes;
	}
	fprintf(out, "},\"bytes_from_backing\":%llu", (unsigned long long)backing);
	fprintf(out, ",\"passthrough_opens\":%llu,\"passthrough_bytes_opened\":%llu"
		",\"passthrough_open_now\":%llu,\"files\":[",
		(unsigned long long)atomic_load(&m->pt_opens),
		(unsigned long long)atomic_load(&m->pt_bytes_opened),
		(unsigned long long)atomic_load(&m->pt_open_now));
	struct status_walk w = { cl, true };
	cache_foreach_file(m->cache, status_file, &w);
	fputs("]}\n", out);
}

static void status_text(struct client *cl, const struct cache_stats *st)
{
	struct mows *m = cl->ctl->m;
	FILE *out = cl->out;
	char a[32], b[32], c[32], e[CTL_ESC_MAX], e2[CTL_ESC_MAX];
	fprintf(out, ". mows on %s, backing %s\n", ctl_escape(e, sizeof(e), m->mountpoint),
		ctl_escape(e2, sizeof(e2), m->backing));
	fprintf(out, ". process  pid %d, %s, %u restarts\n", (int)getpid(),
		m->super ? "supervised" : "not supervised", super_child_restarts(m->super));
	fprintf(out, ". memory   %s of %s (%s pages), %u of %u chunks of %s cached\n",
		config_format_size(st->used_memory, a, sizeof(a)),
		config_format_size(st->max_memory, b, sizeof(b)), st->slab_kind, st->slots_ready,
		st->slots, config_format_size(st->chunk_size, c, sizeof(c)));
	fprintf(out, ". reads    %s served, chunk hits %llu, misses %llu, hit ratio %.1f%%\n",
		config_format_size(st->bytes_read, a, sizeof(a)), (unsigned long long)st->hits,
		(unsigned long long)st->misses, 100.0 * hit_ratio(st));
	const char *name;
	uint64_t bytes;
	for (unsigned k = 0; k < cache_source_stats(m->cache, k, &name, &bytes); k++)
		fprintf(out, ". from     %-8s %s\n", name, config_format_size(bytes, a, sizeof(a)));
	fprintf(out, ". fills    %llu, errors %llu, evictions %llu\n",
		(unsigned long long)st->fills, (unsigned long long)st->fill_errors,
		(unsigned long long)st->evictions);
	fprintf(out, ". passthrough %llu opens of %s (read by the kernel, not counted above), "
		"%llu open now\n", (unsigned long long)atomic_load(&m->pt_opens),
		config_format_size(atomic_load(&m->pt_bytes_opened), a, sizeof(a)),
		(unsigned long long)atomic_load(&m->pt_open_now));
	fprintf(out, ". %-9s %8s %8s  %s\n", "STATE", "CACHED", "SIZE", "PATH");
	struct status_walk w = { cl, true };
	cache_foreach_file(m->cache, status_file, &w);
}

static int cmd_status(struct client *cl)
{
	struct cache_stats st;
	cache_get_stats(cl->ctl->m->cache, &st);
	if (cl->json)
		status_json(cl, &st);
	else
		status_text(cl, &st);
	return 0;
}

/* ---- commands on paths ---- */

/* Maps a path from mowsctl (absolute under the mount, or relative) to a relpath. */
static const char *to_relpath(struct mows *m, const char *path)
{
	size_t n = strlen(m->mountpoint);
	if (path[0] != '/')
		return path;
	if (strncmp(path, m->mountpoint, n) == 0 && (path[n] == '\0' || path[n] == '/'))
		return path[n] ? path + n + 1 : "";
	return NULL;
}

typedef int (*file_cmd)(struct client *cl, const char *relpath, struct cache_file *f);

struct tree_cmd {
	struct client *cl;
	file_cmd fn;
	int status;
};

static int run_on_file(void *arg, const char *relpath, const struct stat *st)
{
	(void)st;
	struct tree_cmd *t = arg;
	struct client *cl = t->cl;
	ctl_escape(cl->name, sizeof(cl->name), relpath);
	struct cache_file *f = mows_version_at(cl->ctl->m, relpath);
	if (!f) {
		fprintf(cl->out, "! %s: %s\n", cl->name, strerror(errno));
		t->status = 1;
		return 0;
	}
	cl->current = relpath;
	t->status |= t->fn(cl, relpath, f);
	cache_file_put(cl->ctl->m->cache, f);
	return client_cancelled(cl) ? -ECANCELED : 0;
}

/* Runs @fn on the regular file @relpath, or on every regular file beneath a directory. */
static int run_on_tree(struct client *cl, const char *relpath, file_cmd fn)
{
	struct tree_cmd t = { cl, fn, 0 };
	int rc = mows_walk(cl->ctl->m, relpath, run_on_file, &t);
	if (rc && rc != -ECANCELED) {
		fprintf(cl->out, "! %s: %s\n", *relpath ? ctl_escape(cl->name, sizeof(cl->name), relpath) : ".",
			rc == -EINVAL ? "not a regular file or directory" : strerror(-rc));
		return 1;
	}
	return t.status;
}

static int do_prefetch(struct client *cl, const char *relpath, struct cache_file *f)
{
	(void)relpath; /* cl->name is its escaped form, for text lines */
	int rc = cache_file_prefetch(cl->ctl->m->cache, f, progress_cb, cl);
	if (rc)
		fprintf(cl->out, "! %s: %s\n", cl->name, strerror(-rc));
	return rc ? 1 : 0;
}

static int do_evict(struct client *cl, const char *relpath, struct cache_file *f)
{
	(void)relpath;
	cache_file_evict(cl->ctl->m->cache, f);
	fprintf(cl->out, ". evicted %s\n", cl->name);
	return 0;
}

/* The chunks of @f that failed crc32.chunks: one line each, or a JSON member. */
static void verify_bad_chunks(struct client *cl, const char *relpath, struct cache_file *f)
{
	struct cache_bad_chunk bad[64];
	size_t n = cache_file_bad_chunks(cl->ctl->m->cache, f, bad, 64);
	size_t shown = n < 64 ? n : 64;
	if (cl->json)
		fputs(",\"bad_chunks\":[", cl->out);
	for (size_t i = 0; i < shown; i++) {
		uint64_t last = bad[i].offset + bad[i].len - 1;
		if (cl->json)
			fprintf(cl->out, "%s{\"chunk\":%" PRIu64 ",\"first_byte\":%" PRIu64
				",\"last_byte\":%" PRIu64 ",\"expected\":\"%08x\",\"got\":\"%08x\"}",
				i ? "," : "", bad[i].chunk, bad[i].offset, last, bad[i].expected,
				bad[i].got);
		else
			fprintf(cl->out, ". bad chunk %" PRIu64 " of %s: bytes %" PRIu64 "-%" PRIu64
				" (crc32.chunks %08x, storage %08x)\n", bad[i].chunk, relpath,
				bad[i].offset, last, bad[i].expected, bad[i].got);
	}
	if (cl->json)
		fputs("]", cl->out);
	else if (n > shown)
		fprintf(cl->out, ". ... and %zu more bad chunks of %s\n", n - shown, relpath);
}

static int do_verify(struct client *cl, const char *relpath, struct cache_file *f)
{
	uint32_t crc = 0;
	int rc = cache_file_verify(cl->ctl->m->cache, f, &crc);
	struct cache_file_status fs;
	cache_file_get_status(cl->ctl->m->cache, f, &fs);
	const char *verdict = rc == 0 ? "ok" : rc == -ENODATA ? "unlisted" :
			      rc == -EBADMSG ? "mismatch" : "error";
	if (cl->json) {
		fputs(". {", cl->out);
		json_name(cl->out, "path", relpath);
		fprintf(cl->out, ",\"result\":\"%s\",\"computed\":\"%08x\"", verdict, crc);
		if (fs.has_crc)
			fprintf(cl->out, ",\"manifest\":\"%08x\"", fs.expected_crc);
		verify_bad_chunks(cl, relpath, f);
		fputs("}\n", cl->out);
	} else if (rc == 0) {
		fprintf(cl->out, ". ok        %s (crc32 %08x)\n", cl->name, crc);
	} else if (rc == -ENODATA) {
		fprintf(cl->out, ". unlisted  %s (crc32 %08x; not in %s)\n", cl->name, crc,
			cl->ctl->m->cfg.crc32_file);
	} else if (rc == -EBADMSG && fs.chunks_bad) {
		fprintf(cl->out, ". mismatch  %s: %" PRIu64 " chunks fail crc32.chunks\n", cl->name,
			fs.chunks_bad);
		verify_bad_chunks(cl, relpath, f);
	} else if (rc == -EBADMSG) {
		fprintf(cl->out, ". mismatch  %s: manifest %08x, computed %08x%s\n", cl->name,
			fs.expected_crc, crc, fs.has_chunk_crcs ? "" : " (which chunk is unknown: "
			"write crc32.chunks with mows-crc32 --chunks)");
	} else {
		fprintf(cl->out, "! %s: %s%s\n", cl->name, strerror(-rc),
			rc == -ENOTSUP ? " (verify = off)" : "");
	}
	return rc == 0 || rc == -ENODATA ? 0 : 1;
}

static int cmd_paths(struct client *cl, char **paths, unsigned n, file_cmd fn)
{
	int status = 0;
	if (n == 0) {
		fputs("! give one or more paths under the mount\n", cl->out);
		return 2;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *rel = to_relpath(cl->ctl->m, paths[i]);
		if (!rel || (*rel && !cache_manifest_path_ok(rel))) {
			char e[CTL_ESC_MAX];
			fprintf(cl->out, "! %s: not under the mows mount %s\n",
				ctl_escape(cl->name, sizeof(cl->name), paths[i]),
				ctl_escape(e, sizeof(e), cl->ctl->m->mountpoint));
			status = 1;
			continue;
		}
		status |= run_on_tree(cl, rel, fn);
	}
	return status;
}

/* ---- prefetch --cluster ---- */

struct pf_list {
	struct client *cl;
	struct peer_pf_file *v;
	size_t n, cap;
	int status;
};

static int pf_collect(void *arg, const char *relpath, const struct stat *st)
{
	(void)st;
	struct pf_list *l = arg;
	struct cache_file *f = mows_version_at(l->cl->ctl->m, relpath);
	if (!f) {
		fprintf(l->cl->out, "! %s: %s\n",
			ctl_escape(l->cl->name, sizeof(l->cl->name), relpath), strerror(errno));
		l->status = 1;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct peer_pf_file *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			cache_file_put(l->cl->ctl->m->cache, f);
			return -ENOMEM;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct peer_pf_file){ .key = cache_file_key(f),
					      .size = cache_file_size(f),
					      .mtime_ns = cache_file_mtime_ns(f) };
	cache_file_put(l->cl->ctl->m->cache, f);
	return client_cancelled(l->cl) ? -ECANCELED : 0;
}

static bool cluster_progress(void *arg, uint64_t done, uint64_t total, unsigned nodes)
{
	struct client *cl = arg;
	snprintf(cl->name, sizeof(cl->name), "cluster of %u nodes", nodes);
	return progress_cb(cl, done, total);
}

static void cluster_report(struct client *cl, const struct peer_pf_node *nodes, unsigned n,
			   double secs)
{
	char e[CTL_ESC_MAX], a[32], b[32];
	uint64_t done = 0, total = 0;
	if (cl->json)
		fputs(". {\"nodes\":[", cl->out);
	for (unsigned k = 0; k < n; k++) {
		const struct peer_pf_node *nd = &nodes[k];
		done += nd->done;
		total += nd->total;
		if (cl->json) {
			fputs(k ? ",{" : "{", cl->out);
			json_name(cl->out, "node_id", nd->node_id);
			fprintf(cl->out, ",\"done\":%" PRIu64 ",\"total\":%" PRIu64 ",\"error\":",
				nd->done, nd->total);
			if (nd->err)
				ctl_json_str(cl->out, strerror(-nd->err));
			else
				fputs("null", cl->out);
			fputc('}', cl->out);
		} else {
			fprintf(cl->out, ". node %-16s %8s of %8s filled%s%s\n",
				ctl_escape(e, sizeof(e), nd->node_id),
				config_format_size(nd->done, a, sizeof(a)),
				config_format_size(nd->total, b, sizeof(b)), nd->err ? ": " : "",
				nd->err ? strerror(-nd->err) : "");
		}
		if (nd->err)
			fprintf(cl->out, "! node %s: its share is not filled: %s\n",
				ctl_escape(e, sizeof(e), nd->node_id), nd->err == -EAGAIN ?
				"it places chunks over another member set; compare mowsctl peers "
				"on the nodes and try again" : strerror(-nd->err));
	}
	if (cl->json)
		fprintf(cl->out, "],\"done\":%" PRIu64 ",\"total\":%" PRIu64
			",\"seconds\":%.3f}\n", done, total, secs);
	else
		fprintf(cl->out, ". cluster: %s of %s filled on %u nodes in %.1f s\n",
			config_format_size(done, a, sizeof(a)), config_format_size(total, b, sizeof(b)),
			n, secs);
}

/* mowsctl prefetch --cluster PATH...: every live node fills its owned share. */
static int cmd_prefetch_cluster(struct client *cl, char **paths, unsigned n)
{
	struct mows *m = cl->ctl->m;
	struct pf_list l = { .cl = cl };
	if (!m->peers) {
		fputs("! this node does not share chunks (listen is not set): use mowsctl prefetch "
		      "without --cluster\n", cl->out);
		return 1;
	}
	if (n == 0) {
		fputs("! give one or more paths under the mount\n", cl->out);
		return 2;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *rel = to_relpath(m, paths[i]);
		char e[CTL_ESC_MAX];
		if (!rel || (*rel && !cache_manifest_path_ok(rel))) {
			fprintf(cl->out, "! %s: not under the mows mount %s\n",
				ctl_escape(cl->name, sizeof(cl->name), paths[i]),
				ctl_escape(e, sizeof(e), m->mountpoint));
			l.status = 1;
			continue;
		}
		int rc = mows_walk(m, rel, pf_collect, &l);
		if (rc && rc != -ECANCELED) {
			fprintf(cl->out, "! %s: %s\n", *rel ? ctl_escape(e, sizeof(e), rel) : ".",
				rc == -EINVAL ? "not a regular file or directory" : strerror(-rc));
			l.status = 1;
		}
	}
	struct peer_pf_node *nodes = NULL;
	unsigned nn = 0;
	uint64_t t0 = mono_ns();
	int rc = l.status ? 0 : peers_prefetch_cluster(m->peers, l.v, l.n, cluster_progress, cl,
						       &nodes, &nn);
	if (nodes)
		cluster_report(cl, nodes, nn, (double)(mono_ns() - t0) / 1e9);
	if (rc && rc != -EIO)
		fprintf(cl->out, "! prefetch --cluster: %s\n", strerror(-rc));
	free(nodes);
	free(l.v);
	return l.status || rc ? 1 : 0;
}

/* The RDMA counters as one JSON member (mowsctl peers --json). */
static void peers_rdma_json(const struct peers_snapshot *s, FILE *out)
{
	const struct rdma_counters *r = &s->rdma;
	if (!s->has_rdma) {
		fputs("\"rdma\":null,", out);
		return;
	}
	fprintf(out, "\"rdma\":{\"device\":\"%s\",\"reads_posted\":%" PRIu64
		",\"bytes_read\":%" PRIu64 ",\"fetches\":%" PRIu64 ",\"fetch_errors\":%" PRIu64
		",\"completion_errors\":%" PRIu64 ",\"conns_out\":%" PRIu64 ",\"conns_in\":%"
		PRIu64 ",\"conns_refused\":%" PRIu64 ",\"leases_active\":%" PRIu64
		",\"leases_granted\":%" PRIu64 ",\"leases_expired\":%" PRIu64
		",\"descs\":%" PRIu64 ",\"digests_checked\":%" PRIu64
		",\"digest_mismatches\":%" PRIu64 ",\"digests_computed\":%" PRIu64
		",\"msgs_refused\":%" PRIu64 ",\"regions_active\":%" PRIu64
		",\"region_bytes\":%" PRIu64 ",\"regions_registered\":%" PRIu64
		",\"regions_forgotten\":%" PRIu64 ",\"region_reg_us\":%" PRIu64
		",\"region_reg_max_us\":%" PRIu64 "},",
		s->rdma_device, (uint64_t)r->reads_posted, (uint64_t)r->bytes_read,
		(uint64_t)r->fetches, (uint64_t)r->fetch_errors, (uint64_t)r->completion_errors,
		(uint64_t)r->conns_out, (uint64_t)r->conns_in, (uint64_t)r->conns_refused,
		(uint64_t)r->leases_active, (uint64_t)r->leases_granted,
		(uint64_t)r->leases_expired, (uint64_t)r->descs, (uint64_t)r->digests_checked,
		(uint64_t)r->digest_mismatches, (uint64_t)r->digests_computed,
		(uint64_t)r->msgs_refused, (uint64_t)r->regions_active, (uint64_t)r->region_bytes,
		(uint64_t)r->regions_registered, (uint64_t)r->regions_forgotten,
		(uint64_t)r->region_reg_ns / 1000, (uint64_t)r->region_reg_max_ns / 1000);
}

static void peers_json(const struct peers_snapshot *s, FILE *out)
{
	fputs(". {", out);
	json_name(out, "node_id", s->node_id);
	fputc(',', out);
	json_name(out, "listen", s->listen);
	fprintf(out, ",\"members\":%u,"
		"\"member_digest\":\"%016" PRIx64 "\",\"ownership_digest\":\"%016" PRIx64
		"\",\"ownership_members\":%u,\"entries_added\":%" PRIu64
		",\"entries_reclaimed\":%" PRIu64 ",\"refused_unauthenticated\":%" PRIu64
		",\"refused_authenticated\":%" PRIu64 ",\"accept_errors\":%" PRIu64
		",\"quarantines\":%" PRIu64 ",",
		s->members, s->digest, s->ownership_digest, s->ownership_members,
		s->entries_added, s->entries_reclaimed, s->refused_unauth,
		s->refused_auth, s->accept_errors, s->quarantines);
	fprintf(out, "\"swarm\":{\"redirects_sent\":%" PRIu64 ",\"redirected\":%" PRIu64
		",\"from_holder\":%" PRIu64 ",\"fallbacks\":%" PRIu64 ",\"served_as_holder\":%"
		PRIu64 ",\"relayed\":%" PRIu64 ",\"relays_stopped\":%" PRIu64
		",\"holder_parked\":%" PRIu64
		",\"holder_misses\":%" PRIu64 ",\"owner_relayed\":%" PRIu64
		",\"storage_unowned\":%" PRIu64 "},",
		s->swarm.redirects_sent, s->swarm.redirected, s->swarm.from_holder,
		s->swarm.fallbacks, s->swarm.served_as_holder, s->swarm.relayed,
		s->swarm.relays_stopped, s->swarm.holder_parked, s->swarm.holder_misses,
		s->swarm.owner_relayed, s->swarm.storage_unowned);
	fprintf(out, "\"liveness\":{\"gossip\":%s,\"incarnation\":%" PRIu64 ",\"suspects\":%u"
		",\"rounds\":%" PRIu64 ",\"pings\":%" PRIu64 ",\"pongs\":%" PRIu64
		",\"events_sent\":%" PRIu64 ",\"events_learned\":%" PRIu64
		",\"suspected\":%" PRIu64 ",\"declared_dead\":%" PRIu64
		",\"refutations\":%" PRIu64 ",\"ping_reqs\":%" PRIu64
		",\"indirect_alive\":%" PRIu64 "},",
		s->liveness.gossip ? "true" : "false", s->liveness.incarnation,
		s->liveness.suspects, s->liveness.rounds, s->liveness.pings, s->liveness.pongs,
		s->liveness.events_sent, s->liveness.events_learned, s->liveness.suspected,
		s->liveness.declared_dead, s->liveness.refutations, s->liveness.ping_reqs,
		s->liveness.indirect_alive);
	peers_rdma_json(s, out);
	fputs("\"peers\":[", out);
	for (unsigned i = 0; i < s->n; i++) {
		const struct peer_info *pe = &s->peers[i];
		fputs(i ? ",{" : "{", out);
		json_name(out, "node_id", pe->node_id);
		fprintf(out, ",\"address\":\"%s\",\"state\":\"%s\","
			"\"origin\":\"%s\",\"transport\":\"%s\",\"bytes_in\":%" PRIu64
			",\"bytes_out\":%" PRIu64 ",\"fetches\":%" PRIu64 ",\"served\":%" PRIu64
			",\"errors\":%" PRIu64 ",\"bad_crc\":%" PRIu64 ",\"quarantined\":%s"
			",\"suspect\":%s}",
			pe->addr, pe->state, pe->origin, pe->transport, pe->bytes_in,
			pe->bytes_out, pe->fetches, pe->served, pe->errors, pe->bad_crc,
			pe->quarantined ? "true" : "false", pe->suspect ? "true" : "false");
	}
	fputs("]}\n", out);
}

static void peers_text(const struct peers_snapshot *s, FILE *out)
{
	char e[CTL_ESC_MAX], e2[CTL_ESC_MAX];
	fprintf(out, ". node %s on %s\n. members %u, digest %016" PRIx64 ", suspect %u\n"
		". ownership map: %u members, digest %016" PRIx64 "%s\n"
		". %-16s %-22s %-11s %-9s %10s %10s %8s %6s %6s\n",
		ctl_escape(e, sizeof(e), s->node_id), ctl_escape(e2, sizeof(e2), s->listen),
		s->members, s->digest, s->liveness.suspects, s->ownership_members,
		s->ownership_digest, s->ownership_members ? "" : " (none yet: chunks ranked by rendezvous)", "NODE", "ADDRESS", "STATE", "TRANSPORT", "BYTES_IN",
		"BYTES_OUT", "FETCHES", "ERRORS", "BADCRC");
	for (unsigned i = 0; i < s->n; i++) {
		const struct peer_info *pe = &s->peers[i];
		fprintf(out, ". %-16s %-22s %-11s %-9s %10" PRIu64 " %10" PRIu64 " %8" PRIu64
			" %6" PRIu64 " %6" PRIu64 "\n", ctl_escape(e, sizeof(e), pe->node_id),
			pe->addr, pe->state, pe->transport, pe->bytes_in, pe->bytes_out,
			pe->fetches, pe->errors, pe->bad_crc);
	}
}

static int cmd_peers(struct client *cl)
{
	struct peers_snapshot s;
	if (!cl->ctl->m->peers) {
		fputs("! this node does not share chunks (listen is not set)\n", cl->out);
		return 1;
	}
	if (peers_snapshot(cl->ctl->m->peers, &s)) {
		fputs("! out of memory\n", cl->out);
		return 1;
	}
	if (cl->json)
		peers_json(&s, cl->out);
	else
		peers_text(&s, cl->out);
	peers_snapshot_release(&s);
	return 0;
}

/* mowsctl upgrade [--binary PATH]: the supervisor hands the mount to a new process. */
static int cmd_upgrade(struct client *cl, const char *binary)
{
	char msg[PATH_MAX + 256], e[CTL_ESC_MAX];
	if (!cl->ctl->m->super) {
		fprintf(cl->out, "! upgrade: this mows-fuse runs without a supervisor; start it "
			"with supervise = on (then the mount survives upgrades and crashes)\n");
		return 1;
	}
	int rc = super_child_upgrade(cl->ctl->m->super, binary, msg, sizeof(msg));
	if (rc == 0)
		fprintf(cl->out, ". %s\n", ctl_escape(e, sizeof(e), msg));
	else if (rc == -EINVAL)
		fprintf(cl->out, "! upgrade: %s\n", ctl_escape(e, sizeof(e), msg));
	else
		fprintf(cl->out, "! upgrade: no answer from the supervisor: %s\n", strerror(-rc));
	return rc ? 1 : 0;
}

/* ---- clients ---- */

static int dispatch(struct client *cl, char *req, size_t len)
{
	struct ctl_request *r = malloc(sizeof(*r));
	const char *why;
	int rc = r ? ctl_request_parse(req, len, r, &why) : -ENOMEM;
	if (rc == -E2BIG) {
		fprintf(cl->out, "! more than %d paths: give fewer at once\n", CTL_MAX_ARGS);
		free(r);
		return 2;
	}
	if (rc) {
		fprintf(cl->out, "! bad request: %s; use a mowsctl of the same version\n",
			r ? why : strerror(ENOMEM));
		free(r);
		return 2;
	}
	cl->json = r->json;
	const char *cmd = r->cmd;
	if (!strcmp(cmd, "status"))
		rc = cmd_status(cl);
	else if (!strcmp(cmd, "prefetch"))
		rc = cmd_paths(cl, r->args, r->nargs, do_prefetch);
	else if (!strcmp(cmd, "prefetch-cluster"))
		rc = cmd_prefetch_cluster(cl, r->args, r->nargs);
	else if (!strcmp(cmd, "evict"))
		rc = cmd_paths(cl, r->args, r->nargs, do_evict);
	else if (!strcmp(cmd, "verify"))
		rc = cmd_paths(cl, r->args, r->nargs, do_verify);
	else if (!strcmp(cmd, "peers"))
		rc = cmd_peers(cl);
	else if (!strcmp(cmd, "refresh"))
		rc = mows_refresh(cl->ctl->m, cl->out);
	else if (!strcmp(cmd, "upgrade"))
		rc = cmd_upgrade(cl, r->nargs ? r->args[0] : "");
	else {
		fprintf(cl->out, "! unknown command '%s'\n", ctl_escape(cl->name, sizeof(cl->name), cmd));
		rc = 2;
	}
	free(r);
	return rc;
}

static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

static ssize_t read_request(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n < cap - 1) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EPROTO;
		n += (size_t)r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
	return memchr(buf, '\n', n) ? (ssize_t)n : -E2BIG;
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct control *ctl = cl->ctl;
	char *req = malloc(MAX_REQUEST);
	cl->out = fdopen(cl->fd, "w");
	ssize_t len = -EPERM;
	if (req && cl->out && peer_allowed(cl->fd) &&
	    (len = read_request(cl->fd, req, MAX_REQUEST)) > 0) {
		int status = dispatch(cl, req, (size_t)len);
		fprintf(cl->out, "= %d\n", status);
	} else if (cl->out && len == -E2BIG) {
		fprintf(cl->out, "! request longer than %d bytes: give fewer paths at once\n= 2\n",
			MAX_REQUEST - 1);
	}
	if (cl->out)
		fclose(cl->out);
	else
		close(cl->fd);
	free(req);
	free(cl);
	pthread_mutex_lock(&ctl->lock);
	ctl->nclients--;
	pthread_cond_broadcast(&ctl->idle);
	pthread_mutex_unlock(&ctl->lock);
	return NULL;
}

static void spawn_client(struct control *ctl, int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct client *cl = calloc(1, sizeof(*cl));
	pthread_mutex_lock(&ctl->lock);
	bool room = ctl->nclients < MAX_CLIENTS && cl;
	if (room)
		ctl->nclients++;
	pthread_mutex_unlock(&ctl->lock);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (room) {
		cl->ctl = ctl;
		cl->fd = fd;
		if (pthread_create(&t, &attr, client_main, cl) == 0)
			cl = NULL, fd = -1;
		else
			room = false;
	}
	pthread_attr_destroy(&attr);
	if (!room) {
		if (fd >= 0) {
			dprintf(fd, "! mows-fuse is busy (%d clients); try again\n= 1\n", MAX_CLIENTS);
			close(fd);
		}
		if (cl && cl->ctl) {
			pthread_mutex_lock(&ctl->lock);
			ctl->nclients--;
			pthread_mutex_unlock(&ctl->lock);
		}
		free(cl);
	}
}

static void *control_main(void *arg)
{
	struct control *ctl = arg;
	while (wait_readable_or_stop(ctl->listen_fd, ctl->stop_fd) > 0) {
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			spawn_client(ctl, fd);
	}
	return NULL;
}

int control_start(struct control *ctl)
{
	int rc = pthread_create(&ctl->thread, NULL, control_main, ctl);
	ctl->started = rc == 0;
	return -rc;
}

void control_free(struct control *ctl)
{
	if (!ctl)
		return;
	uint64_t one = 1;
	if (write(ctl->stop_fd, &one, sizeof(one)) < 0)
		log_warn("cannot stop the control thread: %s", strerror(errno));
	if (ctl->started)
		pthread_join(ctl->thread, NULL);
	struct deadline dl = deadline_in_ms(5000);
	pthread_mutex_lock(&ctl->lock);
	ctl->stopping = true;
	while (ctl->nclients && deadline_cond_wait(&ctl->idle, &ctl->lock, &dl) == 0)
		;
	bool idle = ctl->nclients == 0;
	pthread_mutex_unlock(&ctl->lock);
	unlink(ctl->path);
	close(ctl->listen_fd);
	close(ctl->stop_fd);
	if (idle) /* a client still stuck in a fill keeps the struct; process exit frees it */
		free(ctl);
}
