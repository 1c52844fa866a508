/* SPDX-License-Identifier: MIT */
/*
 * grmd's settings: the systemd-style config file parser, the Config life cycle (init, merge,
 * defaults, validation) and the value parsers the command line shares with it.
 *
 * Invariants:
 *  - A Config field holds either its "unset" marker (see config.h) or a value that passed the
 *    same check config_validate() applies, so a merged and filled Config only needs
 *    config_validate() for what may be missing (the command) or was set by other code.
 *  - config_parse_string()/config_parse_file() are all-or-nothing: they parse into a copy and
 *    replace *c only on success, so on any failure *c is exactly as it was and nothing leaks.
 *  - Input is hostile: the file is bounded by CONFIG_FILE_MAX, a (continued) line by
 *    CONFIG_LINE_MAX, the number of Listen= entries by CONFIG_LISTEN_MAX; NUL bytes are
 *    refused; no parser reads past the length it was given; anything echoed into an error
 *    message is truncated and stripped of control characters.
 *  - "DrainTimeoutSec=infinity" is stored as CONFIG_DRAIN_TIMEOUT_INFINITY, because
 *    UINT64_MAX already means "unset" in a Config.
 *
 * Library code: nothing here logs.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"

#include <linux/types.h> /* the __u32 types steer-api.h expects */
#include "steer-api.h"

#define WHITESPACE " \t\n\r\v\f"
#define COMMENTS   "#;"

/* Longest piece of user input quoted in an error message. */
#define QUOTE_MAX 64U

/* Flow timeouts become nanoseconds in the BPF config map: keep that multiplication exact. */
#define FLOW_TIMEOUT_USEC_MAX (UINT64_MAX / NSEC_PER_USEC)

static int is_space(char c) {
        return c != 0 && strchr(WHITESPACE, c) != NULL;
}

static int is_digit(char c) {
        return c >= '0' && c <= '9';
}

static int is_alpha(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
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

/* Copies at most QUOTE_MAX bytes of s into buf, control and non-ASCII bytes replaced by '?', an
 * ellipsis marking truncation: safe to print into a terminal or the journal. */
static const char *quote(const char *s, char buf[static QUOTE_MAX + 4]) {
        size_t i;

        for (i = 0; i < QUOTE_MAX && s[i]; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s[i]) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = 0;
        return buf;
}

_printf_(3, 4)
static int set_error(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        if (!ret_error)
                return r;

        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL; /* the error code still says what went wrong */
        va_end(ap);
        return r;
}

/* ---- strv ---- */

/* Appends s and takes ownership of it, also on failure. */
static int strv_consume(char ***l, char *s) {
        size_t n = strv_length(*l);
        char **t;

        t = reallocarray(*l, n + 2, sizeof(char *));
        if (!t) {
                free(s);
                return -ENOMEM;
        }
        t[n] = s;
        t[n + 1] = NULL;
        *l = t;
        return 0;
}

int strv_extend(char ***l, const char *s) {
        char *c;

        if (!l || !s)
                return -EINVAL;

        c = strdup(s);
        if (!c)
                return -ENOMEM;
        return strv_consume(l, c);
}

int strv_extendf(char ***l, const char *format, ...) {
        va_list ap;
        char *c;
        int n;

        if (!l || !format)
                return -EINVAL;
        va_start(ap, format);
        n = vasprintf(&c, format, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        return strv_consume(l, c);
}

int strv_copy(char *const *l, char ***ret) {
        _cleanup_strv_free_ char **c = NULL;
        size_t n;

        if (!ret)
                return -EINVAL;
        if (!l) {
                *ret = NULL;
                return 0;
        }

        n = strv_length(l);
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

/* The character escaped by the backslash before *p: \n, \t, \xHH (not \x00: words are C
 * strings), or any other character standing for itself. Advances *p past the escape. */
static int unescape_one(const char **p, char *ret) {
        const char *s = *p;
        int hi, lo;

        switch (*s) {
        case 0:
                return -EINVAL; /* trailing backslash */
        case 'n':
                *ret = '\n';
                break;
        case 't':
                *ret = '\t';
                break;
        case 'x':
                hi = unhex(s[1]);
                if (hi < 0)
                        return -EINVAL;
                lo = unhex(s[2]);
                if (lo < 0 || (hi == 0 && lo == 0))
                        return -EINVAL;
                *ret = (char) (hi << 4 | lo);
                *p = s + 3;
                return 0;
        default:
                *ret = *s;
                break;
        }

        *p = s + 1;
        return 0;
}

/* Every byte of a word consumes at least one byte of input, so a buffer as large as the input
 * holds any word. */
int strv_split_quoted(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *word = NULL;
        const char *p = s;
        int r;

        if (!s || !ret)
                return -EINVAL;

        l = calloc(1, sizeof(char *));
        word = malloc(strlen(s) + 1);
        if (!l || !word)
                return -ENOMEM;

        for (;;) {
                size_t n = 0;

                while (is_space(*p))
                        p++;
                if (!*p)
                        break;

                while (*p && !is_space(*p)) {
                        if (*p == '\'') {
                                /* Single quotes: everything literal up to the closing quote. */
                                for (p++; *p != '\''; p++) {
                                        if (!*p)
                                                return -EINVAL;
                                        word[n++] = *p;
                                }
                                p++;

                        } else if (*p == '"') {
                                for (p++; *p != '"';) {
                                        if (!*p)
                                                return -EINVAL;
                                        if (*p == '\\') {
                                                p++;
                                                r = unescape_one(&p, &word[n++]);
                                                if (r < 0)
                                                        return r;
                                        } else
                                                word[n++] = *p++;
                                }
                                p++;

                        } else if (*p == '\\') {
                                p++;
                                r = unescape_one(&p, &word[n++]);
                                if (r < 0)
                                        return r;

                        } else
                                word[n++] = *p++;
                }

                word[n] = 0;
                r = strv_extend(&l, word);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- value parsers ---- */

int parse_unsigned(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;

        for (const char *p = s; *p; p++) {
                unsigned d;

                if (!is_digit(*p))
                        return -EINVAL;
                d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10) {
                        /* Keep checking the syntax: "99999999999999999999x" is -EINVAL. */
                        for (; *p; p++)
                                if (!is_digit(*p))
                                        return -EINVAL;
                        return -ERANGE;
                }
                v = v * 10 + d;
        }

        if (v < min || v > max)
                return -ERANGE;

        if (ret)
                *ret = v;
        return 0;
}

int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        _cleanup_free_ char *digits = NULL;
        uint64_t v, factor = 1;
        size_t len;
        int r;

        if (!s || !*s)
                return -EINVAL;
        len = strlen(s);
        switch (s[len - 1]) {
        case 'K': factor = 1ULL << 10; len--; break;
        case 'M': factor = 1ULL << 20; len--; break;
        case 'G': factor = 1ULL << 30; len--; break;
        }
        digits = strndup(s, len);
        if (!digits)
                return -ENOMEM;
        r = parse_unsigned(digits, 0, UINT64_MAX / factor, &v);
        if (r < 0)
                return r;
        v *= factor;
        if (v < min || v > max)
                return -ERANGE;
        if (ret)
                *ret = v;
        return 0;
}

static const char *const dissector_names[_GRM_DISSECTOR_MAX] = {
        [GRM_DISSECTOR_NONE] = "none",
        [GRM_DISSECTOR_FLOW] = "flow",
        [GRM_DISSECTOR_QUIC] = "quic",
};

int dissector_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (int i = 0; i < (int) _GRM_DISSECTOR_MAX; i++)
                if (streq(dissector_names[i], s))
                        return i;
        return -EINVAL;
}

const char *dissector_to_string(int d) {
        if (d < 0 || d >= (int) _GRM_DISSECTOR_MAX)
                return NULL;
        return dissector_names[d];
}

static const char *const signal_names[] = {
        [SIGHUP]    = "SIGHUP",
        [SIGINT]    = "SIGINT",
        [SIGQUIT]   = "SIGQUIT",
        [SIGILL]    = "SIGILL",
        [SIGTRAP]   = "SIGTRAP",
        [SIGABRT]   = "SIGABRT",
        [SIGBUS]    = "SIGBUS",
        [SIGFPE]    = "SIGFPE",
        [SIGKILL]   = "SIGKILL",
        [SIGUSR1]   = "SIGUSR1",
        [SIGSEGV]   = "SIGSEGV",
        [SIGUSR2]   = "SIGUSR2",
        [SIGPIPE]   = "SIGPIPE",
        [SIGALRM]   = "SIGALRM",
        [SIGTERM]   = "SIGTERM",
#ifdef SIGSTKFLT
        [SIGSTKFLT] = "SIGSTKFLT",
#endif
        [SIGCHLD]   = "SIGCHLD",
        [SIGCONT]   = "SIGCONT",
        [SIGSTOP]   = "SIGSTOP",
        [SIGTSTP]   = "SIGTSTP",
        [SIGTTIN]   = "SIGTTIN",
        [SIGTTOU]   = "SIGTTOU",
        [SIGURG]    = "SIGURG",
        [SIGXCPU]   = "SIGXCPU",
        [SIGXFSZ]   = "SIGXFSZ",
        [SIGVTALRM] = "SIGVTALRM",
        [SIGPROF]   = "SIGPROF",
        [SIGWINCH]  = "SIGWINCH",
        [SIGIO]     = "SIGIO",
        [SIGPWR]    = "SIGPWR",
        [SIGSYS]    = "SIGSYS",
};

/* Names for SIGRTMIN+0..SIGRTMIN+31; SIGRTMIN is only known at run time. Whatever the C library
 * reserves, Linux has at most 32 real-time signals. */
static const char *const rt_signal_names[] = {
        "SIGRTMIN",    "SIGRTMIN+1",  "SIGRTMIN+2",  "SIGRTMIN+3",  "SIGRTMIN+4",
        "SIGRTMIN+5",  "SIGRTMIN+6",  "SIGRTMIN+7",  "SIGRTMIN+8",  "SIGRTMIN+9",
        "SIGRTMIN+10", "SIGRTMIN+11", "SIGRTMIN+12", "SIGRTMIN+13", "SIGRTMIN+14",
        "SIGRTMIN+15", "SIGRTMIN+16", "SIGRTMIN+17", "SIGRTMIN+18", "SIGRTMIN+19",
        "SIGRTMIN+20", "SIGRTMIN+21", "SIGRTMIN+22", "SIGRTMIN+23", "SIGRTMIN+24",
        "SIGRTMIN+25", "SIGRTMIN+26", "SIGRTMIN+27", "SIGRTMIN+28", "SIGRTMIN+29",
        "SIGRTMIN+30", "SIGRTMIN+31",
};

const char *signal_to_name(int sig) {
        if (sig > 0 && sig < (int) ELEMENTSOF(signal_names) && signal_names[sig])
                return signal_names[sig];
        if (sig == SIGRTMAX)
                return "SIGRTMAX";
        if (sig >= SIGRTMIN && sig < SIGRTMAX && sig - SIGRTMIN < (int) ELEMENTSOF(rt_signal_names))
                return rt_signal_names[sig - SIGRTMIN];
        return NULL;
}

/* "RTMIN", "RTMIN+N", "RTMAX", "RTMAX-N" (after the optional "SIG"). */
static int parse_rt_signal(const char *s) {
        uint64_t n = 0;
        int base, sign;

        if (strncasecmp(s, "RTMIN", 5) == 0) {
                base = SIGRTMIN;
                sign = 1;
        } else if (strncasecmp(s, "RTMAX", 5) == 0) {
                base = SIGRTMAX;
                sign = -1;
        } else
                return -EINVAL;

        s += 5;
        if (*s) {
                if (*s != (sign > 0 ? '+' : '-'))
                        return -EINVAL;
                if (parse_unsigned(s + 1, 0, (uint64_t) (SIGRTMAX - SIGRTMIN), &n) < 0)
                        return -EINVAL;
        }

        return base + sign * (int) n;
}

int parse_signal(const char *s) {
        uint64_t n;

        if (!s || !*s)
                return -EINVAL;

        if (is_digit(*s)) {
                if (parse_unsigned(s, 1, (uint64_t) SIGRTMAX, &n) < 0)
                        return -EINVAL;
                return (int) n;
        }

        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;

        for (int i = 1; i < (int) ELEMENTSOF(signal_names); i++)
                if (signal_names[i] && strcasecmp(signal_names[i] + 3, s) == 0)
                        return i;

        return parse_rt_signal(s);
}

static const struct {
        const char *name;
        uint64_t usec;
} time_units[] = {
        { "us",      1 },
        { "usec",    1 },
        { "ms",      USEC_PER_MSEC },
        { "msec",    USEC_PER_MSEC },
        { "s",       USEC_PER_SEC },
        { "sec",     USEC_PER_SEC },
        { "second",  USEC_PER_SEC },
        { "seconds", USEC_PER_SEC },
        { "m",       60 * USEC_PER_SEC },
        { "min",     60 * USEC_PER_SEC },
        { "minute",  60 * USEC_PER_SEC },
        { "minutes", 60 * USEC_PER_SEC },
        { "h",       3600 * USEC_PER_SEC },
        { "hr",      3600 * USEC_PER_SEC },
        { "hour",    3600 * USEC_PER_SEC },
        { "hours",   3600 * USEC_PER_SEC },
        { "d",       86400 * USEC_PER_SEC },
        { "day",     86400 * USEC_PER_SEC },
        { "days",    86400 * USEC_PER_SEC },
        { "w",       7 * 86400 * USEC_PER_SEC },
        { "week",    7 * 86400 * USEC_PER_SEC },
        { "weeks",   7 * 86400 * USEC_PER_SEC },
};

/* The unit at *p (a run of letters; none means seconds), advancing *p past it. */
static int parse_time_unit(const char **p, uint64_t *ret_usec) {
        const char *s = *p;
        size_t n = 0;

        while (is_alpha(s[n]))
                n++;

        if (n == 0) {
                *ret_usec = USEC_PER_SEC;
                return 0;
        }

        for (size_t i = 0; i < ELEMENTSOF(time_units); i++)
                if (strlen(time_units[i].name) == n && memcmp(time_units[i].name, s, n) == 0) {
                        *ret_usec = time_units[i].usec;
                        *p = s + n;
                        return 0;
                }

        return -EINVAL;
}

int parse_sec(const char *s, uint64_t *ret_usec) {
        const char *p;
        uint64_t total = 0;
        bool any = false;

        if (!s)
                return -EINVAL;

        while (is_space(*s))
                s++;

        p = s;
        if (strncmp(p, "infinity", 8) == 0) {
                for (p += 8; is_space(*p); p++)
                        ;
                if (*p)
                        return -EINVAL;
                if (ret_usec)
                        *ret_usec = USEC_INFINITY;
                return 0;
        }

        for (;;) {
                uint64_t whole = 0, unit, v, frac = 0;
                const char *frac_start = NULL;
                bool overflow = false;

                while (is_space(*p))
                        p++;
                if (!*p)
                        break;

                if (!is_digit(*p))
                        return -EINVAL;
                for (; is_digit(*p); p++) {
                        unsigned d = (unsigned) (*p - '0');

                        if (whole > (UINT64_MAX - d) / 10)
                                overflow = true;
                        else
                                whole = whole * 10 + d;
                }
                if (*p == '.') {
                        p++;
                        if (!is_digit(*p))
                                return -EINVAL;
                        frac_start = p;
                        while (is_digit(*p))
                                p++;
                }

                while (is_space(*p))
                        p++;
                if (parse_time_unit(&p, &unit) < 0)
                        return -EINVAL;
                /* A unit must end the component: "5sx" or "5s.5" are garbage. */
                if (*p && !is_space(*p) && !is_digit(*p))
                        return -EINVAL;

                if (overflow || (unit > 0 && whole > UINT64_MAX / unit))
                        return -ERANGE;
                v = whole * unit;

                /* Each fraction digit is worth a tenth of the one before; digits beyond the
                 * unit's resolution add nothing. frac stays below unit, so no overflow. */
                if (frac_start)
                        for (uint64_t k = unit / 10; k > 0 && is_digit(*frac_start); k /= 10)
                                frac += (uint64_t) (*frac_start++ - '0') * k;

                if (v > UINT64_MAX - frac || v + frac > UINT64_MAX - total)
                        return -ERANGE;
                total += v + frac;
                any = true;
        }

        if (!any)
                return -EINVAL;
        /* UINT64_MAX is infinity; a finite span must stay below it. */
        if (total == UINT64_MAX)
                return -ERANGE;

        if (ret_usec)
                *ret_usec = total;
        return 0;
}

/* Whether the n bytes at s, followed by ':' and rest, look like a scheme ("tcp:...") rather than
 * the start of an address: a letter, then letters and digits, not merely hexadecimal (or the
 * unbracketed IPv6 address "fe80::1" would have the scheme "fe80"), and not followed by a bare
 * port (or the host name in "localhost:53" would be a scheme). Only decides which error to
 * return: -EPROTONOSUPPORT or -EINVAL. */
static int looks_like_scheme(const char *s, size_t n, const char *rest) {
        bool hex_only = true, port_only = *rest != 0;

        if (n == 0 || !is_alpha(s[0]))
                return 0;
        for (size_t i = 0; i < n; i++) {
                if (!is_alpha(s[i]) && !is_digit(s[i]))
                        return 0;
                if (unhex(s[i]) < 0)
                        hex_only = false;
        }
        for (; *rest; rest++)
                if (!is_digit(*rest))
                        port_only = false;
        return !hex_only && !port_only;
}

static int parse_port(const char *s, uint16_t *ret) {
        uint64_t port;

        if (parse_unsigned(s, 1, 65535, &port) < 0)
                return -EINVAL;
        *ret = (uint16_t) port;
        return 0;
}

static int parse_scope_id(const char *s, uint32_t *ret) {
        uint64_t n;
        unsigned idx;

        if (!*s)
                return -EINVAL;
        if (is_digit(*s)) {
                if (parse_unsigned(s, 1, UINT32_MAX, &n) < 0)
                        return -EINVAL;
                *ret = (uint32_t) n;
                return 0;
        }
        if (strlen(s) >= IF_NAMESIZE)
                return -EINVAL;
        idx = if_nametoindex(s);
        if (idx == 0)
                return -EINVAL;
        *ret = idx;
        return 0;
}

int parse_listen_address(const char *s, int *ret_type, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct sockaddr_storage ss = {};
        socklen_t len;
        const char *colon, *port;
        char addr[INET6_ADDRSTRLEN + 1 + IF_NAMESIZE];
        uint16_t port_n;
        int type = SOCK_DGRAM;

        if (!s)
                return -EINVAL;

        colon = strchr(s, ':');
        if (colon && looks_like_scheme(s, (size_t) (colon - s), colon + 1)) {
                if ((size_t) (colon - s) != 3)
                        return -EPROTONOSUPPORT;
                if (strncmp(s, "tcp", 3) == 0)
                        type = SOCK_STREAM;
                else if (strncmp(s, "udp", 3) != 0)
                        return -EPROTONOSUPPORT;
                s = colon + 1;
        }

        if (*s == '[') {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
                const char *bracket = strchr(s, ']');
                char *pct;
                size_t n;

                if (!bracket || bracket[1] != ':')
                        return -EINVAL;
                n = (size_t) (bracket - (s + 1));
                if (n == 0 || n >= sizeof(addr))
                        return -EINVAL;
                memcpy(addr, s + 1, n);
                addr[n] = 0;
                port = bracket + 2;

                sin6->sin6_family = AF_INET6;
                pct = strchr(addr, '%');
                if (pct) {
                        *pct = 0;
                        if (parse_scope_id(pct + 1, &sin6->sin6_scope_id) < 0)
                                return -EINVAL;
                }
                if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
                        return -EINVAL;
                if (parse_port(port, &port_n) < 0)
                        return -EINVAL;
                sin6->sin6_port = htons(port_n);
                len = sizeof(struct sockaddr_in6);
        } else {
                struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
                size_t n;

                colon = strchr(s, ':');
                if (!colon || strchr(colon + 1, ':'))
                        return -EINVAL; /* no port, or an IPv6 address without brackets */
                n = (size_t) (colon - s);
                if (n == 0 || n >= sizeof(addr))
                        return -EINVAL;
                memcpy(addr, s, n);
                addr[n] = 0;
                port = colon + 1;

                sin->sin_family = AF_INET;
                if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
                        return -EINVAL;
                if (parse_port(port, &port_n) < 0)
                        return -EINVAL;
                sin->sin_port = htons(port_n);
                len = sizeof(struct sockaddr_in);
        }

        if (ret_type)
                *ret_type = type;
        if (ret)
                *ret = ss;
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* ---- Config life cycle ---- */

void config_init(Config *c) {
        *c = (Config) {
                .dissector = -1,
                .quic_config_id = -1,
                .flows_per_source = -1,
                .flow_timeout_usec = UINT64_MAX,
                .start_timeout_usec = UINT64_MAX,
                .drain_timeout_usec = UINT64_MAX,
                .settle_usec = UINT64_MAX,
                .intercept_bind = -1,
                .connect_per_client = -1,
        };
}

void config_done(Config *c) {
        if (!c)
                return;
        strv_free(c->listen);
        free(c->control_path);
        strv_free(c->exec_check);
        free(c->user);
        strv_free(c->command);
        config_init(c);
}

static int strdup_if(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int config_merge(Config *dst, const Config *src) {
        _cleanup_strv_free_ char **listen_copy = NULL, **exec_check = NULL, **command = NULL;
        _cleanup_free_ char *control_path = NULL, *user = NULL;

        /* Copy everything first, so that dst is untouched if memory runs out. */
        if (strv_copy(src->listen, &listen_copy) < 0)
                return -ENOMEM;
        if (strv_copy(src->exec_check, &exec_check) < 0)
                return -ENOMEM;
        if (strv_copy(src->command, &command) < 0)
                return -ENOMEM;
        if (strdup_if(src->control_path, &control_path) < 0)
                return -ENOMEM;
        if (strdup_if(src->user, &user) < 0)
                return -ENOMEM;

        if (src->listen) {
                strv_free(dst->listen);
                dst->listen = TAKE_PTR(listen_copy);
        }
        if (src->exec_check) {
                strv_free(dst->exec_check);
                dst->exec_check = TAKE_PTR(exec_check);
        }
        if (src->command) {
                strv_free(dst->command);
                dst->command = TAKE_PTR(command);
        }
        if (src->control_path) {
                free(dst->control_path);
                dst->control_path = TAKE_PTR(control_path);
        }
        if (src->user) {
                free(dst->user);
                dst->user = TAKE_PTR(user);
        }

        if (src->dissector >= 0)
                dst->dissector = src->dissector;
        if (src->sockets_per_generation != 0)
                dst->sockets_per_generation = src->sockets_per_generation;
        if (src->receive_buffer != 0)
                dst->receive_buffer = src->receive_buffer;
        if (src->flow_table_size != 0)
                dst->flow_table_size = src->flow_table_size;
        if (src->flow_timeout_usec != UINT64_MAX)
                dst->flow_timeout_usec = src->flow_timeout_usec;
        if (src->flows_per_source >= 0)
                dst->flows_per_source = src->flows_per_source;
        if (src->start_timeout_usec != UINT64_MAX)
                dst->start_timeout_usec = src->start_timeout_usec;
        if (src->drain_timeout_usec != UINT64_MAX)
                dst->drain_timeout_usec = src->drain_timeout_usec;
        if (src->settle_usec != UINT64_MAX)
                dst->settle_usec = src->settle_usec;
        if (src->drain_signal != 0)
                dst->drain_signal = src->drain_signal;
        if (src->intercept_bind >= 0)
                dst->intercept_bind = src->intercept_bind;
        if (src->connect_per_client >= 0)
                dst->connect_per_client = src->connect_per_client;
        if (src->quic_prefix_set) {
                dst->quic_prefix = src->quic_prefix;
                dst->quic_prefix_set = true;
        }
        if (src->quic_config_id >= 0)
                dst->quic_config_id = src->quic_config_id;

        return 0;
}

void config_fill_defaults(Config *c) {
        if (c->dissector < 0)
                c->dissector = GRM_DISSECTOR_FLOW;
        if (c->sockets_per_generation == 0)
                c->sockets_per_generation = 1;
        if (c->flow_table_size == 0)
                c->flow_table_size = CONFIG_DEFAULT_FLOW_TABLE_SIZE;
        if (c->flow_timeout_usec == UINT64_MAX)
                c->flow_timeout_usec = CONFIG_DEFAULT_FLOW_TIMEOUT_USEC;
        if (c->flows_per_source < 0)
                c->flows_per_source = CONFIG_DEFAULT_FLOWS_PER_SOURCE;
        if (c->start_timeout_usec == UINT64_MAX)
                c->start_timeout_usec = CONFIG_DEFAULT_START_TIMEOUT_USEC;
        if (c->drain_timeout_usec == UINT64_MAX)
                c->drain_timeout_usec = CONFIG_DEFAULT_DRAIN_TIMEOUT_USEC;
        if (c->settle_usec == UINT64_MAX)
                c->settle_usec = CONFIG_DEFAULT_SETTLE_USEC;
        if (c->drain_signal == 0)
                c->drain_signal = SIGTERM;
        if (c->intercept_bind < 0)
                c->intercept_bind = 0;
        if (c->connect_per_client < 0)
                c->connect_per_client = 0;
        if (!c->quic_prefix_set) {
                c->quic_prefix = (QuicLbPrefix) {};
                c->quic_prefix_set = true;
        }
        if (c->quic_config_id < 0)
                c->quic_config_id = 0;
}

/* ---- checks shared by the file parser and config_validate() ---- */

static const char *check_command(char *const *argv) {
        if (strv_length(argv) == 0)
                return "no command given";
        if (!argv[0][0])
                return "empty program name";
        return NULL;
}

static const char *check_control_path(const char *p) {
        if (p[0] != '/')
                return "not an absolute path";
        if (strlen(p) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return "longer than a socket address allows (107 bytes)";
        return NULL;
}

static const char *check_listen(const char *a) {
        switch (parse_listen_address(a, NULL, NULL, NULL)) {
        case 0:
                return NULL;
        case -EPROTONOSUPPORT:
                return "only udp: and tcp: are supported";
        default:
                return "expected udp:IPV4:PORT, udp:[IPV6]:PORT, tcp:IPV4:PORT or tcp:[IPV6]:PORT, port 1..65535";
        }
}

int config_validate(const Config *c, char **ret_error) {
        char q[QUOTE_MAX + 4];
        const char *why;
        size_t n_listen;

        if (ret_error)
                *ret_error = NULL;

        why = check_command(c->command);
        if (why)
                return set_error(ret_error, -EINVAL, "ExecStart=: %s", why);
        if (c->exec_check) {
                why = check_command(c->exec_check);
                if (why)
                        return set_error(ret_error, -EINVAL, "ExecCheck=: %s", why);
        }
        if (c->user && !c->user[0])
                return set_error(ret_error, -EINVAL, "User=: empty user name");
        if (c->control_path) {
                why = check_control_path(c->control_path);
                if (why)
                        return set_error(ret_error, -EINVAL, "Control socket \"%s\": %s",
                                         quote(c->control_path, q), why);
        }

        n_listen = strv_length(c->listen);
        if (n_listen > CONFIG_LISTEN_MAX)
                return set_error(ret_error, -EINVAL, "Too many listen addresses (%zu, at most %u)",
                                 n_listen, CONFIG_LISTEN_MAX);
        for (size_t i = 0; i < n_listen; i++) {
                struct sockaddr_storage a;
                socklen_t a_len;
                int a_type;

                why = check_listen(c->listen[i]);
                if (why)
                        return set_error(ret_error, -EINVAL, "Listen address \"%s\": %s",
                                         quote(c->listen[i], q), why);

                /* Two entries for one address would put its sockets in two groups. The same
                 * address and port over UDP and over TCP are two groups, as they should be. */
                (void) parse_listen_address(c->listen[i], &a_type, &a, &a_len);
                for (size_t j = 0; j < i; j++) {
                        struct sockaddr_storage b;
                        socklen_t b_len;
                        int b_type;

                        (void) parse_listen_address(c->listen[j], &b_type, &b, &b_len);
                        if (a_type == b_type && a_len == b_len && memcmp(&a, &b, a_len) == 0)
                                return set_error(ret_error, -EINVAL,
                                                 "Listen address \"%s\" given twice",
                                                 quote(c->listen[i], q));
                }
        }

        if (!dissector_to_string(c->dissector))
                return set_error(ret_error, -EINVAL, "Dissector= not set or invalid (%d)",
                                 c->dissector);
        if (c->sockets_per_generation < 1 || c->sockets_per_generation > CONFIG_SOCKETS_MAX)
                return set_error(ret_error, -EINVAL, "SocketsPerGeneration=%u out of range 1..%u",
                                 c->sockets_per_generation, CONFIG_SOCKETS_MAX);
        if (c->flow_table_size < CONFIG_FLOW_TABLE_MIN || c->flow_table_size > CONFIG_FLOW_TABLE_MAX)
                return set_error(ret_error, -EINVAL, "FlowTableSize=%u out of range %u..%u",
                                 c->flow_table_size, CONFIG_FLOW_TABLE_MIN, CONFIG_FLOW_TABLE_MAX);
        if (c->flow_timeout_usec == 0 || c->flow_timeout_usec > FLOW_TIMEOUT_USEC_MAX)
                return set_error(ret_error, -EINVAL, "FlowTimeoutSec= not set or out of range");
        /* (unset is grmd's default) */
        if (c->flows_per_source > CONFIG_FLOW_TABLE_MAX)
                return set_error(ret_error, -EINVAL, "FlowsPerSource=%lld out of range 0..%u",
                                 (long long) c->flows_per_source, CONFIG_FLOW_TABLE_MAX);
        if (c->start_timeout_usec == 0 || c->start_timeout_usec == UINT64_MAX)
                return set_error(ret_error, -EINVAL, "StartTimeoutSec= not set or zero");
        if (c->drain_timeout_usec == 0 || c->drain_timeout_usec == UINT64_MAX)
                return set_error(ret_error, -EINVAL, "DrainTimeoutSec= not set or zero");
        if (!signal_to_name(c->drain_signal))
                return set_error(ret_error, -EINVAL, "DrainSignal=%d is not a signal",
                                 c->drain_signal);
        if (!c->quic_prefix_set || c->quic_prefix.len > GRM_QUIC_PREFIX_MAX)
                return set_error(ret_error, -EINVAL, "QuicServerIdPrefix= not set or longer than %u octets",
                                 GRM_QUIC_PREFIX_MAX);
        if (c->quic_config_id < 0 || c->quic_config_id > (int) QUIC_LB_CONFIG_ID_MAX)
                return set_error(ret_error, -EINVAL, "QuicConfigId=%d out of range 0..%u",
                                 c->quic_config_id, QUIC_LB_CONFIG_ID_MAX);

        return 0;
}

/* ---- the config file ---- */

/* A key's parser: 0, -ENOMEM, or -EINVAL with a static reason in *ret_why. */
typedef int (*ConfigParser)(Config *c, const char *value, const char **ret_why);

/* Removes the entries of one transport ("udp:" or "tcp:") from the list, keeping the others in
 * their order: an empty Datagram= resets the UDP addresses, an empty Stream= the TCP ones. */
static void listen_remove_scheme(char ***l, const char *scheme) {
        size_t n = 0;

        if (!*l)
                return;
        for (char **p = *l; *p; p++)
                if (strncmp(*p, scheme, 4) == 0)
                        free(*p);
                else
                        (*l)[n++] = *p;
        (*l)[n] = NULL;
        if (n == 0) {
                free(*l);
                *l = NULL;
        }
}

/* Datagram= (udp) and Stream= (tcp) share one list, so that the groups, and the fds every
 * instance gets, come in the order the file names them. */
static int config_parse_listen(Config *c, const char *value, int want_type, const char **ret_why) {
        const char *scheme = want_type == SOCK_STREAM ? "tcp:" : "udp:";
        _cleanup_free_ char *a = NULL;
        int type;

        if (!*value) {
                listen_remove_scheme(&c->listen, scheme);
                return 0;
        }

        *ret_why = check_listen(value);
        if (*ret_why)
                return -EINVAL;
        /* Without a scheme the address is the key's transport. */
        if (strncmp(value, "udp:", 4) == 0 || strncmp(value, "tcp:", 4) == 0) {
                (void) parse_listen_address(value, &type, NULL, NULL);
                if (type != want_type) {
                        *ret_why = want_type == SOCK_STREAM ? "only tcp: here; use Datagram= for udp:"
                                                            : "only udp: here; use Stream= for tcp:";
                        return -EINVAL;
                }
                a = strdup(value);
        } else if (asprintf(&a, "%s%s", scheme, value) < 0)
                a = NULL;
        if (!a)
                return -ENOMEM;
        if (strv_length(c->listen) >= CONFIG_LISTEN_MAX) {
                *ret_why = "too many listen addresses (at most 32)";
                return -EINVAL;
        }

        return strv_consume(&c->listen, TAKE_PTR(a));
}

static int config_parse_datagram(Config *c, const char *value, const char **ret_why) {
        return config_parse_listen(c, value, SOCK_DGRAM, ret_why);
}

static int config_parse_stream(Config *c, const char *value, const char **ret_why) {
        return config_parse_listen(c, value, SOCK_STREAM, ret_why);
}

static int config_parse_receive_buffer(Config *c, const char *value, const char **ret_why) {
        uint64_t n;

        if (parse_size(value, CONFIG_BUFFER_MIN, CONFIG_BUFFER_MAX, &n) < 0) {
                *ret_why = "expected a size in 4096..1G (bytes, or with a K, M or G suffix)";
                return -EINVAL;
        }
        c->receive_buffer = n;
        return 0;
}

static int config_parse_dissector(Config *c, const char *value, const char **ret_why) {
        int d = dissector_from_string(value);

        if (d < 0) {
                *ret_why = "expected \"none\", \"flow\" or \"quic\"";
                return -EINVAL;
        }
        c->dissector = d;
        return 0;
}

/* An empty value is the empty prefix (the default), not "unset": it overrides a command line
 * merged under it like any other value. */
static int config_parse_quic_prefix(Config *c, const char *value, const char **ret_why) {
        QuicLbPrefix p;
        int r = quic_lb_parse_prefix(value, &p);

        if (r == -E2BIG) {
                *ret_why = "longer than 8 octets (16 hex digits)";
                return -EINVAL;
        }
        if (r < 0) {
                *ret_why = "expected hex digits, two per octet (for example \"c0a8\"), or nothing";
                return -EINVAL;
        }
        c->quic_prefix = p;
        c->quic_prefix_set = true;
        return 0;
}

static int config_parse_flows_per_source(Config *c, const char *value, const char **ret_why) {
        uint64_t n;

        if (parse_unsigned(value, 0, CONFIG_FLOW_TABLE_MAX, &n) < 0) {
                *ret_why = "expected an integer in 0..16777216 (0: no quota)";
                return -EINVAL;
        }
        c->flows_per_source = (int64_t) n;
        return 0;
}

static int config_parse_quic_config_id(Config *c, const char *value, const char **ret_why) {
        uint64_t n;

        if (parse_unsigned(value, 0, QUIC_LB_CONFIG_ID_MAX, &n) < 0) {
                *ret_why = "expected an integer in 0..6 (7 is QUIC-LB's unroutable config id)";
                return -EINVAL;
        }
        c->quic_config_id = (int) n;
        return 0;
}

static int config_parse_sockets(Config *c, const char *value, const char **ret_why) {
        uint64_t n;

        if (parse_unsigned(value, 1, CONFIG_SOCKETS_MAX, &n) < 0) {
                *ret_why = "expected an integer in 1..32";
                return -EINVAL;
        }
        c->sockets_per_generation = (unsigned) n;
        return 0;
}

static int config_parse_flow_table_size(Config *c, const char *value, const char **ret_why) {
        uint64_t n;

        if (parse_unsigned(value, CONFIG_FLOW_TABLE_MIN, CONFIG_FLOW_TABLE_MAX, &n) < 0) {
                *ret_why = "expected an integer in 1024..16777216";
                return -EINVAL;
        }
        c->flow_table_size = (unsigned) n;
        return 0;
}

/* A positive, finite time span; infinity_value (if not 0) is what "infinity" stands for. */
static int parse_timeout(const char *value, uint64_t max, uint64_t infinity_value,
                         uint64_t *ret, const char **ret_why) {
        uint64_t usec;
        int r;

        r = parse_sec(value, &usec);
        if (r == -ERANGE) {
                *ret_why = "time span too large";
                return -EINVAL;
        }
        if (r < 0) {
                *ret_why = "expected a time span such as \"90s\", \"1min 30s\" or \"500ms\"";
                return -EINVAL;
        }
        if (usec == USEC_INFINITY) {
                if (infinity_value == 0) {
                        *ret_why = "must be finite";
                        return -EINVAL;
                }
                usec = infinity_value;
        } else if (usec == 0) {
                *ret_why = "must be greater than zero";
                return -EINVAL;
        } else if (usec > max) {
                *ret_why = "time span too large";
                return -EINVAL;
        }

        *ret = usec;
        return 0;
}

static int config_parse_flow_timeout(Config *c, const char *value, const char **ret_why) {
        return parse_timeout(value, FLOW_TIMEOUT_USEC_MAX, 0, &c->flow_timeout_usec, ret_why);
}

static int config_parse_start_timeout(Config *c, const char *value, const char **ret_why) {
        return parse_timeout(value, UINT64_MAX - 1, 0, &c->start_timeout_usec, ret_why);
}

static int config_parse_drain_timeout(Config *c, const char *value, const char **ret_why) {
        return parse_timeout(value, CONFIG_DRAIN_TIMEOUT_INFINITY, CONFIG_DRAIN_TIMEOUT_INFINITY,
                             &c->drain_timeout_usec, ret_why);
}

int parse_settle(const char *value, uint64_t *ret_usec) {
        uint64_t usec;
        int r;

        r = parse_sec(value, &usec);
        if (r < 0)
                return r;
        /* 0 is allowed (the old generation drains as soon as the new one is ready); infinity is
         * not: a restart that never ends would keep every later one busy. */
        if (usec == USEC_INFINITY || usec > CONFIG_SETTLE_USEC_MAX)
                return -ERANGE;
        *ret_usec = usec;
        return 0;
}

static int config_parse_settle(Config *c, const char *value, const char **ret_why) {
        int r = parse_settle(value, &c->settle_usec);

        if (r == -ERANGE) {
                *ret_why = "must be finite and at most 1h";
                return -EINVAL;
        }
        if (r < 0) {
                *ret_why = "expected a time span such as \"1s\" or \"500ms\" (0: no settle time)";
                return -EINVAL;
        }
        return 0;
}

static int parse_command(const char *value, bool empty_unsets, char ***ret, const char **ret_why) {
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        if (empty_unsets && !*value) {
                strv_free(*ret);
                *ret = NULL;
                return 0;
        }

        r = strv_split_quoted(value, &argv);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_why = "unterminated quote or bad escape";
                return -EINVAL;
        }
        *ret_why = check_command(argv);
        if (*ret_why)
                return -EINVAL;

        strv_free(*ret);
        *ret = TAKE_PTR(argv);
        return 0;
}

static int config_parse_exec_start(Config *c, const char *value, const char **ret_why) {
        return parse_command(value, false, &c->command, ret_why);
}

static int config_parse_exec_check(Config *c, const char *value, const char **ret_why) {
        return parse_command(value, true, &c->exec_check, ret_why);
}

static int config_parse_user(Config *c, const char *value, const char **ret_why) {
        char *u;

        if (!*value) {
                *ret_why = "empty user name";
                return -EINVAL;
        }
        u = strdup(value);
        if (!u)
                return -ENOMEM;
        free(c->user);
        c->user = u;
        return 0;
}

static int config_parse_drain_signal(Config *c, const char *value, const char **ret_why) {
        int sig = parse_signal(value);

        if (sig < 0) {
                *ret_why = "expected a signal name such as \"SIGTERM\" or a number";
                return -EINVAL;
        }
        c->drain_signal = sig;
        return 0;
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "yes", "true", "on", "1", "y", "t" };
        static const char *const no[] = { "no", "false", "off", "0", "n", "f" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

static int config_parse_intercept_bind(Config *c, const char *value, const char **ret_why) {
        int b = parse_boolean(value);

        if (b < 0) {
                *ret_why = "expected a boolean (yes or no)";
                return -EINVAL;
        }
        c->intercept_bind = b;
        return 0;
}

static int config_parse_connect_per_client(Config *c, const char *value, const char **ret_why) {
        int b = parse_boolean(value);

        if (b < 0) {
                *ret_why = "expected a boolean (yes or no)";
                return -EINVAL;
        }
        c->connect_per_client = b;
        return 0;
}

static int config_parse_control_socket(Config *c, const char *value, const char **ret_why) {
        char *p;

        *ret_why = check_control_path(value);
        if (*ret_why)
                return -EINVAL;
        p = strdup(value);
        if (!p)
                return -ENOMEM;
        free(c->control_path);
        c->control_path = p;
        return 0;
}

static const struct {
        const char *section;
        const char *key;
        ConfigParser parse;
} config_keys[] = {
        { "Listen",   "Datagram",             config_parse_datagram },
        { "Listen",   "Stream",               config_parse_stream },
        { "Listen",   "ReceiveBuffer",        config_parse_receive_buffer },
        { "Steering", "Dissector",            config_parse_dissector },
        { "Steering", "SocketsPerGeneration", config_parse_sockets },
        { "Steering", "FlowTableSize",        config_parse_flow_table_size },
        { "Steering", "FlowTimeoutSec",       config_parse_flow_timeout },
        { "Steering", "FlowsPerSource",       config_parse_flows_per_source },
        { "Steering", "QuicServerIdPrefix",   config_parse_quic_prefix },
        { "Steering", "QuicConfigId",         config_parse_quic_config_id },
        { "Instance", "ExecStart",            config_parse_exec_start },
        { "Instance", "ExecCheck",            config_parse_exec_check },
        { "Instance", "User",                 config_parse_user },
        { "Instance", "StartTimeoutSec",      config_parse_start_timeout },
        { "Instance", "DrainTimeoutSec",      config_parse_drain_timeout },
        { "Instance", "DrainSignal",          config_parse_drain_signal },
        { "Instance", "SettleSec",            config_parse_settle },
        { "Instance", "InterceptBind",        config_parse_intercept_bind },
        { "Instance", "ConnectPerClient",     config_parse_connect_per_client },
        { "Control",  "Socket",               config_parse_control_socket },
        /* systemd's spelling of the same settings (a .socket's ListenDatagram=, ListenStream=, a .service's
         * TimeoutStartSec=, TimeoutStopSec=, KillSignal=), so a unit's values can be copied
         * over as they are. Each is the same field: the later line wins, as for one key. */
        { "Listen",   "ListenDatagram",       config_parse_datagram },
        { "Listen",   "ListenStream",         config_parse_stream },
        { "Instance", "TimeoutStartSec",      config_parse_start_timeout },
        { "Instance", "TimeoutStopSec",       config_parse_drain_timeout },
        { "Instance", "KillSignal",           config_parse_drain_signal },
};

static const char *find_section(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                if (streq(config_keys[i].section, name))
                        return config_keys[i].section;
        return NULL;
}

static ConfigParser find_key(const char *section, const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                if (streq(config_keys[i].section, section) && streq(config_keys[i].key, key))
                        return config_keys[i].parse;
        return NULL;
}

static char *strip(char *s) {
        size_t n;

        while (is_space(*s))
                s++;
        n = strlen(s);
        while (n > 0 && is_space(s[n - 1]))
                s[--n] = 0;
        return s;
}

/* One logical line (continuations joined), modified in place. *section is the current
 * section (a pointer into config_keys) or NULL before the first one. */
static int parse_line(Config *c, const char *name, unsigned line_no, char *line,
                      const char **section, char **ret_error) {
        char q[QUOTE_MAX + 4], q2[QUOTE_MAX + 4];
        const char *why = NULL;
        ConfigParser parse;
        char *l, *eq, *key, *value;
        size_t n;
        int r;

        l = strip(line);
        if (!*l || strchr(COMMENTS, *l))
                return 0;

        if (*l == '[') {
                const char *s;

                n = strlen(l);
                if (n < 3 || l[n - 1] != ']')
                        return set_error(ret_error, -EINVAL, "%s:%u: Invalid section header \"%s\"",
                                         name, line_no, quote(l, q));
                l[n - 1] = 0;
                s = find_section(l + 1);
                if (!s)
                        return set_error(ret_error, -EINVAL, "%s:%u: Unknown section [%s]",
                                         name, line_no, quote(l + 1, q));
                *section = s;
                return 0;
        }

        if (!*section)
                return set_error(ret_error, -EINVAL, "%s:%u: Assignment outside of a section",
                                 name, line_no);

        eq = strchr(l, '=');
        if (!eq)
                return set_error(ret_error, -EINVAL, "%s:%u: Missing '=' in \"%s\"",
                                 name, line_no, quote(l, q));
        *eq = 0;
        key = strip(l);
        value = strip(eq + 1);
        if (!*key)
                return set_error(ret_error, -EINVAL, "%s:%u: Missing key name before '='",
                                 name, line_no);

        parse = find_key(*section, key);
        if (!parse)
                return set_error(ret_error, -EINVAL, "%s:%u: Unknown key %s= in section [%s]",
                                 name, line_no, quote(key, q), *section);

        r = parse(c, value, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_error(ret_error, r, "%s:%u: Invalid %s=%s: %s",
                                 name, line_no, key, quote(value, q2), strempty(why));
        return 0;
}

/* Lines that end in an odd number of backslashes continue: the last backslash is dropped. */
static int ends_with_continuation(const char *l, size_t n) {
        size_t k = 0;

        while (k < n && l[n - 1 - k] == '\\')
                k++;
        return k % 2 == 1;
}

static int parse_text(const char *text, size_t len, const char *name, Config *c, char **ret_error) {
        _cleanup_free_ char *logical = NULL;
        const char *section = NULL;
        size_t pos = 0, logical_len = 0;
        unsigned line_no = 0, logical_start = 0;
        bool continued = false;
        int r;

        /* The longest logical line plus a NUL. */
        logical = malloc(CONFIG_LINE_MAX + 1);
        if (!logical)
                return -ENOMEM;

        while (pos < len) {
                const char *line = text + pos, *nl;
                size_t n, lead = 0;

                nl = memchr(line, '\n', len - pos);
                n = nl ? (size_t) (nl - line) : len - pos;
                pos += n + (nl ? 1 : 0);
                line_no++;

                if (n > CONFIG_LINE_MAX)
                        return set_error(ret_error, -E2BIG, "%s:%u: Line too long (more than %u bytes)",
                                         name, line_no, CONFIG_LINE_MAX);
                if (memchr(line, 0, n))
                        return set_error(ret_error, -EINVAL, "%s:%u: NUL byte", name, line_no);

                while (n > 0 && is_space(line[n - 1]))
                        n--;
                while (lead < n && is_space(line[lead]))
                        lead++;

                /* Comments are skipped even between continued lines, as systemd does. */
                if (lead < n && strchr(COMMENTS, line[lead]))
                        continue;

                if (!continued) {
                        logical_len = 0;
                        logical_start = line_no;
                }
                if (logical_len + n > CONFIG_LINE_MAX)
                        return set_error(ret_error, -E2BIG,
                                         "%s:%u: Continued line too long (more than %u bytes)",
                                         name, logical_start, CONFIG_LINE_MAX);
                memcpy(logical + logical_len, line, n);
                logical_len += n;

                continued = ends_with_continuation(line, n);
                if (continued) {
                        logical[logical_len - 1] = ' ';
                        continue;
                }

                logical[logical_len] = 0;
                r = parse_line(c, name, logical_start, logical, &section, ret_error);
                if (r < 0)
                        return r;
        }

        /* A backslash on the last line continues into nothing. */
        if (continued) {
                logical[logical_len] = 0;
                r = parse_line(c, name, logical_start, logical, &section, ret_error);
                if (r < 0)
                        return r;
        }

        return 0;
}

int config_parse_string(const char *text, size_t len, const char *name, Config *c, char **ret_error) {
        _cleanup_(config_done) Config copy;
        int r;

        config_init(&copy);
        if (ret_error)
                *ret_error = NULL;
        if (!name)
                name = "(config)";
        if (!c || (!text && len > 0))
                return -EINVAL;

        if (len > CONFIG_FILE_MAX)
                return set_error(ret_error, -E2BIG, "%s: File too large (more than %u bytes)",
                                 name, CONFIG_FILE_MAX);

        r = config_merge(&copy, c);
        if (r < 0)
                return r;

        r = parse_text(text, len, name, &copy, ret_error);
        if (r < 0) {
                if (r == -ENOMEM && ret_error) {
                        free(*ret_error);
                        *ret_error = NULL;
                }
                return r;
        }

        config_done(c);
        *c = copy;
        config_init(&copy);
        return 0;
}

int config_parse_file(const char *path, Config *c, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        if (ret_error)
                *ret_error = NULL;
        if (!path || !c)
                return -EINVAL;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                int r = negative_errno();

                return set_error(ret_error, r, "%s: Failed to open: %s", path, strerror(-r));
        }

        /* One byte more than allowed, to tell "exactly the limit" from "too large". */
        buf = malloc(CONFIG_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;

        while (len < CONFIG_FILE_MAX + 1) {
                ssize_t k = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);

                if (k < 0) {
                        int r = negative_errno();

                        if (r == -EINTR)
                                continue;
                        return set_error(ret_error, r, "%s: Failed to read: %s", path, strerror(-r));
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }

        if (len > CONFIG_FILE_MAX)
                return set_error(ret_error, -E2BIG, "%s: File too large (more than %u bytes)",
                                 path, CONFIG_FILE_MAX);

        return config_parse_string(buf, len, path, c, ret_error);
}
