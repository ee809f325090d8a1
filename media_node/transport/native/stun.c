/*
 * STUN messages (RFC 8489) as ICE's checks carry them: parsing, MESSAGE-INTEGRITY
 * (HMAC-SHA1, OpenSSL's) and FINGERPRINT (CRC-32, zlib's).
 *
 * Each stream keys one HMAC context per ICE password when ICE is set up, so a check
 * costs the message's own hashing: OpenSSL re-initialises a keyed context from the
 * state it kept after the key block.
 */

#include "fanout.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <zlib.h>

#define STUN_FINGERPRINT_XOR 0x5354554Eu

static EVP_MAC *hmac;

int stun_init(void)
{
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    return hmac != NULL;
}

int hmac_sha1_key(EVP_MAC_CTX **context, const uint8_t *key, size_t size)
{
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (*context == NULL)
        *context = EVP_MAC_CTX_new(hmac);
    /* A key pointer even for an empty key: NULL would mean "the previous key". */
    static const uint8_t empty[1];
    return *context != NULL && EVP_MAC_init(*context, size ? key : empty, size, params);
}

int hmac_sha1(EVP_MAC_CTX *context, const uint8_t *first, size_t first_size,
              const uint8_t *second, size_t second_size, uint8_t digest[HMAC_SHA1_SIZE])
{
    size_t size;
    /* No key: the context starts again from the one it was keyed with. */
    return context != NULL && EVP_MAC_init(context, NULL, 0, NULL) &&
           EVP_MAC_update(context, first, first_size) &&
           EVP_MAC_update(context, second, second_size) &&
           EVP_MAC_final(context, digest, &size, HMAC_SHA1_SIZE) && size == HMAC_SHA1_SIZE;
}

uint32_t crc_32(const uint8_t *data, size_t size)
{
    return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), data, size);
}

/* 1 for a well-formed STUN message (RFC 8489 5, 6), 0 for anything else. */
int stun_parse(StunMessage *message, const uint8_t *data, Py_ssize_t size)
{
    memset(message, 0, sizeof(*message));
    message->integrity = message->fingerprint = -1;
    /* RFC 7983: STUN starts with 0-3; the first two bits are zero. */
    if (size < STUN_HEADER_SIZE || (data[0] & 0xc0) || get32(data + 4) != STUN_COOKIE)
        return 0;
    Py_ssize_t length = get16(data + 2);
    if (length % 4 || STUN_HEADER_SIZE + length != size)
        return 0;
    message->type = get16(data);
    Py_ssize_t at = STUN_HEADER_SIZE;
    while (at + 4 <= size) {
        int type = get16(data + at);
        Py_ssize_t value_size = get16(data + at + 2);
        const uint8_t *value = data + at + 4;
        Py_ssize_t next = at + 4 + ((value_size + 3) & ~(Py_ssize_t)3);
        /* FINGERPRINT comes last. */
        if (next > size || message->fingerprint >= 0)
            return 0;
        if (type == STUN_FINGERPRINT) {
            if (value_size != 4)
                return 0;
            message->fingerprint = at;
        } else if (message->integrity >= 0) {
            /* Attributes between MESSAGE-INTEGRITY and FINGERPRINT are not
             * authenticated: ignored (RFC 8489 14.5). */
        } else if (type == STUN_MESSAGE_INTEGRITY) {
            if (value_size != HMAC_SHA1_SIZE)
                return 0;
            message->integrity = at;
        } else if (type == STUN_USERNAME) {
            message->username = value;
            message->username_size = value_size;
        } else if (type == STUN_ICE_CONTROLLING) {
            message->controlling = 1;
        } else if (type == STUN_ICE_CONTROLLED) {
            message->controlled = 1;
        } else if (type == STUN_ERROR_CODE) {
            if (value_size >= 4)
                message->error_code = (value[2] & 7) * 100 + value[3];
        } else if (type < 0x8000 && type != STUN_PRIORITY && type != STUN_USE_CANDIDATE &&
                   type != STUN_XOR_MAPPED_ADDRESS && type != STUN_MAPPED_ADDRESS) {
            message->unknown_required = 1;
        }
        at = next;
    }
    return at == size;
}

/* The message up to `end` with the header's length as if it ended `extra` bytes after
 * `end`: what MESSAGE-INTEGRITY and FINGERPRINT cover (RFC 8489 14.5, 14.7). */
static void covered_header(uint8_t header[STUN_HEADER_SIZE], const uint8_t *data,
                           Py_ssize_t end, int extra)
{
    memcpy(header, data, STUN_HEADER_SIZE);
    put16(header + 2, (uint16_t)(end - STUN_HEADER_SIZE + extra));
}

static int integrity(EVP_MAC_CTX *key, const uint8_t *data, Py_ssize_t end,
                     uint8_t digest[HMAC_SHA1_SIZE])
{
    uint8_t header[STUN_HEADER_SIZE];
    covered_header(header, data, end, 4 + HMAC_SHA1_SIZE);
    return hmac_sha1(key, header, STUN_HEADER_SIZE, data + STUN_HEADER_SIZE,
                     (size_t)(end - STUN_HEADER_SIZE), digest);
}

static uint32_t fingerprint(const uint8_t *data, Py_ssize_t end)
{
    uint8_t header[STUN_HEADER_SIZE];
    covered_header(header, data, end, 8);
    uLong crc = crc32_z(crc32_z(0, Z_NULL, 0), header, STUN_HEADER_SIZE);
    crc = crc32_z(crc, data + STUN_HEADER_SIZE, (size_t)(end - STUN_HEADER_SIZE));
    return (uint32_t)crc ^ STUN_FINGERPRINT_XOR;
}

/* Both MESSAGE-INTEGRITY (with `key`) and FINGERPRINT present and right: ICE's STUN
 * carries both (RFC 8445 7.1.2, 7.2.5.2, 7.3). */
int stun_authentic(const StunMessage *message, const uint8_t *data, EVP_MAC_CTX *key)
{
    if (message->integrity < 0 || message->fingerprint < 0)
        return 0;
    if (get32(data + message->fingerprint + 4) != fingerprint(data, message->fingerprint))
        return 0;
    uint8_t digest[HMAC_SHA1_SIZE];
    return integrity(key, data, message->integrity, digest) &&
           CRYPTO_memcmp(digest, data + message->integrity + 4, HMAC_SHA1_SIZE) == 0;
}

/* Append MESSAGE-INTEGRITY then FINGERPRINT to the message of `size` bytes in `data`,
 * and set its length; the new size, 0 if the HMAC failed. */
Py_ssize_t stun_seal(uint8_t *data, Py_ssize_t size, EVP_MAC_CTX *key)
{
    put16(data + size, STUN_MESSAGE_INTEGRITY);
    put16(data + size + 2, HMAC_SHA1_SIZE);
    if (!integrity(key, data, size, data + size + 4))
        return 0;
    size += 4 + HMAC_SHA1_SIZE;
    put16(data + size, STUN_FINGERPRINT);
    put16(data + size + 2, 4);
    put32(data + size + 4, fingerprint(data, size));
    size += 8;
    put16(data + 2, (uint16_t)(size - STUN_HEADER_SIZE));
    return size;
}
