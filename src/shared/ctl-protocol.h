/* SPDX-License-Identifier: MIT */
/*
 * The control protocol between grmctl and grmd (docs/PROTOCOL.md): messages are single
 * SOCK_SEQPACKET packets made of records, one per line:
 *
 *     TYPE key=value key=value\n
 *
 * TYPE and keys are 1..64 characters of [a-z0-9_-]. Values are bytes with everything outside
 * 0x21..0x7e, and '%' and '=', escaped as %XX (uppercase or lowercase hex). An empty value is
 * allowed. Keys are unique within a record. Every record ends with '\n'; there are no empty
 * lines and no NUL bytes. Limits below bound everything a peer can make us allocate.
 *
 * Library code: does not log.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRM_CTL_PROTOCOL_VERSION 1
#define GRM_CTL_MESSAGE_MAX      65536U /* bytes in one message */
#define GRM_CTL_REQUEST_MAX      4096U  /* bytes in one request (client -> grmd) */
#define GRM_CTL_RECORDS_MAX      512U   /* records in one message */
#define GRM_CTL_FIELDS_MAX       32U    /* fields in one record */
#define GRM_CTL_NAME_MAX         64U    /* characters in a type or key */

typedef struct CtlField {
        char *key;
        char *value; /* unescaped, NUL-terminated; a value containing %00 is rejected */
} CtlField;

typedef struct CtlRecord {
        char *type;
        CtlField *fields;
        size_t n_fields;
} CtlRecord;

typedef struct CtlMessage {
        CtlRecord *records;
        size_t n_records;
} CtlMessage;

/**
 * ctl_message_parse() - parse one message.
 * Return: 0 with *ret (free with ctl_message_free()), -EMSGSIZE if @len exceeds @max_len or a
 * limit above is exceeded, -EBADMSG if malformed (including an empty message), -ENOMEM.
 */
int ctl_message_parse(const void *buf, size_t len, size_t max_len, CtlMessage **ret);
void ctl_message_free(CtlMessage *m);
static inline void ctl_message_freep(CtlMessage **m) {
        ctl_message_free(*m);
}

/* The value of key in r, or NULL. */
const char *ctl_record_get(const CtlRecord *r, const char *key);
/* Decimal u64 value of key: 0, -ENOENT if absent, -EINVAL if not a number. */
int ctl_record_get_u64(const CtlRecord *r, const char *key, uint64_t *ret);
/* The first record of type, or NULL. */
const CtlRecord *ctl_message_find(const CtlMessage *m, const char *type);

/* Builds a message. Errors (bad names, too large, ENOMEM) are sticky and reported by
 * ctl_writer_finish(), so callers can chain calls without checking each. */
typedef struct CtlWriter {
        char *buf;
        size_t len;
        size_t size;
        size_t n_records;
        size_t n_fields;   /* in the current record */
        bool in_record;
        int error;
} CtlWriter;

void ctl_writer_init(CtlWriter *w);
/* Starts a new record (ends the previous one). */
void ctl_writer_record(CtlWriter *w, const char *type);
void ctl_writer_add(CtlWriter *w, const char *key, const char *value);
void ctl_writer_addf(CtlWriter *w, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void ctl_writer_add_u64(CtlWriter *w, const char *key, uint64_t value);
/* Ends the message: 0 with a malloc'ed buffer (owned by the caller) and its length, or the
 * first error (-EINVAL bad name, -EMSGSIZE over GRM_CTL_MESSAGE_MAX or a limit, -ENOMEM). The
 * writer is reset either way. */
int ctl_writer_finish(CtlWriter *w, char **ret_buf, size_t *ret_len);
void ctl_writer_done(CtlWriter *w);

/*
 * Outcomes of a restart, also grmctl's exit codes (documented in grmctl --help and
 * docs/PROTOCOL.md).
 */
typedef enum GrmOutcome {
        GRM_OUTCOME_DONE = 0,        /* new generation is working */
        GRM_OUTCOME_INTERNAL = 1,    /* internal error */
        GRM_OUTCOME_USAGE = 2,       /* bad request / command line */
        GRM_OUTCOME_UNREACHABLE = 3, /* grmd unreachable, or permission denied */
        GRM_OUTCOME_REJECTED = 4,    /* config or exec-check rejected; nothing changed */
        GRM_OUTCOME_FAILED = 5,      /* new instance failed before ready; rolled back */
        GRM_OUTCOME_TIMEOUT = 6,     /* new instance not ready in time; rolled back */
        GRM_OUTCOME_BUSY = 7,        /* another restart in progress */
        _GRM_OUTCOME_MAX,
} GrmOutcome;

/**
 * ctl_default_socket_path() - where grmd listens and grmctl connects when no path is given:
 * "$RUNTIME_DIRECTORY/grmd.sock", with the first directory if the variable lists several.
 * Return: 0 with a malloc'ed path, -ENXIO if $RUNTIME_DIRECTORY is unset or empty, -ENOMEM.
 */
int ctl_default_socket_path(char **ret);

/**
 * ctl_unit_socket_path() - the control socket of the grmd that runs as unit @unit: "/run/DIR/
 * grmd.sock", DIR being @runtime_directory (the unit's first RuntimeDirectory=, as systemd
 * reports it; NULL or "" if unknown) or else the unit's name without ".service", which is what
 * the shipped units use. A unit name is 1..255 characters of [A-Za-z0-9:_.@\-], not starting
 * with '.' nor ending in another unit type's suffix (".socket"); a runtime directory is a
 * relative path without "." or ".." components.
 * Return: 0 with a malloc'ed path; -EINVAL for a bad unit name or directory; -ENOMEM.
 */
int ctl_unit_socket_path(const char *unit, const char *runtime_directory, char **ret);

/* "done", "internal-error", "usage", "unreachable", "rejected", "failed", "timeout", "busy" */
const char *grm_outcome_to_string(GrmOutcome o);
/* The inverse; -EINVAL if unknown. */
int grm_outcome_from_string(const char *s);
