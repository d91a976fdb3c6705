/*
 * TLS 1.3 on peer TCP connections (OpenSSL libssl). The one seam around libssl: net/tls.c
 * (sessions) and net/tls_ctx.c (contexts) implement it; nothing else in mows includes
 * <openssl/ssl.h>.
 *
 * Two ways to authenticate, chosen by the configuration (tls_ctx_from_config()):
 *
 *   shared secret (default): a TLS 1.3 external PSK. Both sides derive the same 32-byte key
 *     from the bytes of secret_file,
 *       psk = HKDF-SHA256(ikm = secret, salt = "mows-tls-psk-v1",
 *                         info = "mows peer TLS 1.3 external PSK"),
 *     and offer it under the fixed identity "mows-psk-v1" with TLS_AES_128_GCM_SHA256 (or
 *     TLS_CHACHA20_POLY1305_SHA256). The handshake is psk_dhe_ke: an ephemeral X25519 or
 *     P-256 exchange keyed with the PSK, so recorded traffic stays secret even if the
 *     secret leaks later. No certificates are involved.
 *
 *   certificates (tls_cert, tls_key, tls_ca all set): every node presents its certificate
 *     chain and requires one from the peer that verifies against tls_ca (mutual TLS, e.g.
 *     cert-manager issuing from one cluster CA). Any certificate the CA signed is a member:
 *     host names are not checked (peers come and go under changing addresses), so give the
 *     cluster a CA of its own. tls_conn_peer_name() tells who it was, for logs.
 *
 * Only TLS 1.3 is offered or accepted. No session tickets, no resumption, no renegotiation
 * (TLS 1.3 has none), no compression. A peer that does not speak TLS, such as a node with
 * tls = off, fails the handshake with -EPROTO (or -ECONNRESET if it hangs up first).
 *
 * The HMAC challenge-response of net/auth.c goes away when TLS is on. With a PSK, the
 * client's binder and both Finished messages are MACs keyed by the secret over a transcript
 * that holds fresh randoms from both sides and the ephemeral key shares: that already proves
 * to each side that the other knows the secret, for this connection only, and a relay can
 * neither replay nor reflect it. A second proof over the same secret adds round trips and
 * nothing else. With certificates there may be no shared secret at all. What remains of
 * HELLO (node ids, capabilities) is sent inside TLS after tls_handshake() and is as trusted
 * as the peer: any member may claim any node id, as before (in certificate mode the link
 * may compare the id with tls_conn_peer_name()). The HMAC stays only for tls = off with a
 * secret_file (insecure = true), where it is the only check left. tls_conn_export() gives a
 * per-connection key bound to this handshake for anything that wants one (e.g. the AES-GMAC
 * of RDMA-read chunks, see net/digest.h).
 *
 * Until tls_handshake() returns 0 the peer is unauthenticated: the link gives the handshake
 * its short deadline and counts the connection against the unauthenticated budget. A PSK
 * handshake costs ~0.7 ms of CPU for both ends together (mows-tlsbench).
 *
 * Errors (every function returns 0 or -errno, and leaves a one-line message that names the
 * cause and the fix in tls_conn_strerror()):
 *   -EACCES     authentication failed: wrong PSK (the secret files differ), certificate not
 *               signed by tls_ca / expired / missing, or the peer refused ours;
 *   -EPROTO     the peer does not speak TLS 1.3 (plaintext or legacy mows peer, TLS <= 1.2)
 *               or broke the protocol;
 *   -EBADMSG    a record failed its integrity check after the handshake: bytes were altered
 *               in flight. Nothing of that record reaches the caller;
 *   -ETIMEDOUT  the deadline passed;
 *   -ECONNRESET the peer closed (with or without close_notify);
 *   -ENOMEM, or the socket's -errno.
 * After any error the session is broken (a timeout may have left a record half read):
 * tls_conn_free() it and close the socket.
 *
 * Threads: a tls_ctx is built once at start-up and then shared by every thread (OpenSSL
 * makes SSL_CTX use thread-safe; a certificate reload swaps the SSL_CTX under the ctx's own
 * lock, held only for the swap, never across file or network I/O). A tls_conn may be used by
 * one reading thread and one writing thread at once (a multiplexed link's reader and
 * sender): the conn's own lock serializes every call into OpenSSL, whose SSL object is not
 * safe from two threads at once, and is held for one non-blocking call, never across a
 * wait. Two readers or two writers at once are the caller's bug (their bytes would
 * interleave). The handshake runs before anything else; tls_conn_free() runs after every
 * other call on the conn has returned. An event loop can drive conns from one thread with
 * tls_handshake_step(), tls_read_some(), tls_write_some() and tls_conn_pending(). Never
 * hold a lock of your own across the blocking calls. Sends use MSG_NOSIGNAL: a peer that
 * hangs up never raises SIGPIPE.
 */
#ifndef MOWS_NET_TLS_H
#define MOWS_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/config.h"
#include "common/deadline.h"

struct tls_ctx;
struct tls_conn;

#define TLS_PSK_IDENTITY	"mows-psk-v1"
#define TLS_ERR_MAX		256

/*
 * A PSK context from the shared secret's bytes (any 1..4096 bytes). The secret is not
 * kept, only the derived key (wiped on free). Returns the context, or NULL with errno set
 * and a message in @err.
 */
struct tls_ctx *tls_ctx_new_psk(const uint8_t *secret, size_t len, char *err, size_t errlen);

/*
 * A certificate context: @cert is this node's PEM certificate (chain), @key its PEM private
 * key, @ca the PEM CA certificate(s) that peers' certificates must verify against. Each file
 * is read and parsed now; errors name the key and the fix, e.g.
 *   tls_key '/etc/mows/tls.key': does not match tls_cert '/etc/mows/tls.crt'; ...
 * -ENOENT/-EACCES for a missing/unreadable file, -EINVAL for one that does not parse.
 * Returns the context, or NULL with errno set and a message in @err.
 */
struct tls_ctx *tls_ctx_new_cert(const char *cert, const char *key, const char *ca, char *err,
				 size_t errlen);

/*
 * Certificate mode: how often (at most) a new connection looks whether the three files
 * changed (a stat() each); when they did and load, later connections use them, e.g. after
 * cert-manager renewed the certificate. Connections already up keep theirs. A changed set
 * that does not load (a rotation half done) is logged and the old one kept. 0: never look.
 * Default TLS_RELOAD_MS. Call before the context is shared.
 */
#define TLS_RELOAD_MS 10000
void tls_ctx_set_reload_ms(struct tls_ctx *ctx, unsigned ms);

/*
 * The context the configuration asks for: NULL in *@out with 0 returned when tls = off;
 * certificates when tls_cert is set; otherwise a PSK from secret_file (loaded with
 * auth_load_secret(), so the same mode checks apply). Returns 0 or -errno with a message in
 * @err. Call once at start-up, after config_validate().
 */
int tls_ctx_from_config(const struct mows_config *cfg, struct tls_ctx **out, char *err,
			size_t errlen);

/* Whether @ctx authenticates with certificates (else with the PSK). */
bool tls_ctx_is_cert(const struct tls_ctx *ctx);

/* Frees @ctx; every conn made from it must be freed first. NULL is fine. */
void tls_ctx_free(struct tls_ctx *ctx);

/*
 * A session on the connected socket @fd. Makes @fd non-blocking (if it is not already), so
 * every wait is a poll() bounded by the call's deadline. @server: this side accepted the
 * connection. The conn does not own @fd: the caller closes it after tls_conn_free().
 * Returns NULL with errno set (ENOMEM, or fcntl's errno).
 */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, bool server);

/*
 * Runs the handshake (client or server, as made) by @dl. Returns 0 when the peer is
 * authenticated, else -errno as listed at the top. In TLS 1.3 the client finishes before
 * the server has checked the client's certificate: a client the server refuses learns it
 * (-EACCES) at its first tls_recv_all(), so a link should read the peer's first frame
 * (HELLO) before it counts the peer as up.
 */
int tls_handshake(struct tls_conn *c, const struct deadline *dl);

/* Receives exactly @len bytes into @buf by @dl. Returns 0 or -errno. */
int tls_recv_all(struct tls_conn *c, void *buf, size_t len, const struct deadline *dl);

/* Sends @len bytes from @buf by @dl. Returns 0 or -errno. */
int tls_send_all(struct tls_conn *c, const void *buf, size_t len, const struct deadline *dl);

/*
 * Sends @iov (@iovcnt entries, not modified) by @dl, in order, as one byte stream: e.g. a
 * frame header and a chunk straight from the slab. Small leading entries (together at most
 * TLS_SENDV_COALESCE bytes) go out in one record; large ones are handed to OpenSSL from the
 * caller's memory with no copy on our side (OpenSSL 3.0 copies each 16 KiB record into its
 * write buffer and encrypts it there; without kTLS that copy is the price of TLS). Frames
 * of 64 KiB or more are sent in batches: the records queue in a 256 KiB buffer of the conn
 * (made at the first such frame, kept until tls_conn_free()) and leave in one send() per
 * batch instead of one per record; the queue is empty again when this returns 0. The
 * caller keeps the memory valid and unchanged until this returns. Returns 0 or -errno.
 */
#define TLS_SENDV_COALESCE 512
int tls_sendv(struct tls_conn *c, const struct iovec *iov, int iovcnt, const struct deadline *dl);

/*
 * Non-blocking steps for an event loop (epoll). Each makes what progress the socket allows
 * and never waits:
 *   tls_handshake_step() returns 0 once the handshake is done (peer authenticated);
 *   tls_read_some() returns the bytes read into @buf (1..@len);
 *   tls_write_some() returns the bytes of @buf sent (1..@len; at most a record or so);
 * or -EAGAIN with *@want = POLLIN or POLLOUT: wait for that on the fd, then call again
 * (*@want may also be 0: call again at once). Any reading step may want POLLOUT and any
 * writing step POLLIN (TLS sends and receives protocol messages of its own). After -EAGAIN
 * from tls_write_some(), call it again with the same bytes and length (the buffer may
 * move); a write in progress must finish before another begins. Other errors are those
 * listed at the top, with tls_conn_strerror(). Before waiting for POLLIN, check
 * tls_conn_pending(): bytes already decrypted do not make the socket readable.
 */
int tls_handshake_step(struct tls_conn *c, short *want);
ssize_t tls_read_some(struct tls_conn *c, void *buf, size_t len, short *want);
ssize_t tls_write_some(struct tls_conn *c, const void *buf, size_t len, short *want);

/*
 * A session sends a TLS 1.3 KeyUpdate (new traffic keys) after every TLS_REKEY_BYTES bytes
 * it sent, well inside the ~2^24.5 full records an AES-GCM key is good for (RFC 8446 5.5);
 * the peer follows on its own. tls_conn_set_rekey_bytes() changes the interval (tests);
 * tls_conn_key_updates() counts the updates sent.
 */
#define TLS_REKEY_BYTES (64ull << 30)
void tls_conn_set_rekey_bytes(struct tls_conn *c, uint64_t bytes);
unsigned tls_conn_key_updates(struct tls_conn *c);

/*
 * Whether decrypted bytes are already buffered inside the session, so a read would not
 * block though poll() says the socket is idle. An event loop checks this before waiting.
 */
bool tls_conn_pending(struct tls_conn *c);

/*
 * Writes @len bytes of keying material bound to this session (RFC 8446 exporter) with
 * @label into @out. Both sides get the same bytes. Returns 0 or -EINVAL (before handshake).
 */
int tls_conn_export(struct tls_conn *c, const char *label, uint8_t *out, size_t len);

/*
 * The peer's certificate subject (CN, else the whole subject) in certificate mode, or
 * "psk:" TLS_PSK_IDENTITY in PSK mode, after a successful handshake; "" before.
 */
const char *tls_conn_peer_name(const struct tls_conn *c);

/* The cipher suite negotiated, e.g. "TLS_AES_128_GCM_SHA256"; "" before the handshake. */
const char *tls_conn_cipher(struct tls_conn *c);

/* The message of the last error on @c ("" if none). Valid until the next call on @c. */
const char *tls_conn_strerror(const struct tls_conn *c);

/*
 * Sends close_notify if the session is healthy and the socket takes it at once (never
 * waits), then frees the session. Does not close the fd. NULL is fine.
 */
void tls_conn_free(struct tls_conn *c);

#endif
