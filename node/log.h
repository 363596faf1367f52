/* Logging: stderr in the foreground, syslog when detached.  Never a secret. */
#ifndef HSMD_LOG_H
#define HSMD_LOG_H

#include <stdbool.h>

void log_init(bool verbose);
/* From now on to syslog (a detached daemon has no stderr). */
void log_use_syslog(void);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
