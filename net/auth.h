/*
 * Peer authentication: mutual challenge-response over a shared secret with HMAC-SHA256.
 *
 * Both sides send a HELLO (net/proto.h) carrying a fresh 32-byte random nonce and their node
 * id. Then each side proves it knows the secret by sending, in an AUTH frame,
 *
 *   mac = HMAC-SHA256(secret, "mows-auth-v1" || role || their_nonce || my_nonce
 *                             || u8 len(my_id) || my_id || u8 len(their_id) || their_id)
 *
 * where role is 'C' for the side that connected and 'S' for the side that accepted, and
 * "their" / "my" are from the point of view of the side computing its own MAC. Ids are
 * length-prefixed so that ("ab", "c") and ("a", "bc") never give the same message. Because
 * the MAC covers the role, the order of the nonces and both ids:
 *   - a MAC reflected back to its sender fails (wrong role, nonces swapped);
 *   - a MAC replayed from an earlier connection fails (the verifier's nonce is fresh);
 *   - a MAC made for another pair of nodes fails (ids differ).
 * A side that receives AUTH checks it with auth_check(), answers AUTH_OK or AUTH_FAIL, and
 * treats the connection as authenticated only after both its check passed and it received
 * AUTH_OK.
 *
 * Secrets are any bytes (1..AUTH_SECRET_MAX), read from a file by auth_load_secret().
 *
 * Threads: every function may be called from any thread; none keeps state between calls.
 */
#ifndef MOWS_NET_AUTH_H
#define MOWS_NET_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/proto.h"

#define AUTH_SECRET_MAX	4096

#define AUTH_ROLE_CLIENT	'C'	/* the side that called connect() */
#define AUTH_ROLE_SERVER	'S'	/* the side that called accept() */

/* Fills @out with PROTO_NONCE_LEN bytes from getrandom(). Returns 0 or -errno. */
int auth_nonce(uint8_t out[PROTO_NONCE_LEN]);

/*
 * Computes this side's MAC into @out, as defined above. @role is AUTH_ROLE_CLIENT or
 * AUTH_ROLE_SERVER, @their_nonce and @their_id come from the peer's HELLO, @my_nonce and
 * @my_id from our own. If @secret_len is 0, the role is neither 'C' nor 'S', an id is not
 * valid (proto_node_id_ok()) or the HMAC fails, @out is set to all zeros, which
 * auth_check() never accepts.
 */
void auth_mac(const uint8_t *secret, size_t secret_len, char role,
	      const uint8_t their_nonce[PROTO_NONCE_LEN], const uint8_t my_nonce[PROTO_NONCE_LEN],
	      const char *my_id, const char *their_id, uint8_t out[PROTO_MAC_LEN]);

/*
 * Whether @mac is what the PEER computed with auth_mac() given the same arguments the peer
 * used; i.e. pass the peer's role, then the verifier's own nonce as @their_nonce, the
 * peer's nonce as @my_nonce, the peer's id as @my_id and the verifier's id as @their_id:
 *
 *   server checking the client:
 *     auth_check(s, n, AUTH_ROLE_CLIENT, server_nonce, client_nonce, client_id, server_id, mac)
 *
 * Compares in constant time. False for every case in which auth_mac() writes zeros.
 */
bool auth_check(const uint8_t *secret, size_t secret_len, char role,
		const uint8_t their_nonce[PROTO_NONCE_LEN],
		const uint8_t my_nonce[PROTO_NONCE_LEN], const char *my_id, const char *their_id,
		const uint8_t mac[PROTO_MAC_LEN]);

/*
 * Reads the shared secret from @path (symlinks are followed; the file they reach is
 * checked). Refuses, with a message in @err (@errlen bytes, always NUL-terminated) that
 * names the file, the value and the fix:
 *   -EPERM   the mode allows any group or other access ("chmod 600 FILE"), or the file is
 *            not owned by the effective user;
 *   -EINVAL  not a regular file, empty (after trimming), or larger than AUTH_SECRET_MAX;
 *   -errno   open or read failed (-ENOENT: missing).
 * One trailing "\n" is removed. On success returns 0 and *@secret is a new buffer of
 * *@len bytes owned by the caller, to be released with auth_secret_free().
 */
int auth_load_secret(const char *path, uint8_t **secret, size_t *len, char *err, size_t errlen);

/* Wipes and frees a secret from auth_load_secret(). NULL is fine. */
void auth_secret_free(uint8_t *secret, size_t len);

#endif
