#include "common/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* CODE_FILE= would name this file, not the caller: leave it out. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <time.h>

#define NOFILE_LOG_EVERY_NS 60000000000ull

static atomic_int log_level = LOG_INFO;
static atomic_bool log_syslog;
static atomic_bool log_journal;
static char journal_ident[64]; /* written once, before log_journal is set */

void log_set_level(int level)
{
	atomic_store(&log_level, level);
}

int log_get_level(void)
{
	return atomic_load(&log_level);
}

int log_level_parse(const char *name)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{ "error", LOG_ERR },  { "warn", LOG_WARNING }, { "warning", LOG_WARNING },
		{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i].name) == 0)
			return names[i].level;
	return -1;
}

void log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	atomic_store(&log_syslog, true);
}

bool log_use_journal(const char *ident)
{
	unsigned long long dev, ino;
	struct stat st;
	const char *js = getenv("JOURNAL_STREAM");
	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) < 0 ||
	    (unsigned long long)st.st_dev != dev || (unsigned long long)st.st_ino != ino)
		return false;
	snprintf(journal_ident, sizeof(journal_ident), "%s", ident);
	atomic_store(&log_journal, true);
	return true;
}

/* Formats one journal field into @buf; returns its length, cut to what @buf holds. */
__attribute__((format(printf, 3, 4)))
static struct iovec journal_field(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	size_t len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
	return (struct iovec){ .iov_base = buf, .iov_len = len };
}

/* One journal entry: the message, its priority, who sent it and @field=@value if given. */
static void journal_send(int level, const char *field, const char *value, const char *line)
{
	char msg[1100], prio[16], ident[96], extra[1100];
	struct iovec iov[4];
	int n = 0;
	iov[n++] = journal_field(msg, sizeof(msg), "MESSAGE=%s", line);
	iov[n++] = journal_field(prio, sizeof(prio), "PRIORITY=%d", level);
	iov[n++] = journal_field(ident, sizeof(ident), "SYSLOG_IDENTIFIER=%s", journal_ident);
	if (field && value)
		iov[n++] = journal_field(extra, sizeof(extra), "%s=%s", field, value);
	sd_journal_sendv(iov, n);
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warn";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

static void log_vfield(int level, const char *field, const char *value, const char *fmt,
		       va_list ap)
{
	if (level > atomic_load(&log_level))
		return;
	if (atomic_load(&log_journal)) {
		char text[1024];
		vsnprintf(text, sizeof(text), fmt, ap);
		journal_send(level, field, value, text);
		return;
	}
	if (atomic_load(&log_syslog)) {
		vsyslog(level, fmt, ap);
		return;
	}
	/* One fprintf per line so that lines from several threads do not interleave. */
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld mows %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, level_name(level), line);
}

void log_vmsg(int level, const char *fmt, va_list ap)
{
	log_vfield(level, NULL, NULL, fmt, ap);
}

void log_field_msg(int level, const char *field, const char *value, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vfield(level, field, value, fmt, ap);
	va_end(ap);
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void log_nofile(_Atomic uint64_t *last_ns, int err, const char *what)
{
	if (err != -EMFILE && err != -ENFILE)
		return; /* a descriptor (fd 23 or 24 is no ENFILE or EMFILE) or another error */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* no common/deadline.c: log.c stands alone */
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	uint64_t prev = atomic_load(last_ns);
	if ((prev && now - prev < NOFILE_LOG_EVERY_NS) ||
	    !atomic_compare_exchange_strong(last_ns, &prev, now))
		return;
	struct rlimit rl = { 0 };
	getrlimit(RLIMIT_NOFILE, &rl);
	if (err == -EMFILE)
		log_err("out of file descriptors opening %s: this process may have %llu open "
			"(RLIMIT_NOFILE, hard limit %llu); raise LimitNOFILE= in the systemd unit "
			"or 'ulimit -n' before starting mows-fuse", what,
			(unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
	else
		log_err("out of file descriptors opening %s: the system-wide limit is reached "
			"(ENFILE); raise it with 'sysctl fs.file-max' or close other programs", what);
}
