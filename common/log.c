#include "common/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static atomic_int log_level = LOG_INFO;
static atomic_bool log_syslog;

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

static const char *level_name(int level)
{
	switch (level) {
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warn";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

void log_vmsg(int level, const char *fmt, va_list ap)
{
	if (level > atomic_load(&log_level))
		return;
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

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
