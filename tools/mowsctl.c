/*
 * mowsctl: talks to a running mows-fuse over its control socket.
 *
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] status
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] status --watch [--interval S]
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] prefetch|evict|verify PATH...
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] prefetch --cluster PATH...
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] upgrade [--binary PATH]
 *
 * Without -s or -m the daemon is found from the first PATH (the mows mount holding it), else
 * from the only socket in /run/mows. The protocol is common/ctlproto.h; names in text output
 * are shown escaped as the daemon sends them (ctl_escape: \n, \t, \\, \xHH), so that every
 * output line is one entry.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/ctlproto.h"
#include "common/deadline.h"

#define EXIT_USAGE 2
#define RUN_DIR "/run/mows"

struct progress {
	bool tty;
	uint64_t start_ns, base_done, file_done, file_total, all_done;
	char file[CTL_ESC_MAX];   /* escaped, as the daemon sends it */
};

static void usage(FILE *out)
{
	fprintf(out, "usage: mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] COMMAND [PATH...]\n"
		     "commands:\n"
		     "  status          memory, chunks, hit ratio, bytes by source, per-file state\n"
		     "  status --watch [--interval S]\n"
		     "                  the same as rates, redrawn every S seconds (1) until Ctrl-C\n"
		     "  prefetch PATH.. fill files (or whole directories) into the cache\n"
		     "  prefetch --cluster PATH...\n"
		     "                  every live peer fills the chunks it owns (storage read once\n"
		     "                  for the cluster); one progress bar for the whole cluster\n"
		     "  evict PATH...   drop files from the cache\n"
		     "  verify PATH...  read files and check them against the CRC manifest\n"
		     "  peers           every peer: state, transport, bytes in and out, errors\n"
		     "  refresh         take the snapshot of names and attributes again now\n"
		     "  upgrade [--binary PATH]\n"
		     "                  (supervise = on) hand the mount to a new serving process\n"
		     "                  running PATH (default: the binary it was started from)\n");
}

/* Undoes mountinfo's octal escapes ("\040" for a space, "\134" for a backslash) in place. */
static void mountinfo_unescape(char *s)
{
	char *o = s;
	for (const char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* The mows mount point holding @path (longest match in /proc/self/mountinfo). */
static bool mount_of(const char *path, char *mnt, size_t len)
{
	FILE *fp = fopen("/proc/self/mountinfo", "r");
	char line[8192], point[PATH_MAX], fstype[256];
	size_t best = 0;
	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp)) {
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    sscanf(sep + 3, "%255s", fstype) != 1 || strcmp(fstype, "fuse.mows") != 0)
			continue;
		mountinfo_unescape(point);
		size_t n = strlen(point);
		if (strncmp(path, point, n) == 0 && (path[n] == '/' || !path[n] || n == 1) &&
		    n >= best) {
			best = n;
			snprintf(mnt, len, "%s", point);
		}
	}
	fclose(fp);
	return best > 0;
}

static bool only_socket(char *buf, size_t len)
{
	DIR *dp = opendir(RUN_DIR);
	struct dirent *de;
	int found = 0;
	if (!dp)
		return false;
	while ((de = readdir(dp)))
		if (strstr(de->d_name, ".sock") && found++ == 0)
			snprintf(buf, len, RUN_DIR "/%s", de->d_name);
	closedir(dp);
	return found == 1;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "mowsctl: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	fprintf(stderr, "mowsctl: cannot connect to %s: %s (is mows-fuse running? give -s or -m)\n",
		path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void draw(struct progress *p, bool final)
{
	char a[32], b[32], r[32];
	double secs = (double)(mono_ns() - p->start_ns) / 1e9;
	double rate = secs > 0 ? (double)p->all_done / secs : 0;
	double eta = rate > 0 ? (double)(p->file_total - p->file_done) / rate : 0;
	int pct = p->file_total ? (int)(100 * p->file_done / p->file_total) : 100;
	char bar[21];
	for (int i = 0; i < 20; i++)
		bar[i] = i < pct / 5 ? '#' : '.';
	bar[20] = '\0';
	fprintf(stderr, "%s[%s] %3d%% %s/%s %s/s ETA %.0fs %s%s", p->tty ? "\r\033[K" : "", bar,
		pct, config_format_size(p->file_done, a, sizeof(a)),
		config_format_size(p->file_total, b, sizeof(b)),
		config_format_size((uint64_t)rate, r, sizeof(r)), eta, p->file,
		final || !p->tty ? "\n" : "");
}

static void on_progress(struct progress *p, uint64_t done, uint64_t total, const char *file)
{
	if (strcmp(file, p->file) != 0) {
		if (p->file[0] && p->tty)
			draw(p, true);
		p->base_done = p->all_done;
		snprintf(p->file, sizeof(p->file), "%s", file);
	}
	p->file_done = done;
	p->file_total = total;
	p->all_done = p->base_done + done;
	if (p->tty || done == total)
		draw(p, false);
}

/* Relays the daemon's answer; returns the exit status it names. */
static int relay(int fd)
{
	FILE *in = fdopen(fd, "r");
	char *line = NULL;
	size_t cap = 0;
	int status = 1;
	struct progress p = { .tty = isatty(STDERR_FILENO), .start_ns = mono_ns() };
	bool ended = false;
	ssize_t n;
	while (in && (n = getline(&line, &cap, in)) > 0) {
		struct ctl_reply r;
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (strlen(line) != (size_t)n || ctl_reply_parse(line, &r)) {
			char e[CTL_ESC_MAX];
			fprintf(stderr, "%smowsctl: the daemon sent a line this mowsctl cannot parse "
				"(is it the same version?): %s\n", p.tty && p.file[0] ? "\n" : "",
				ctl_escape(e, sizeof(e), line));
			status = 1;
			ended = true;
			break;
		}
		if (r.tag == CTL_OUT)
			puts(r.text);
		else if (r.tag == CTL_PROGRESS)
			on_progress(&p, r.done, r.total, r.name);
		else if (r.tag == CTL_ERR)
			fprintf(stderr, "%s%s\n", p.tty && p.file[0] ? "\n" : "", r.text);
		else {
			status = r.status;
			ended = true;
			break;
		}
	}
	if (p.file[0] && p.tty)
		fputc('\n', stderr);
	if (!ended)
		fprintf(stderr, "mowsctl: the daemon closed the connection early\n");
	free(line);
	if (in)
		fclose(in);
	else
		close(fd);
	return status;
}

/* ---- status --watch: one screen refreshed in place from status --json samples ---- */

static volatile sig_atomic_t watch_stop;

static void on_watch_signal(int sig)
{
	(void)sig;
	watch_stop = 1;
}

struct watch_sample {
	uint64_t ns, used, max, bytes_read, hits, misses, fills, fill_errors, evictions;
	unsigned cached, slots, nsrc;
	char src_name[4][32];
	uint64_t src_bytes[4];
};

/* The number after @key in @json (the part before the file list), or 0. */
static uint64_t json_num(const char *json, const char *key)
{
	const char *at = strstr(json, key);
	return at ? strtoull(at + strlen(key), NULL, 10) : 0;
}

/* Parses the sources object: "name":bytes pairs up to its '}'. */
static void parse_sources(const char *json, struct watch_sample *w)
{
	const char *p = strstr(json, "\"sources\":{");
	for (p = p ? p + 11 : NULL; p && *p == '"' && w->nsrc < 4; w->nsrc++) {
		size_t n = strcspn(p + 1, "\"");
		snprintf(w->src_name[w->nsrc], sizeof(w->src_name[0]), "%.*s", (int)n, p + 1);
		char *end;
		w->src_bytes[w->nsrc] = strtoull(p + n + 3, &end, 10);
		p = *end == ',' ? end + 1 : NULL;
	}
}

/* Asks the daemon at @sock for status --json and parses it. Returns 0 or -1 (said why). */
static int watch_sample(const char *sock, struct watch_sample *w, char *mnt, size_t mntlen)
{
	int fd = connect_to(sock);
	if (fd < 0)
		return -1;
	dprintf(fd, "status json\n");
	FILE *in = fdopen(fd, "r");
	char *line = NULL;
	size_t cap = 0;
	int rc = -1;
	memset(w, 0, sizeof(*w));
	w->ns = mono_ns();
	while (in && getline(&line, &cap, in) > 0 && line[0] != '=') {
		if (strncmp(line, ". {", 3))
			continue;
		char *files = strstr(line, ",\"files\":[");
		if (files)
			*files = '\0';
		const char *m = strstr(line, "\"mountpoint\":\"");
		if (m)
			snprintf(mnt, mntlen, "%.*s", (int)strcspn(m + 14, "\""), m + 14);
		w->max = json_num(line, "\"memory\":{\"max\":");
		w->used = json_num(line, "\"used\":");
		w->slots = (unsigned)json_num(line, "\"slots\":");
		w->cached = (unsigned)json_num(line, "\"cached\":");
		w->bytes_read = json_num(line, "\"bytes_read\":");
		w->hits = json_num(line, "\"hits\":");
		w->misses = json_num(line, "\"misses\":");
		w->fills = json_num(line, "\"fills\":");
		w->fill_errors = json_num(line, "\"fill_errors\":");
		w->evictions = json_num(line, "\"evictions\":");
		parse_sources(line, w);
		rc = 0;
	}
	free(line);
	if (in)
		fclose(in);
	else
		close(fd);
	if (rc)
		fprintf(stderr, "mowsctl: %s gave no status\n", sock);
	return rc;
}

static double per_s(uint64_t now, uint64_t before, double secs)
{
	return secs > 0 && now >= before ? (double)(now - before) / secs : 0;
}

static void watch_draw(const struct watch_sample *w, const struct watch_sample *b,
		       const char *mnt, double interval, bool tty)
{
	char x[32], y[32];
	double secs = b ? (double)(w->ns - b->ns) / 1e9 : 0;
	uint64_t looks = w->hits + w->misses;
	uint64_t dh = b ? w->hits - b->hits : 0, dl = b ? looks - b->hits - b->misses : 0;
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	printf("%smows on %s, every %.1fs (Ctrl-C ends)  %02d:%02d:%02d\n",
	       tty ? "\033[H\033[J" : "", mnt, interval, tm.tm_hour, tm.tm_min, tm.tm_sec);
	printf("memory     %s of %s used (%.1f%%), %u of %u chunks cached\n",
	       config_format_size(w->used, x, sizeof(x)), config_format_size(w->max, y, sizeof(y)),
	       w->max ? 100.0 * (double)w->used / (double)w->max : 0.0, w->cached, w->slots);
	printf("reads      %s/s now, %s in all\n",
	       config_format_size((uint64_t)per_s(w->bytes_read, b ? b->bytes_read : 0, secs), x,
				  sizeof(x)),
	       config_format_size(w->bytes_read, y, sizeof(y)));
	printf("hit ratio  %.1f%% now, %.1f%% in all (chunk lookups %llu)\n",
	       dl ? 100.0 * (double)dh / (double)dl : 0.0,
	       looks ? 100.0 * (double)w->hits / (double)looks : 0.0, (unsigned long long)looks);
	for (unsigned k = 0; k < w->nsrc; k++) {
		const char *name = !strcmp(w->src_name[k], "backing") ? "storage" : w->src_name[k];
		uint64_t before = b && k < b->nsrc ? b->src_bytes[k] : 0;
		printf("from %-7s %s/s now, %s in all\n", name,
		       config_format_size((uint64_t)per_s(w->src_bytes[k], before, secs), x,
					  sizeof(x)),
		       config_format_size(w->src_bytes[k], y, sizeof(y)));
	}
	printf("fills      %.0f/s now, %llu in all, %llu errors, %llu evictions\n",
	       per_s(w->fills, b ? b->fills : 0, secs), (unsigned long long)w->fills,
	       (unsigned long long)w->fill_errors, (unsigned long long)w->evictions);
	if (!tty)
		putchar('\n');
	fflush(stdout);
}

/* mowsctl status --watch: redraws until SIGINT or SIGTERM. Returns the exit status. */
static int watch_status(const char *sock, double interval)
{
	struct sigaction sa = { .sa_handler = on_watch_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	bool tty = isatty(STDOUT_FILENO);
	struct watch_sample w[2];
	char mnt[PATH_MAX] = "?";
	unsigned k = 0;
	for (bool first = true; !watch_stop; first = false, k ^= 1) {
		if (watch_sample(sock, &w[k], mnt, sizeof(mnt)))
			return watch_stop ? 0 : 1;
		watch_draw(&w[k], first ? NULL : &w[k ^ 1], mnt, interval, tty);
		struct timespec ts = { (time_t)interval,
				       (long)((interval - (double)(time_t)interval) * 1e9) };
		while (!watch_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return 0;
}

/*
 * Takes "--watch" and "--interval S" out of argv[@from..]; returns 0, or EXIT_USAGE after
 * saying what is wrong.
 */
static int watch_args(int *argc, char **argv, int from, bool *watch, double *interval)
{
	bool interval_set = false;
	for (int k = from; k < *argc; k++) {
		int take = 0;
		if (!strcmp(argv[k], "--watch")) {
			*watch = true;
			take = 1;
		} else if (!strcmp(argv[k], "--interval")) {
			char *end = NULL;
			*interval = k + 1 < *argc ? strtod(argv[k + 1], &end) : 0;
			if (!end || *end || *interval < 0.1 || *interval > 3600) {
				fprintf(stderr, "mowsctl: --interval '%s': expected seconds from 0.1 "
					"to 3600, such as 2 or 0.5\n", k + 1 < *argc ? argv[k + 1] : "");
				return EXIT_USAGE;
			}
			interval_set = true;
			take = 2;
		}
		if (take) {
			memmove(&argv[k], &argv[k + take], (size_t)(*argc - k - take) * sizeof(*argv));
			*argc -= take;
			k--;
		}
	}
	if (interval_set && !*watch) {
		fprintf(stderr, "mowsctl: --interval goes with status --watch\n");
		return EXIT_USAGE;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *mnt = NULL;
	bool json = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "-m") && i + 1 < argc)
			mnt = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "mowsctl: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i++];
	for (int k = i; k < argc; k++) /* allow --json after the command too */
		if (!strcmp(argv[k], "--json")) {
			json = true;
			memmove(&argv[k], &argv[k + 1], (size_t)(argc - k - 1) * sizeof(*argv));
			argc--, k--;
		}
	bool cluster = false;
	for (int k = i; k < argc; k++) /* prefetch --cluster */
		if (!strcmp(argv[k], "--cluster")) {
			cluster = true;
			memmove(&argv[k], &argv[k + 1], (size_t)(argc - k - 1) * sizeof(*argv));
			argc--, k--;
		}
	if (cluster && strcmp(cmd, "prefetch")) {
		fprintf(stderr, "mowsctl: --cluster goes with prefetch (mowsctl prefetch --cluster "
			"PATH...)\n");
		return EXIT_USAGE;
	}
	const char *binary = NULL;
	for (int k = i; k < argc; k++) /* upgrade --binary PATH */
		if (!strcmp(argv[k], "--binary")) {
			if (k + 1 >= argc || strcmp(cmd, "upgrade")) {
				fprintf(stderr, "mowsctl: --binary PATH goes with upgrade (mowsctl "
					"upgrade --binary /usr/sbin/mows-fuse)\n");
				return EXIT_USAGE;
			}
			binary = argv[k + 1];
			memmove(&argv[k], &argv[k + 2], (size_t)(argc - k - 2) * sizeof(*argv));
			argc -= 2, k--;
		}
	if (!strcmp(cmd, "upgrade") && i < argc) {
		fprintf(stderr, "mowsctl: upgrade takes no paths; give the binary with --binary "
			"PATH\n");
		return EXIT_USAGE;
	}
	bool watch = false;
	double interval = 1.0;
	if (watch_args(&argc, argv, i, &watch, &interval))
		return EXIT_USAGE;
	if (watch && (strcmp(cmd, "status") || json || i < argc)) {
		fprintf(stderr, "mowsctl: --watch goes with status alone (no --json, no paths)\n");
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "prefetch") && strcmp(cmd, "evict") &&
	    strcmp(cmd, "verify") && strcmp(cmd, "peers") && strcmp(cmd, "refresh") &&
	    strcmp(cmd, "upgrade")) {
		fprintf(stderr, "mowsctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}

	/* Absolute paths, so the daemon can place them under its mount. */
	char **abs = calloc((size_t)argc + 1, sizeof(*abs));
	for (int k = i; k < argc; k++) {
		abs[k] = realpath(argv[k], NULL);
		if (!abs[k]) {
			char e[CTL_ESC_MAX];
			fprintf(stderr, "mowsctl: %s: %s\n", ctl_escape(e, sizeof(e), argv[k]),
				strerror(errno));
			return 1;
		}
	}
	if (binary) { /* sent as the one argument, absolute */
		abs[argc] = realpath(binary, NULL);
		if (!abs[argc]) {
			fprintf(stderr, "mowsctl: --binary %s: %s\n", binary, strerror(errno));
			return 1;
		}
		abs[i] = abs[argc];
		argc = i + 1;
	}
	char sockbuf[PATH_MAX], mntbuf[PATH_MAX], mntreal[PATH_MAX];
	if (!sock && mnt) {
		if (!realpath(mnt, mntreal)) {
			fprintf(stderr, "mowsctl: %s: %s\n", mnt, strerror(errno));
			return 1;
		}
		config_default_socket(mntreal, sockbuf, sizeof(sockbuf));
		sock = sockbuf;
	} else if (!sock && i < argc && !binary && mount_of(abs[i], mntbuf, sizeof(mntbuf))) {
		config_default_socket(mntbuf, sockbuf, sizeof(sockbuf));
		sock = sockbuf;
	} else if (!sock && only_socket(sockbuf, sizeof(sockbuf))) {
		sock = sockbuf;
	}
	if (!sock) {
		fprintf(stderr, "mowsctl: which mows-fuse? give -s SOCKET or -m MOUNTPOINT\n");
		return EXIT_USAGE;
	}
	if (watch)
		return watch_status(sock, interval);
	int fd = connect_to(sock);
	if (fd < 0)
		return 1;
	/* A daemon that refuses a request (too long) says why and closes: read that answer
	 * rather than die of SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	FILE *req = fdopen(dup(fd), "w");
	const char *wire = cluster ? "prefetch-cluster" : cmd;
	int rc = req ? ctl_request_write(req, wire, json, abs + i, (unsigned)(argc - i)) : -errno;
	if (req && fclose(req) && rc == 0)
		rc = -errno;
	if (rc && rc != -EPIPE && rc != -EIO) {
		fprintf(stderr, "mowsctl: cannot send the request to %s: %s\n", sock, strerror(-rc));
		close(fd);
		return 1;
	}
	return relay(fd);
}
