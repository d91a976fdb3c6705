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

	if (!digest_len(want->kind) || want->len != digest_len(want->kind))
		return -EINVAL;
	rc = digest_compute(want->kind, buf, len, &got);
	if (rc)
		return rc;
	return CRYPTO_memcmp(got.bytes, want->bytes, got.len) == 0 ? 0 : -EBADMSG;
}
