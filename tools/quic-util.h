/* SPDX-License-Identifier: MIT */
/*
 * Shared by grm-quic-echo and grm-quic-load (header only, no library): the echo protocol both
 * speak over QUIC, the connection-ID layout of grm's contract (docs/QUIC.md), the TLS settings,
 * and a min-heap of timers for the single-threaded event loops. Nothing here logs; functions
 * that can fail return negative errno.
 *
 * The echo protocol (ALPN "grm-quic-echo"): the client opens a bidirectional stream, writes one
 * request of at most QUIC_ECHO_REQUEST_MAX bytes and ends the stream (FIN). The server answers
 * on the same stream with the request followed by " gen=<N> pid=<P>\n" (grm-echo's trailer) and
 * ends it too. grm-quic-load's requests are a 20-byte header (network byte order: magic
 * 0x47524d51 "GRMQ", connection number, sequence number, CLOCK_MONOTONIC send time in ns).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define QUIC_ECHO_ALPN "grm-quic-echo"
#define QUIC_ECHO_REQUEST_MAX 1024
#define QUIC_ECHO_MAGIC 0x47524d51U  /* "GRMQ" */
#define QUIC_ECHO_HEADER_SIZE 20

/* TLS 1.3 only (QUIC requires it), the AEADs ngtcp2's GnuTLS backend supports. */
#define QUIC_TLS_PRIORITY                                                                        \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"                   \
        "+CHACHA20-POLY1305:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"                          \
        "%DISABLE_TLS13_COMPAT_MODE"

/*
 * Connection IDs (draft-ietf-quic-load-balancers, plaintext): octet 0 carries the config
 * rotation in its 3 high bits and the CID length - 1 in its 5 low bits, then the socket's server
 * ID, then at least 4 random octets; 8..20 octets in all. Config rotation 7 (0b111) is QUIC-LB's
 * "unroutable": a server without a server ID still self-encodes the length but never looks like
 * a routable ID.
 */
#define QUIC_CID_MIN 8
#define QUIC_CID_MAX 20
#define QUIC_CID_RANDOM_MIN 4
#define QUIC_CID_RANDOM_DEFAULT 8
#define QUIC_SERVER_ID_MAX (QUIC_CID_MAX - 1 - QUIC_CID_RANDOM_MIN)
#define QUIC_CONFIG_ID_MAX 6
#define QUIC_CONFIG_UNROUTABLE 7

/* The length of the CIDs a socket with a server ID of sid_len octets issues. */
static inline size_t quic_cid_length(size_t sid_len) {
        size_t len = 1 + sid_len + QUIC_CID_RANDOM_DEFAULT;

        if (len > QUIC_CID_MAX)
                len = QUIC_CID_MAX;  /* still >= 4 random octets: sid_len <= QUIC_SERVER_ID_MAX */
        if (len < QUIC_CID_MIN)
                len = QUIC_CID_MIN;
        return len;
}

/*
 * Fills cid[0..len) per the layout above: config id, server ID (sid_len may be 0), and the
 * random octets taken from rnd (at least len bytes; only the tail is used).
 */
static inline void quic_cid_build(uint8_t *cid, size_t len, unsigned config_id, const uint8_t *sid,
                                  size_t sid_len, const uint8_t *rnd) {
        cid[0] = (uint8_t) (((config_id & 7u) << 5) | ((len - 1) & 0x1fu));
        if (sid_len > 0)
                memcpy(cid + 1, sid, sid_len);
        memcpy(cid + 1 + sid_len, rnd, len - 1 - sid_len);
}

/* One hex string ("0a1b2c", even length, 1..max octets) into out. */
static inline int quic_parse_hex(const char *s, size_t n_chars, uint8_t *out, size_t max, size_t *ret_len) {
        size_t len;

        if (n_chars == 0 || n_chars % 2 != 0 || n_chars / 2 > max)
                return -EINVAL;
        len = n_chars / 2;
        for (size_t i = 0; i < len; i++) {
                uint8_t v = 0;

                for (size_t j = 0; j < 2; j++) {
                        char c = s[2 * i + j];

                        v <<= 4;
                        if (c >= '0' && c <= '9')
                                v |= (uint8_t) (c - '0');
                        else if (c >= 'a' && c <= 'f')
                                v |= (uint8_t) (c - 'a' + 10);
                        else if (c >= 'A' && c <= 'F')
                                v |= (uint8_t) (c - 'A' + 10);
                        else
                                return -EINVAL;
                }
                out[i] = v;
        }
        *ret_len = len;
        return 0;
}

static inline void quic_put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static inline uint32_t quic_get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static inline void quic_put_be64(uint8_t *p, uint64_t v) {
        quic_put_be32(p, (uint32_t) (v >> 32));
        quic_put_be32(p + 4, (uint32_t) v);
}

static inline uint64_t quic_get_be64(const uint8_t *p) {
        return (uint64_t) quic_get_be32(p) << 32 | quic_get_be32(p + 4);
}

/*
 * A binary min-heap of timers. A timer is embedded in its owner (container_of); it knows its
 * position so it can be moved or removed in O(log n). due == UINT64_MAX means "not armed" and the
 * timer is kept out of the heap.
 */
#define quic_container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))

typedef struct QuicTimer {
        uint64_t due;
        size_t index;  /* position in the heap, SIZE_MAX while not in it */
} QuicTimer;

typedef struct QuicTimerHeap {
        QuicTimer **items;
        size_t n, cap;
} QuicTimerHeap;

#define QUIC_TIMER_INIT { .due = UINT64_MAX, .index = SIZE_MAX }

static inline void quic_heap_swap(QuicTimerHeap *h, size_t a, size_t b) {
        QuicTimer *t = h->items[a];

        h->items[a] = h->items[b];
        h->items[b] = t;
        h->items[a]->index = a;
        h->items[b]->index = b;
}

static inline void quic_heap_sift(QuicTimerHeap *h, size_t i) {
        while (i > 0 && h->items[(i - 1) / 2]->due > h->items[i]->due) {
                quic_heap_swap(h, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;

                if (l < h->n && h->items[l]->due < h->items[m]->due)
                        m = l;
                if (r < h->n && h->items[r]->due < h->items[m]->due)
                        m = r;
                if (m == i)
                        return;
                quic_heap_swap(h, i, m);
                i = m;
        }
}

static inline void quic_timer_remove(QuicTimerHeap *h, QuicTimer *t) {
        size_t i = t->index;

        if (i == SIZE_MAX)
                return;
        t->index = SIZE_MAX;
        h->n--;
        if (i == h->n)
                return;
        h->items[i] = h->items[h->n];
        h->items[i]->index = i;
        quic_heap_sift(h, i);
}

/* Arms (or re-arms, or with UINT64_MAX disarms) t. Only fails with -ENOMEM when growing. */
static inline int quic_timer_set(QuicTimerHeap *h, QuicTimer *t, uint64_t due) {
        t->due = due;
        if (due == UINT64_MAX) {
                quic_timer_remove(h, t);
                return 0;
        }
        if (t->index != SIZE_MAX) {
                quic_heap_sift(h, t->index);
                return 0;
        }
        if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 64;
                QuicTimer **items = realloc(h->items, cap * sizeof(QuicTimer *));

                if (!items)
                        return -ENOMEM;
                h->items = items;
                h->cap = cap;
        }
        t->index = h->n;
        h->items[h->n++] = t;
        quic_heap_sift(h, t->index);
        return 0;
}

/* The earliest timer, or NULL. */
static inline QuicTimer *quic_timer_first(const QuicTimerHeap *h) {
        return h->n > 0 ? h->items[0] : NULL;
}

static inline void quic_heap_done(QuicTimerHeap *h) {
        free(h->items);
        *h = (QuicTimerHeap) {};
}

/* Milliseconds from now until due, rounded up, for epoll_wait(); -1 for never. */
static inline int quic_timeout_ms(uint64_t due, uint64_t now) {
        uint64_t ms;

        if (due == UINT64_MAX)
                return -1;
        if (due <= now)
                return 0;
        /* Rounded up (never a busy loop), without the overflow of adding first. */
        ms = (due - now) / 1000000 + ((due - now) % 1000000 != 0);
        return ms > 60000 ? 60000 : (int) ms;
}
