/*
 * ICE consent freshness (RFC 7675) for a stream's nominated pair, so that aioice (whose
 * consent task the node stops for these connections) spends no Python on it.
 *
 * The tap (tap.c) hands over the peer's Binding requests on the nominated pair, which
 * are answered here as RFC 8445 7.3 says (USERNAME and MESSAGE-INTEGRITY checked with
 * our ICE password, answered with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and
 * FINGERPRINT), and the answers to our own checks. `upkeep` sends our checks on the
 * RFC's randomised 4-6 s schedule and tells which streams lost consent (no valid
 * response for 30 s).
 */

#include "fanout.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* A request: header, USERNAME, PRIORITY, ICE-CONTROLL(ED|ING), MESSAGE-INTEGRITY,
 * FINGERPRINT. */
#define STUN_REQUEST_BUFFER (STUN_HEADER_SIZE + 4 + MAX_USERNAME + 3 + 8 + 12 + 24 + 8)

/* RFC 7675 5.1: a check every Tc = 5 s, randomised to 0.8-1.2 Tc, and consent lost 30 s
 * after the last response. Tests may shorten them (`consent_timing`). */
static double consent_interval = 5.0;
static double consent_timeout = 30.0;

double monotonic_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

/* Only spreads the checks and reports in time (xorshift64*, seeded at import); the
 * transaction ids, which must be unguessable (RFC 7675 7), come from getrandom(). */
static uint64_t spread_state;

void consent_seed(void)
{
    if (getrandom(&spread_state, sizeof(spread_state), 0) != sizeof(spread_state) ||
        spread_state == 0)
        spread_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL | 1;
}

double spread_uniform(void)
{
    spread_state ^= spread_state >> 12;
    spread_state ^= spread_state << 25;
    spread_state ^= spread_state >> 27;
    return ((spread_state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* RFC 7675 5.1: 0.8 to 1.2 times Tc, so that checks never synchronise. */
static double check_delay(void)
{
    return consent_interval * (0.8 + 0.4 * spread_uniform());
}

PyObject *fanout_consent_timing(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
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

PyObject *Stream_ice(Stream *self, PyObject *args, PyObject *kwargs)
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
static void send_check(Stream *self)
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
    stream_send_datagram(self, request, (size_t)size);
}

int consent_upkeep(Stream *self, double now)
{
    if (self->fd < 0 || !self->ice)
        return 0;
    if (self->consent_revoked || now - self->consent_at > consent_timeout) {
        /* Consent lost: not one more packet (RFC 7675 5.1). */
        self->consent_expired = 1;
        stream_close_socket(self);
        return 1;
    }
    if (now >= self->next_check) {
        send_check(self);
        self->next_check = now + check_delay();
    }
    return 0;
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
int consent_answer_check(Stream *self, int socket, const StunMessage *message,
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
    stream_send_datagram(self, response, (size_t)size);
    return 1;
}

/* An answer to one of our consent checks: never aioice's business. Consent is granted
 * by an authenticated success response from the address the check went to, revoked
 * by an authenticated 403 (RFC 7675 5.1, 5.2); anything else is dropped. 0 if the
 * transaction is not one of ours. */
int consent_take_answer(Stream *self, int socket, const StunMessage *message,
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

PyObject *Stream_get_consent_age(Stream *self, void *Py_UNUSED(closure))
{
    if (!self->ice)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(monotonic_now() - self->consent_at);
}

PyObject *Stream_get_consent_expired(Stream *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->consent_expired);
}
