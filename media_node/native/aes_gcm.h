/*
 * AES-GCM (NIST SP 800-38D) for one short packet at a time, on x86-64's AES-NI and
 * PCLMULQDQ instructions: the fast path's SRTP (RFC 7714), included by fanout.c.
 *
 * Why not OpenSSL's EVP, which the stream used before: for an 80-byte Opus packet the
 * cipher's own work is a few hundred cycles, and OpenSSL 3 spends more than that
 * around it (re-initialising the context through its provider for every IV, a
 * parameter block to read the tag back), on a context of about a kilobyte in several
 * allocations, which with hundreds of listeners is seldom in the cache when its turn
 * comes (docs/performance.md). Here a listener's whole key is 256 bytes inside its
 * stream: the expanded round keys and the hash key H, nothing else.
 *
 * GHASH multiplies in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, with GCM's bit order
 * (the first bit of a block is the coefficient of x^0). A block loaded with its bytes
 * reversed holds, as a 128-bit integer, the coefficient of x^(127-i) at bit i, and a
 * carry-less product of two such integers (shifted left by one) is the 256-bit product
 * in the same reflected order. Its low half B holds the coefficients of x^128 and up,
 * folded back with x^128 = x^7 + x^2 + x + 1: in reflected order a product with x^k is
 * a right shift by k, and the bits that fall off the end, B's lowest seven, are
 * themselves x^128 times a polynomial of degree under 7, folded once more the same
 * way (`gf_multiply`).
 *
 * Only compiled for x86-64; `aes_gcm_usable()` says whether this CPU has the
 * instructions, and fanout.c falls back to OpenSSL's EVP where it has not.
 */

#ifndef PARLOR_AES_GCM_H
#define PARLOR_AES_GCM_H

#include <stdint.h>
#include <string.h>

#define AES_GCM_MAX_ROUNDS 14
#define AES_GCM_TAG 16
#define AES_GCM_IV 12

typedef struct {
    /* Round keys 0..rounds, 16 bytes each, as AESENC takes them. */
    uint8_t round_keys[AES_GCM_MAX_ROUNDS + 1][16];
    /* H = AES_K(0^128), its bytes reversed: ready for the carry-less multiply. */
    uint8_t hash_key[16];
    int rounds; /* 10 (AES-128) or 14 (AES-256); 0 while unkeyed */
} AesGcmKey;

#if defined(__x86_64__)

#include <immintrin.h>

#define AES_GCM_TARGET __attribute__((target("aes,pclmul,sse4.1")))
/* How many counter blocks go through the rounds side by side. */
#define AES_GCM_LANES 8

static int aes_gcm_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
           __builtin_cpu_supports("sse4.1");
}

AES_GCM_TARGET static inline __m128i reverse_bytes(__m128i block)
{
    const __m128i order = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm_shuffle_epi8(block, order);
}

/* One step of FIPS 197's key expansion: the previous key words XORed cumulatively
 * (w[i] ^= w[i-1]), then with `word` (SubWord, RotWord and Rcon as AESKEYGENASSIST
 * made them) in every position. */
AES_GCM_TARGET static inline __m128i expand_step(__m128i previous, __m128i word)
{
    previous = _mm_xor_si128(previous, _mm_slli_si128(previous, 4));
    previous = _mm_xor_si128(previous, _mm_slli_si128(previous, 8));
    return _mm_xor_si128(previous, word);
}

/* The assist's dword 3 is RotWord(SubWord(w3)) ^ rcon, dword 2 SubWord(w3) alone. */
#define ROTATED(key, rcon) _mm_shuffle_epi32(_mm_aeskeygenassist_si128((key), (rcon)), 0xFF)
#define SUBSTITUTED(key) _mm_shuffle_epi32(_mm_aeskeygenassist_si128((key), 0), 0xAA)

AES_GCM_TARGET static void expand_128(__m128i *k, const uint8_t *key)
{
    k[0] = _mm_loadu_si128((const __m128i *)key);
    k[1] = expand_step(k[0], ROTATED(k[0], 0x01));
    k[2] = expand_step(k[1], ROTATED(k[1], 0x02));
    k[3] = expand_step(k[2], ROTATED(k[2], 0x04));
    k[4] = expand_step(k[3], ROTATED(k[3], 0x08));
    k[5] = expand_step(k[4], ROTATED(k[4], 0x10));
    k[6] = expand_step(k[5], ROTATED(k[5], 0x20));
    k[7] = expand_step(k[6], ROTATED(k[6], 0x40));
    k[8] = expand_step(k[7], ROTATED(k[7], 0x80));
    k[9] = expand_step(k[8], ROTATED(k[8], 0x1B));
    k[10] = expand_step(k[9], ROTATED(k[9], 0x36));
}

/* AES-256: eight key words per step, the second four of them through SubWord only. */
AES_GCM_TARGET static void expand_256(__m128i *k, const uint8_t *key)
{
    k[0] = _mm_loadu_si128((const __m128i *)key);
    k[1] = _mm_loadu_si128((const __m128i *)(key + 16));
    k[2] = expand_step(k[0], ROTATED(k[1], 0x01));
    k[3] = expand_step(k[1], SUBSTITUTED(k[2]));
    k[4] = expand_step(k[2], ROTATED(k[3], 0x02));
    k[5] = expand_step(k[3], SUBSTITUTED(k[4]));
    k[6] = expand_step(k[4], ROTATED(k[5], 0x04));
    k[7] = expand_step(k[5], SUBSTITUTED(k[6]));
    k[8] = expand_step(k[6], ROTATED(k[7], 0x08));
    k[9] = expand_step(k[7], SUBSTITUTED(k[8]));
    k[10] = expand_step(k[8], ROTATED(k[9], 0x10));
    k[11] = expand_step(k[9], SUBSTITUTED(k[10]));
    k[12] = expand_step(k[10], ROTATED(k[11], 0x20));
    k[13] = expand_step(k[11], SUBSTITUTED(k[12]));
    k[14] = expand_step(k[12], ROTATED(k[13], 0x40));
}

AES_GCM_TARGET static inline __m128i encrypt_block(const AesGcmKey *key, __m128i block)
{
    block = _mm_xor_si128(block, _mm_loadu_si128((const __m128i *)key->round_keys[0]));
    for (int r = 1; r < key->rounds; r++)
        block = _mm_aesenc_si128(block, _mm_loadu_si128((const __m128i *)key->round_keys[r]));
    return _mm_aesenclast_si128(block,
                                _mm_loadu_si128((const __m128i *)key->round_keys[key->rounds]));
}

/* A 128-bit shift right by k (0 < k < 64) of a value in two 64-bit lanes. */
#define SHIFT_RIGHT(v, k) \
    _mm_or_si128(_mm_srli_epi64((v), (k)), _mm_slli_epi64(_mm_srli_si128((v), 8), 64 - (k)))

/* a * b in GCM's field, both and the result in reflected order (see the top). */
AES_GCM_TARGET static inline __m128i gf_multiply(__m128i a, __m128i b)
{
    /* Schoolbook 128 x 128 carry-less product into high:low. */
    __m128i low = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i high = _mm_clmulepi64_si128(a, b, 0x11);
    __m128i middle = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01),
                                   _mm_clmulepi64_si128(a, b, 0x10));
    low = _mm_xor_si128(low, _mm_slli_si128(middle, 8));
    high = _mm_xor_si128(high, _mm_srli_si128(middle, 8));
    /* The reflected product of two 128-bit polynomials is 255 bits: shift the 256-bit
     * high:low left by one so that bit j stands for x^(255-j). */
    __m128i carry_low = _mm_srli_epi64(low, 63);  /* each lane's top bit */
    __m128i carry_high = _mm_srli_epi64(high, 63);
    low = _mm_or_si128(_mm_slli_epi64(low, 1), _mm_slli_si128(carry_low, 8));
    high = _mm_or_si128(_mm_slli_epi64(high, 1),
                        _mm_or_si128(_mm_slli_si128(carry_high, 8), _mm_srli_si128(carry_low, 8)));
    /* `low` (B) is x^128 times B(x): B * (x^7 + x^2 + x + 1). Its lowest seven bits
     * overflow those shifts; they come back as D = B<<127 ^ B<<126 ^ B<<121, which
     * lies in B's upper lane only, and B ^ D is folded in one go. */
    __m128i lane = _mm_slli_si128(low, 8); /* B's lower lane, moved up */
    __m128i overflow = _mm_xor_si128(
        _mm_xor_si128(_mm_slli_epi64(lane, 63), _mm_slli_epi64(lane, 62)),
        _mm_slli_epi64(lane, 57));
    low = _mm_xor_si128(low, overflow);
    __m128i folded = _mm_xor_si128(
        _mm_xor_si128(low, SHIFT_RIGHT(low, 1)),
        _mm_xor_si128(SHIFT_RIGHT(low, 2), SHIFT_RIGHT(low, 7)));
    return _mm_xor_si128(high, folded);
}

/* Absorb `size` bytes into the hash `state`, the last block padded with zeros. */
AES_GCM_TARGET static inline __m128i ghash(__m128i state, __m128i hash_key, const uint8_t *data,
                                           size_t size)
{
    while (size >= 16) {
        __m128i block = reverse_bytes(_mm_loadu_si128((const __m128i *)data));
        state = gf_multiply(_mm_xor_si128(state, block), hash_key);
        data += 16;
        size -= 16;
    }
    if (size > 0) {
        uint8_t last[16] = {0};
        memcpy(last, data, size);
        __m128i block = reverse_bytes(_mm_loadu_si128((const __m128i *)last));
        state = gf_multiply(_mm_xor_si128(state, block), hash_key);
    }
    return state;
}

/* Key `key` with a 16- or 32-byte AES key; 0 for any other size. */
AES_GCM_TARGET static int aes_gcm_key(AesGcmKey *key, const uint8_t *secret, size_t size)
{
    __m128i k[AES_GCM_MAX_ROUNDS + 1];
    if (size == 16) {
        expand_128(k, secret);
        key->rounds = 10;
    } else if (size == 32) {
        expand_256(k, secret);
        key->rounds = 14;
    } else {
        return 0;
    }
    for (int r = 0; r <= key->rounds; r++)
        _mm_storeu_si128((__m128i *)key->round_keys[r], k[r]);
    __m128i h = encrypt_block(key, _mm_setzero_si128());
    _mm_storeu_si128((__m128i *)key->hash_key, reverse_bytes(h));
    return 1;
}

/* Encrypt `size` bytes at `data` in place under the 12-byte `iv`, authenticating the
 * `aad_size` bytes at `aad` with them, and write the 16-byte tag at `tag`. */
AES_GCM_TARGET static void aes_gcm_seal(const AesGcmKey *key, const uint8_t *iv,
                                        const uint8_t *aad, size_t aad_size, uint8_t *data,
                                        size_t size, uint8_t *tag)
{
    const __m128i hash_key = _mm_loadu_si128((const __m128i *)key->hash_key);
    const __m128i *round_keys = (const __m128i *)key->round_keys;
    const int rounds = key->rounds;
    /* J0 = IV || 1; the payload's counters go on from 2 (a packet never nears 2^32
     * blocks, so only the last byte pair can carry). */
    uint8_t first[16];
    memcpy(first, iv, AES_GCM_IV);
    first[12] = first[13] = first[14] = 0;
    first[15] = 1;
    const __m128i counter_base = _mm_loadu_si128((const __m128i *)first);
    uint32_t counter = 1;
    __m128i state = ghash(_mm_setzero_si128(), hash_key, aad, aad_size);
    /* Lane 0 of the first batch is J0, whose encryption masks the tag. */
    __m128i mask = _mm_setzero_si128();
    size_t done = 0;
    int first_batch = 1;
    while (first_batch || done < size) {
        __m128i lanes[AES_GCM_LANES];
        int count = 0;
        if (first_batch)
            lanes[count++] = counter_base;
        size_t blocks_left = (size - done + 15) / 16;
        while (count < AES_GCM_LANES && blocks_left > 0) {
            counter++;
            lanes[count++] = _mm_insert_epi32(counter_base, (int)__builtin_bswap32(counter), 3);
            blocks_left--;
        }
        const __m128i zero_key = _mm_loadu_si128(&round_keys[0]);
        for (int i = 0; i < count; i++)
            lanes[i] = _mm_xor_si128(lanes[i], zero_key);
        for (int r = 1; r < rounds; r++) {
            const __m128i round_key = _mm_loadu_si128(&round_keys[r]);
            for (int i = 0; i < count; i++)
                lanes[i] = _mm_aesenc_si128(lanes[i], round_key);
        }
        const __m128i last_key = _mm_loadu_si128(&round_keys[rounds]);
        for (int i = 0; i < count; i++)
            lanes[i] = _mm_aesenclast_si128(lanes[i], last_key);
        int i = 0;
        if (first_batch) {
            mask = lanes[i++];
            first_batch = 0;
        }
        for (; i < count; i++) {
            uint8_t *at = data + done;
            size_t n = size - done < 16 ? size - done : 16;
            if (n == 16) {
                __m128i out = _mm_xor_si128(_mm_loadu_si128((const __m128i *)at), lanes[i]);
                _mm_storeu_si128((__m128i *)at, out);
            } else {
                uint8_t stream[16];
                _mm_storeu_si128((__m128i *)stream, lanes[i]);
                for (size_t j = 0; j < n; j++)
                    at[j] ^= stream[j];
            }
            state = ghash(state, hash_key, at, n);
            done += n;
        }
    }
    /* The lengths block: bits of associated data, then of ciphertext, 64 bits each,
     * big-endian; reflected, the lengths land in the lanes the other way round. */
    __m128i lengths = _mm_set_epi64x((long long)aad_size * 8, (long long)size * 8);
    state = gf_multiply(_mm_xor_si128(state, lengths), hash_key);
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(reverse_bytes(state), mask));
}

#else /* not x86-64: OpenSSL's EVP does it all */

static int aes_gcm_usable(void) { return 0; }
static int aes_gcm_key(AesGcmKey *key, const uint8_t *secret, size_t size)
{
    (void)key, (void)secret, (void)size;
    return 0;
}
static void aes_gcm_seal(const AesGcmKey *key, const uint8_t *iv, const uint8_t *aad,
                         size_t aad_size, uint8_t *data, size_t size, uint8_t *tag)
{
    (void)key, (void)iv, (void)aad, (void)aad_size, (void)data, (void)size, (void)tag;
}

#endif

#endif
