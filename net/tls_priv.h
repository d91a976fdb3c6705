/*
 * What net/tls.c (sessions) and net/tls_ctx.c (contexts) share; nothing else includes this.
 * The contract is net/tls.h.
 */
#ifndef MOWS_NET_TLS_PRIV_H
#define MOWS_NET_TLS_PRIV_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "net/tls.h"

/*
 * The SSL_CTX for a new session, with a reference the caller drops with SSL_CTX_free()
 * (SSL_new() takes its own). In certificate mode, first looks whether the files changed
 * (at most every reload interval) and loads them again if so. Any thread.
 */
SSL_CTX *tls_ctx_ssl(struct tls_ctx *ctx);

/* OpenSSL's reason for the oldest error queued on this thread, in @buf; clears the queue. */
const char *tls_ssl_reason(char *buf, size_t len);

#endif
