/* SPDX-License-Identifier: MIT */
/*
 * The flow table (bpf/steer-api.h), read and written directly by the datapath tests: steering.c
 * exposes no accessor for entries, and there is no need for one, since the test process holds
 * the maps' fds (the skeleton's) and finds them among its own fds by type and name. The tests
 * compute keys, tags and buckets with the program's own grm_flow_hash() and the table's secret,
 * read from the config map.
 *
 * Header-only (static functions), included after datapath-cases.h (for expect()).
 */
#pragma once

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "steering.h"

/* The fd of this process's BPF map called name with the given value size. Every group's
 * skeleton holds an fd of the one shared map: any of them will do. */
static inline int own_map_fd(const char *name, uint32_t value_size) {
        int found = -EBADF;
        __u32 found_id = 0;

        for (int fd = 0; fd < 4096; fd++) {
                struct bpf_map_info info = {};
                __u32 len = sizeof(info);
                char path[64], target[64];
                ssize_t n;

                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n = readlink(path, target, sizeof(target) - 1);
                if (n < 0)
                        continue;
                target[n] = 0;
                if (!streq(target, "anon_inode:bpf-map"))
                        continue;
                if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
                        continue;
                if (!streq(info.name, name) || info.value_size != value_size)
                        continue;
                expect(found < 0 || info.id == found_id, "two maps called %s in one rig", name);
                found = fd;
                found_id = info.id;
        }
        expect(found >= 0, "no map called %s among the process's fds", name);
        return found;
}

static inline struct grm_config flow_table_config(void) {
        struct grm_config cfg;
        __u32 zero = 0;

        expect(bpf_map_lookup_elem(own_map_fd("config", sizeof(cfg)), &zero, &cfg) == 0,
               "reading the config map: %m");
        return cfg;
}

/* The key the program makes of a remote (group 0): IPv4 v4-mapped, the port in network order. */
static inline struct grm_flow_key flow_key_of(const struct sockaddr_storage *sa) {
        struct grm_flow_key key = { .group = 0 };

        if (sa->ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) sa;

                key.port = sin->sin_port;
                key.addr[2] = htonl(0x0000ffff);
                key.addr[3] = sin->sin_addr.s_addr;
        } else {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) sa;

                key.port = sin6->sin6_port;
                memcpy(key.addr, &sin6->sin6_addr, 16);
        }
        return key;
}

static inline struct grm_flow_key flow_key_ipv4(uint32_t addr_host, uint16_t port_host) {
        struct grm_flow_key key = { .group = 0, .port = htons(port_host) };

        key.addr[2] = htonl(0x0000ffff);
        key.addr[3] = htonl(addr_host);
        return key;
}

typedef struct FlowPlace {
        uint32_t tag;
        uint32_t bucket[2];
} FlowPlace;

static inline FlowPlace flow_place_of(const struct grm_config *cfg, const struct grm_flow_key *key) {
        uint64_t h = grm_flow_hash(key, cfg->flow_hash_seed);

        return (FlowPlace) {
                .tag = grm_flow_tag(h),
                .bucket = { grm_flow_bucket1(h, cfg->flow_buckets), grm_flow_bucket2(h, cfg->flow_buckets) },
        };
}

/* A bucket is GRM_FLOW_WAYS consecutive entries of the "flows" array. */
static inline struct grm_flow_bucket flow_bucket_read(uint32_t bucket) {
        int fd = own_map_fd("flows", sizeof(struct grm_flow_entry));
        struct grm_flow_bucket b;

        for (uint32_t w = 0; w < GRM_FLOW_WAYS; w++) {
                uint32_t i = bucket * GRM_FLOW_WAYS + w;

                expect(bpf_map_lookup_elem(fd, &i, &b.entries[w]) == 0, "reading flow entry %u: %m", i);
        }
        return b;
}

static inline void flow_bucket_write(uint32_t bucket, const struct grm_flow_bucket *b) {
        int fd = own_map_fd("flows", sizeof(struct grm_flow_entry));

        for (uint32_t w = 0; w < GRM_FLOW_WAYS; w++) {
                uint32_t i = bucket * GRM_FLOW_WAYS + w;

                expect(bpf_map_update_elem(fd, &i, &b->entries[w], BPF_ANY) == 0, "writing flow entry %u: %m", i);
        }
}

/* The key's entry (a copy), or false if it has none. With ret_bucket/ret_way: where it is. */
static inline bool flow_entry_find(const struct grm_flow_key *key, struct grm_flow_entry *ret,
                                   uint32_t *ret_bucket, unsigned *ret_way) {
        struct grm_config cfg = flow_table_config();
        FlowPlace p = flow_place_of(&cfg, key);

        for (unsigned b = 0; b < 2; b++) {
                struct grm_flow_bucket bucket = flow_bucket_read(p.bucket[b]);

                for (unsigned w = 0; w < GRM_FLOW_WAYS; w++)
                        if (bucket.entries[w].tag == p.tag) {
                                if (ret)
                                        *ret = bucket.entries[w];
                                if (ret_bucket)
                                        *ret_bucket = p.bucket[b];
                                if (ret_way)
                                        *ret_way = w;
                                return true;
                        }
        }
        return false;
}

/* Entries in use (tag != 0) in the whole table. */
static inline uint64_t flow_entries_in_use(void) {
        struct grm_config cfg = flow_table_config();
        int fd = own_map_fd("flows", sizeof(struct grm_flow_entry));
        uint64_t n = 0;

        for (uint32_t i = 0; i < cfg.flow_buckets * GRM_FLOW_WAYS; i++) {
                struct grm_flow_entry e;

                expect(bpf_map_lookup_elem(fd, &i, &e) == 0, "reading flow entry %u: %m", i);
                n += e.tag != 0;
        }
        return n;
}
