/*
 * mowsctl: talks to a running mows-fuse over its control socket.
 *
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] status
 *   mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] prefetch|evict|verify PATH...
 *
 * Without -s or -m the daemon is found from the first PATH (the mows mount holding it), else
 * from the only socket in /run/mows. The protocol is described in fs/control.c.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/config.h"
#include "common/deadline.h"

#define EXIT_USAGE 2
#define RUN_DIR "/run/mows"

struct progress {
	bool tty;
	uint64_t start_ns, base_done, file_done, file_total, all_done;
	char file[256];
};

static void usage(FILE *out)
{
	fprintf(out, "usage: mowsctl [-s SOCKET | -m MOUNTPOINT] [--json] COMMAND [PATH...]\n"
		     "commands:\n"
		     "  status          memory, chunks, hit ratio, bytes by source, per-file state\n"
		     "  prefetch PATH.. fill files (or whole directories) into the cache\n"
		     "  evict PATH...   drop files from the cache\n"
		     "  verify PATH...  read files and check them against the CRC manifest\n"
		     "  peers           every peer: state, transport, bytes in and out, errors\n"
		     "  refresh         take the snapshot of names and attributes again now\n");
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

static void on_progress(struct progress *p, const char *line)
{
	unsigned long long done, total;
	int used = 0;
	if (sscanf(line, "%llu %llu %n", &done, &total, &used) < 2)
		return;
	const char *file = line + used;
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
	while (in && getline(&line, &cap, in) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '.')
			puts(line[1] ? line + 2 : "");
		else if (line[0] == '%')
			on_progress(&p, line + 2);
		else if (line[0] == '!')
			fprintf(stderr, "%s%s\n", p.tty && p.file[0] ? "\n" : "", line + 2);
		else if (line[0] == '=') {
			status = atoi(line + 2);
			break;
		}
	}
	if (p.file[0] && p.tty)
		fputc('\n', stderr);
	if (status == 1 && !line)
		fprintf(stderr, "mowsctl: the daemon closed the connection early\n");
	free(line);
	if (in)
		fclose(in);
	else
		close(fd);
	return status;
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
	if (strcmp(cmd, "status") && strcmp(cmd, "prefetch") && strcmp(cmd, "evict") &&
	    strcmp(cmd, "verify") && strcmp(cmd, "peers") && strcmp(cmd, "refresh")) {
		fprintf(stderr, "mowsctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}

	/* Absolute paths, so the daemon can place them under its mount. */
	char **abs = calloc((size_t)argc, sizeof(*abs));
	for (int k = i; k < argc; k++) {
		abs[k] = realpath(argv[k], NULL);
		if (!abs[k]) {
			fprintf(stderr, "mowsctl: %s: %s\n", argv[k], strerror(errno));
			return 1;
		}
	}
	char sockbuf[PATH_MAX], mntbuf[PATH_MAX], mntreal[PATH_MAX];
	if (!sock && mnt) {
		if (!realpath(mnt, mntreal)) {
			fprintf(stderr, "mowsctl: %s: %s\n", mnt, strerror(errno));
			return 1;
		}
		config_default_socket(mntreal, sockbuf, sizeof(sockbuf));
		sock = sockbuf;
	} else if (!sock && i < argc && mount_of(abs[i], mntbuf, sizeof(mntbuf))) {
		config_default_socket(mntbuf, sockbuf, sizeof(sockbuf));
		sock = sockbuf;
	} else if (!sock && only_socket(sockbuf, sizeof(sockbuf))) {
		sock = sockbuf;
	}
	if (!sock) {
		fprintf(stderr, "mowsctl: which mows-fuse? give -s SOCKET or -m MOUNTPOINT\n");
		return EXIT_USAGE;
	}
	int fd = connect_to(sock);
	if (fd < 0)
		return 1;
	dprintf(fd, "%s %s", cmd, json ? "json" : "text");
	for (int k = i; k < argc; k++)
		dprintf(fd, "\t%s", abs[k]);
	dprintf(fd, "\n");
	return relay(fd);
}
