/*
 * Deadlines on CLOCK_MONOTONIC. Every wait in mows has one: condition variables made with
 * deadline_cond_init() wait on the monotonic clock, so a wall-clock jump neither shortens nor
 * stretches a wait.
 */
#ifndef MOWS_COMMON_DEADLINE_H
#define MOWS_COMMON_DEADLINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct deadline {
	struct timespec at; /* CLOCK_MONOTONIC */
};

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t mono_ns(void);

/* A deadline @ms milliseconds from now. */
struct deadline deadline_in_ms(int64_t ms);

/* Milliseconds left (0 when passed; rounded up so that a non-zero rest never reads as 0). */
int64_t deadline_left_ms(const struct deadline *dl);
bool deadline_passed(const struct deadline *dl);

/* Initialises @cond to wait on CLOCK_MONOTONIC. Returns 0 or -errno. */
int deadline_cond_init(pthread_cond_t *cond);

/*
 * Waits on @cond (with @mutex held) until signalled or @dl passes. Returns 0 when woken,
 * -ETIMEDOUT when the deadline passed. Spurious wakeups return 0: callers loop on their
 * predicate.
 */
int deadline_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct deadline *dl);

/*
 * Waits until @fd is readable (returns 1) or @stop_fd is (returns 0: stop), whichever comes
 * first; -errno if poll() fails. Used by threads that must notice a stop while idle.
 */
int wait_readable_or_stop(int fd, int stop_fd);

#endif
