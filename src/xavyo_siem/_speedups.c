/* C versions of four hot helpers; `xavyo_siem/speedups.py` holds the Python reference of
 * each and picks this module when it was built (unless XAVYO_SIEM_PURE_PYTHON=1 asks for the
 * references). Every function gives exactly the result of its reference, for every input
 * (tests/unit/test_speedups.py checks that with hypothesis).
 *
 *   to_epoch_us(ts)            microseconds since the Unix epoch of an aware datetime
 *   uuid_text(value)           a UUID's canonical text (36 lower-case characters)
 *   plain_values_length(pieces, specials)
 *                              total length of the values pieces[2::2] when none needs
 *                              escaping: all ASCII, without a byte of `specials` (the
 *                              format's whole set: CEF extension values, RFC 5424 SD-PARAM
 *                              values); -1 otherwise
 *   repaired_text(text, limit) text cut to its first `limit` characters, NUL and lone
 *                              surrogates replaced by U+FFFD; `text` itself when nothing
 *                              changes (the common case: one scan, no copy)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <string.h> /* memchr */

static PyTypeObject *uuid_type; /* uuid.UUID */
static PyObject *s_int;         /* "int": the attribute that holds a UUID's value */
static PyObject *s_utcoffset; /* "utcoffset" */

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (H. Hinnant's days_from_civil). */
static long long
days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (long long)era * 146097 + doe - 719468;
}

static PyObject *
to_epoch_us(PyObject *module, PyObject *ts)
{
    if (!PyDateTime_Check(ts)) {
        return PyErr_Format(PyExc_TypeError, "unsupported operand type(s) for -: '%.100s' and "
                            "'datetime.datetime'", Py_TYPE(ts)->tp_name);
    }
    long long offset_us = 0;
    PyObject *tzinfo = PyDateTime_DATE_GET_TZINFO(ts); /* borrowed; None when naive */
    if (tzinfo != PyDateTime_TimeZone_UTC) {
        /* As datetime's own subtraction does: tzinfo.utcoffset(ts), None meaning naive. */
        PyObject *offset = tzinfo == Py_None
                               ? Py_NewRef(Py_None)
                               : PyObject_CallMethodOneArg(tzinfo, s_utcoffset, ts);
        if (offset == NULL) {
            return NULL;
        }
        if (offset == Py_None) {
            Py_DECREF(offset);
            PyErr_SetString(PyExc_TypeError,
                            "can't subtract offset-naive and offset-aware datetimes");
            return NULL;
        }
        if (!PyDelta_Check(offset)) {
            PyErr_Format(PyExc_TypeError,
                         "tzinfo.utcoffset() must return None or timedelta, not '%.200s'",
                         Py_TYPE(offset)->tp_name);
            Py_DECREF(offset);
            return NULL;
        }
        int days = PyDateTime_DELTA_GET_DAYS(offset);
        int seconds = PyDateTime_DELTA_GET_SECONDS(offset);
        int microseconds = PyDateTime_DELTA_GET_MICROSECONDS(offset);
        Py_DECREF(offset);
        /* Range first (a timedelta's days reach 999999999): strictly within one day. */
        if (days < -1 || days >= 1 || (days == -1 && seconds == 0 && microseconds == 0)) {
            PyErr_SetString(PyExc_ValueError, "offset must be a timedelta strictly between "
                                              "-timedelta(hours=24) and timedelta(hours=24)");
            return NULL;
        }
        offset_us = ((long long)days * 86400 + seconds) * 1000000 + microseconds;
    }
    long long days = days_from_civil(PyDateTime_GET_YEAR(ts), PyDateTime_GET_MONTH(ts),
                                     PyDateTime_GET_DAY(ts));
    long long seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(ts) * 3600
                        + PyDateTime_DATE_GET_MINUTE(ts) * 60 + PyDateTime_DATE_GET_SECOND(ts);
    return PyLong_FromLongLong(seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(ts)
                               - offset_us);
}

static PyObject *
uuid_text(PyObject *module, PyObject *value)
{
    static const char hex[] = "0123456789abcdef";
    if (!PyObject_TypeCheck(value, uuid_type)) {
        return PyErr_Format(PyExc_TypeError, "value: must be a UUID, got %.100s",
                            Py_TYPE(value)->tp_name);
    }
    PyObject *number = PyObject_GetAttr(value, s_int);
    if (number == NULL) {
        return NULL;
    }
    unsigned long long low = PyLong_AsUnsignedLongLongMask(number);
    if (low == (unsigned long long)-1 && PyErr_Occurred()) {
        Py_DECREF(number);
        return NULL;
    }
    PyObject *shift = PyLong_FromLong(64);
    PyObject *upper = shift == NULL ? NULL : PyNumber_Rshift(number, shift);
    Py_XDECREF(shift);
    Py_DECREF(number);
    if (upper == NULL) {
        return NULL;
    }
    unsigned long long high = PyLong_AsUnsignedLongLong(upper); /* < 0 or >= 2**64: error */
    Py_DECREF(upper);
    if (high == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *text = PyUnicode_New(36, 127);
    if (text == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    int position = 0;
    for (int nibble = 0; nibble < 32; nibble++) {
        if (nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20) {
            out[position++] = '-';
        }
        unsigned long long word = nibble < 16 ? high : low;
        out[position++] = hex[(word >> (60 - 4 * (nibble % 16))) & 0xF];
    }
    return text;
}

static PyObject *
plain_values_length(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        return PyErr_Format(PyExc_TypeError, "plain_values_length: takes 2 arguments, got %zd",
                            nargs);
    }
    PyObject *pieces = args[0], *specials = args[1];
    if (!PyList_CheckExact(pieces)) {
        return PyErr_Format(PyExc_TypeError, "pieces: must be a list, got %.100s",
                            Py_TYPE(pieces)->tp_name);
    }
    if (!PyBytes_CheckExact(specials)) {
        return PyErr_Format(PyExc_TypeError, "specials: must be bytes, got %.100s",
                            Py_TYPE(specials)->tp_name);
    }
    char special[128] = {0}; /* the ASCII characters that are not plain */
    const unsigned char *extra = (const unsigned char *)PyBytes_AS_STRING(specials);
    for (Py_ssize_t at = 0; at < PyBytes_GET_SIZE(specials); at++) {
        if (extra[at] < 128) {
            special[extra[at]] = 1;
        }
    }
    Py_ssize_t count = PyList_GET_SIZE(pieces), total = 0, plain = 1;
    for (Py_ssize_t index = 2; index < count; index += 2) {
        PyObject *value = PyList_GET_ITEM(pieces, index);
        if (!PyUnicode_Check(value)) {
            return PyErr_Format(PyExc_TypeError,
                                "sequence item %zd: expected str instance, %.80s found",
                                index / 2 - 1, Py_TYPE(value)->tp_name);
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(value);
        total += length;
        if (!plain) {
            continue; /* the rest are type-checked, as join() would */
        }
        if (!PyUnicode_IS_ASCII(value)) {
            plain = 0;
            continue;
        }
        const Py_UCS1 *data = PyUnicode_1BYTE_DATA(value);
        for (Py_ssize_t at = 0; at < length; at++) {
            if (special[data[at]]) {
                plain = 0;
                break;
            }
        }
    }
    return PyLong_FromSsize_t(plain ? total : -1);
}

/* The largest character of `text[0:end]` that is kept, i.e. neither NUL nor a surrogate. */
static Py_UCS4
kept_max_char(int kind, const void *data, Py_ssize_t end)
{
    Py_UCS4 largest = 0;
    for (Py_ssize_t at = 0; at < end; at++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, at);
        if (ch != 0 && (ch < 0xD800 || ch > 0xDFFF) && ch > largest) {
            largest = ch;
        }
    }
    return largest;
}

static PyObject *
repaired_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        return PyErr_Format(PyExc_TypeError, "repaired_text: takes 2 arguments, got %zd", nargs);
    }
    PyObject *text = args[0];
    if (!PyUnicode_CheckExact(text)) {
        return PyErr_Format(PyExc_TypeError, "text: must be a str, got %.100s",
                            Py_TYPE(text)->tp_name);
    }
    /* An int, clipped to PY_SSIZE_T_MAX when larger (no string is that long); TypeError
     * for anything that is not an integer, as operator.index() raises. */
    Py_ssize_t limit = PyNumber_AsSsize_t(args[1], NULL);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "limit: must not be negative");
        return NULL;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    Py_ssize_t kept = length < limit ? length : limit; /* what is cut away is not looked at */
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    /* The first character to replace, if any. A one-byte string holds no surrogate. */
    Py_ssize_t first = kept;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *nul = memchr(data, 0, (size_t)kept);
        if (nul != NULL) {
            first = nul - (const Py_UCS1 *)data;
        }
    }
    else {
        for (Py_ssize_t at = 0; at < kept; at++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, at);
            if (ch == 0 || (ch >= 0xD800 && ch <= 0xDFFF)) {
                first = at;
                break;
            }
        }
    }
    if (first == kept) {
        /* Nothing to replace: the text itself, or its first `kept` characters. */
        return kept == length ? Py_NewRef(text) : PyUnicode_Substring(text, 0, kept);
    }
    /* A new string in its compact form, whose kind follows from its largest character:
     * U+FFFD or the largest character kept, whichever is larger. */
    Py_UCS4 largest = kept_max_char(kind, data, kept);
    PyObject *out = PyUnicode_New(kept, largest > 0xFFFD ? largest : 0xFFFD);
    if (out == NULL) {
        return NULL;
    }
    int out_kind = PyUnicode_KIND(out);
    void *out_data = PyUnicode_DATA(out);
    for (Py_ssize_t at = 0; at < kept; at++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, at);
        if (ch == 0 || (ch >= 0xD800 && ch <= 0xDFFF)) {
            ch = 0xFFFD;
        }
        PyUnicode_WRITE(out_kind, out_data, at, ch);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"to_epoch_us", to_epoch_us, METH_O, "Microseconds since the Unix epoch, exactly."},
    {"uuid_text", uuid_text, METH_O, "A UUID's canonical text."},
    {"plain_values_length", (PyCFunction)(void (*)(void))plain_values_length, METH_FASTCALL,
     "Total length of pieces[2::2] when no value needs escaping, else -1."},
    {"repaired_text", (PyCFunction)(void (*)(void))repaired_text, METH_FASTCALL,
     "Text cut to limit characters, NUL and lone surrogates replaced by U+FFFD."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups = {
    PyModuleDef_HEAD_INIT, "xavyo_siem._speedups", "C versions of xavyo_siem.speedups.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    PyObject *uuid = PyImport_ImportModule("uuid");
    if (uuid == NULL) {
        return NULL;
    }
    uuid_type = (PyTypeObject *)PyObject_GetAttrString(uuid, "UUID");
    Py_DECREF(uuid);
    if (uuid_type == NULL) {
        return NULL;
    }
    s_int = PyUnicode_InternFromString("int");
    s_utcoffset = PyUnicode_InternFromString("utcoffset");
    PyObject *module = s_int == NULL || s_utcoffset == NULL ? NULL : PyModule_Create(&speedups);
    if (module == NULL) {
        Py_CLEAR(uuid_type);
        Py_CLEAR(s_int);
        Py_CLEAR(s_utcoffset);
    }
    return module;
}
