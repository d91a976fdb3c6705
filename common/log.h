/*
 * Logging for every mows program.
 *
 * Messages go to stderr until log_use_syslog() switches them to syslog (the daemon does so
 * when it detaches) or log_use_journal() to the systemd journal (when systemd connected
 * stderr to it): there each message carries PRIORITY=, SYSLOG_IDENTIFIER= and, through
 * log_field_msg(), a field such as MOWS_FILE= or MOWS_PEER= that journalctl can select on. The level is the one piece of process-wide state besides signal flags.
 * All functions are safe to call from any thread.
 */
#ifndef MOWS_COMMON_LOG_H
#define MOWS_COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

/* Levels use syslog's numbers: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
void log_set_level(int level);
int log_get_level(void);

/* Parses "error", "warn", "info" or "debug"; returns the level or -1. */
int log_level_parse(const char *name);

/* Sends messages to syslog under @ident from now on. */
void log_use_syslog(const char *ident);

/*
 * Sends messages to the systemd journal under @ident from now on, when stderr is the journal
 * stream systemd set up (JOURNAL_STREAM names stderr's device and inode). Returns whether
 * it switched; call before stderr is redirected.
 */
bool log_use_journal(const char *ident);

/*
 * Like log_msg(), with one structured journal field @field=@value (@field upper case, such
 * as "MOWS_FILE"; @value NULL for none). Elsewhere the message alone is written.
 */
void log_field_msg(int level, const char *field, const char *value, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Out of descriptors opening @what: logs, at most once a minute per *@last_ns (a caller's
 * own rate-limit state, zero at first), which limit was reached (@err is -EMFILE or
 * -ENFILE; anything else, a descriptor included, is ignored) and how to raise it. Safe
 * from any thread.
 */
void log_nofile(_Atomic uint64_t *last_ns, int err, const char *what);
void log_vmsg(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_file_msg(level, relpath, ...) log_field_msg(level, "MOWS_FILE", relpath, __VA_ARGS__)
#define log_peer_msg(level, peer, ...) log_field_msg(level, "MOWS_PEER", peer, __VA_ARGS__)

#endif
