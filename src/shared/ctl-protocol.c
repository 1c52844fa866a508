/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's record codec (format in ctl-protocol.h and docs/PROTOCOL.md) and the
 * restart outcome names.
 *
 * Parser invariants: the input is hostile and not NUL-terminated. It is checked whole (size,
 * NUL bytes, final newline) before anything is allocated; every allocation is bounded by the
 * input length and by the GRM_CTL_*_MAX limits; a partly built message is freed on every error.
 * Tokens are separated by exactly one space: a leading, trailing or doubled space is malformed,
 * which is what makes the format canonical.
 *
 * Writer invariants: the buffer always holds a valid prefix of a message (records separated by
 * '\n', the final '\n' added by ctl_writer_finish()), and its length plus that final newline
 * never exceeds GRM_CTL_MESSAGE_MAX. The writer only produces what the parser accepts: names
 * are checked, values escaped, duplicate keys refused, an empty message refused. The first
 * error is sticky; later calls do nothing.
 *
 * Errors: sizes and counts over the limits are -EMSGSIZE; anything that breaks the grammar
 * (including a type or key longer than GRM_CTL_NAME_MAX, which is not a valid name) is
 * -EBADMSG in the parser and -EINVAL in the writer.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-protocol.h"
#include "macro.h"

static int name_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int name_ok(const char *s, size_t n) {
        if (n == 0 || n > GRM_CTL_NAME_MAX)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!name_char_ok(s[i]))
                        return 0;
        return 1;
}

/* Bytes that appear in a value as themselves; everything else is written as %XX. */
static int value_char_plain(unsigned char c) {
        return c >= 0x21 && c <= 0x7e && c != '%' && c != '=';
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* ---- parser ---- */

void ctl_message_free(CtlMessage *m) {
        if (!m)
                return;

        for (size_t i = 0; i < m->n_records; i++) {
                CtlRecord *r = &m->records[i];

                for (size_t j = 0; j < r->n_fields; j++) {
                        free(r->fields[j].key);
                        free(r->fields[j].value);
                }
                free(r->fields);
                free(r->type);
        }
        free(m->records);
        free(m);
}

static int unescape_value(const char *s, size_t n, char **ret) {
        _cleanup_free_ char *v = NULL;
        size_t k = 0;

        v = malloc(n + 1);
        if (!v)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '%') {
                        int hi, lo;

                        if (n - i < 3)
                                return -EBADMSG;
                        hi = unhex(s[i + 1]);
                        lo = unhex(s[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EBADMSG;
                        if (hi == 0 && lo == 0)
                                return -EBADMSG; /* %00: values are C strings */
                        v[k++] = (char) (hi << 4 | lo);
                        i += 2;
                } else if (value_char_plain(c))
                        v[k++] = (char) c;
                else
                        return -EBADMSG;
        }
        v[k] = 0;

        *ret = TAKE_PTR(v);
        return 0;
}

static int parse_field(const char *s, size_t n, CtlRecord *rec, CtlField *f) {
        const char *eq;
        size_t key_len;
        int r;

        eq = memchr(s, '=', n);
        if (!eq)
                return -EBADMSG;
        key_len = (size_t) (eq - s);
        if (!name_ok(s, key_len))
                return -EBADMSG;

        /* Fields before f are complete: refuse a key seen before. */
        for (CtlField *g = rec->fields; g < f; g++)
                if (strlen(g->key) == key_len && memcmp(g->key, s, key_len) == 0)
                        return -EBADMSG;

        f->key = strndup(s, key_len);
        if (!f->key)
                return -ENOMEM;

        r = unescape_value(eq + 1, n - key_len - 1, &f->value);
        if (r < 0)
                return r;

        return 0;
}

/* One line without its '\n'. rec is zeroed; on failure whatever was allocated stays reachable
 * from rec and is freed with the message. */
static int parse_record(const char *line, size_t n, CtlRecord *rec) {
        const char *p, *end = line + n, *sp;
        size_t n_fields = 0, type_len;
        int r;

        if (n == 0)
                return -EBADMSG; /* empty line */

        for (size_t i = 0; i < n; i++)
                if (line[i] == ' ')
                        n_fields++;
        if (n_fields > GRM_CTL_FIELDS_MAX)
                return -EMSGSIZE;

        sp = memchr(line, ' ', n);
        type_len = sp ? (size_t) (sp - line) : n;
        if (!name_ok(line, type_len))
                return -EBADMSG;

        rec->type = strndup(line, type_len);
        if (!rec->type)
                return -ENOMEM;

        if (n_fields == 0)
                return 0;

        rec->fields = calloc(n_fields, sizeof(CtlField));
        if (!rec->fields)
                return -ENOMEM;
        rec->n_fields = n_fields;

        p = sp + 1;
        for (size_t i = 0; i < n_fields; i++) {
                const char *next = memchr(p, ' ', (size_t) (end - p));
                size_t len = next ? (size_t) (next - p) : (size_t) (end - p);

                /* An empty token (doubled or trailing space) fails here: no '='. */
                r = parse_field(p, len, rec, &rec->fields[i]);
                if (r < 0)
                        return r;
                p += len + 1;
        }

        return 0;
}

int ctl_message_parse(const void *buf, size_t len, size_t max_len, CtlMessage **ret) {
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL;
        const char *p = buf, *end;
        size_t n_records = 0;
        int r;

        if (!ret || (!buf && len > 0))
                return -EINVAL;
        if (len > max_len || len > GRM_CTL_MESSAGE_MAX)
                return -EMSGSIZE;
        if (len == 0)
                return -EBADMSG;
        if (p[len - 1] != '\n')
                return -EBADMSG;
        if (memchr(p, 0, len))
                return -EBADMSG;

        for (size_t i = 0; i < len; i++)
                if (p[i] == '\n')
                        n_records++;
        if (n_records > GRM_CTL_RECORDS_MAX)
                return -EMSGSIZE;

        m = calloc(1, sizeof(CtlMessage));
        if (!m)
                return -ENOMEM;
        m->records = calloc(n_records, sizeof(CtlRecord));
        if (!m->records)
                return -ENOMEM;
        m->n_records = n_records;

        end = p + len;
        for (size_t i = 0; i < n_records; i++) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));

                /* n_records counted the newlines, so there is one for each record. */
                r = parse_record(p, (size_t) (nl - p), &m->records[i]);
                if (r < 0)
                        return r;
                p = nl + 1;
        }

        *ret = TAKE_PTR(m);
        return 0;
}

const char *ctl_record_get(const CtlRecord *r, const char *key) {
        if (!r || !key)
                return NULL;
        for (size_t i = 0; i < r->n_fields; i++)
                if (streq(r->fields[i].key, key))
                        return r->fields[i].value;
        return NULL;
}

int ctl_record_get_u64(const CtlRecord *r, const char *key, uint64_t *ret) {
        const char *s;
        uint64_t v = 0;

        s = ctl_record_get(r, key);
        if (!s)
                return -ENOENT;
        if (!*s)
                return -EINVAL;

        for (; *s; s++) {
                unsigned d;

                if (*s < '0' || *s > '9')
                        return -EINVAL;
                d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }

        if (ret)
                *ret = v;
        return 0;
}

const CtlRecord *ctl_message_find(const CtlMessage *m, const char *type) {
        if (!m || !type)
                return NULL;
        for (size_t i = 0; i < m->n_records; i++)
                if (streq(m->records[i].type, type))
                        return &m->records[i];
        return NULL;
}

/* ---- writer ---- */

void ctl_writer_init(CtlWriter *w) {
        *w = (CtlWriter) {};
}

void ctl_writer_done(CtlWriter *w) {
        if (!w)
                return;
        free(w->buf);
        ctl_writer_init(w);
}

static void writer_fail(CtlWriter *w, int error) {
        if (w->error == 0)
                w->error = error;
}

/* Makes room for n more bytes, keeping one for the final newline within the message limit. */
static int writer_reserve(CtlWriter *w, size_t n) {
        size_t need, size;
        char *b;

        if (n > GRM_CTL_MESSAGE_MAX || w->len + n + 1 > GRM_CTL_MESSAGE_MAX) {
                writer_fail(w, -EMSGSIZE);
                return -EMSGSIZE;
        }

        /* +1 for the final '\n', +1 for the NUL ctl_writer_finish() adds for convenience. */
        need = w->len + n + 2;
        if (need <= w->size)
                return 0;

        size = w->size > 0 ? w->size : 256;
        while (size < need)
                size *= 2;

        b = realloc(w->buf, size);
        if (!b) {
                writer_fail(w, -ENOMEM);
                return -ENOMEM;
        }
        w->buf = b;
        w->size = size;
        return 0;
}

static void writer_put(CtlWriter *w, const char *s, size_t n) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
}

void ctl_writer_record(CtlWriter *w, const char *type) {
        size_t n;

        if (w->error)
                return;
        if (!type || !name_ok(type, strlen(type))) {
                writer_fail(w, -EINVAL);
                return;
        }
        if (w->n_records >= GRM_CTL_RECORDS_MAX) {
                writer_fail(w, -EMSGSIZE);
                return;
        }

        n = strlen(type);
        if (writer_reserve(w, n + (w->in_record ? 1 : 0)) < 0)
                return;

        if (w->in_record)
                writer_put(w, "\n", 1);
        writer_put(w, type, n);

        w->in_record = true;
        w->n_records++;
        w->n_fields = 0;
}

/* Whether the record being written already has a field called key. The record starts after
 * the last '\n' in the buffer; its tokens contain neither '\n' nor ' ' (both are escaped). */
static int writer_has_key(const CtlWriter *w, const char *key, size_t key_len) {
        size_t start = w->len;

        while (start > 0 && w->buf[start - 1] != '\n')
                start--;

        for (size_t i = start; i < w->len; i++) {
                if (w->buf[i] != ' ')
                        continue;
                if (w->len - (i + 1) > key_len &&
                    memcmp(w->buf + i + 1, key, key_len) == 0 &&
                    w->buf[i + 1 + key_len] == '=')
                        return 1;
        }
        return 0;
}

void ctl_writer_add(CtlWriter *w, const char *key, const char *value) {
        static const char hex[] = "0123456789ABCDEF";
        size_t key_len, n;

        if (w->error)
                return;
        if (!w->in_record || !key || !value) {
                writer_fail(w, -EINVAL);
                return;
        }

        key_len = strlen(key);
        if (!name_ok(key, key_len)) {
                writer_fail(w, -EINVAL);
                return;
        }
        if (w->n_fields >= GRM_CTL_FIELDS_MAX) {
                writer_fail(w, -EMSGSIZE);
                return;
        }
        if (writer_has_key(w, key, key_len)) {
                writer_fail(w, -EINVAL);
                return;
        }

        /* " key=" plus the escaped value; give up early on a value that cannot fit anyway. */
        n = 1 + key_len + 1;
        for (const char *v = value; *v; v++) {
                n += value_char_plain((unsigned char) *v) ? 1 : 3;
                if (n > GRM_CTL_MESSAGE_MAX)
                        break;
        }
        if (writer_reserve(w, n) < 0)
                return;

        writer_put(w, " ", 1);
        writer_put(w, key, key_len);
        writer_put(w, "=", 1);
        for (const char *v = value; *v; v++) {
                unsigned char c = (unsigned char) *v;

                if (value_char_plain(c))
                        w->buf[w->len++] = (char) c;
                else {
                        w->buf[w->len++] = '%';
                        w->buf[w->len++] = hex[c >> 4];
                        w->buf[w->len++] = hex[c & 0xf];
                }
        }

        w->n_fields++;
}

void ctl_writer_addf(CtlWriter *w, const char *key, const char *fmt, ...) {
        _cleanup_free_ char *value = NULL;
        va_list ap;
        int r;

        if (w->error)
                return;
        if (!fmt) {
                writer_fail(w, -EINVAL);
                return;
        }

        va_start(ap, fmt);
        r = vasprintf(&value, fmt, ap);
        va_end(ap);
        if (r < 0) {
                value = NULL; /* undefined after a failure */
                writer_fail(w, -ENOMEM);
                return;
        }

        ctl_writer_add(w, key, value);
}

void ctl_writer_add_u64(CtlWriter *w, const char *key, uint64_t value) {
        char buf[sizeof("18446744073709551615")];

        (void) snprintf(buf, sizeof(buf), "%" PRIu64, value);
        ctl_writer_add(w, key, buf);
}

int ctl_writer_finish(CtlWriter *w, char **ret_buf, size_t *ret_len) {
        int r = w->error;

        if (r == 0 && w->n_records == 0)
                r = -EINVAL; /* the parser refuses an empty message */
        if (r == 0 && (!ret_buf || !ret_len))
                r = -EINVAL;
        if (r < 0) {
                ctl_writer_done(w);
                return r;
        }

        /* writer_reserve() always kept room for these two bytes. */
        w->buf[w->len++] = '\n';
        w->buf[w->len] = 0;

        *ret_buf = TAKE_PTR(w->buf);
        *ret_len = w->len;
        ctl_writer_done(w);
        return 0;
}

/* ---- outcomes ---- */

static const char *const outcome_names[_GRM_OUTCOME_MAX] = {
        [GRM_OUTCOME_DONE]        = "done",
        [GRM_OUTCOME_INTERNAL]    = "internal-error",
        [GRM_OUTCOME_USAGE]       = "usage",
        [GRM_OUTCOME_UNREACHABLE] = "unreachable",
        [GRM_OUTCOME_REJECTED]    = "rejected",
        [GRM_OUTCOME_FAILED]      = "failed",
        [GRM_OUTCOME_TIMEOUT]     = "timeout",
        [GRM_OUTCOME_BUSY]        = "busy",
};

const char *grm_outcome_to_string(GrmOutcome o) {
        if ((int) o < 0 || (int) o >= (int) _GRM_OUTCOME_MAX)
                return NULL;
        return outcome_names[o];
}

int ctl_default_socket_path(char **ret) {
        const char *rt = getenv("RUNTIME_DIRECTORY");

        if (!rt || !*rt || *rt == ':')
                return -ENXIO;
        /* systemd separates several RuntimeDirectory= entries with ':'. */
        if (asprintf(ret, "%.*s/grmd.sock", (int) strcspn(rt, ":"), rt) < 0)
                return -ENOMEM;
        return 0;
}

static bool unit_name_valid(const char *u) {
        size_t n = strlen(u);

        if (n == 0 || n > 255 || u[0] == '.')
                return false;
        for (const char *p = u; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr(":_.@-\\", *p)))
                        return false;
        return true;
}

/* A suffix naming a unit type other than .service (systemctl appends ".service" to anything
 * else: "kresd@1" is "kresd@1.service"). */
static bool unit_type_suffix(const char *u) {
        static const char *const types[] = {
                "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope",
        };
        const char *dot = strrchr(u, '.');

        if (!dot)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (streq(dot + 1, types[i]))
                        return true;
        return false;
}

/* RuntimeDirectory= is relative to /run; systemd refuses "..", but the value reaches us over
 * D-Bus and must not lead the path elsewhere. */
static bool runtime_directory_valid(const char *d) {
        const char *p = d;

        if (!*d || *d == '/' || strlen(d) > 255)
                return false;
        while (*p) {
                size_t n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) p[i] < 0x20 || p[i] == 0x7f)
                                return false;
                p += n;
                if (*p == '/')
                        p++;
        }
        return p[-1] != '/';
}

int ctl_unit_socket_path(const char *unit, const char *runtime_directory, char **ret) {
        size_t n;

        if (!unit || !ret || !unit_name_valid(unit))
                return -EINVAL;
        if (runtime_directory && *runtime_directory) {
                if (!runtime_directory_valid(runtime_directory))
                        return -EINVAL;
                return asprintf(ret, "/run/%s/grmd.sock", runtime_directory) < 0 ? -ENOMEM : 0;
        }
        n = strlen(unit);
        if (n > 8 && streq(unit + n - 8, ".service"))
                n -= 8;
        else if (unit_type_suffix(unit))
                return -EINVAL; /* another unit type (grm-echo.socket): grmd runs as the service */
        return asprintf(ret, "/run/%.*s/grmd.sock", (int) n, unit) < 0 ? -ENOMEM : 0;
}

int grm_outcome_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (int i = 0; i < (int) _GRM_OUTCOME_MAX; i++)
                if (streq(outcome_names[i], s))
                        return i;
        return -EINVAL;
}
