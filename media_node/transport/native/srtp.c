/*
 * SRTP for a stream: AES-GCM RTP (RFC 7714) with the stream's own OpenSSL cipher
 * context, everything else with the libsrtp session aiortc keyed for the peer.
 *
 * The libsrtp session is pylibsrtp's (libsrtp 2 on OpenSSL), reached through the
 * `srtp_t` it holds and the addresses of its functions, both handed over by
 * transport/fanout.py through cffi. Debian's libsrtp2 is built on NSS, which measured 2.0 us
 * per AES-GCM protect and 6.4 us per AES-CM one across 1000 sessions here, against
 * 0.5 us for OpenSSL's; and a session of our own would have cost a second key schedule
 * (about 19 KB) per listener. libsrtp keeps SRTCP both ways and the AES-CM profiles.
 *
 * For the AEAD profiles (aiortc offers AES-256-GCM first) libsrtp spent most of its
 * time outside AES (finding the stream by SSRC, the replay window, re-initialising its
 * cipher, cache misses over each session): the stream instead holds one EVP context,
 * keyed once, and per packet only sets the IV, adds the header as associated data,
 * encrypts and reads the tag.
 */

#include "fanout.h"

#include <string.h>

/* libsrtp 2's srtp_protect(srtp_t, void *rtp_header, int *length) and its RTCP
 * counterparts, same signature; 0 is success. */
typedef int (*ProtectFunction)(void *session, void *header, int *length);
static ProtectFunction protect;
static ProtectFunction protect_rtcp;
static ProtectFunction unprotect_rtcp;

/* Fetched once: keying a context with a fetched cipher skips the lookup by name. */
static EVP_CIPHER *aes_128_gcm;
static EVP_CIPHER *aes_256_gcm;

int srtp_init(void)
{
    aes_128_gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    aes_256_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    return aes_128_gcm != NULL && aes_256_gcm != NULL;
}

int srtp_ready(void)
{
    return protect != NULL;
}

PyObject *fanout_use_srtp(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long rtp, rtcp, rtcp_in;
    if (!PyArg_ParseTuple(args, "KKK", &rtp, &rtcp, &rtcp_in))
        return NULL;
    if (rtp == 0 || rtcp == 0 || rtcp_in == 0) {
        PyErr_SetString(PyExc_ValueError, "the three functions' addresses are needed");
        return NULL;
    }
    protect = (ProtectFunction)(uintptr_t)rtp;
    protect_rtcp = (ProtectFunction)(uintptr_t)rtcp;
    unprotect_rtcp = (ProtectFunction)(uintptr_t)rtcp_in;
    Py_RETURN_NONE;
}

PyObject *Stream_use_gcm(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"key", "salt", NULL};
    Py_buffer key, salt;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*", keywords, &key, &salt))
        return NULL;
    PyObject *result = NULL;
    if (key.len != 16 && key.len != 32) {
        PyErr_SetString(PyExc_ValueError, "an AES-GCM session key is 16 or 32 bytes");
    } else if (salt.len != GCM_SALT_SIZE) {
        PyErr_SetString(PyExc_ValueError, "an AES-GCM session salt is 12 bytes");
    } else if (self->gcm != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the stream is keyed already");
    } else {
        const EVP_CIPHER *cipher = key.len == 16 ? aes_128_gcm : aes_256_gcm;
        EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new();
        if (context == NULL || !EVP_EncryptInit_ex(context, cipher, NULL, key.buf, NULL)) {
            EVP_CIPHER_CTX_free(context);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not key AES-GCM");
        } else {
            self->gcm = context;
            memcpy(self->gcm_salt, salt.buf, GCM_SALT_SIZE);
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&salt);
    return result;
}

void srtp_forget_keys(Stream *self)
{
    /* EVP_CIPHER_CTX_free clears the key schedule. */
    EVP_CIPHER_CTX_free(self->gcm);
    self->gcm = NULL;
    OPENSSL_cleanse(self->gcm_salt, sizeof(self->gcm_salt));
}

/* RFC 7714 8.1-8.2: the 12-byte IV is 0x0000, SSRC, ROC and sequence number, XORed with
 * the session salt; the RTP header is the associated data, the payload is encrypted in
 * place and the 16-byte tag appended. */
static int protect_gcm(Stream *self, uint8_t *datagram, int *length, uint16_t sequence,
                       uint32_t rollover)
{
    uint8_t iv[GCM_SALT_SIZE] = {0};
    put32(iv + 2, self->ssrc);
    put32(iv + 6, rollover);
    put16(iv + 10, sequence);
    for (int i = 0; i < GCM_SALT_SIZE; i++)
        iv[i] ^= self->gcm_salt[i];
    int header = (int)self->header_size, out;
    uint8_t *payload = datagram + header;
    int size = *length - header;
    /* The whole IV by the AEAD control (a length of -1), not EVP_EncryptInit_ex: that
     * re-runs the context's initialisation, asking the provider for the IV length
     * through a parameter lookup, on every packet. */
    if (!EVP_CIPHER_CTX_ctrl(self->gcm, EVP_CTRL_GCM_SET_IV_FIXED, -1, iv) ||
        !EVP_EncryptUpdate(self->gcm, NULL, &out, datagram, header) ||
        !EVP_EncryptUpdate(self->gcm, payload, &out, payload, size) ||
        !EVP_EncryptFinal_ex(self->gcm, payload + size, &out) ||
        !EVP_CIPHER_CTX_ctrl(self->gcm, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_SIZE, payload + size))
        return 0;
    *length += GCM_TAG_SIZE;
    return 1;
}

int srtp_protect_rtp(Stream *self, uint8_t *datagram, int *length, uint16_t sequence,
                     uint32_t rollover)
{
    if (self->gcm != NULL)
        return protect_gcm(self, datagram, length, sequence, rollover);
    /* libsrtp keeps its own rollover counter for the session, in step with ours. */
    return protect(self->session, datagram, length) == 0;
}

/* With the stream's own session: aiortc's receiver also protects its receiver reports
 * under this SSRC with it, and one session per SSRC is what keeps SRTCP indexes (and
 * so keystreams) from repeating. */
int srtp_protect_report(Stream *self, uint8_t *packet, int *length)
{
    return protect_rtcp != NULL && protect_rtcp(self->session, packet, length) == 0;
}

/* Forged, replayed or damaged packets fail, as they would in aiortc. */
int srtp_unprotect_report(Stream *self, uint8_t *packet, int *length)
{
    return self->inbound_session != NULL && unprotect_rtcp != NULL &&
           unprotect_rtcp(self->inbound_session, packet, length) == 0;
}
