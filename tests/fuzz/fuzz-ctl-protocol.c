/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the control protocol codec (src/shared/ctl-protocol.c): ctl_message_parse()
 * on arbitrary bytes, as grmd does with every request and grmctl with every reply.
 *
 * Besides "no crash, no leak, no undefined behaviour" (ASan, LSan, UBSan), every input checks:
 *  - a rejected message returns -EBADMSG or -EMSGSIZE and nothing;
 *  - the request limit is only a size limit: parsing with GRM_CTL_REQUEST_MAX gives the same
 *    answer as with GRM_CTL_MESSAGE_MAX for inputs that fit, and -EMSGSIZE for larger ones;
 *  - an accepted message obeys the documented grammar and limits (names, counts, unique keys,
 *    values without NUL bytes);
 *  - the round trip: the message written again with CtlWriter is accepted by the writer, is no
 *    longer than the input (the writer escapes only what must be escaped), parses back to an
 *    identical message, and writing that one gives the same bytes (the writer's output is
 *    canonical);
 *  - the accessors agree with the records: ctl_record_get() finds each field's value,
 *    ctl_message_find() the first record of a type, ctl_record_get_u64() accepts exactly the
 *    values strtoull() reads completely without overflow.
 * A failed check aborts with a message, which libFuzzer records as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-protocol.h"
#include "macro.h"

#define check(cond, ...)                                                                          \
        do {                                                                                      \
                if (!(cond)) {                                                                    \
                        fprintf(stderr, "fuzz-ctl-protocol: check failed: %s: ", #cond);          \
                        fprintf(stderr, __VA_ARGS__);                                             \
                        fputc('\n', stderr);                                                      \
                        abort();                                                                  \
                }                                                                                 \
        } while (0)

static bool name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > GRM_CTL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
                      s[i] == '-'))
                        return false;
        return true;
}

static void check_grammar(const CtlMessage *m) {
        check(m->n_records >= 1 && m->n_records <= GRM_CTL_RECORDS_MAX, "%zu records", m->n_records);
        for (size_t i = 0; i < m->n_records; i++) {
                const CtlRecord *r = &m->records[i];

                check(name_valid(r->type), "record %zu type \"%s\"", i, r->type);
                check(r->n_fields <= GRM_CTL_FIELDS_MAX, "record %zu has %zu fields", i, r->n_fields);
                for (size_t j = 0; j < r->n_fields; j++) {
                        check(name_valid(r->fields[j].key), "record %zu key \"%s\"", i,
                              r->fields[j].key);
                        check(r->fields[j].value, "record %zu field %zu has no value", i, j);
                        for (size_t k = 0; k < j; k++)
                                check(!streq(r->fields[j].key, r->fields[k].key),
                                      "record %zu repeats key \"%s\"", i, r->fields[j].key);
                }
        }
}

static bool messages_equal(const CtlMessage *a, const CtlMessage *b) {
        if (a->n_records != b->n_records)
                return false;
        for (size_t i = 0; i < a->n_records; i++) {
                const CtlRecord *x = &a->records[i], *y = &b->records[i];

                if (!streq(x->type, y->type) || x->n_fields != y->n_fields)
                        return false;
                for (size_t j = 0; j < x->n_fields; j++)
                        if (!streq(x->fields[j].key, y->fields[j].key) ||
                            !streq(x->fields[j].value, y->fields[j].value))
                                return false;
        }
        return true;
}

/* Writes m with the writer, as grmd and grmctl build their messages. */
static int write_message(const CtlMessage *m, char **ret_buf, size_t *ret_len) {
        CtlWriter w;

        ctl_writer_init(&w);
        for (size_t i = 0; i < m->n_records; i++) {
                ctl_writer_record(&w, m->records[i].type);
                for (size_t j = 0; j < m->records[i].n_fields; j++)
                        ctl_writer_add(&w, m->records[i].fields[j].key, m->records[i].fields[j].value);
        }
        return ctl_writer_finish(&w, ret_buf, ret_len);
}

/* What ctl_record_get_u64() should do: decimal digits only, no sign or space, fits in 64 bits. */
static int reference_u64(const char *s, uint64_t *ret) {
        char *end;

        if (!*s || strspn(s, "0123456789") != strlen(s))
                return -EINVAL;
        errno = 0;
        *ret = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EINVAL;
        return 0;
}

static void check_accessors(const CtlMessage *m) {
        for (size_t i = 0; i < m->n_records; i++) {
                const CtlRecord *r = &m->records[i];
                const CtlRecord *first = ctl_message_find(m, r->type);

                check(first && first <= r && streq(first->type, r->type),
                      "ctl_message_find(\"%s\") did not find the first such record", r->type);
                for (size_t j = 0; j < r->n_fields; j++) {
                        uint64_t got = 0, want = 0;
                        int k, k_ref;

                        check(ctl_record_get(r, r->fields[j].key) == r->fields[j].value,
                              "ctl_record_get(\"%s\") returned another field", r->fields[j].key);
                        k = ctl_record_get_u64(r, r->fields[j].key, &got);
                        k_ref = reference_u64(r->fields[j].value, &want);
                        check(k == k_ref && (k < 0 || got == want),
                              "ctl_record_get_u64(\"%s\") = %d (%llu), expected %d (%llu)",
                              r->fields[j].value, k, (unsigned long long) got, k_ref,
                              (unsigned long long) want);
                }
        }
        check(!ctl_record_get(&m->records[0], "no such key because it is far too long to be a "
                                              "key in any record that the parser accepts"),
              "ctl_record_get() found a key that cannot exist");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL, *m_request = NULL, *m2 = NULL,
                                                *m3 = NULL;
        _cleanup_free_ char *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0;
        int r, r_request;

        r = ctl_message_parse(data, size, GRM_CTL_MESSAGE_MAX, &m);
        r_request = ctl_message_parse(data, size, GRM_CTL_REQUEST_MAX, &m_request);
        if (size > GRM_CTL_REQUEST_MAX)
                check(r_request == -EMSGSIZE && !m_request, "request of %zu bytes: %d", size,
                      r_request);
        else
                check(r_request == r, "request limit changed the answer: %d, not %d", r_request, r);

        if (r < 0) {
                check(r == -EBADMSG || r == -EMSGSIZE, "unexpected error %d", r);
                check(!m, "a rejected message was returned");
                return 0;
        }
        check(m, "an accepted message was not returned");
        check(size > 0 && data[size - 1] == '\n' && !memchr(data, 0, size),
              "accepted a message without final newline or with a NUL byte");
        check_grammar(m);
        if (m_request)
                check(messages_equal(m, m_request), "the size limit changed the parsed message");
        check_accessors(m);

        /* The round trip. */
        r = write_message(m, &buf, &len);
        check(r == 0, "the writer refused a message the parser accepted: %d", r);
        check(len <= size, "the written message (%zu bytes) is longer than the input (%zu)", len,
              size);
        check(buf[len] == 0 && buf[len - 1] == '\n', "the writer's buffer is not terminated");
        r = ctl_message_parse(buf, len, GRM_CTL_MESSAGE_MAX, &m2);
        check(r == 0, "the written message does not parse: %d", r);
        check(messages_equal(m, m2), "the written message parses differently");

        r = write_message(m2, &buf2, &len2);
        check(r == 0, "the writer refused its own message: %d", r);
        check(len2 == len && memcmp(buf, buf2, len) == 0, "the writer's output is not canonical");
        r = ctl_message_parse(buf2, len2, GRM_CTL_MESSAGE_MAX, &m3);
        check(r == 0 && messages_equal(m, m3), "the second round trip changed the message");
        return 0;
}
