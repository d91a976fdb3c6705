/*
 * reader: reads files the way a model loader does and reports the throughput.
 *
 *   reader [-m read|mmap] [-b BUFSIZE] [-p NPROC] FILE...
 *
 * read: read() into one BUFSIZE buffer (default 1 MiB) until EOF.
 * mmap: map each file shared and read-only, memcpy it into the buffer BUFSIZE at a time.
 * -p N: N processes do the whole list at the same moment (released together through a
 *       pipe); the rate is N times the bytes over the time until the last one finished.
 *
 * Prints one line: "bytes=N seconds=S gbps=R" (R in 10^9 bytes per second). Exits nonzero,
 * naming the file, on any error or short file.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum reader_mode { MODE_READ, MODE_MMAP };

struct reader {
	enum reader_mode mode;
	size_t bufsize;
	char *buf;
	volatile unsigned long sink; /* keeps the copies from being optimised away */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Returns the bytes read, or -1 with a message printed. */
static long long read_fd(struct reader *r, int fd, const char *path)
{
	long long total = 0;

	for (;;) {
		ssize_t n = read(fd, r->buf, r->bufsize);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "reader: read %s at %lld: %s\n", path, total, strerror(errno));
			return -1;
		}
		if (n == 0)
			return total;
		r->sink += (unsigned char)r->buf[n - 1];
		total += n;
	}
}

static long long mmap_fd(struct reader *r, int fd, const char *path)
{
	struct stat st;
	char *map;

	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "reader: stat %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (st.st_size == 0)
		return 0;
	map = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "reader: mmap %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (size_t off = 0, size = st.st_size; off < size; off += r->bufsize) {
		size_t n = size - off < r->bufsize ? size - off : r->bufsize;

		memcpy(r->buf, map + off, n);
		r->sink += (unsigned char)r->buf[n - 1];
	}
	munmap(map, st.st_size);
	return st.st_size;
}

/* Reads every file once. Returns the total bytes, or -1 after the first failure. */
static long long read_all(struct reader *r, char **files, int nfiles)
{
	long long total = 0;

	for (int i = 0; i < nfiles; i++) {
		long long n;
		int fd = open(files[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fprintf(stderr, "reader: open %s: %s\n", files[i], strerror(errno));
			return -1;
		}
		n = r->mode == MODE_READ ? read_fd(r, fd, files[i]) : mmap_fd(r, fd, files[i]);
		close(fd);
		if (n < 0)
			return -1;
		total += n;
	}
	return total;
}

/* Forks @nproc readers that wait on @go; returns how many failed. */
static int run_parallel(struct reader *r, int nproc, char **files, int nfiles, double *secs)
{
	int go[2], failed = 0;
	double start;

	if (pipe(go) < 0) {
		perror("reader: pipe");
		return nproc;
	}
	for (int i = 0; i < nproc; i++) {
		pid_t pid = fork();
		char c;

		if (pid < 0) {
			perror("reader: fork");
			failed++;
			continue;
		}
		if (pid == 0) {
			close(go[1]);
			if (read(go[0], &c, 1) < 0)
				_exit(2);
			_exit(read_all(r, files, nfiles) < 0);
		}
	}
	close(go[0]);
	start = now_s();
	close(go[1]); /* EOF releases every child at once */
	for (;;) {
		int status;
		pid_t pid = wait(&status);

		if (pid < 0)
			break;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	*secs = now_s() - start;
	return failed;
}

static long long total_size(char **files, int nfiles)
{
	long long total = 0;
	struct stat st;

	for (int i = 0; i < nfiles; i++) {
		if (stat(files[i], &st) < 0) {
			fprintf(stderr, "reader: stat %s: %s\n", files[i], strerror(errno));
			return -1;
		}
		total += st.st_size;
	}
	return total;
}

int main(int argc, char *argv[])
{
	struct reader r = { .mode = MODE_READ, .bufsize = 1 << 20 };
	long long bytes;
	double secs, start;
	int opt, nproc = 1;

	while ((opt = getopt(argc, argv, "m:b:p:")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "read") == 0)
				r.mode = MODE_READ;
			else if (strcmp(optarg, "mmap") == 0)
				r.mode = MODE_MMAP;
			else
				goto usage;
			break;
		case 'b':
			r.bufsize = strtoul(optarg, NULL, 0);
			if (r.bufsize == 0)
				goto usage;
			break;
		case 'p':
			nproc = atoi(optarg);
			if (nproc < 1)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (optind >= argc)
		goto usage;
	if (posix_memalign((void **)&r.buf, 1 << 21, r.bufsize) != 0) {
		fprintf(stderr, "reader: cannot allocate a %zu byte buffer\n", r.bufsize);
		return 1;
	}
	memset(r.buf, 0, r.bufsize);
	if (nproc == 1) {
		start = now_s();
		bytes = read_all(&r, argv + optind, argc - optind);
		secs = now_s() - start;
		if (bytes < 0)
			return 1;
	} else {
		bytes = total_size(argv + optind, argc - optind);
		if (bytes < 0)
			return 1;
		if (run_parallel(&r, nproc, argv + optind, argc - optind, &secs) != 0) {
			fprintf(stderr, "reader: some of the %d readers failed\n", nproc);
			return 1;
		}
		bytes *= nproc;
	}
	printf("bytes=%lld seconds=%.3f gbps=%.3f\n", bytes, secs, bytes / secs / 1e9);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-m read|mmap] [-b BUFSIZE] [-p NPROC] FILE...\n", argv[0]);
	return 2;
}
