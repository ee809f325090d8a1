/*
 * media_node._fanout: a room's encoded audio to every listener, one C loop per packet.
 *
 * Each listener needs the same Opus payload under its own RTP header, protected with
 * its own SRTP keys and sent to its own address. Written in Python, the interpreter
 * around those three calls cost as much as the calls themselves (docs/performance.md);
 * here a stream is a C struct (header template, SRTP session, socket, destination) and
 * `send` walks all of a room's streams without touching a Python object per listener
 * beyond the iteration. Streams on one socket (a worker's peers share one, see
 * udp_mux.py) go out SEND_BATCH datagrams per sendmmsg call.
 *
 * The SRTP session is the one aiortc set up for the peer's DTLS transport: pylibsrtp's
 * libsrtp (built on OpenSSL), reached through the `srtp_t` it holds and the address of
 * its `srtp_protect`, both handed over by rtp_fanout.py through cffi. Debian's libsrtp2
 * is built on NSS, which measured 2.0 us per AES-GCM protect and 6.4 us per AES-CM
 * one across 1000 sessions here, against 0.5 us for OpenSSL's; and a session of our
 * own would have cost a second key schedule (about 19 KB) per listener.
 *
 * The peer's RTCP receiver reports come back to the same stream (`take_rtcp`, once
 * unprotected): their report blocks about our SSRC are kept as loss, jitter and
 * round-trip figures, so none of them has to travel through aiortc's queues and
 * coroutines.
 *
 * ICE consent freshness (RFC 7675) for the stream's nominated pair is here too, so that
 * aioice (whose consent task the node stops for these connections) spends no Python on
 * it: a `Tap` replaces the aioice protocol's `datagram_received` and answers the
 * peer's Binding requests on the nominated pair (RFC 8445 7.3: USERNAME and
 * MESSAGE-INTEGRITY checked with our ICE password, answered with XOR-MAPPED-ADDRESS,
 * MESSAGE-INTEGRITY and FINGERPRINT), and `upkeep` sends our own consent checks on the
 * RFC's randomised 4-6 s schedule and tells which streams lost consent (no valid
 * response for 30 s). Everything else on the socket (other STUN, DTLS, a publisher's
 * RTCP) goes on to aioice and aiortc. MESSAGE-INTEGRITY's HMAC-SHA1 is OpenSSL's,
 * FINGERPRINT's CRC-32 zlib's.
 *
 * Everything runs with the GIL held, on the event loop's thread: a call is short
 * (a few microseconds per listener), and no other thread ever touches a stream.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <zlib.h>

#define RTP_HEADER_SIZE 12
/* RFC 8285 one-byte extensions: 4 bytes of profile and length, then the elements. */
#define MAX_EXTENSION_SIZE 36
/* An Opus packet is at most 1275 bytes; the mix's are about 80. */
#define MAX_PAYLOAD_SIZE 1400
#define MAX_CNAME_SIZE 255
/* libsrtp's SRTP_MAX_TRAILER_LEN: the longest tag plus the longest MKI. */
#define SRTP_TRAILER 144
#define DATAGRAM_BUFFER (RTP_HEADER_SIZE + MAX_EXTENSION_SIZE + MAX_PAYLOAD_SIZE + SRTP_TRAILER)

#define RTCP_SR 200
#define RTCP_RR 201
#define RTCP_SDES 202
#define RTCP_RTPFB 205
#define RTPFB_NACK 1
#define SDES_CNAME 1
#define REPORT_BLOCK_SIZE 24
#define SENDER_INFO_SIZE 20

/* Seconds from 1900 (NTP's epoch) to 1970 (the Unix epoch). */
#define NTP_UNIX_OFFSET 2208988800ULL

/* libsrtp 2's srtp_protect(srtp_t, void *rtp_header, int *length) and its RTCP
 * counterparts, same signature; 0 is success. */
typedef int (*ProtectFunction)(void *session, void *header, int *length);
static ProtectFunction srtp_protect;
static ProtectFunction srtp_protect_rtcp;
static ProtectFunction srtp_unprotect_rtcp;

/* SRTP with AES-GCM (RFC 7714), protected here rather than by libsrtp: one OpenSSL
 * cipher context per stream, keyed once, so that a packet only sets the IV, adds the
 * header as associated data, encrypts and reads the tag. The ciphers are fetched once:
 * keying a context with a fetched cipher skips the lookup by name. */
#define GCM_TAG_SIZE 16
#define GCM_SALT_SIZE 12
static EVP_CIPHER *aes_128_gcm;
static EVP_CIPHER *aes_256_gcm;

/* Sender reports: RFC 3550's minimum interval, each stream at a phase of its own. */
#define REPORT_SECONDS 5.0
/* The largest SRTCP packet from a peer that the tap unprotects itself; a listener's
 * receiver reports are well under 100 bytes. Larger ones go on to aiortc. */
#define RTCP_BUFFER 1500

/* STUN (RFC 8489) and its use by ICE (RFC 8445) and consent freshness (RFC 7675). */
#define STUN_HEADER_SIZE 20
#define STUN_COOKIE 0x2112A442u
#define STUN_BINDING_REQUEST 0x0001
#define STUN_BINDING_SUCCESS 0x0101
#define STUN_BINDING_ERROR 0x0111
#define STUN_MAPPED_ADDRESS 0x0001
#define STUN_USERNAME 0x0006
#define STUN_MESSAGE_INTEGRITY 0x0008
#define STUN_ERROR_CODE 0x0009
#define STUN_XOR_MAPPED_ADDRESS 0x0020
#define STUN_PRIORITY 0x0024
#define STUN_USE_CANDIDATE 0x0025
#define STUN_FINGERPRINT 0x8028
#define STUN_ICE_CONTROLLED 0x8029
#define STUN_ICE_CONTROLLING 0x802A
#define STUN_FINGERPRINT_XOR 0x5354554Eu
#define HMAC_SHA1_SIZE 20
/* ice-char{4,256} for a ufrag (RFC 8839 5.4). */
#define MAX_UFRAG 256
#define MAX_USERNAME (2 * MAX_UFRAG + 1)
/* A request: header, USERNAME, PRIORITY, ICE-CONTROLL(ED|ING), MESSAGE-INTEGRITY,
 * FINGERPRINT. */
#define STUN_REQUEST_BUFFER (STUN_HEADER_SIZE + 4 + MAX_USERNAME + 3 + 8 + 12 + 24 + 8)
/* Consent checks whose responses still count: 8 checks of 4-6 s cover more than the
 * 30 s a response could matter for. */
#define CONSENT_TRANSACTIONS 8
/* RFC 7675 5.1: a check every Tc = 5 s, randomised to 0.8-1.2 Tc, and consent lost 30 s
 * after the last response. Tests may shorten them (`consent_timing`). */
static double consent_interval = 5.0;
static double consent_timeout = 30.0;

/* ---- HMAC-SHA1 (OpenSSL), CRC-32 (zlib) ------------------------------------------ */

static uint16_t get16(const uint8_t *at)
{
    return (uint16_t)((at[0] << 8) | at[1]);
}

static uint32_t get32(const uint8_t *at)
{
    return ((uint32_t)at[0] << 24) | ((uint32_t)at[1] << 16) | ((uint32_t)at[2] << 8) | at[3];
}

static void put16(uint8_t *at, uint16_t value)
{
    at[0] = value >> 8;
    at[1] = (uint8_t)value;
}

static void put32(uint8_t *at, uint32_t value)
{
    at[0] = value >> 24;
    at[1] = value >> 16;
    at[2] = value >> 8;
    at[3] = value;
}

/* Each stream keys one HMAC context per ICE password when ICE is set up, so a check
 * costs the message's own hashing: OpenSSL re-initialises a keyed context from the
 * state it kept after the key block. */
static EVP_MAC *hmac;

/* Key `*context` (made on first use) with `key` for HMAC-SHA1; 1 on success. */
static int hmac_sha1_key(EVP_MAC_CTX **context, const uint8_t *key, size_t size)
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

/* HMAC-SHA1 of `first` then `second` (either may be empty); 1 on success. */
static int hmac_sha1(EVP_MAC_CTX *context, const uint8_t *first, size_t first_size,
                     const uint8_t *second, size_t second_size, uint8_t digest[HMAC_SHA1_SIZE])
{
    size_t size;
    /* No key: the context starts again from the one it was keyed with. */
    return context != NULL && EVP_MAC_init(context, NULL, 0, NULL) &&
           EVP_MAC_update(context, first, first_size) &&
           EVP_MAC_update(context, second, second_size) &&
           EVP_MAC_final(context, digest, &size, HMAC_SHA1_SIZE) && size == HMAC_SHA1_SIZE;
}

static uint32_t crc_32(const uint8_t *data, size_t size)
{
    return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), data, size);
}

/* ---- STUN ------------------------------------------------------------------------- */

/* A STUN message's header and the attributes consent freshness needs. */
typedef struct {
    int type;
    const uint8_t *username;
    Py_ssize_t username_size;
    Py_ssize_t integrity;   /* offset of MESSAGE-INTEGRITY, -1 if none */
    Py_ssize_t fingerprint; /* offset of FINGERPRINT, -1 if none */
    int controlling, controlled;
    int error_code;
    int unknown_required; /* a comprehension-required attribute we do not know */
} StunMessage;

/* 1 for a well-formed STUN message (RFC 8489 5, 6), 0 for anything else. */
static int stun_parse(StunMessage *message, const uint8_t *data, Py_ssize_t size)
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
static int stun_authentic(const StunMessage *message, const uint8_t *data, EVP_MAC_CTX *key)
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
static Py_ssize_t stun_seal(uint8_t *data, Py_ssize_t size, EVP_MAC_CTX *key)
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

typedef struct {
    PyObject_HEAD
    /* First, together, what every packet reads or writes (send_one), so that a stream's
     * turn costs as few cache lines as possible and the send loop can fetch them for
     * the next stream while this one's datagram is sent; and what `upkeep` reads at
     * every tick. */
    int fd; /* our own duplicate of the ICE socket; -1 when there is no route */
    /* Which socket `fd` is (its inode; 0 without one): streams whose duplicates are of
     * one socket, as every peer of a worker's ICE mux is, are sent in one batch. */
    unsigned long socket_key;
    /* ICE, once `ice()` has been called: consent is then this stream's. */
    int ice;
    int consent_revoked; /* a 403 answer (RFC 7675 5.2) */
    double consent_at;  /* monotonic seconds of the latest consent */
    double next_check;
    double next_report; /* monotonic seconds; 0 before the first upkeep */
    uint16_t sequence;
    uint32_t rollover; /* SRTP's ROC: how many times `sequence` has wrapped */
    uint32_t timestamp_origin;
    uint32_t ssrc;
    socklen_t address_size;
    Py_ssize_t header_size;
    unsigned long long sent;
    unsigned long long octets;
    unsigned long long dropped;
    void *session;
    /* With AES-GCM, OpenSSL's cipher context keyed once with the session key, and the
     * session salt; without, libsrtp's `session` protects the stream's RTP. */
    EVP_CIPHER_CTX *gcm;
    uint8_t gcm_salt[GCM_SALT_SIZE];
    /* The RTP header as sent; only the sequence number and timestamp change. */
    uint8_t header[RTP_HEADER_SIZE + MAX_EXTENSION_SIZE];
    struct sockaddr_storage address;
    /* The rest is touched at reports, RTCP and consent checks. */
    PyObject *owner; /* the pylibsrtp Session that keeps `session` alive */
    uint8_t cname[MAX_CNAME_SIZE];
    Py_ssize_t cname_size;
    /* From the peer's RTCP. */
    unsigned long long receiver_reports;
    unsigned long long nacks;
    int fraction_lost;  /* of 256, in the latest report; -1 before any */
    long packets_lost;  /* cumulative, as the latest report says */
    unsigned long jitter; /* in RTP timestamp units */
    double round_trip_time; /* seconds, NaN until a report echoes one of ours */
    uint32_t last_report_ntp; /* middle 32 bits of our latest sender report's NTP time */
    /* The inbound SRTP session, for the peer's receiver reports, and its owner. */
    PyObject *inbound_owner;
    void *inbound_session;
    /* The descriptor of aioice's socket the route was taken from (not our duplicate):
     * a tap answers consent checks only on the nominated pair's socket. */
    int route_socket;
    int controlling;
    uint64_t tie_breaker;
    uint32_t priority;
    uint8_t username[MAX_USERNAME]; /* ours in requests: "remote:local" */
    Py_ssize_t username_size;
    uint8_t expected_username[MAX_USERNAME]; /* the peer's: "local:remote" */
    Py_ssize_t expected_username_size;
    /* HMAC-SHA1 keyed once per password: */
    EVP_MAC_CTX *local_key;  /* our ICE password: the peer's requests, our answers */
    EVP_MAC_CTX *remote_key; /* the peer's: our requests, its answers */
    int consent_expired;
    uint8_t transactions[CONSENT_TRANSACTIONS][12];
    uint8_t transaction_open[CONSENT_TRANSACTIONS];
    int transaction_next;
    unsigned long long consent_checks;    /* our checks sent */
    unsigned long long consent_responses; /* valid answers to them */
    unsigned long long consent_answers;   /* the peer's checks we answered */
} Stream;

static int Stream_init(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"owner",           "session",          "ssrc",
                               "sequence",        "timestamp_origin", "inbound_owner",
                               "inbound_session", NULL};
    PyObject *owner, *inbound_owner = Py_None;
    unsigned long long session, inbound_session = 0;
    unsigned long ssrc, sequence, timestamp_origin;
    if (self->owner != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a stream is initialised once");
        return -1;
    }
    if (srtp_protect == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "use_srtp() has not been called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKkkk|OK", keywords, &owner, &session,
                                     &ssrc, &sequence, &timestamp_origin, &inbound_owner,
                                     &inbound_session))
        return -1;
    if (session == 0) {
        PyErr_SetString(PyExc_ValueError, "no SRTP session");
        return -1;
    }
    self->owner = Py_NewRef(owner);
    self->session = (void *)(uintptr_t)session;
    if (inbound_session != 0) {
        self->inbound_owner = Py_NewRef(inbound_owner);
        self->inbound_session = (void *)(uintptr_t)inbound_session;
    }
    self->ssrc = (uint32_t)ssrc;
    self->sequence = (uint16_t)sequence;
    self->timestamp_origin = (uint32_t)timestamp_origin;
    return 0;
}

static PyObject *Stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Stream *self = (Stream *)PyType_GenericNew(type, args, kwargs);
    if (self == NULL)
        return NULL;
    self->fd = -1;
    self->route_socket = -1;
    self->fraction_lost = -1;
    self->round_trip_time = NAN;
    return (PyObject *)self;
}

static void close_socket(Stream *self)
{
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
        self->socket_key = 0;
    }
}

static void Stream_dealloc(Stream *self)
{
    close_socket(self);
    /* EVP_CIPHER_CTX_free and EVP_MAC_CTX_free clear the keys. */
    EVP_CIPHER_CTX_free(self->gcm);
    OPENSSL_cleanse(self->gcm_salt, sizeof(self->gcm_salt));
    EVP_MAC_CTX_free(self->local_key);
    EVP_MAC_CTX_free(self->remote_key);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->inbound_owner);
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    freefunc free_self = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_self(self);
    Py_DECREF(type);
}

static PyObject *Stream_configure(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"payload_type", "extension", "cname", NULL};
    int payload_type;
    Py_buffer extension, cname;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*y*", keywords, &payload_type,
                                     &extension, &cname))
        return NULL;
    PyObject *result = NULL;
    if (payload_type < 0 || payload_type > 127) {
        PyErr_SetString(PyExc_ValueError, "payload_type must be 0-127");
    } else if (extension.len > MAX_EXTENSION_SIZE || extension.len % 4) {
        PyErr_SetString(PyExc_ValueError, "extension must be whole words, at most 36 bytes");
    } else if (cname.len > MAX_CNAME_SIZE) {
        PyErr_SetString(PyExc_ValueError, "cname is at most 255 bytes");
    } else {
        uint8_t *header = self->header;
        /* Version 2; the X bit when extensions follow the fixed header. */
        header[0] = 0x80 | (extension.len ? 0x10 : 0);
        header[1] = (uint8_t)payload_type;
        header[8] = self->ssrc >> 24;
        header[9] = self->ssrc >> 16;
        header[10] = self->ssrc >> 8;
        header[11] = self->ssrc;
        memcpy(header + RTP_HEADER_SIZE, extension.buf, extension.len);
        self->header_size = RTP_HEADER_SIZE + extension.len;
        memcpy(self->cname, cname.buf, cname.len);
        self->cname_size = cname.len;
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&extension);
    PyBuffer_Release(&cname);
    return result;
}

static PyObject *Stream_route(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"host", "port", "fd", NULL};
    const char *host;
    int port, fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si|i", keywords, &host, &port, &fd))
        return NULL;
    struct sockaddr_storage address;
    socklen_t size;
    memset(&address, 0, sizeof(address));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
    if (port < 1 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port must be 1-65535");
        return NULL;
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        size = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        size = sizeof(*v6);
    } else {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return NULL;
    }
    if (fd >= 0 && !self->consent_expired) {
        /* Our own descriptor of the socket aiortc reads from: sending on it skips the
         * asyncio transport's buffering, so a full send buffer drops this listener's
         * packet (EAGAIN) rather than queueing anything behind it. */
        int own = dup(fd);
        if (own < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        /* A socket's inode stays its own while our duplicate holds it open. */
        struct stat status;
        if (fstat(own, &status) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            close(own);
            return NULL;
        }
        close_socket(self);
        self->fd = own;
        self->socket_key = (unsigned long)status.st_ino;
        self->route_socket = fd;
    }
    self->address = address;
    self->address_size = size;
    Py_RETURN_NONE;
}

static PyObject *Stream_use_gcm(Stream *self, PyObject *args, PyObject *kwargs)
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

static PyObject *Stream_close(Stream *self, PyObject *Py_UNUSED(ignored))
{
    close_socket(self);
    self->route_socket = -1;
    Py_RETURN_NONE;
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
    if (!EVP_EncryptInit_ex(self->gcm, NULL, NULL, NULL, iv) ||
        !EVP_EncryptUpdate(self->gcm, NULL, &out, datagram, header) ||
        !EVP_EncryptUpdate(self->gcm, payload, &out, payload, size) ||
        !EVP_EncryptFinal_ex(self->gcm, payload + size, &out) ||
        !EVP_CIPHER_CTX_ctrl(self->gcm, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_SIZE, payload + size))
        return 0;
    *length += GCM_TAG_SIZE;
    return 1;
}

/* Header from the template, payload after it, protected in place, into `datagram`
 * (32-bit aligned: libsrtp wants the RTP header so). The datagram's length, or 0 when
 * this stream sends nothing now (counted as dropped). */
static int build_one(Stream *self, const uint8_t *payload, Py_ssize_t size, uint32_t pts,
                     uint8_t *datagram)
{
    uint16_t sequence = self->sequence++;
    uint32_t rollover = self->rollover;
    if (self->sequence == 0)
        self->rollover++;
    /* The sequence number advanced even for a packet that is not sent: the receiver
     * then sees the gap as the loss it is. */
    if (self->fd < 0 || self->header_size == 0) {
        self->dropped++;
        return 0;
    }
    uint32_t timestamp = self->timestamp_origin + pts;
    memcpy(datagram, self->header, self->header_size);
    datagram[2] = sequence >> 8;
    datagram[3] = sequence;
    datagram[4] = timestamp >> 24;
    datagram[5] = timestamp >> 16;
    datagram[6] = timestamp >> 8;
    datagram[7] = timestamp;
    memcpy(datagram + self->header_size, payload, size);
    int length = (int)(self->header_size + size);
    int protected = self->gcm != NULL
                        ? protect_gcm(self, datagram, &length, sequence, rollover)
                        : srtp_protect(self->session, datagram, &length) == 0;
    if (!protected) {
        self->dropped++;
        return 0;
    }
    return length;
}

/* System calls `send` has made (sendto and sendmmsg), for tests and stats. */
static unsigned long long send_calls;

/* One packet to one stream, with its own sendto. */
static int send_one(Stream *self, const uint8_t *payload, Py_ssize_t size, uint32_t pts)
{
    uint32_t words[DATAGRAM_BUFFER / 4 + 1];
    uint8_t *datagram = (uint8_t *)words;
    int length = build_one(self, payload, size, pts, datagram);
    if (length == 0)
        return 0;
    send_calls++;
    if (sendto(self->fd, datagram, length, MSG_DONTWAIT | MSG_NOSIGNAL,
               (struct sockaddr *)&self->address, self->address_size) < 0) {
        /* A full socket buffer (a stalled or slow path) or a socket already closed
         * under us: this listener misses this packet, nobody waits for it. */
        self->dropped++;
        return 0;
    }
    self->sent++;
    self->octets += size;
    return 1;
}

/* Streams that share a socket (the worker's ICE mux: every peer of the worker on one
 * port) are sent in batches, one sendmmsg per SEND_BATCH datagrams instead of one
 * sendto each: the kernel's entry and exit and the socket's lookup are paid once per
 * batch. Each stream holds its own duplicate descriptor, so a batch is the streams
 * whose duplicates are of one socket (`socket_key`), sent on the first one's. The
 * buffers are the module's: the GIL is held throughout a send. */
#define SEND_BATCH 64
static uint32_t batch_words[SEND_BATCH][DATAGRAM_BUFFER / 4 + 1];
static struct mmsghdr batch_messages[SEND_BATCH];
static struct iovec batch_vectors[SEND_BATCH];
static Stream *batch_streams[SEND_BATCH];

typedef struct {
    int fd;
    unsigned long socket_key;
    int count;
    long sent;
    Py_ssize_t size; /* the payload's, for the streams' octet counts */
} Batch;

/* Send the batch. A datagram the kernel refuses (a full socket buffer, a destination
 * it cannot reach) ends a sendmmsg call: that stream misses this packet, and the
 * batch goes on after it. */
static void batch_flush(Batch *batch)
{
    int start = 0;
    while (start < batch->count) {
        int done = sendmmsg(batch->fd, batch_messages + start, (unsigned)(batch->count - start),
                            MSG_DONTWAIT | MSG_NOSIGNAL);
        send_calls++;
        if (done <= 0) {
            batch_streams[start]->dropped++;
            start++;
            continue;
        }
        for (int i = start; i < start + done; i++) {
            batch_streams[i]->sent++;
            batch_streams[i]->octets += batch->size;
        }
        batch->sent += done;
        start += done;
    }
    batch->count = 0;
}

static void batch_add(Batch *batch, Stream *stream, const uint8_t *payload, uint32_t pts)
{
    if (batch->count > 0 &&
        (stream->socket_key != batch->socket_key || batch->count == SEND_BATCH))
        batch_flush(batch);
    int slot = batch->count;
    uint8_t *datagram = (uint8_t *)batch_words[slot];
    int length = build_one(stream, payload, batch->size, pts, datagram);
    if (length == 0)
        return;
    if (slot == 0) {
        batch->fd = stream->fd;
        batch->socket_key = stream->socket_key;
    }
    batch_vectors[slot].iov_base = datagram;
    batch_vectors[slot].iov_len = (size_t)length;
    struct msghdr *header = &batch_messages[slot].msg_hdr;
    header->msg_name = &stream->address;
    header->msg_namelen = stream->address_size;
    header->msg_iov = &batch_vectors[slot];
    header->msg_iovlen = 1;
    header->msg_control = NULL;
    header->msg_controllen = 0;
    header->msg_flags = 0;
    batch_streams[slot] = stream;
    batch->count++;
}

static PyTypeObject *StreamType;

/* Ask for the cache lines send_one will read of `self`: from the object's head to the
 * destination address's first bytes. */
static inline void prefetch_stream(const Stream *self)
{
    const char *start = (const char *)self;
    const char *end = (const char *)&self->address + sizeof(struct sockaddr_in6);
    for (const char *line = start; line < end; line += 64)
        __builtin_prefetch(line, 1, 3);
}

static PyObject *fanout_send(PyObject *Py_UNUSED(module), PyObject *const *args,
                             Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send(streams, payload, pts)");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    long sent = 0;
    PyObject *iterator = NULL;
    /* The RTP timestamp wraps modulo 2^32, so only the low bits of pts matter. */
    uint32_t pts = (uint32_t)PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred())
        goto done;
    if (payload.len > MAX_PAYLOAD_SIZE) {
        PyErr_Format(PyExc_ValueError, "payload of %zd bytes is over %d", payload.len,
                     MAX_PAYLOAD_SIZE);
        goto done;
    }
    if (PyTuple_Check(args[0])) {
        /* A room's StreamSet: walked by index, each stream's lines fetched one turn
         * ahead (its datagram takes a microsecond to build; the fetch is then long
         * done), the datagrams sent in batches per socket. */
        Py_ssize_t count = PyTuple_Size(args[0]);
        PyObject *next = count > 0 ? PyTuple_GetItem(args[0], 0) : NULL;
        Batch batch = {.fd = -1, .socket_key = 0, .count = 0, .sent = 0, .size = payload.len};
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *item = next;
            next = i + 1 < count ? PyTuple_GetItem(args[0], i + 1) : NULL;
            /* No look at the next item's type before the fetch: that read would be
             * the very cache miss the fetch is there to hide. A fetch reads nothing. */
            if (next != NULL)
                prefetch_stream((const Stream *)next);
            if (!PyObject_TypeCheck(item, StreamType)) {
                /* What is already built goes out: those streams' sequence numbers
                 * have advanced. */
                batch_flush(&batch);
                PyErr_SetString(PyExc_TypeError, "send() takes an iterable of Stream");
                goto done;
            }
            batch_add(&batch, (Stream *)item, payload.buf, pts);
        }
        batch_flush(&batch);
        sent = batch.sent;
        goto done;
    }
    iterator = PyObject_GetIter(args[0]);
    if (iterator == NULL)
        goto done;
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyObject_TypeCheck(item, StreamType)) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_TypeError, "send() takes an iterable of Stream");
            goto done;
        }
        sent += send_one((Stream *)item, payload.buf, payload.len, pts);
        Py_DECREF(item);
    }
done:
    Py_XDECREF(iterator);
    PyBuffer_Release(&payload);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(sent);
}

static uint64_t ntp_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seconds = (uint64_t)now.tv_sec + NTP_UNIX_OFFSET;
    uint64_t fraction = ((uint64_t)now.tv_nsec << 32) / 1000000000ULL;
    return (seconds << 32) | fraction;
}

/* SR (RFC 3550 6.4.1) with no report blocks, then SDES with our CNAME (6.5): a compound
 * packet must carry the CNAME. Into `packet`, which has room for an SRTCP trailer; the
 * size. */
#define REPORT_BUFFER (28 + 8 + 2 + MAX_CNAME_SIZE + 4 + SRTP_TRAILER)
static int build_report(Stream *self, uint8_t *packet, uint64_t ntp, uint32_t pts)
{
    memset(packet, 0, REPORT_BUFFER);
    packet[0] = 0x80;
    packet[1] = RTCP_SR;
    packet[3] = 6; /* length in words, minus one */
    put32(packet + 4, self->ssrc);
    put32(packet + 8, (uint32_t)(ntp >> 32));
    put32(packet + 12, (uint32_t)ntp);
    put32(packet + 16, self->timestamp_origin + pts);
    put32(packet + 20, (uint32_t)self->sent);
    put32(packet + 24, (uint32_t)self->octets);
    uint8_t *sdes = packet + 28;
    /* SSRC, item (type, length, text), a null end item, padded to a word. */
    Py_ssize_t chunk = 4 + 2 + self->cname_size + 1;
    chunk = (chunk + 3) & ~(Py_ssize_t)3;
    sdes[0] = 0x81;
    sdes[1] = RTCP_SDES;
    sdes[2] = (uint8_t)((chunk / 4) >> 8);
    sdes[3] = (uint8_t)(chunk / 4);
    put32(sdes + 4, self->ssrc);
    sdes[8] = SDES_CNAME;
    sdes[9] = (uint8_t)self->cname_size;
    memcpy(sdes + 10, self->cname, self->cname_size);
    return (int)(28 + 4 + chunk);
}

static int send_datagram(Stream *self, const void *data, size_t size)
{
    return self->fd >= 0 && sendto(self->fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL,
                                   (struct sockaddr *)&self->address, self->address_size) >= 0;
}

/* Protected with the stream's own session: aiortc's receiver also protects its
 * receiver reports under this SSRC with it, and one session per SSRC is what keeps
 * SRTCP indexes (and so keystreams) from repeating. */
static int send_report(Stream *self, uint64_t ntp, uint32_t pts)
{
    if (self->fd < 0 || srtp_protect_rtcp == NULL)
        return 0;
    uint32_t words[REPORT_BUFFER / 4 + 1]; /* libsrtp wants it 32-bit aligned */
    uint8_t *packet = (uint8_t *)words;
    int length = build_report(self, packet, ntp, pts);
    if (srtp_protect_rtcp(self->session, packet, &length) != 0)
        return 0;
    self->last_report_ntp = (uint32_t)(ntp >> 16);
    return send_datagram(self, packet, length);
}

/* The (ntp_time, pts) arguments of a sender report; 0 with an exception set on error. */
static int report_arguments(PyObject *args, PyObject *kwargs, unsigned long long *ntp,
                            uint32_t *pts)
{
    static char *keywords[] = {"ntp_time", "pts", NULL};
    PyObject *pts_object;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KO", keywords, ntp, &pts_object))
        return 0;
    *pts = (uint32_t)PyLong_AsUnsignedLongLongMask(pts_object);
    return !PyErr_Occurred();
}

static PyObject *Stream_sender_report(Stream *self, PyObject *args, PyObject *kwargs)
{
    unsigned long long ntp;
    uint32_t pts;
    if (!report_arguments(args, kwargs, &ntp, &pts))
        return NULL;
    uint8_t packet[REPORT_BUFFER];
    int length = build_report(self, packet, ntp, pts);
    return PyBytes_FromStringAndSize((const char *)packet, length);
}

static PyObject *Stream_send_report(Stream *self, PyObject *args, PyObject *kwargs)
{
    unsigned long long ntp;
    uint32_t pts;
    if (!report_arguments(args, kwargs, &ntp, &pts))
        return NULL;
    return PyBool_FromLong(send_report(self, ntp, pts));
}

/* One report block, if it is about our SSRC. */
static void take_report_block(Stream *self, const uint8_t *block, uint32_t arrival)
{
    if (get32(block) != self->ssrc)
        return;
    self->receiver_reports++;
    self->fraction_lost = block[4];
    long lost = ((long)block[5] << 16) | ((long)block[6] << 8) | block[7];
    if (lost & 0x800000) /* 24-bit two's complement: duplicates can make it negative */
        lost -= 0x1000000;
    self->packets_lost = lost;
    self->jitter = get32(block + 12);
    uint32_t last_report = get32(block + 16);
    uint32_t delay = get32(block + 20);
    /* RFC 3550 6.4.1: round trip = arrival - LSR - DLSR, all in 1/65536 s. Only for
     * a report that echoes our latest SR, so a stale echo is never mistaken for it. */
    if (last_report != 0 && last_report == self->last_report_ntp) {
        uint32_t round_trip = arrival - last_report - delay;
        if (round_trip < 0x80000000u)
            self->round_trip_time = round_trip / 65536.0;
    }
}

static void take_compound(Stream *self, const uint8_t *data, Py_ssize_t size)
{
    uint32_t arrival = (uint32_t)(ntp_now() >> 16);
    Py_ssize_t at = 0;
    while (at + 4 <= size) {
        const uint8_t *packet = data + at;
        int count = packet[0] & 0x1f;
        int type = packet[1];
        Py_ssize_t length = 4 * ((((Py_ssize_t)packet[2] << 8) | packet[3]) + 1);
        if ((packet[0] & 0xc0) != 0x80 || at + length > size)
            break;
        Py_ssize_t blocks = 0;
        if (type == RTCP_RR)
            blocks = 8;
        else if (type == RTCP_SR)
            blocks = 8 + SENDER_INFO_SIZE;
        if (blocks) {
            for (int i = 0; i < count && blocks + REPORT_BLOCK_SIZE <= length; i++) {
                take_report_block(self, packet + blocks, arrival);
                blocks += REPORT_BLOCK_SIZE;
            }
        } else if (type == RTCP_RTPFB && count == RTPFB_NACK && length >= 12 &&
                   get32(packet + 8) == self->ssrc) {
            /* Counted, not answered: see docs/decisions/001-listener-fast-path.md. */
            self->nacks++;
        }
        at += length;
    }
}

static PyObject *Stream_take_rtcp(Stream *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    take_compound(self, data.buf, data.len);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

/* ---- ICE consent freshness (RFC 7675) ---------------------------------------------- */

static double monotonic_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

/* Only spreads the checks and reports in time (xorshift64*, seeded at import); the
 * transaction ids, which must be unguessable (RFC 7675 7), come from getrandom(). */
static uint64_t spread_state;

static double uniform(void)
{
    spread_state ^= spread_state >> 12;
    spread_state ^= spread_state << 25;
    spread_state ^= spread_state >> 27;
    return ((spread_state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* RFC 7675 5.1: 0.8 to 1.2 times Tc, so that checks never synchronise. */
static double check_delay(void)
{
    return consent_interval * (0.8 + 0.4 * uniform());
}

static PyObject *Stream_ice(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"local_username", "local_password", "remote_username",
                               "remote_password", "controlling", "tie_breaker",
                               "priority", NULL};
    const char *local_username, *local_password, *remote_username, *remote_password;
    Py_ssize_t local_username_size, local_password_size, remote_username_size,
        remote_password_size;
    int controlling;
    unsigned long long tie_breaker;
    unsigned long priority;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "s#s#s#s#pKk", keywords, &local_username, &local_username_size,
            &local_password, &local_password_size, &remote_username, &remote_username_size,
            &remote_password, &remote_password_size, &controlling, &tie_breaker, &priority))
        return NULL;
    if (local_username_size < 1 || local_username_size > MAX_UFRAG ||
        remote_username_size < 1 || remote_username_size > MAX_UFRAG) {
        PyErr_SetString(PyExc_ValueError, "a username fragment is 1-256 characters");
        return NULL;
    }
    if (local_password_size < 1 || remote_password_size < 1) {
        PyErr_SetString(PyExc_ValueError, "no ICE password");
        return NULL;
    }
    if (!hmac_sha1_key(&self->local_key, (const uint8_t *)local_password,
                       (size_t)local_password_size) ||
        !hmac_sha1_key(&self->remote_key, (const uint8_t *)remote_password,
                       (size_t)remote_password_size)) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not key HMAC-SHA1");
        return NULL;
    }
    /* Ours in our requests, "remote:local"; the peer's in its own, "local:remote". */
    uint8_t *name = self->username;
    memcpy(name, remote_username, remote_username_size);
    name[remote_username_size] = ':';
    memcpy(name + remote_username_size + 1, local_username, local_username_size);
    self->username_size = remote_username_size + 1 + local_username_size;
    name = self->expected_username;
    memcpy(name, local_username, local_username_size);
    name[local_username_size] = ':';
    memcpy(name + local_username_size + 1, remote_username, remote_username_size);
    self->expected_username_size = self->username_size;
    self->controlling = controlling;
    self->tie_breaker = tie_breaker;
    self->priority = (uint32_t)priority;
    /* The connectivity checks just granted consent (RFC 7675 5.1). */
    double now = monotonic_now();
    self->consent_at = now;
    self->next_check = now + check_delay();
    self->consent_revoked = 0;
    memset(self->transaction_open, 0, sizeof(self->transaction_open));
    self->ice = 1;
    Py_RETURN_NONE;
}

/* A Binding request on the nominated pair (RFC 7675 5.1, RFC 8445 7.2.2): USERNAME,
 * PRIORITY, our role with its tie-breaker, MESSAGE-INTEGRITY with the peer's password,
 * FINGERPRINT; a new random transaction id each, sent once. */
static void send_consent_check(Stream *self)
{
    uint32_t words[STUN_REQUEST_BUFFER / 4 + 1];
    uint8_t *request = (uint8_t *)words;
    uint8_t *transaction = self->transactions[self->transaction_next];
    if (getrandom(transaction, 12, 0) != 12)
        return;
    put16(request, STUN_BINDING_REQUEST);
    put32(request + 4, STUN_COOKIE);
    memcpy(request + 8, transaction, 12);
    Py_ssize_t at = STUN_HEADER_SIZE;
    put16(request + at, STUN_USERNAME);
    put16(request + at + 2, (uint16_t)self->username_size);
    memcpy(request + at + 4, self->username, self->username_size);
    at += 4 + self->username_size;
    while (at % 4)
        request[at++] = 0;
    put16(request + at, STUN_PRIORITY);
    put16(request + at + 2, 4);
    put32(request + at + 4, self->priority);
    at += 8;
    put16(request + at, self->controlling ? STUN_ICE_CONTROLLING : STUN_ICE_CONTROLLED);
    put16(request + at + 2, 8);
    put32(request + at + 4, (uint32_t)(self->tie_breaker >> 32));
    put32(request + at + 8, (uint32_t)self->tie_breaker);
    at += 12;
    Py_ssize_t size = stun_seal(request, at, self->remote_key);
    if (size == 0)
        return;
    self->transaction_open[self->transaction_next] = 1;
    self->transaction_next = (self->transaction_next + 1) % CONSENT_TRANSACTIONS;
    self->consent_checks++;
    send_datagram(self, request, size);
}

/* Whether asyncio's `addr` (host, port[, flowinfo, scope]) is the stream's destination:
 * 1 if so, 0 if not (or not an address). */
static int is_destination(Stream *self, PyObject *addr)
{
    if (!PyTuple_Check(addr) || PyTuple_Size(addr) < 2)
        return 0;
    PyObject *host_object = PyTuple_GetItem(addr, 0);
    PyObject *port_object = PyTuple_GetItem(addr, 1);
    if (host_object == NULL || port_object == NULL || !PyUnicode_Check(host_object)) {
        PyErr_Clear();
        return 0;
    }
    const char *host = PyUnicode_AsUTF8AndSize(host_object, NULL);
    long port = PyLong_AsLong(port_object);
    if (host == NULL || PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (self->address.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&self->address;
        struct in_addr parsed;
        return inet_pton(AF_INET, host, &parsed) == 1 && port == ntohs(v4->sin_port) &&
               parsed.s_addr == v4->sin_addr.s_addr;
    }
    if (self->address.ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&self->address;
        struct in6_addr parsed;
        return inet_pton(AF_INET6, host, &parsed) == 1 && port == ntohs(v6->sin6_port) &&
               memcmp(&parsed, &v6->sin6_addr, sizeof(parsed)) == 0;
    }
    return 0;
}

/* The peer's consent check (or any Binding request) on the nominated pair, answered as
 * RFC 8445 7.3 says; 0 leaves it to aioice: another pair's checks (the peer may be
 * nominating a new one), a role conflict, an unknown comprehension-required attribute,
 * or one that fails authentication (aioice sends the error responses). */
static int answer_check(Stream *self, int socket, const StunMessage *message,
                        const uint8_t *data, PyObject *addr)
{
    if (socket < 0 || socket != self->route_socket || !is_destination(self, addr))
        return 0;
    if (message->unknown_required ||
        (self->controlling ? message->controlling : message->controlled))
        return 0;
    if (message->username_size != self->expected_username_size ||
        memcmp(message->username, self->expected_username, message->username_size) != 0)
        return 0;
    if (!stun_authentic(message, data, self->local_key))
        return 0;
    uint32_t words[(STUN_HEADER_SIZE + 24 + 24 + 8) / 4];
    uint8_t *response = (uint8_t *)words;
    put16(response, STUN_BINDING_SUCCESS);
    put32(response + 4, STUN_COOKIE);
    memcpy(response + 8, data + 8, 12);
    /* XOR-MAPPED-ADDRESS: the request's source, which is the stream's destination. */
    uint8_t *attribute = response + STUN_HEADER_SIZE;
    Py_ssize_t size = STUN_HEADER_SIZE;
    put16(attribute, STUN_XOR_MAPPED_ADDRESS);
    attribute[4] = 0;
    if (self->address.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&self->address;
        put16(attribute + 2, 8);
        attribute[5] = 1;
        put16(attribute + 6, ntohs(v4->sin_port) ^ (STUN_COOKIE >> 16));
        put32(attribute + 8, ntohl(v4->sin_addr.s_addr) ^ STUN_COOKIE);
        size += 12;
    } else {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&self->address;
        put16(attribute + 2, 20);
        attribute[5] = 2;
        put16(attribute + 6, ntohs(v6->sin6_port) ^ (STUN_COOKIE >> 16));
        /* XORed with the cookie then the transaction id: bytes 4-19 of the header. */
        const uint8_t *address = (const uint8_t *)&v6->sin6_addr;
        for (int i = 0; i < 16; i++)
            attribute[8 + i] = address[i] ^ response[4 + i];
        size += 24;
    }
    size = stun_seal(response, size, self->local_key);
    if (size == 0)
        return 0;
    self->consent_answers++;
    send_datagram(self, response, size);
    return 1;
}

/* An answer to one of our consent checks: never aioice's business. Consent is granted
 * by an authenticated success response from the address the check went to, revoked
 * by an authenticated 403 (RFC 7675 5.1, 5.2); anything else is dropped. 0 if the
 * transaction is not one of ours. */
static int take_answer(Stream *self, int socket, const StunMessage *message,
                       const uint8_t *data, PyObject *addr)
{
    int slot = -1;
    for (int i = 0; i < CONSENT_TRANSACTIONS; i++) {
        if (self->transaction_open[i] && memcmp(self->transactions[i], data + 8, 12) == 0) {
            slot = i;
            break;
        }
    }
    if (slot < 0)
        return 0;
    if (socket != self->route_socket || !is_destination(self, addr) ||
        !stun_authentic(message, data, self->remote_key))
        return 1;
    self->transaction_open[slot] = 0;
    if (message->type == STUN_BINDING_SUCCESS) {
        self->consent_at = monotonic_now();
        self->consent_responses++;
    } else if (message->error_code == 403) {
        self->consent_revoked = 1;
    }
    return 1;
}

static PyObject *Stream_get_consent_age(Stream *self, void *Py_UNUSED(closure))
{
    if (!self->ice)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(monotonic_now() - self->consent_at);
}

static PyObject *Stream_get_consent_expired(Stream *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->consent_expired);
}

/* ---- The tap: the peer's datagrams, before aioice ------------------------------------ */

typedef struct {
    PyObject_HEAD
    Stream *stream;
    PyObject *original; /* the aioice protocol's own datagram_received */
    int socket;         /* that protocol's socket descriptor, -1 if unknown */
} Tap;

/* 1 if the datagram was this stream's to take, 0 to pass it on. */
static int tap_datagram(Tap *self, const uint8_t *data, Py_ssize_t size, PyObject *addr)
{
    Stream *stream = self->stream;
    if (stream->fd < 0)
        return 0;
    /* RFC 5761/7983: RTP and RTCP start at 128-191; the first packet's header stays in
     * the clear in SRTCP, so its type can be read here. A compound packet that starts
     * with a sender report comes from a peer that publishes: aiortc's receiver needs it. */
    if (size > 8 && data[1] == RTCP_RR && data[0] > 127 && data[0] < 192) {
        if (stream->inbound_session == NULL || srtp_unprotect_rtcp == NULL || size > RTCP_BUFFER)
            return 0;
        uint32_t words[RTCP_BUFFER / 4 + 1];
        uint8_t *packet = (uint8_t *)words;
        memcpy(packet, data, size);
        int length = (int)size;
        /* Forged, replayed or damaged: dropped, as aiortc would have. */
        if (srtp_unprotect_rtcp(stream->inbound_session, packet, &length) == 0)
            take_compound(stream, packet, length);
        return 1;
    }
    if (!stream->ice || data[0] > 3)
        return 0;
    StunMessage message;
    if (!stun_parse(&message, data, size))
        return 0;
    if (message.type == STUN_BINDING_REQUEST)
        return answer_check(stream, self->socket, &message, data, addr);
    if (message.type == STUN_BINDING_SUCCESS || message.type == STUN_BINDING_ERROR)
        return take_answer(stream, self->socket, &message, data, addr);
    return 0;
}

static PyTypeObject *TapType;

static void Tap_clear_references(Tap *self)
{
    Py_CLEAR(self->stream);
    Py_CLEAR(self->original);
}

static int Tap_init(Tap *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"stream", "original", "socket", NULL};
    PyObject *stream, *original;
    int socket = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O|i", keywords, StreamType, &stream,
                                     &original, &socket))
        return -1;
    if (!PyCallable_Check(original)) {
        PyErr_SetString(PyExc_TypeError, "original must be callable");
        return -1;
    }
    Tap_clear_references(self);
    self->stream = (Stream *)Py_NewRef(stream);
    self->original = Py_NewRef(original);
    self->socket = socket;
    return 0;
}

static PyObject *Tap_call(Tap *self, PyObject *args, PyObject *kwargs)
{
    PyObject *data_object, *addr;
    if (self->stream == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the tap is not initialised");
        return NULL;
    }
    if (kwargs == NULL && PyTuple_Size(args) == 2) {
        data_object = PyTuple_GetItem(args, 0);
        addr = PyTuple_GetItem(args, 1);
        Py_buffer data;
        if (PyObject_GetBuffer(data_object, &data, PyBUF_SIMPLE) < 0)
            return NULL;
        int taken = tap_datagram(self, data.buf, data.len, addr);
        PyBuffer_Release(&data);
        if (taken)
            Py_RETURN_NONE;
    }
    return PyObject_Call(self->original, args, kwargs);
}

static int Tap_traverse(Tap *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE((PyObject *)self));
    Py_VISIT(self->stream);
    Py_VISIT(self->original);
    return 0;
}

static int Tap_clear(Tap *self)
{
    Tap_clear_references(self);
    return 0;
}

static void Tap_dealloc(Tap *self)
{
    PyObject_GC_UnTrack(self);
    Tap_clear(self);
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    freefunc free_self = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_self(self);
    Py_DECREF(type);
}

static PyObject *Tap_get_original(Tap *self, void *Py_UNUSED(closure))
{
    if (self->original == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->original);
}

static PyGetSetDef Tap_getset[] = {
    {"original", (getter)Tap_get_original, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Tap_slots[] = {
    {Py_tp_doc, "Tap(stream, original, socket=-1): an aioice protocol's datagram_received "
                "that takes the stream's consent STUN and receiver reports, and passes on "
                "the rest"},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Tap_init},
    {Py_tp_call, Tap_call},
    {Py_tp_traverse, Tap_traverse},
    {Py_tp_clear, Tap_clear},
    {Py_tp_dealloc, Tap_dealloc},
    {Py_tp_getset, Tap_getset},
    {0, NULL},
};

static PyType_Spec Tap_spec = {
    .name = "media_node._fanout.Tap",
    .basicsize = sizeof(Tap),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Tap_slots,
};

/* ---- Upkeep: each tick, every stream's consent checks and sender reports ------------- */

static PyObject *fanout_upkeep(PyObject *Py_UNUSED(module), PyObject *const *args,
                               Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "upkeep(streams, pts)");
        return NULL;
    }
    uint32_t pts = (uint32_t)PyLong_AsUnsignedLongLongMask(args[1]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *lost = PyList_New(0);
    if (lost == NULL)
        return NULL;
    PyObject *iterator = PyObject_GetIter(args[0]);
    if (iterator == NULL) {
        Py_DECREF(lost);
        return NULL;
    }
    double now = monotonic_now();
    uint64_t ntp = 0;
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyObject_TypeCheck(item, StreamType)) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_TypeError, "upkeep() takes an iterable of Stream");
            break;
        }
        Stream *stream = (Stream *)item;
        if (stream->fd >= 0 && stream->ice) {
            if (stream->consent_revoked || now - stream->consent_at > consent_timeout) {
                /* Consent lost: not one more packet (RFC 7675 5.1). */
                stream->consent_expired = 1;
                close_socket(stream);
                if (PyList_Append(lost, item) < 0) {
                    Py_DECREF(item);
                    break;
                }
            } else if (now >= stream->next_check) {
                send_consent_check(stream);
                stream->next_check = now + check_delay();
            }
        }
        if (stream->fd >= 0) {
            if (stream->next_report == 0) {
                stream->next_report = now + REPORT_SECONDS * uniform();
            } else if (now >= stream->next_report) {
                if (ntp == 0)
                    ntp = ntp_now();
                send_report(stream, ntp, pts);
                stream->next_report += REPORT_SECONDS;
                if (stream->next_report <= now)
                    stream->next_report = now + REPORT_SECONDS;
            }
        }
        Py_DECREF(item);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        Py_DECREF(lost);
        return NULL;
    }
    return lost;
}

static PyObject *Stream_get_round_trip_time(Stream *self, void *Py_UNUSED(closure))
{
    if (isnan(self->round_trip_time))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->round_trip_time);
}

static PyObject *Stream_get_fraction_lost(Stream *self, void *Py_UNUSED(closure))
{
    if (self->fraction_lost < 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->fraction_lost / 256.0);
}

static PyObject *Stream_get_routed(Stream *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->fd >= 0);
}

static PyMethodDef Stream_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))Stream_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(payload_type, extension, cname): the header and CNAME this stream sends"},
    {"route", (PyCFunction)(void (*)(void))Stream_route, METH_VARARGS | METH_KEYWORDS,
     "route(host, port, fd=-1): where to send; with fd, a duplicate of that socket"},
    {"close", (PyCFunction)Stream_close, METH_NOARGS, "stop sending (packets count as dropped)"},
    {"use_gcm", (PyCFunction)(void (*)(void))Stream_use_gcm, METH_VARARGS | METH_KEYWORDS,
     "protect RTP here with AES-GCM (RFC 7714) under this session key and salt, not libsrtp"},
    {"sender_report", (PyCFunction)(void (*)(void))Stream_sender_report,
     METH_VARARGS | METH_KEYWORDS,
     "sender_report(ntp_time, pts): an RTCP SR + SDES compound packet, unprotected"},
    {"send_report", (PyCFunction)(void (*)(void))Stream_send_report,
     METH_VARARGS | METH_KEYWORDS,
     "send_report(ntp_time, pts): send a sender report, SRTCP-protected; False if not sent"},
    {"ice", (PyCFunction)(void (*)(void))Stream_ice, METH_VARARGS | METH_KEYWORDS,
     "ice(local_username, local_password, remote_username, remote_password, controlling, "
     "tie_breaker, priority): take over consent freshness for the nominated pair"},
    {"take_rtcp", (PyCFunction)Stream_take_rtcp, METH_O,
     "take_rtcp(packet): read the report blocks and NACKs about us in unprotected RTCP"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Stream_members[] = {
    {"ssrc", T_UINT, offsetof(Stream, ssrc), READONLY, NULL},
    {"rollover", T_UINT, offsetof(Stream, rollover), READONLY,
     "SRTP's rollover counter: how many times the sequence number has wrapped"},
    {"sequence", T_USHORT, offsetof(Stream, sequence), READONLY,
     "the sequence number of the next packet"},
    {"timestamp_origin", T_UINT, offsetof(Stream, timestamp_origin), READONLY, NULL},
    {"sent", T_ULONGLONG, offsetof(Stream, sent), READONLY, NULL},
    {"octets", T_ULONGLONG, offsetof(Stream, octets), READONLY, "payload bytes sent"},
    {"dropped", T_ULONGLONG, offsetof(Stream, dropped), READONLY, NULL},
    {"receiver_reports", T_ULONGLONG, offsetof(Stream, receiver_reports), READONLY,
     "report blocks about this stream received from the peer"},
    {"nacks", T_ULONGLONG, offsetof(Stream, nacks), READONLY, NULL},
    {"packets_lost", T_LONG, offsetof(Stream, packets_lost), READONLY, NULL},
    {"jitter", T_ULONG, offsetof(Stream, jitter), READONLY, NULL},
    {"consent_checks", T_ULONGLONG, offsetof(Stream, consent_checks), READONLY,
     "consent checks sent to the peer"},
    {"consent_responses", T_ULONGLONG, offsetof(Stream, consent_responses), READONLY,
     "authenticated success responses to them"},
    {"consent_answers", T_ULONGLONG, offsetof(Stream, consent_answers), READONLY,
     "the peer's checks on the nominated pair answered here"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Stream_getset[] = {
    {"round_trip_time", (getter)Stream_get_round_trip_time, NULL, NULL, NULL},
    {"fraction_lost", (getter)Stream_get_fraction_lost, NULL, NULL, NULL},
    {"routed", (getter)Stream_get_routed, NULL, NULL, NULL},
    {"consent_age", (getter)Stream_get_consent_age, NULL,
     "seconds since consent was last granted; None before ice()", NULL},
    {"consent_expired", (getter)Stream_get_consent_expired, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Stream_slots[] = {
    {Py_tp_doc, "One peer's outbound RTP stream: header template, SRTP session, socket."},
    {Py_tp_new, Stream_new},
    {Py_tp_init, Stream_init},
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_methods, Stream_methods},
    {Py_tp_members, Stream_members},
    {Py_tp_getset, Stream_getset},
    {0, NULL},
};

static PyType_Spec Stream_spec = {
    .name = "media_node._fanout.Stream",
    .basicsize = sizeof(Stream),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Stream_slots,
};

static PyObject *fanout_use_srtp(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long protect, protect_rtcp, unprotect_rtcp;
    if (!PyArg_ParseTuple(args, "KKK", &protect, &protect_rtcp, &unprotect_rtcp))
        return NULL;
    if (protect == 0 || protect_rtcp == 0 || unprotect_rtcp == 0) {
        PyErr_SetString(PyExc_ValueError, "the three functions' addresses are needed");
        return NULL;
    }
    srtp_protect = (ProtectFunction)(uintptr_t)protect;
    srtp_protect_rtcp = (ProtectFunction)(uintptr_t)protect_rtcp;
    srtp_unprotect_rtcp = (ProtectFunction)(uintptr_t)unprotect_rtcp;
    Py_RETURN_NONE;
}

static PyObject *fanout_send_calls(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    return PyLong_FromUnsignedLongLong(send_calls);
}

static PyObject *fanout_consent_timing(PyObject *Py_UNUSED(module), PyObject *args,
                                       PyObject *kwargs)
{
    static char *keywords[] = {"interval", "timeout", NULL};
    double interval = 0, timeout = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|dd", keywords, &interval, &timeout))
        return NULL;
    if (interval < 0 || timeout < 0) {
        PyErr_SetString(PyExc_ValueError, "timings are positive seconds");
        return NULL;
    }
    PyObject *previous = Py_BuildValue("(dd)", consent_interval, consent_timeout);
    if (interval > 0)
        consent_interval = interval;
    if (timeout > 0)
        consent_timeout = timeout;
    return previous;
}

static PyObject *fanout_hmac_sha1(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*", &key, &data))
        return NULL;
    EVP_MAC_CTX *context = NULL;
    uint8_t digest[HMAC_SHA1_SIZE];
    int done = hmac_sha1_key(&context, key.buf, (size_t)key.len) &&
               hmac_sha1(context, data.buf, (size_t)data.len, NULL, 0, digest);
    EVP_MAC_CTX_free(context);
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    if (!done) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not compute HMAC-SHA1");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)digest, HMAC_SHA1_SIZE);
}

static PyObject *fanout_crc32(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    uint32_t crc = crc_32(data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *fanout_stun_authentic(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data, key;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &key))
        return NULL;
    StunMessage message;
    EVP_MAC_CTX *context = NULL;
    int keyed = hmac_sha1_key(&context, key.buf, (size_t)key.len);
    int authentic = keyed && stun_parse(&message, data.buf, data.len) &&
                    stun_authentic(&message, data.buf, context);
    EVP_MAC_CTX_free(context);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    if (!keyed) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not key HMAC-SHA1");
        return NULL;
    }
    return PyBool_FromLong(authentic);
}

static PyMethodDef module_methods[] = {
    {"send", (PyCFunction)(void (*)(void))fanout_send, METH_FASTCALL,
     "send(streams, payload, pts): one RTP packet to every stream; how many were sent"},
    {"use_srtp", fanout_use_srtp, METH_VARARGS,
     "use_srtp(protect, protect_rtcp, unprotect_rtcp): the addresses of those srtp_ "
     "functions of the libsrtp whose sessions streams use"},
    {"send_calls", fanout_send_calls, METH_NOARGS,
     "send_calls(): the system calls `send` has made so far (a sendto per stream, or a "
     "sendmmsg per batch of streams on one socket)"},
    {"upkeep", (PyCFunction)(void (*)(void))fanout_upkeep, METH_FASTCALL,
     "upkeep(streams, pts): due consent checks and sender reports; the streams that "
     "lost consent now (they have stopped sending)"},
    {"consent_timing", (PyCFunction)(void (*)(void))fanout_consent_timing,
     METH_VARARGS | METH_KEYWORDS,
     "consent_timing(interval=0, timeout=0): set Tc and the expiry (seconds, 0 keeps "
     "one); the previous pair. RFC 7675's 5 and 30 unless a test shortens them"},
    {"hmac_sha1", fanout_hmac_sha1, METH_VARARGS,
     "hmac_sha1(key, data): the digest, as STUN's MESSAGE-INTEGRITY computes it"},
    {"crc32", fanout_crc32, METH_VARARGS,
     "crc32(data): CRC-32 (ISO-HDLC), as STUN's FINGERPRINT computes it"},
    {"stun_authentic", fanout_stun_authentic, METH_VARARGS,
     "stun_authentic(message, key): well-formed STUN with MESSAGE-INTEGRITY (key) and "
     "FINGERPRINT both right"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media_node._fanout",
    .m_doc = "The media node's per-listener send path: RTP header, SRTP, sendto, in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    aes_128_gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    aes_256_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (aes_128_gcm == NULL || aes_256_gcm == NULL || hmac == NULL) {
        PyErr_SetString(PyExc_ImportError,
                        "OpenSSL's libcrypto has no AES-GCM or HMAC (its default provider "
                        "is not available)");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    StreamType = (PyTypeObject *)PyType_FromSpec(&Stream_spec);
    if (StreamType == NULL || PyModule_AddObjectRef(m, "Stream", (PyObject *)StreamType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    TapType = (PyTypeObject *)PyType_FromSpec(&Tap_spec);
    if (TapType == NULL || PyModule_AddObjectRef(m, "Tap", (PyObject *)TapType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (getrandom(&spread_state, sizeof(spread_state), 0) != sizeof(spread_state) ||
        spread_state == 0)
        spread_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL | 1;
    return m;
}
