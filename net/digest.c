#include "net/digest.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/crc.h"

enum digest_kind digest_kind_of(enum config_rdma_verify v)
{
	return v == RDMA_VERIFY_CRC32 ? DIGEST_CRC32 : DIGEST_SHA256;
}

size_t digest_len(enum digest_kind kind)
{
	switch (kind) {
	case DIGEST_SHA256: return 32;
	case DIGEST_CRC32: return 4;
	case DIGEST_GMAC: return 16;
	}
	return 0;
}

int digest_compute(enum digest_kind kind, const void *buf, size_t len, struct digest *out)
{
	uint32_t crc;

	memset(out, 0, sizeof(*out));
	switch (kind) {
	case DIGEST_SHA256:
		if (EVP_Digest(buf, len, out->bytes, NULL, EVP_sha256(), NULL) != 1)
			return -EIO;
		break;
	case DIGEST_CRC32:
		crc = mows_crc32(0, buf, len);
		out->bytes[0] = (uint8_t)(crc >> 24);
		out->bytes[1] = (uint8_t)(crc >> 16);
		out->bytes[2] = (uint8_t)(crc >> 8);
		out->bytes[3] = (uint8_t)crc;
		break;
	default:
		return -EINVAL;
	}
	out->kind = (uint8_t)kind;
	out->len = (uint8_t)digest_len(kind);
	return 0;
}

int digest_check(const void *buf, size_t len, const struct digest *want)
{
	struct digest got;
	int rc;

	if (!digest_len(want->kind) || want->len != digest_len(want->kind) ||
	    want->kind == DIGEST_GMAC)
		return -EINVAL;
	rc = digest_compute(want->kind, buf, len, &got);
	if (rc)
		return rc;
	return CRYPTO_memcmp(got.bytes, want->bytes, got.len) == 0 ? 0 : -EBADMSG;
}

int digest_gmac(const uint8_t key[DIGEST_GMAC_KEY_LEN], uint64_t nonce, const void *buf,
		size_t len, struct digest *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	const uint8_t *p = buf;
	uint8_t iv[12] = { 0 };
	int outl, ok;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 8; i++)
		iv[4 + i] = (uint8_t)(nonce >> (56 - 8 * i));
	ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, iv) == 1;
	/* The bytes go in as additional data only: a MAC, nothing encrypted. */
	while (ok && len) {
		int n = len > (1u << 30) ? 1 << 30 : (int)len;

		ok = EVP_EncryptUpdate(ctx, NULL, &outl, p, n) == 1;
		p += n;
		len -= (size_t)n;
	}
	ok = ok && EVP_EncryptFinal_ex(ctx, out->bytes, &outl) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out->bytes) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		return -EIO;
	out->kind = DIGEST_GMAC;
	out->len = 16;
	return 0;
}

int digest_gmac_check(const uint8_t key[DIGEST_GMAC_KEY_LEN], uint64_t nonce, const void *buf,
		      size_t len, const struct digest *want)
{
	struct digest got;
	int rc;

	if (want->kind != DIGEST_GMAC || want->len != 16)
		return -EINVAL;
	rc = digest_gmac(key, nonce, buf, len, &got);
	if (rc)
		return rc;
	return CRYPTO_memcmp(got.bytes, want->bytes, 16) == 0 ? 0 : -EBADMSG;
}
