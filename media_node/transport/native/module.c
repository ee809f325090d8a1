/*
 * media_node._fanout: a room's encoded audio to every listener, one C loop per packet
 * (fanout.h says which file does what). This file is the module: its functions, the
 * per-tick upkeep of a room's streams, and initialisation.
 */

#include "fanout.h"

PyTypeObject *StreamType;

/* Each tick, over all of a room's streams: consent checks and sender reports that are
 * due; the streams that have just lost consent. */
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
        if (consent_upkeep(stream, now) && PyList_Append(lost, item) < 0) {
            Py_DECREF(item);
            break;
        }
        if (stream->fd >= 0)
            rtcp_upkeep(stream, now, &ntp, pts);
        Py_DECREF(item);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        Py_DECREF(lost);
        return NULL;
    }
    return lost;
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
    .m_name = "media_node.transport._fanout",
    .m_doc = "The media node's per-listener send path: RTP header, SRTP, sendto, in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    if (!srtp_init() || !stun_init()) {
        PyErr_SetString(PyExc_ImportError,
                        "OpenSSL's libcrypto has no AES-GCM or HMAC (its default provider "
                        "is not available)");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    StreamType = stream_type_create();
    if (StreamType == NULL || PyModule_AddObjectRef(m, "Stream", (PyObject *)StreamType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyTypeObject *tap_type = tap_type_create();
    if (tap_type == NULL || PyModule_AddObjectRef(m, "Tap", (PyObject *)tap_type) < 0) {
        Py_XDECREF((PyObject *)tap_type);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF((PyObject *)tap_type);
    consent_seed();
    return m;
}
