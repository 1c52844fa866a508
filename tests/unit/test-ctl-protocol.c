/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/ctl-protocol.c: the parser on good and malformed messages (bad
 * names, bad escapes, %00, NUL bytes, empty lines, missing final newline, duplicate keys, every
 * limit at and just over its bound), the accessors, the writer (escaping, sticky errors,
 * limits), the writer -> parser round trip on generated messages, and the outcome names.
 */

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-protocol.h"
#include "macro.h"

#define S(x) x, sizeof(x) - 1

/* Renders a parsed message as "type{key=value,key=value};" per record, for comparisons. */
static char *dump(const CtlMessage *m) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ck_assert_ptr_nonnull(f);
        for (size_t i = 0; i < m->n_records; i++) {
                const CtlRecord *r = &m->records[i];

                fprintf(f, "%s{", r->type);
                for (size_t j = 0; j < r->n_fields; j++)
                        fprintf(f, "%s%s=%s", j > 0 ? "," : "", r->fields[j].key, r->fields[j].value);
                fputs("};", f);
        }
        ck_assert_int_eq(fclose(f), 0);
        return buf;
}

/* ---- ctl_message_parse: good input ---- */

static const struct {
        const char *data;
        size_t len;
        const char *expect;
} good[] = {
        { S("status\n"),                                "status{};" },
        { S("restart\n"),                               "restart{};" },
        { S("status gen=3 pid=1234\n"),                 "status{gen=3,pid=1234};" },
        { S("a\nb\nc\n"),                               "a{};b{};c{};" },
        { S("generation gen=1 state=working\ngeneration gen=2 state=starting\n"),
                "generation{gen=1,state=working};generation{gen=2,state=starting};" },
        { S("r k=\n"),                                  "r{k=};" },
        { S("r k= j=\n"),                               "r{k=,j=};" },
        { S("r_0-x key_1-y=v\n"),                       "r_0-x{key_1-y=v};" },
        { S("r k=%20%3D%25\n"),                         "r{k= =%};" },
        { S("r k=%0a%0A\n"),                            "r{k=\n\n};" },
        { S("r k=%41%6a%6A\n"),                         "r{k=Ajj};" },
        { S("r k=%ff%FF\n"),                            "r{k=\xff\xff};" },
        { S("r k=!\"#$&'()*+,-./:;<>?@[\\]^_`{|}~\n"),  "r{k=!\"#$&'()*+,-./:;<>?@[\\]^_`{|}~};" },
        { S("r a=1 b=2 ab=3 ba=4\n"),                   "r{a=1,b=2,ab=3,ba=4};" },
        { S("r a=1\nr a=2\n"),                          "r{a=1};r{a=2};" }, /* keys unique per record only */
        { S("r r=r\n"),                                 "r{r=r};" },
        { S("0123456789012345678901234567890123456789012345678901234567890123 "
            "abcdefghijklmnopqrstuvwxyz_-abcdefghijklmnopqrstuvwxyz_-01234567=v\n"),
                "0123456789012345678901234567890123456789012345678901234567890123{"
                "abcdefghijklmnopqrstuvwxyz_-abcdefghijklmnopqrstuvwxyz_-01234567=v};" },
};

START_TEST(test_parse_good) {
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL;
        _cleanup_free_ char *d = NULL;

        ck_assert_int_eq(ctl_message_parse(good[_i].data, good[_i].len, GRM_CTL_MESSAGE_MAX, &m), 0);
        d = dump(m);
        ck_assert_str_eq(d, good[_i].expect);
}
END_TEST

/* ---- ctl_message_parse: malformed input ---- */

static const struct {
        const char *data;
        size_t len;
        int ret;
} bad[] = {
        { S(""),                        -EBADMSG }, /* empty message */
        { S("status"),                  -EBADMSG }, /* no final newline */
        { S("status\nrestart"),         -EBADMSG },
        { S("\n"),                      -EBADMSG }, /* empty line */
        { S("status\n\n"),              -EBADMSG },
        { S("\nstatus\n"),              -EBADMSG },
        { S("a\n\nb\n"),                -EBADMSG },
        { S("status\0\n"),              -EBADMSG }, /* NUL bytes */
        { S("st\0tus\n"),               -EBADMSG },
        { S("r k=a\0b\n"),              -EBADMSG },
        { S("\0"),                      -EBADMSG },
        { S("Status\n"),                -EBADMSG }, /* bad names */
        { S("sta.tus\n"),               -EBADMSG },
        { S("st/atus\n"),               -EBADMSG },
        { S("r K=1\n"),                 -EBADMSG },
        { S("r k.x=1\n"),               -EBADMSG },
        { S("r k\xc3\xa9=1\n"),         -EBADMSG },
        { S("r =1\n"),                  -EBADMSG }, /* empty key */
        { S("r k\n"),                   -EBADMSG }, /* no '=' */
        { S("r k=1 x\n"),               -EBADMSG },
        { S(" status\n"),               -EBADMSG }, /* stray spaces */
        { S("status \n"),               -EBADMSG },
        { S("r  k=1\n"),                -EBADMSG },
        { S("r k=1 \n"),                -EBADMSG },
        { S("r\tk=1\n"),                -EBADMSG },
        { S("r k=1\r\n"),               -EBADMSG }, /* raw bytes that must be escaped */
        { S("r k=a b\n"),               -EBADMSG },
        { S("r k=a=b\n"),               -EBADMSG },
        { S("r k==\n"),                 -EBADMSG },
        { S("r k=\x01\n"),              -EBADMSG },
        { S("r k=\x7f\n"),              -EBADMSG },
        { S("r k=\xff\n"),              -EBADMSG },
        { S("r k=%\n"),                 -EBADMSG }, /* bad escapes */
        { S("r k=%4\n"),                -EBADMSG },
        { S("r k=%4g\n"),               -EBADMSG },
        { S("r k=%g4\n"),               -EBADMSG },
        { S("r k=%%41\n"),              -EBADMSG },
        { S("r k=% 1\n"),               -EBADMSG },
        { S("r k=%-1\n"),               -EBADMSG },
        { S("r k=%00\n"),               -EBADMSG },
        { S("r k=a%00b\n"),             -EBADMSG },
        { S("r k=1 k=2\n"),             -EBADMSG }, /* duplicate key */
        { S("r k=1 j=2 k=1\n"),         -EBADMSG },
        { S("status\nbad record\n"),    -EBADMSG }, /* failure after a good record */
        { S("01234567890123456789012345678901234567890123456789012345678901234\n"), -EBADMSG },
        { S("r 01234567890123456789012345678901234567890123456789012345678901234=1\n"), -EBADMSG },
};

START_TEST(test_parse_bad) {
        CtlMessage *m = (CtlMessage *) 0x1; /* must stay untouched */

        ck_assert_int_eq(ctl_message_parse(bad[_i].data, bad[_i].len, GRM_CTL_MESSAGE_MAX, &m),
                         bad[_i].ret);
        ck_assert_ptr_eq(m, (CtlMessage *) 0x1);
}
END_TEST

/* n records "r\n". */
static char *make_records(size_t n, size_t *ret_len) {
        char *b = malloc(n * 2 + 1);

        ck_assert_ptr_nonnull(b);
        for (size_t i = 0; i < n; i++)
                memcpy(b + 2 * i, "r\n", 2);
        *ret_len = n * 2;
        return b;
}

/* One record with n fields "fN=1". */
static char *make_fields(size_t n, size_t *ret_len) {
        char *b = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&b, &size);

        ck_assert_ptr_nonnull(f);
        fputs("r", f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, " f%zu=1", i);
        fputs("\n", f);
        ck_assert_int_eq(fclose(f), 0);
        *ret_len = size;
        return b;
}

START_TEST(test_parse_limits) {
        _cleanup_free_ char *recs = NULL, *recs_over = NULL, *fields = NULL, *fields_over = NULL;
        _cleanup_free_ char *big = NULL;
        CtlMessage *m = NULL;
        size_t len;

        recs = make_records(GRM_CTL_RECORDS_MAX, &len);
        ck_assert_int_eq(ctl_message_parse(recs, len, GRM_CTL_MESSAGE_MAX, &m), 0);
        ck_assert_uint_eq(m->n_records, GRM_CTL_RECORDS_MAX);
        ctl_message_free(m);
        m = NULL;

        recs_over = make_records(GRM_CTL_RECORDS_MAX + 1, &len);
        ck_assert_int_eq(ctl_message_parse(recs_over, len, GRM_CTL_MESSAGE_MAX, &m), -EMSGSIZE);
        ck_assert_ptr_null(m);

        fields = make_fields(GRM_CTL_FIELDS_MAX, &len);
        ck_assert_int_eq(ctl_message_parse(fields, len, GRM_CTL_MESSAGE_MAX, &m), 0);
        ck_assert_uint_eq(m->records[0].n_fields, GRM_CTL_FIELDS_MAX);
        ck_assert_str_eq(ctl_record_get(&m->records[0], "f31"), "1");
        ctl_message_free(m);
        m = NULL;

        fields_over = make_fields(GRM_CTL_FIELDS_MAX + 1, &len);
        ck_assert_int_eq(ctl_message_parse(fields_over, len, GRM_CTL_MESSAGE_MAX, &m), -EMSGSIZE);
        ck_assert_ptr_null(m);

        /* len against max_len: exactly at the bound is fine, one over is not. */
        ck_assert_int_eq(ctl_message_parse("status\n", 7, 7, &m), 0);
        ctl_message_free(m);
        m = NULL;
        ck_assert_int_eq(ctl_message_parse("status\n", 7, 6, &m), -EMSGSIZE);
        ck_assert_int_eq(ctl_message_parse("status\n", 7, 0, &m), -EMSGSIZE);
        ck_assert_ptr_null(m);

        /* A message at GRM_CTL_MESSAGE_MAX is fine; one byte more is refused even if the caller
         * allows more. */
        big = malloc(GRM_CTL_MESSAGE_MAX + 1);
        ck_assert_ptr_nonnull(big);
        memset(big, 'v', GRM_CTL_MESSAGE_MAX + 1);
        memcpy(big, "r k=", 4);
        big[GRM_CTL_MESSAGE_MAX - 1] = '\n';
        ck_assert_int_eq(ctl_message_parse(big, GRM_CTL_MESSAGE_MAX, SIZE_MAX, &m), 0);
        ck_assert_uint_eq(strlen(ctl_record_get(&m->records[0], "k")), GRM_CTL_MESSAGE_MAX - 5);
        ctl_message_free(m);
        m = NULL;
        big[GRM_CTL_MESSAGE_MAX - 1] = 'v';
        big[GRM_CTL_MESSAGE_MAX] = '\n';
        ck_assert_int_eq(ctl_message_parse(big, GRM_CTL_MESSAGE_MAX + 1, SIZE_MAX, &m), -EMSGSIZE);
        ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_parse_not_terminated) {
        /* Only len bytes are read: what follows in memory is not part of the message. */
        static const char buf[] = "status gen=1\nbroken";
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL;

        ck_assert_int_eq(ctl_message_parse(buf, strlen("status gen=1\n"), GRM_CTL_MESSAGE_MAX, &m), 0);
        ck_assert_uint_eq(m->n_records, 1);
        ck_assert_str_eq(ctl_record_get(&m->records[0], "gen"), "1");
}
END_TEST

START_TEST(test_parse_bad_arguments) {
        CtlMessage *m = NULL;

        ck_assert_int_eq(ctl_message_parse(NULL, 5, GRM_CTL_MESSAGE_MAX, &m), -EINVAL);
        ck_assert_int_eq(ctl_message_parse(NULL, 0, GRM_CTL_MESSAGE_MAX, &m), -EBADMSG);
        ck_assert_int_eq(ctl_message_parse("s\n", 2, GRM_CTL_MESSAGE_MAX, NULL), -EINVAL);
        ck_assert_ptr_null(m);
        ctl_message_free(NULL);
}
END_TEST

/* ---- accessors ---- */

START_TEST(test_record_get) {
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL;

        ck_assert_int_eq(ctl_message_parse(S("r a=1 bb=two c= d=%20\n"), GRM_CTL_MESSAGE_MAX, &m), 0);
        ck_assert_str_eq(ctl_record_get(&m->records[0], "a"), "1");
        ck_assert_str_eq(ctl_record_get(&m->records[0], "bb"), "two");
        ck_assert_str_eq(ctl_record_get(&m->records[0], "c"), "");
        ck_assert_str_eq(ctl_record_get(&m->records[0], "d"), " ");
        ck_assert_ptr_null(ctl_record_get(&m->records[0], "b"));
        ck_assert_ptr_null(ctl_record_get(&m->records[0], "r"));
        ck_assert_ptr_null(ctl_record_get(&m->records[0], ""));
        ck_assert_ptr_null(ctl_record_get(&m->records[0], NULL));
        ck_assert_ptr_null(ctl_record_get(NULL, "a"));
}
END_TEST

static const struct {
        const char *value;
        int ret;
        uint64_t expect;
} u64_cases[] = {
        { "0",                    0, 0 },
        { "7",                    0, 7 },
        { "007",                  0, 7 },
        { "1234567890",           0, 1234567890 },
        { "18446744073709551615", 0, UINT64_MAX },
        { "18446744073709551616", -EINVAL, 0 },
        { "99999999999999999999999", -EINVAL, 0 },
        { "",                     -EINVAL, 0 },
        { "-1",                   -EINVAL, 0 },
        { "+1",                   -EINVAL, 0 },
        { "1a",                   -EINVAL, 0 },
        { "0x10",                 -EINVAL, 0 },
        { " 1",                   -EINVAL, 0 },
        { "1 ",                   -EINVAL, 0 },
        { "1.0",                  -EINVAL, 0 },
};

START_TEST(test_record_get_u64) {
        CtlField f = { .key = (char *) "n", .value = (char *) u64_cases[_i].value };
        CtlRecord r = { .type = (char *) "r", .fields = &f, .n_fields = 1 };
        uint64_t v = 42;

        ck_assert_int_eq(ctl_record_get_u64(&r, "n", &v), u64_cases[_i].ret);
        ck_assert_uint_eq(v, u64_cases[_i].ret == 0 ? u64_cases[_i].expect : 42);
        ck_assert_int_eq(ctl_record_get_u64(&r, "missing", &v), -ENOENT);
}
END_TEST

START_TEST(test_message_find) {
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL;
        const CtlRecord *r;

        ck_assert_int_eq(ctl_message_parse(S("status\ngen n=1\ngen n=2\nend\n"), GRM_CTL_MESSAGE_MAX, &m), 0);
        r = ctl_message_find(m, "gen");
        ck_assert_ptr_eq(r, &m->records[1]);
        ck_assert_str_eq(ctl_record_get(r, "n"), "1");
        ck_assert_ptr_eq(ctl_message_find(m, "status"), &m->records[0]);
        ck_assert_ptr_eq(ctl_message_find(m, "end"), &m->records[3]);
        ck_assert_ptr_null(ctl_message_find(m, "ge"));
        ck_assert_ptr_null(ctl_message_find(m, "n"));
        ck_assert_ptr_null(ctl_message_find(m, NULL));
        ck_assert_ptr_null(ctl_message_find(NULL, "gen"));
}
END_TEST

/* ---- writer ---- */

static void finish_expect(CtlWriter *w, const char *expect) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        ck_assert_int_eq(ctl_writer_finish(w, &buf, &len), 0);
        ck_assert_uint_eq(len, strlen(expect));
        ck_assert_mem_eq(buf, expect, len);
        ck_assert_int_eq(buf[len], 0); /* NUL-terminated for convenience */
        /* The writer was reset. */
        ck_assert_ptr_null(w->buf);
        ck_assert_uint_eq(w->len, 0);
        ck_assert_uint_eq(w->n_records, 0);
        ck_assert_int_eq(w->error, 0);
}

static void finish_fail(CtlWriter *w, int error) {
        char *buf = (char *) 0x1;
        size_t len = 77;

        ck_assert_int_eq(ctl_writer_finish(w, &buf, &len), error);
        ck_assert_ptr_eq(buf, (char *) 0x1);
        ck_assert_uint_eq(len, 77);
        ck_assert_ptr_null(w->buf);
        ck_assert_int_eq(w->error, 0);
}

START_TEST(test_writer_basic) {
        CtlWriter w;

        ctl_writer_init(&w);
        ctl_writer_record(&w, "status");
        ctl_writer_add(&w, "version", "1");
        ctl_writer_add_u64(&w, "working", 3);
        ctl_writer_add_u64(&w, "max", UINT64_MAX);
        ctl_writer_record(&w, "generation");
        ctl_writer_addf(&w, "addr", "%s:%d", "127.0.0.1", 9000);
        ctl_writer_add(&w, "state", "working");
        ctl_writer_record(&w, "end");
        finish_expect(&w, "status version=1 working=3 max=18446744073709551615\n"
                          "generation addr=127.0.0.1:9000 state=working\n"
                          "end\n");

        /* The reset writer can be used again. */
        ctl_writer_record(&w, "again");
        finish_expect(&w, "again\n");
        ctl_writer_done(&w);
}
END_TEST

START_TEST(test_writer_escape) {
        CtlWriter w;

        ctl_writer_init(&w);
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "a", "a b=c%d\n\t\x01\x7f\xc3\xa9~!");
        ctl_writer_add(&w, "e", "");
        ctl_writer_add(&w, "s", " ");
        finish_expect(&w, "r a=a%20b%3Dc%25d%0A%09%01%7F%C3%A9~! e= s=%20\n");
}
END_TEST

START_TEST(test_writer_keys) {
        CtlWriter w;

        /* Prefixes of keys and keys equal to the type are distinct keys; keys repeat across
         * records. */
        ctl_writer_init(&w);
        ctl_writer_record(&w, "a");
        ctl_writer_add(&w, "a", "1");
        ctl_writer_add(&w, "ab", "2");
        ctl_writer_add(&w, "b", "a=3");
        ctl_writer_add(&w, "ba", "4");
        ctl_writer_record(&w, "a");
        ctl_writer_add(&w, "a", "5");
        finish_expect(&w, "a a=1 ab=2 b=a%3D3 ba=4\na a=5\n");

        ctl_writer_record(&w, "a");
        ctl_writer_add(&w, "ab", "1");
        ctl_writer_add(&w, "b", "2");
        ctl_writer_add(&w, "ab", "3");
        finish_fail(&w, -EINVAL);
}
END_TEST

START_TEST(test_writer_errors) {
        CtlWriter w;

        ctl_writer_init(&w);
        finish_fail(&w, -EINVAL); /* empty message */

        ctl_writer_add(&w, "k", "v"); /* field before any record */
        finish_fail(&w, -EINVAL);

        ctl_writer_record(&w, "Bad");
        finish_fail(&w, -EINVAL);
        ctl_writer_record(&w, "");
        finish_fail(&w, -EINVAL);
        ctl_writer_record(&w, NULL);
        finish_fail(&w, -EINVAL);
        ctl_writer_record(&w, "01234567890123456789012345678901234567890123456789012345678901234");
        finish_fail(&w, -EINVAL);

        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "bad key", "v");
        finish_fail(&w, -EINVAL);
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k=", "v");
        finish_fail(&w, -EINVAL);
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k", NULL);
        finish_fail(&w, -EINVAL);
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, NULL, "v");
        finish_fail(&w, -EINVAL);

        /* Errors are sticky: the first one is reported, later good calls change nothing. */
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "K", "v");
        ctl_writer_record(&w, "good");
        ctl_writer_add(&w, "k", "v");
        ck_assert_int_eq(w.error, -EINVAL);
        finish_fail(&w, -EINVAL);

        ctl_writer_record(&w, "r");
        for (unsigned i = 0; i < GRM_CTL_FIELDS_MAX + 1; i++)
                ctl_writer_add(&w, "Z", "v"); /* EINVAL first, EMSGSIZE would come later */
        finish_fail(&w, -EINVAL);

        /* ctl_writer_done() frees an unfinished message. */
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k", "v");
        ctl_writer_done(&w);
        ck_assert_ptr_null(w.buf);
        ctl_writer_done(NULL);
}
END_TEST

START_TEST(test_writer_limits) {
        _cleanup_free_ char *value = NULL, *buf = NULL;
        _cleanup_(ctl_message_freep) CtlMessage *m = NULL;
        CtlWriter w;
        size_t len;
        char key[16];

        ctl_writer_init(&w);

        /* Fields per record. */
        ctl_writer_record(&w, "r");
        for (unsigned i = 0; i < GRM_CTL_FIELDS_MAX; i++) {
                snprintf(key, sizeof(key), "f%u", i);
                ctl_writer_add(&w, key, "1");
        }
        ck_assert_int_eq(w.error, 0);
        ctl_writer_add(&w, "one-more", "1");
        finish_fail(&w, -EMSGSIZE);

        /* Records per message. */
        for (unsigned i = 0; i < GRM_CTL_RECORDS_MAX; i++)
                ctl_writer_record(&w, "r");
        ck_assert_int_eq(w.error, 0);
        ctl_writer_record(&w, "r");
        finish_fail(&w, -EMSGSIZE);

        /* Message size: "r k=" + value + "\n" exactly GRM_CTL_MESSAGE_MAX bytes fits. */
        value = malloc(GRM_CTL_MESSAGE_MAX + 1);
        ck_assert_ptr_nonnull(value);
        memset(value, 'v', GRM_CTL_MESSAGE_MAX);
        value[GRM_CTL_MESSAGE_MAX - 5] = 0;
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k", value);
        ck_assert_int_eq(ctl_writer_finish(&w, &buf, &len), 0);
        ck_assert_uint_eq(len, GRM_CTL_MESSAGE_MAX);
        ck_assert_int_eq(ctl_message_parse(buf, len, GRM_CTL_MESSAGE_MAX, &m), 0);
        ck_assert_str_eq(ctl_record_get(&m->records[0], "k"), value);

        value[GRM_CTL_MESSAGE_MAX - 5] = 'v';
        value[GRM_CTL_MESSAGE_MAX - 4] = 0;
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k", value);
        finish_fail(&w, -EMSGSIZE);

        /* Escaping triples the size: a third of the limit in escaped bytes does not fit. */
        memset(value, ' ', GRM_CTL_MESSAGE_MAX / 3);
        value[GRM_CTL_MESSAGE_MAX / 3] = 0;
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k", value);
        finish_fail(&w, -EMSGSIZE);

        /* A huge value is refused, also when added by a later record. */
        memset(value, 'v', GRM_CTL_MESSAGE_MAX);
        value[GRM_CTL_MESSAGE_MAX] = 0;
        ctl_writer_record(&w, "r");
        ctl_writer_add(&w, "k", "small");
        ctl_writer_record(&w, "r");
        ctl_writer_addf(&w, "k", "%s", value);
        finish_fail(&w, -EMSGSIZE);
}
END_TEST

/* ---- round trip: whatever the writer produces, the parser accepts and returns ---- */

static uint64_t rng_state;

static uint64_t rng(void) {
        /* xorshift64: deterministic, so a failure is reproducible. */
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void random_name(char *buf, size_t max_len) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789_-";
        size_t n = 1 + rng() % max_len;

        for (size_t i = 0; i < n; i++)
                buf[i] = chars[rng() % (sizeof(chars) - 1)];
        buf[n] = 0;
}

START_TEST(test_round_trip) {
        rng_state = 0x9e3779b97f4a7c15ULL + (uint64_t) _i;

        for (unsigned iter = 0; iter < 200; iter++) {
                _cleanup_(ctl_message_freep) CtlMessage *m = NULL;
                _cleanup_free_ char *buf = NULL;
                /* What was written, to compare with what is parsed. */
                char types[8][GRM_CTL_NAME_MAX + 1];
                char keys[8][6][GRM_CTL_NAME_MAX + 1];
                char values[8][6][40];
                size_t n_fields[8], n_records = 1 + rng() % 8, len;
                CtlWriter w;

                ctl_writer_init(&w);
                for (size_t i = 0; i < n_records; i++) {
                        random_name(types[i], rng() % 4 == 0 ? GRM_CTL_NAME_MAX : 8);
                        ctl_writer_record(&w, types[i]);

                        n_fields[i] = rng() % 7;
                        for (size_t j = 0; j < n_fields[i]; j++) {
                                size_t vlen = rng() % (sizeof(values[i][j]) - 1);
                                char name[8];

                                /* Random keys, made unique by their index. */
                                random_name(name, 4);
                                snprintf(keys[i][j], sizeof(keys[i][j]), "%s-%zu", name, j);

                                /* Any byte but NUL. */
                                for (size_t k = 0; k < vlen; k++)
                                        values[i][j][k] = (char) (1 + rng() % 255);
                                values[i][j][vlen] = 0;
                                ctl_writer_add(&w, keys[i][j], values[i][j]);
                        }
                }

                ck_assert_int_eq(ctl_writer_finish(&w, &buf, &len), 0);
                ck_assert_int_eq(ctl_message_parse(buf, len, GRM_CTL_MESSAGE_MAX, &m), 0);
                ck_assert_uint_eq(m->n_records, n_records);
                for (size_t i = 0; i < n_records; i++) {
                        ck_assert_str_eq(m->records[i].type, types[i]);
                        ck_assert_uint_eq(m->records[i].n_fields, n_fields[i]);
                        for (size_t j = 0; j < n_fields[i]; j++) {
                                ck_assert_str_eq(m->records[i].fields[j].key, keys[i][j]);
                                ck_assert_str_eq(m->records[i].fields[j].value, values[i][j]);
                        }
                }
        }
}
END_TEST

/* ---- outcomes ---- */

static const struct {
        GrmOutcome outcome;
        int code;
        const char *name;
} outcomes[] = {
        { GRM_OUTCOME_DONE,        0, "done" },
        { GRM_OUTCOME_INTERNAL,    1, "internal-error" },
        { GRM_OUTCOME_USAGE,       2, "usage" },
        { GRM_OUTCOME_UNREACHABLE, 3, "unreachable" },
        { GRM_OUTCOME_REJECTED,    4, "rejected" },
        { GRM_OUTCOME_FAILED,      5, "failed" },
        { GRM_OUTCOME_TIMEOUT,     6, "timeout" },
        { GRM_OUTCOME_BUSY,        7, "busy" },
};

static const struct {
        const char *runtime_directory; /* NULL: unset */
        int ret;
        const char *expect;
} socket_path_cases[] = {
        { "/run/grm-echo",            0,      "/run/grm-echo/grmd.sock" },
        { "/run/a:/run/b",            0,      "/run/a/grmd.sock" },
        { "",                         -ENXIO, NULL },
        { ":/run/b",                  -ENXIO, NULL },
        { NULL,                       -ENXIO, NULL },
};

START_TEST(test_default_socket_path) {
        char *path = NULL;

        if (socket_path_cases[_i].runtime_directory)
                ck_assert_int_eq(setenv("RUNTIME_DIRECTORY", socket_path_cases[_i].runtime_directory, 1), 0);
        else
                ck_assert_int_eq(unsetenv("RUNTIME_DIRECTORY"), 0);
        ck_assert_int_eq(ctl_default_socket_path(&path), socket_path_cases[_i].ret);
        if (socket_path_cases[_i].expect)
                ck_assert_str_eq(path, socket_path_cases[_i].expect);
        else
                ck_assert_ptr_null(path);
        free(path);
}
END_TEST

static const struct {
        const char *unit, *runtime_directory;
        int ret;
        const char *expect;
} unit_path_cases[] = {
        { "grm-echo", NULL, 0, "/run/grm-echo/grmd.sock" },
        { "grm-echo.service", NULL, 0, "/run/grm-echo/grmd.sock" },
        { "grm-echo.service", "", 0, "/run/grm-echo/grmd.sock" },
        { "kresd@1", NULL, 0, "/run/kresd@1/grmd.sock" },
        { "a.b", NULL, 0, "/run/a.b/grmd.sock" },
        { "knot.service", "knot-grm", 0, "/run/knot-grm/grmd.sock" },
        { "knot", "grm/knot", 0, "/run/grm/knot/grmd.sock" },
        { "x", "a/./b", -EINVAL, NULL },
        { "x", "a/../../etc", -EINVAL, NULL },
        { "x", "..", -EINVAL, NULL },
        { "x", "/etc", -EINVAL, NULL },
        { "x", "a//b", -EINVAL, NULL },
        { "x", "a/", -EINVAL, NULL },
        { "x", "a\nb", -EINVAL, NULL },
        { "grm-echo.socket", NULL, -EINVAL, NULL },
        { "grm-echo.timer", NULL, -EINVAL, NULL },
        { "", NULL, -EINVAL, NULL },
        { ".service", NULL, -EINVAL, NULL },
        { "../etc", NULL, -EINVAL, NULL },
        { "a/b", NULL, -EINVAL, NULL },
        { "a b", NULL, -EINVAL, NULL },
        { NULL, NULL, -EINVAL, NULL },
};

START_TEST(test_unit_socket_path) {
        char *path = NULL;

        ck_assert_int_eq(ctl_unit_socket_path(unit_path_cases[_i].unit, unit_path_cases[_i].runtime_directory, &path),
                         unit_path_cases[_i].ret);
        if (unit_path_cases[_i].expect)
                ck_assert_str_eq(path, unit_path_cases[_i].expect);
        else
                ck_assert_ptr_null(path);
        free(path);
}
END_TEST

START_TEST(test_unit_socket_path_limits) {
        char name[300];
        char *path = NULL;

        memset(name, 'a', sizeof(name));
        name[255] = 0;
        ck_assert_int_eq(ctl_unit_socket_path(name, NULL, &path), 0);
        ck_assert_uint_eq(strlen(path), strlen("/run//grmd.sock") + 255);
        free(path);
        name[255] = 'a';
        name[256] = 0;
        ck_assert_int_eq(ctl_unit_socket_path(name, NULL, &path), -EINVAL);
        ck_assert_int_eq(ctl_unit_socket_path("a", NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_outcome_to_string) {
        ck_assert_uint_eq(ELEMENTSOF(outcomes), _GRM_OUTCOME_MAX);
        ck_assert_int_eq((int) outcomes[_i].outcome, outcomes[_i].code); /* exit codes are API */
        ck_assert_str_eq(grm_outcome_to_string(outcomes[_i].outcome), outcomes[_i].name);
}
END_TEST

START_TEST(test_outcome_to_string_range) {
        ck_assert_ptr_null(grm_outcome_to_string(_GRM_OUTCOME_MAX));
        ck_assert_ptr_null(grm_outcome_to_string((GrmOutcome) -1));
}
END_TEST

START_TEST(test_outcome_from_string) {
        ck_assert_int_eq(grm_outcome_from_string(outcomes[_i].name), outcomes[_i].code);
}
END_TEST

START_TEST(test_outcome_from_string_bad) {
        ck_assert_int_eq(grm_outcome_from_string(NULL), -EINVAL);
        ck_assert_int_eq(grm_outcome_from_string(""), -EINVAL);
        ck_assert_int_eq(grm_outcome_from_string("Done"), -EINVAL);
        ck_assert_int_eq(grm_outcome_from_string("done "), -EINVAL);
        ck_assert_int_eq(grm_outcome_from_string("internal"), -EINVAL);
        ck_assert_int_eq(grm_outcome_from_string("0"), -EINVAL);
}
END_TEST

static Suite *ctl_protocol_suite(void) {
        Suite *s = suite_create("ctl-protocol");
        TCase *tc;

        tc = tcase_create("ctl_message_parse");
        tcase_add_loop_test(tc, test_parse_good, 0, (int) ELEMENTSOF(good));
        tcase_add_loop_test(tc, test_parse_bad, 0, (int) ELEMENTSOF(bad));
        tcase_add_test(tc, test_parse_limits);
        tcase_add_test(tc, test_parse_not_terminated);
        tcase_add_test(tc, test_parse_bad_arguments);
        suite_add_tcase(s, tc);

        tc = tcase_create("ctl_record_get");
        tcase_add_test(tc, test_record_get);
        suite_add_tcase(s, tc);

        tc = tcase_create("ctl_record_get_u64");
        tcase_add_loop_test(tc, test_record_get_u64, 0, (int) ELEMENTSOF(u64_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("ctl_message_find");
        tcase_add_test(tc, test_message_find);
        suite_add_tcase(s, tc);

        tc = tcase_create("ctl_writer");
        tcase_add_test(tc, test_writer_basic);
        tcase_add_test(tc, test_writer_escape);
        tcase_add_test(tc, test_writer_keys);
        tcase_add_test(tc, test_writer_errors);
        tcase_add_test(tc, test_writer_limits);
        suite_add_tcase(s, tc);

        tc = tcase_create("round_trip");
        tcase_add_loop_test(tc, test_round_trip, 0, 10);
        suite_add_tcase(s, tc);

        tc = tcase_create("ctl_default_socket_path");
        tcase_add_loop_test(tc, test_default_socket_path, 0, (int) ELEMENTSOF(socket_path_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("ctl_unit_socket_path");
        tcase_add_loop_test(tc, test_unit_socket_path, 0, (int) ELEMENTSOF(unit_path_cases));
        tcase_add_test(tc, test_unit_socket_path_limits);
        suite_add_tcase(s, tc);

        tc = tcase_create("grm_outcome_to_string");
        tcase_add_loop_test(tc, test_outcome_to_string, 0, (int) ELEMENTSOF(outcomes));
        tcase_add_test(tc, test_outcome_to_string_range);
        suite_add_tcase(s, tc);

        tc = tcase_create("grm_outcome_from_string");
        tcase_add_loop_test(tc, test_outcome_from_string, 0, (int) ELEMENTSOF(outcomes));
        tcase_add_test(tc, test_outcome_from_string_bad);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        SRunner *sr = srunner_create(ctl_protocol_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
