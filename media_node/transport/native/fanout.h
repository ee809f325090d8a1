/*
 * media_node._fanout, internal: what the extension's files share.
 *
 * The module sends a room's encoded audio to every listener in one C loop: each
 * listener needs the same Opus payload under its own RTP header, protected with its own
 * SRTP keys and sent to its own address, and in Python the interpreter around those
 * three calls cost as much as the calls themselves (docs/decisions/001-listener-fast-path.md). A `Stream` is
 * a C struct (header template, SRTP keys, socket, destination); the files split it by
 * concern:
 *
 *   stream.c   the Stream type: construction, header template, route, counters
 *   send.c     the send loop: RTP headers, batches per socket (sendmmsg)
 *   srtp.c     SRTP: AES-GCM in the stream (OpenSSL's EVP), libsrtp for the rest
 *   rtcp.c     sender reports out, the peer's receiver reports and NACKs in
 *   stun.c     STUN messages: parsing, MESSAGE-INTEGRITY (OpenSSL's HMAC-SHA1),
 *              FINGERPRINT (zlib's CRC-32)
 *   consent.c  ICE consent freshness (RFC 7675) of the nominated pair
 *   tap.c      the Tap: the peer's datagrams taken before aioice sees them
 *   module.c   the module: its functions, per-tick upkeep, initialisation
 *
 * Everything runs with the GIL held, on the event loop's thread: a call is short (a few
 * microseconds per listener), and no other thread ever touches a stream.
 */

#ifndef PARLOR_FANOUT_H
#define PARLOR_FANOUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/evp.h>

#define RTP_HEADER_SIZE 12
/* RFC 8285 one-byte extensions: 4 bytes of profile and length, then the elements. */
#define MAX_EXTENSION_SIZE 36
/* An Opus packet is at most 1275 bytes; the mix's are about 80. */
#define MAX_PAYLOAD_SIZE 1400
#define MAX_CNAME_SIZE 255
/* libsrtp's SRTP_MAX_TRAILER_LEN: the longest tag plus the longest MKI. */
#define SRTP_TRAILER 144
#define DATAGRAM_BUFFER (RTP_HEADER_SIZE + MAX_EXTENSION_SIZE + MAX_PAYLOAD_SIZE + SRTP_TRAILER)

#define GCM_TAG_SIZE 16
#define GCM_SALT_SIZE 12

/* Sender reports: RFC 3550's minimum interval, each stream at a phase of its own. */
#define REPORT_SECONDS 5.0
/* The largest SRTCP packet from a peer that the tap unprotects itself; a listener's
 * receiver reports are well under 100 bytes. Larger ones go on to aiortc. */
#define RTCP_BUFFER 1500
#define RTCP_SR 200
#define RTCP_RR 201

/* STUN (RFC 8489) as ICE (RFC 8445) and consent freshness (RFC 7675) use it. */
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
#define HMAC_SHA1_SIZE 20
/* ice-char{4,256} for a ufrag (RFC 8839 5.4). */
#define MAX_UFRAG 256
#define MAX_USERNAME (2 * MAX_UFRAG + 1)
/* Consent checks whose responses still count: 8 checks of 4-6 s cover more than the
 * 30 s a response could matter for. */
#define CONSENT_TRANSACTIONS 8

typedef struct {
    PyObject_HEAD
    /* First, together, what every packet reads or writes (send.c), so that a stream's
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
    double consent_at;   /* monotonic seconds of the latest consent */
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
    int fraction_lost;      /* of 256, in the latest report; -1 before any */
    long packets_lost;      /* cumulative, as the latest report says */
    unsigned long jitter;   /* in RTP timestamp units */
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
    /* HMAC-SHA1 keyed once per password (stun.c): */
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

static inline uint16_t get16(const uint8_t *at)
{
    return (uint16_t)((at[0] << 8) | at[1]);
}

static inline uint32_t get32(const uint8_t *at)
{
    return ((uint32_t)at[0] << 24) | ((uint32_t)at[1] << 16) | ((uint32_t)at[2] << 8) | at[3];
}

static inline void put16(uint8_t *at, uint16_t value)
{
    at[0] = value >> 8;
    at[1] = (uint8_t)value;
}

static inline void put32(uint8_t *at, uint32_t value)
{
    at[0] = value >> 24;
    at[1] = value >> 16;
    at[2] = value >> 8;
    at[3] = value;
}

/* module.c */
extern PyTypeObject *StreamType;

/* stream.c */
PyTypeObject *stream_type_create(void);
void stream_close_socket(Stream *self);
/* One datagram to the stream's destination, now, on its own descriptor; 1 if sent. */
int stream_send_datagram(Stream *self, const void *data, size_t size);

/* send.c */
PyObject *fanout_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *fanout_send_calls(PyObject *module, PyObject *args);

/* srtp.c */
int srtp_init(void);
int srtp_ready(void);
PyObject *fanout_use_srtp(PyObject *module, PyObject *args);
PyObject *Stream_use_gcm(Stream *self, PyObject *args, PyObject *kwargs);
void srtp_forget_keys(Stream *self);
/* In place, in a 32-bit aligned buffer with room for the trailer; 1 on success, with
 * `*length` grown by the tag. */
int srtp_protect_rtp(Stream *self, uint8_t *datagram, int *length, uint16_t sequence,
                     uint32_t rollover);
int srtp_protect_report(Stream *self, uint8_t *packet, int *length);
int srtp_unprotect_report(Stream *self, uint8_t *packet, int *length);

/* rtcp.c */
void rtcp_upkeep(Stream *self, double now, uint64_t *ntp, uint32_t pts);
void rtcp_take_compound(Stream *self, const uint8_t *data, Py_ssize_t size);
PyObject *Stream_sender_report(Stream *self, PyObject *args, PyObject *kwargs);
PyObject *Stream_send_report(Stream *self, PyObject *args, PyObject *kwargs);
PyObject *Stream_take_rtcp(Stream *self, PyObject *arg);

/* stun.c */
int stun_init(void);
/* Key `*context` (made on first use) with `key` for HMAC-SHA1; 1 on success. */
int hmac_sha1_key(EVP_MAC_CTX **context, const uint8_t *key, size_t size);
/* HMAC-SHA1 of `first` then `second` (either may be empty); 1 on success. */
int hmac_sha1(EVP_MAC_CTX *context, const uint8_t *first, size_t first_size,
              const uint8_t *second, size_t second_size, uint8_t digest[HMAC_SHA1_SIZE]);
uint32_t crc_32(const uint8_t *data, size_t size);
int stun_parse(StunMessage *message, const uint8_t *data, Py_ssize_t size);
int stun_authentic(const StunMessage *message, const uint8_t *data, EVP_MAC_CTX *key);
Py_ssize_t stun_seal(uint8_t *data, Py_ssize_t size, EVP_MAC_CTX *key);

/* consent.c */
void consent_seed(void);
/* Due checks for one stream; 1 if it has just lost consent (it has stopped sending). */
int consent_upkeep(Stream *self, double now);
int consent_answer_check(Stream *self, int socket, const StunMessage *message,
                         const uint8_t *data, PyObject *addr);
int consent_take_answer(Stream *self, int socket, const StunMessage *message,
                        const uint8_t *data, PyObject *addr);
double monotonic_now(void);
double spread_uniform(void);
PyObject *fanout_consent_timing(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *Stream_ice(Stream *self, PyObject *args, PyObject *kwargs);
PyObject *Stream_get_consent_age(Stream *self, void *closure);
PyObject *Stream_get_consent_expired(Stream *self, void *closure);

/* tap.c */
PyTypeObject *tap_type_create(void);

#endif
