// fastrun: `berth run` without the Go runtime.
//
// A `berth run` is a short-lived client: it sends create, wait, attach and start to the
// daemon, copies the output and exits with the container's status. Most of its cost used to be
// the process itself: the Go runtime's start and the package initialisers of the one berth
// binary (~4 ms of a ~18 ms `run --rm true`). This constructor runs before the Go runtime and,
// when the arguments are a plain non-interactive run (the flags below, no terminal, no stdin),
// does the whole run in C and exits; anything else returns and the Go CLI handles it as
// before. It never changes what a run does: the create request decodes to the same
// Config/HostConfig as the Go client's (a test compares the two for every accepted command
// line), and any answer other than "created" to the create (an unknown image, a daemon that
// speaks another API version, a bad name) hands the whole command to the Go client, which
// repeats the create and reports the error in its usual words. BERTH_FASTRUN=0 turns it off.
#define _GNU_SOURCE
#include "fastrun.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_HOST "unix:///run/berth/berth.sock"
#define API "/v" BERTH_FASTRUN_API_VERSION
// Answers the client reads whole (create, start, errors) are small; a bigger one is malformed.
#define BODY_MAX (1 << 20)

// ---- growable buffer ----

struct buf {
	char *p;
	size_t n, cap;
	bool bad; // allocation failed
};

static void b_put(struct buf *b, const void *s, size_t n) {
	if (b->bad) {
		return;
	}
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1) {
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (!p) {
			b->bad = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void b_puts(struct buf *b, const char *s) { b_put(b, s, strlen(s)); }

static void b_free(struct buf *b) {
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

// b_json writes s as a JSON string, escaping as Go's encoding/json does (bytes that are not
// valid UTF-8 pass through; the daemon's decoder turns them into U+FFFD as the Go client's
// encoder would).
static void b_json(struct buf *b, const char *s) {
	static const char hex[] = "0123456789abcdef";
	b_put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			b_put(b, e, 2);
		} else if (c == '\n') {
			b_puts(b, "\\n");
		} else if (c == '\r') {
			b_puts(b, "\\r");
		} else if (c == '\t') {
			b_puts(b, "\\t");
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			b_put(b, e, 6);
		} else {
			b_put(b, &c, 1);
		}
	}
	b_put(b, "\"", 1);
}

// b_query writes s percent-encoded for a URL query value.
static void b_query(struct buf *b, const char *s) {
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			b_put(b, p, 1);
		} else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			b_put(b, e, 3);
		}
	}
}

// ---- the command line ----

struct opts {
	bool rm, detach, privileged, read_only;
	int init; // -1: not given
	const char *network, *name, *workdir, *user, *entrypoint, *image;
	char **env, **labels; // the values of -e and -l, in order (pointers into args)
	int nenv, nlabels;
	char **cmd;
	int ncmd;
};

// parse_bool accepts what Go's strconv.ParseBool does (pflag's bool flags use it).
static int parse_bool(const char *v, bool *out) {
	static const char *yes[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *no[] = {"0", "f", "F", "FALSE", "false", "False"};
	for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

// parse_args fills o from the arguments after "run", as pflag would with the run command's
// flags (interspersed off: the first argument that is not a flag is the image). It returns -1
// for anything outside the flags handled here; the Go CLI then parses the command line.
static int parse_args(int argc, char **args, struct opts *o) {
	memset(o, 0, sizeof *o);
	o->init = -1;
	o->env = calloc((size_t)argc + 1, sizeof(char *));
	o->labels = calloc((size_t)argc + 1, sizeof(char *));
	if (!o->env || !o->labels) {
		return -1;
	}
	int i = 0;
	for (; i < argc; i++) {
		char *a = args[i];
		if (a[0] != '-' || a[1] == 0) {
			break;
		}
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		const char *name, *val = NULL;
		size_t nlen;
		if (a[1] == '-') {
			name = a + 2;
			const char *eq = strchr(name, '=');
			nlen = eq ? (size_t)(eq - name) : strlen(name);
			if (eq) {
				val = eq + 1;
			}
		} else {
			// One short flag alone: combined (-dit) or attached (-eA=1) forms go to Go.
			if (a[2] != 0) {
				return -1;
			}
			static const char *longs[] = {"d", "detach", "e", "env", "w", "workdir", "u", "user", "l", "label"};
			name = NULL;
			for (size_t k = 0; k < sizeof longs / sizeof *longs; k += 2) {
				if (a[1] == longs[k][0]) {
					name = longs[k + 1];
				}
			}
			if (!name) {
				return -1;
			}
			nlen = strlen(name);
		}
#define IS(s) (nlen == sizeof(s) - 1 && strncmp(name, s, nlen) == 0)
		bool *flag = NULL;
		if (IS("rm")) {
			flag = &o->rm;
		} else if (IS("detach")) {
			flag = &o->detach;
		} else if (IS("privileged")) {
			flag = &o->privileged;
		} else if (IS("read-only")) {
			flag = &o->read_only;
		}
		if (flag || IS("init")) {
			bool v = true;
			if (val && parse_bool(val, &v) < 0) {
				return -1;
			}
			if (flag) {
				*flag = v;
			} else {
				o->init = v;
			}
			continue;
		}
		const char **dst = NULL;
		char ***list = NULL;
		int *count = NULL;
		if (IS("network") || IS("net")) {
			dst = &o->network;
		} else if (IS("name")) {
			dst = &o->name;
		} else if (IS("workdir")) {
			dst = &o->workdir;
		} else if (IS("user")) {
			dst = &o->user;
		} else if (IS("entrypoint")) {
			dst = &o->entrypoint;
		} else if (IS("env")) {
			list = &o->env;
			count = &o->nenv;
		} else if (IS("label")) {
			list = &o->labels;
			count = &o->nlabels;
		} else {
			return -1;
		}
#undef IS
		if (!val) {
			if (i + 1 >= argc) {
				return -1;
			}
			val = args[++i];
		}
		if (dst) {
			*dst = val;
		} else {
			(*list)[(*count)++] = (char *)val;
		}
	}
	if (i >= argc || !args[i][0]) {
		return -1; // no image: Go prints the usage error
	}
	o->image = args[i];
	o->cmd = args + i + 1;
	o->ncmd = argc - i - 1;
	return 0;
}

static const char *env_get(char **envp, const char *key, size_t klen) {
	for (char **e = envp; e && *e; e++) {
		if (strncmp(*e, key, klen) == 0 && (*e)[klen] == '=') {
			return *e + klen + 1;
		}
	}
	return NULL;
}

static void b_list(struct buf *b, char **v, int n) {
	b_puts(b, "[");
	for (int i = 0; i < n; i++) {
		if (i) {
			b_puts(b, ",");
		}
		b_json(b, v[i]);
	}
	b_puts(b, "]");
}

// build_create writes the create request's path and body for o, as the Go client's toConfig
// makes them (a test decodes both and compares).
static void build_create(const struct opts *o, char **envp, struct buf *path, struct buf *body) {
	b_puts(path, API "/containers/create");
	if (o->name && *o->name) {
		b_puts(path, "?name=");
		b_query(path, o->name);
	}
	bool attach = !o->detach;
	b_puts(body, "{\"User\":");
	b_json(body, o->user ? o->user : "");
	b_puts(body, attach ? ",\"AttachStdout\":true,\"AttachStderr\":true" : ",\"AttachStdout\":false,\"AttachStderr\":false");
	b_puts(body, ",\"Env\":[");
	bool first = true;
	for (int i = 0; i < o->nenv; i++) {
		const char *e = o->env[i];
		const char *v = NULL;
		if (!strchr(e, '=')) {
			// A bare name takes the client's value and is dropped when unset (as docker).
			v = *e ? env_get(envp, e, strlen(e)) : NULL;
			if (!v) {
				continue;
			}
		}
		if (!first) {
			b_puts(body, ",");
		}
		first = false;
		if (v) {
			struct buf kv = {0};
			b_puts(&kv, e);
			b_puts(&kv, "=");
			b_puts(&kv, v);
			b_json(body, kv.bad ? "" : kv.p);
			body->bad |= kv.bad;
			b_free(&kv);
		} else {
			b_json(body, e);
		}
	}
	b_puts(body, "],\"Cmd\":");
	b_list(body, o->cmd, o->ncmd);
	b_puts(body, ",\"Image\":");
	b_json(body, o->image);
	b_puts(body, ",\"WorkingDir\":");
	b_json(body, o->workdir ? o->workdir : "");
	if (o->entrypoint) {
		b_puts(body, ",\"Entrypoint\":[");
		b_json(body, o->entrypoint);
		b_puts(body, "]");
	}
	b_puts(body, ",\"Labels\":{");
	for (int i = 0; i < o->nlabels; i++) {
		char *l = o->labels[i];
		char *eq = strchr(l, '=');
		struct buf k = {0};
		b_put(&k, l, eq ? (size_t)(eq - l) : strlen(l));
		if (i) {
			b_puts(body, ",");
		}
		b_json(body, k.bad || !k.p ? "" : k.p);
		body->bad |= k.bad;
		b_free(&k);
		b_puts(body, ":");
		b_json(body, eq ? eq + 1 : "");
	}
	b_puts(body, "},\"HostConfig\":{\"NetworkMode\":");
	b_json(body, o->network ? o->network : "");
	b_puts(body, ",\"RestartPolicy\":{\"Name\":\"no\",\"MaximumRetryCount\":0},\"AutoRemove\":");
	b_puts(body, o->rm ? "true" : "false");
	b_puts(body, ",\"Privileged\":");
	b_puts(body, o->privileged ? "true" : "false");
	b_puts(body, ",\"ReadonlyRootfs\":");
	b_puts(body, o->read_only ? "true" : "false");
	if (o->init >= 0) {
		b_puts(body, o->init ? ",\"Init\":true" : ",\"Init\":false");
	}
	b_puts(body, "},\"NetworkingConfig\":{\"EndpointsConfig\":null}}");
}

long berth_fastrun_request(int argc, char **args, char **envp, char *path, size_t path_max,
                           char *body, size_t body_max, int *detach) {
	struct opts o;
	int r = parse_args(argc, args, &o);
	long ret = -1;
	struct buf p = {0}, b = {0};
	if (r == 0) {
		build_create(&o, envp, &p, &b);
		ret = -2;
		if (!p.bad && !b.bad && p.n < path_max && b.n <= body_max) {
			memcpy(path, p.p, p.n + 1);
			memcpy(body, b.p, b.n);
			*detach = o.detach;
			ret = (long)b.n;
		}
	}
	free(o.env);
	free(o.labels);
	b_free(&p);
	b_free(&b);
	return ret;
}

// ---- JSON answers ----

static const char *ws(const char *p, const char *e) {
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
		p++;
	}
	return p;
}

static const char *skip_string(const char *p, const char *e) {
	for (p++; p < e; p++) {
		if (*p == '\\') {
			if (++p >= e) {
				return NULL;
			}
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

static const char *skip_value(const char *p, const char *e, int depth) {
	p = ws(p, e);
	if (p >= e || depth > 64) {
		return NULL;
	}
	if (*p == '"') {
		return skip_string(p, e);
	}
	if (*p == '{' || *p == '[') {
		bool obj = *p == '{';
		char close = obj ? '}' : ']';
		p = ws(p + 1, e);
		if (p < e && *p == close) {
			return p + 1;
		}
		for (;;) {
			if (obj) {
				p = ws(p, e);
				if (p >= e || *p != '"' || !(p = skip_string(p, e))) {
					return NULL;
				}
				p = ws(p, e);
				if (p >= e || *p != ':') {
					return NULL;
				}
				p++;
			}
			if (!(p = skip_value(p, e, depth + 1))) {
				return NULL;
			}
			p = ws(p, e);
			if (p >= e) {
				return NULL;
			}
			if (*p == ',') {
				p++;
				continue;
			}
			return *p == close ? p + 1 : NULL;
		}
	}
	const char *s = p;
	while (p < e && (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.')) {
		p++;
	}
	return p == s ? NULL : p;
}

// member returns the value of the object at p's member key, matched without regard to case
// and the last of several, as Go's decoder takes them; NULL if there is none or the object is
// malformed.
static const char *member(const char *p, const char *e, const char *key) {
	size_t klen = strlen(key);
	const char *found = NULL;
	p = ws(p, e);
	if (p >= e || *p != '{') {
		return NULL;
	}
	p = ws(p + 1, e);
	if (p < e && *p == '}') {
		return NULL;
	}
	for (;;) {
		p = ws(p, e);
		if (p >= e || *p != '"') {
			return NULL;
		}
		const char *ks = p + 1, *ke = skip_string(p, e);
		if (!ke) {
			return NULL;
		}
		bool match = (size_t)(ke - 1 - ks) == klen && strncasecmp(ks, key, klen) == 0;
		p = ws(ke, e);
		if (p >= e || *p != ':') {
			return NULL;
		}
		p = ws(p + 1, e);
		if (match) {
			found = p;
		}
		if (!(p = skip_value(p, e, 1))) {
			return NULL;
		}
		p = ws(p, e);
		if (p < e && *p == '}') {
			return found;
		}
		if (p >= e || *p != ',') {
			return NULL;
		}
		p++;
	}
}

static int hex4(const char *p, const char *e, unsigned *out) {
	if (e - p < 4) {
		return -1;
	}
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)p[i];
		v <<= 4;
		if (c >= '0' && c <= '9') {
			v |= (unsigned)(c - '0');
		} else if (c >= 'a' && c <= 'f') {
			v |= (unsigned)(c - 'a' + 10);
		} else if (c >= 'A' && c <= 'F') {
			v |= (unsigned)(c - 'A' + 10);
		} else {
			return -1;
		}
	}
	*out = v;
	return 0;
}

// decode_string decodes the JSON string at p into out (NUL-terminated, truncated to max-1
// bytes) and returns its full decoded length, or -1.
static long decode_string(const char *p, const char *e, char *out, size_t max) {
	size_t n = 0;
#define PUT(c)                                                                                     \
	do {                                                                                       \
		if (n + 1 < max) {                                                                 \
			out[n] = (char)(c);                                                        \
		}                                                                                  \
		n++;                                                                               \
	} while (0)
	if (p >= e || *p != '"' || max == 0) {
		return -1;
	}
	for (p++; p < e;) {
		unsigned char c = (unsigned char)*p++;
		if (c == '"') {
			out[n < max ? n : max - 1] = 0;
			return (long)n;
		}
		if (c != '\\') {
			PUT(c);
			continue;
		}
		if (p >= e) {
			return -1;
		}
		c = (unsigned char)*p++;
		unsigned cp;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			PUT(c);
			break;
		case 'b':
			PUT('\b');
			break;
		case 'f':
			PUT('\f');
			break;
		case 'n':
			PUT('\n');
			break;
		case 'r':
			PUT('\r');
			break;
		case 't':
			PUT('\t');
			break;
		case 'u':
			if (hex4(p, e, &cp) < 0) {
				return -1;
			}
			p += 4;
			if (cp >= 0xD800 && cp < 0xDC00) {
				unsigned lo;
				if (e - p >= 6 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, e, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					p += 6;
				} else {
					cp = 0xFFFD;
				}
			} else if (cp >= 0xDC00 && cp < 0xE000) {
				cp = 0xFFFD;
			}
			if (cp < 0x80) {
				PUT(cp);
			} else if (cp < 0x800) {
				PUT(0xC0 | (cp >> 6));
				PUT(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				PUT(0xE0 | (cp >> 12));
				PUT(0x80 | ((cp >> 6) & 0x3F));
				PUT(0x80 | (cp & 0x3F));
			} else {
				PUT(0xF0 | (cp >> 18));
				PUT(0x80 | ((cp >> 12) & 0x3F));
				PUT(0x80 | ((cp >> 6) & 0x3F));
				PUT(0x80 | (cp & 0x3F));
			}
			break;
		default:
			return -1;
		}
	}
#undef PUT
	return -1;
}

long berth_fastrun_json_string(const char *in, size_t n, const char *key, char *out, size_t out_max) {
	const char *v = member(in, in + n, key);
	return v ? decode_string(v, in + n, out, out_max) : -1;
}

long berth_fastrun_wait_result(const char *in, size_t n, long *code, char *msg, size_t msg_max) {
	const char *e = in + n;
	if (msg_max) {
		msg[0] = 0;
	}
	const char *v = member(in, e, "StatusCode");
	if (!v) {
		return -1;
	}
	long c = 0;
	const char *p = v;
	bool neg = p < e && *p == '-';
	if (neg) {
		p++;
	}
	if (p >= e || !isdigit((unsigned char)*p)) {
		return -1;
	}
	for (; p < e && isdigit((unsigned char)*p); p++) {
		if (c > 100000000) {
			return -1;
		}
		c = c * 10 + (*p - '0');
	}
	const char *err = member(in, e, "Error");
	if (err && err < e && *err == '{') {
		const char *m = member(err, e, "Message");
		if (m && decode_string(m, e, msg, msg_max) < 0 && msg_max) {
			msg[0] = 0;
		}
	}
	*code = neg ? -c : c;
	return 0;
}

// ---- HTTP over a unix socket ----

struct proxy;

struct conn {
	int fd;
	struct proxy *px; // signals to forward while this connection is read; NULL for none
	size_t off, len;
	char buf[1 << 16];
};

static void proxy_pending(struct proxy *px, int fd);

// fill reads more into c's buffer; 1 when it did, 0 at the end of the stream, -1 on error.
static int fill(struct conn *c) {
	if (c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len == sizeof c->buf) {
		return -1;
	}
	if (c->px) {
		proxy_pending(c->px, c->fd); // waits for c->fd to be readable
	}
	ssize_t r;
	do {
		r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		return -1;
	}
	c->len += (size_t)r;
	return r > 0;
}

// put_all writes n bytes to fd. To the client's output (to_daemon false): a broken pipe ends
// the client by SIGPIPE, as it ends the Go client and other Unix tools, and an output left
// non-blocking by whoever shares it is waited for. To a connection to the daemon: a daemon
// gone is an error (EPIPE), not a signal.
static int put_all(int fd, const char *p, size_t n, bool to_daemon) {
	while (n > 0) {
		ssize_t w = to_daemon ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w < 0 && !to_daemon && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			(void)poll(&pfd, 1, -1);
			continue;
		}
		if (w <= 0) {
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_all(int fd, const char *p, size_t n) { return put_all(fd, p, n, false); }

static int send_all(int fd, const char *p, size_t n) { return put_all(fd, p, n, true); }

struct head {
	int status;
	long clen; // -1: not given
	bool chunked;
};

// read_head reads an answer's status line and headers.
static int read_head(struct conn *c, struct head *h) {
	char *end;
	while (!(end = memmem(c->buf + c->off, c->len - c->off, "\r\n\r\n", 4))) {
		if (fill(c) <= 0) {
			return -1;
		}
	}
	char *s = c->buf + c->off;
	*end = 0;
	c->off = (size_t)(end + 4 - c->buf);
	if (strncmp(s, "HTTP/1.", 7) != 0 || !s[7] || s[8] != ' ' || !isdigit((unsigned char)s[9]) ||
	    !isdigit((unsigned char)s[10]) || !isdigit((unsigned char)s[11])) {
		return -1;
	}
	h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	h->clen = -1;
	h->chunked = false;
	for (char *line = strstr(s, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			char *p = line + 15;
			while (*p == ' ' || *p == '\t') {
				p++;
			}
			if (!isdigit((unsigned char)*p)) {
				return -1;
			}
			long v = 0;
			for (; isdigit((unsigned char)*p); p++) {
				if (v > BODY_MAX) {
					return -1;
				}
				v = v * 10 + (*p - '0');
			}
			h->clen = v;
		} else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
			char *eol = strstr(line, "\r\n");
			size_t n = eol ? (size_t)(eol - line) : strlen(line);
			h->chunked = memmem(line, n, "chunked", 7) != NULL;
		}
	}
	return 0;
}

// take appends n bytes of the stream to out.
static int take(struct conn *c, size_t n, struct buf *out) {
	while (n > 0) {
		if (c->off == c->len && fill(c) <= 0) {
			return -1;
		}
		size_t k = c->len - c->off < n ? c->len - c->off : n;
		if (out->n + k > BODY_MAX) {
			return -1;
		}
		b_put(out, c->buf + c->off, k);
		c->off += k;
		n -= k;
	}
	return out->bad ? -1 : 0;
}

// read_line reads one CRLF-terminated line (without it) into line.
static int read_line(struct conn *c, char *line, size_t max) {
	char *end;
	while (!(end = memmem(c->buf + c->off, c->len - c->off, "\r\n", 2))) {
		if (c->len - c->off > max || fill(c) <= 0) {
			return -1;
		}
	}
	size_t n = (size_t)(end - (c->buf + c->off));
	if (n >= max) {
		return -1;
	}
	memcpy(line, c->buf + c->off, n);
	line[n] = 0;
	c->off += n + 2;
	return 0;
}

// read_body reads the body of an answer whose head is h into out.
static int read_body(struct conn *c, const struct head *h, struct buf *out) {
	b_put(out, "", 0);
	if (h->status / 100 == 1 || h->status == 204 || h->status == 304) {
		return 0;
	}
	if (h->chunked) {
		char line[128];
		for (;;) {
			if (read_line(c, line, sizeof line) < 0) {
				return -1;
			}
			char *end;
			errno = 0;
			unsigned long size = strtoul(line, &end, 16);
			if (end == line || errno || (*end && *end != ';') || size > BODY_MAX) {
				return -1;
			}
			if (size == 0) {
				break;
			}
			if (take(c, size, out) < 0 || read_line(c, line, sizeof line) < 0 || line[0]) {
				return -1;
			}
		}
		do { // trailers, up to the empty line
			if (read_line(c, line, sizeof line) < 0) {
				return -1;
			}
		} while (line[0]);
		return 0;
	}
	if (h->clen >= 0) {
		return take(c, (size_t)h->clen, out);
	}
	for (;;) { // to the end of the connection
		if (c->off < c->len) {
			if (take(c, c->len - c->off, out) < 0) {
				return -1;
			}
		}
		int r = fill(c);
		if (r < 0) {
			return -1;
		}
		if (r == 0 && c->off == c->len) {
			return 0;
		}
	}
}

int berth_fastrun_read_answer(int fd, char *body, size_t body_max, long *body_len) {
	struct conn *c = calloc(1, sizeof *c);
	struct buf b = {0};
	struct head h;
	int ret = -1;
	if (c) {
		c->fd = fd;
		if (read_head(c, &h) == 0 && read_body(c, &h, &b) == 0) {
			ret = h.status;
			*body_len = (long)b.n;
			memcpy(body, b.p, b.n < body_max ? b.n : body_max);
		}
	}
	b_free(&b);
	free(c);
	return ret;
}

// demux copies the multiplexed attach stream (8-byte headers: stream, 3 zero bytes, size
// big-endian) to the output descriptors. It returns 0 at the end of the stream, -1 when the
// stream is malformed, -2 when an output cannot be written, -3 for a daemon error frame
// (stream 3; its text in sysmsg).
static int demux(struct conn *c, int out_fd, int err_fd, struct buf *sysmsg) {
	for (;;) {
		while (c->len - c->off < 8) {
			int r = fill(c);
			if (r < 0) {
				return -1;
			}
			if (r == 0) {
				return 0; // as docker's stdcopy: a stream cut short ends quietly
			}
		}
		const unsigned char *h = (const unsigned char *)c->buf + c->off;
		int kind = h[0];
		size_t size = (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
		c->off += 8;
		int fd;
		switch (kind) {
		case 0:
		case 1:
			fd = out_fd;
			break;
		case 2:
			fd = err_fd;
			break;
		case 3:
			return take(c, size, sysmsg) < 0 ? -1 : -3;
		default:
			return -1;
		}
		while (size > 0) {
			if (c->off == c->len) {
				int r = fill(c);
				if (r < 0) {
					return -1;
				}
				if (r == 0) {
					return 0;
				}
			}
			size_t k = c->len - c->off < size ? c->len - c->off : size;
			if (write_all(fd, c->buf + c->off, k) < 0) {
				return -2;
			}
			c->off += k;
			size -= k;
		}
	}
}

int berth_fastrun_demux(int in, int out_fd, int err_fd) {
	struct conn *c = calloc(1, sizeof *c);
	struct buf msg = {0};
	if (!c) {
		return -1;
	}
	c->fd = in;
	int r = demux(c, out_fd, err_fd, &msg);
	b_free(&msg);
	free(c);
	return r == 0 ? 0 : -1;
}

// ---- the run ----

struct run {
	const char *host; // as the user named it, for messages
	struct sockaddr_un addr;
};

static int dial(const struct run *r) {
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&r->addr, sizeof r->addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_request(int fd, const char *method_path, const char *extra, const char *body, size_t n) {
	struct buf b = {0};
	char len[32];
	b_puts(&b, method_path);
	b_puts(&b, " HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: berth-cli\r\n");
	b_puts(&b, extra);
	if (body) {
		b_puts(&b, "Content-Type: application/json\r\n");
	}
	char rev[24];
	int k = 0, j = 0;
	size_t v = n;
	do { // Content-Length, without stdio
		rev[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	while (k > 0) {
		len[j++] = rev[--k];
	}
	len[j] = 0;
	b_puts(&b, "Content-Length: ");
	b_puts(&b, len);
	b_puts(&b, "\r\n\r\n");
	if (body) {
		b_put(&b, body, n);
	}
	int ret = b.bad ? -1 : send_all(fd, b.p, b.n);
	b_free(&b);
	return ret;
}

// ---- --sig-proxy ----

// The signal handler's end of the self-pipe: a handler can reach nothing else.
static int proxy_wfd = -1;

static void on_signal(int sig) {
	int e = errno;
	unsigned char b = (unsigned char)sig;
	ssize_t r = write(proxy_wfd, &b, 1);
	(void)r;
	errno = e;
}

// proxy forwards the signals the client receives to the container, as docker's --sig-proxy
// (on by default, for a container without a TTY) and the Go client do: the client outlives a
// ^C and exits with the container.
struct proxy {
	const struct run *r;
	const char *id;
	int rfd; // the pipe's read end
};

// proxied reports whether the client forwards sig (the Go client's proxySignals lists the
// same): not the client's own (children, broken pipes, window size, SIGURG, the Go runtime's),
// not a fault of its own code, not glibc's reserved real-time signals.
static bool proxied(int sig) {
	switch (sig) {
	case SIGKILL:
	case SIGSTOP:
	case SIGCHLD:
	case SIGPIPE:
	case SIGWINCH:
	case SIGURG:
	case SIGSEGV:
	case SIGBUS:
	case SIGFPE:
	case SIGILL:
	case SIGTRAP:
	case SIGSYS:
	case 32:
	case 33:
		return false;
	}
	return sig > 0 && sig < 65;
}

static int proxy_start(struct proxy *px, const struct run *r, const char *id) {
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		return -1;
	}
	px->r = r;
	px->id = id;
	px->rfd = p[0];
	proxy_wfd = p[1];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigfillset(&sa.sa_mask);
	for (int sig = 1; sig < 65; sig++) {
		if (!proxied(sig)) {
			continue;
		}
		(void)sigaction(sig, &sa, NULL);
	}
	return 0;
}

static int post(struct conn *c, const char *path, struct head *h, struct buf *body);
static int dial(const struct run *r);

// proxy_forward sends sig to the container, on a connection of its own; errors are ignored,
// as the Go client ignores them (the container may have exited).
static void proxy_forward(struct proxy *px, int sig) {
	struct conn *k = calloc(1, sizeof *k);
	struct buf path = {0}, body = {0};
	char num[4] = {(char)('0' + sig / 10), (char)('0' + sig % 10), 0, 0};
	struct head h;
	if (k && (k->fd = dial(px->r)) >= 0) {
		b_puts(&path, API "/containers/");
		b_puts(&path, px->id);
		b_puts(&path, "/kill?signal=");
		b_puts(&path, sig < 10 ? num + 1 : num);
		if (!path.bad) {
			(void)post(k, path.p, &h, &body);
		}
		close(k->fd);
	}
	free(k);
	b_free(&path);
	b_free(&body);
}

// proxy_pending waits for fd to be readable, forwarding the signals that arrive meanwhile.
static void proxy_pending(struct proxy *px, int fd) {
	for (;;) {
		struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = px->rfd, .events = POLLIN}};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return;
		}
		if (fds[1].revents & POLLIN) {
			unsigned char sigs[64];
			ssize_t n = read(px->rfd, sigs, sizeof sigs);
			for (ssize_t i = 0; i < n; i++) {
				proxy_forward(px, sigs[i]);
			}
		}
		if (fds[0].revents) {
			return;
		}
	}
}

static void say(const char *a, const char *b, const char *c) {
	struct buf m = {0};
	b_puts(&m, a);
	b_puts(&m, b);
	b_puts(&m, c);
	b_puts(&m, "\n");
	if (!m.bad) {
		(void)write_all(2, m.p, m.n);
	}
	b_free(&m);
}

// daemon_error is the Go client's wording of an error answer.
static void daemon_error(const struct head *h, const struct buf *body, struct buf *out) {
	char *msg = malloc(body->n + 1);
	b_puts(out, "Error response from daemon: ");
	if (msg && berth_fastrun_json_string(body->p, body->n, "message", msg, body->n + 1) >= 0) {
		const char *s = msg, *e = msg + strlen(msg);
		while (*s && isspace((unsigned char)*s)) {
			s++;
		}
		while (e > s && isspace((unsigned char)e[-1])) {
			e--;
		}
		if (e > s) {
			b_put(out, s, (size_t)(e - s));
		} else {
			b_puts(out, "API returned an error but provided no error-message");
		}
	} else if (body->n > 0) {
		b_put(out, body->p, body->n);
	} else {
		char code[4] = {(char)('0' + h->status / 100 % 10), (char)('0' + h->status / 10 % 10), (char)('0' + h->status % 10), 0};
		b_puts(out, "request returned ");
		b_puts(out, code);
		b_puts(out, " for API route and version " API);
	}
	free(msg);
}

// start_exit is the Go CLI's exit code for a failed start (startError).
static int start_exit(const char *msg) {
	char *low = strdup(msg);
	int code = 125;
	if (low) {
		for (char *p = low; *p; p++) {
			*p = (char)tolower((unsigned char)*p);
		}
		if (strstr(low, "executable file not found") || strstr(low, "no such file or directory")) {
			code = 127;
		} else if (strstr(low, "permission denied")) {
			code = 126;
		}
		free(low);
	}
	return code;
}

// post sends a body-less POST on fd and reads the whole answer.
static int post(struct conn *c, const char *path, struct head *h, struct buf *body) {
	struct buf m = {0};
	b_puts(&m, "POST ");
	b_puts(&m, path);
	int r = m.bad ? -1 : send_request(c->fd, m.p, "", NULL, 0);
	b_free(&m);
	if (r < 0 || read_head(c, h) < 0 || read_body(c, h, body) < 0) {
		return -1;
	}
	return 0;
}

static void lost(const struct run *r) {
	say("Cannot connect to the berth daemon at ", r->host, ". Is the daemon running?");
	_exit(125);
}

// attached runs the rest of an attached run: wait and attach on connections of their own,
// then start, the output, and the exit status.
static void attached(const struct run *r, struct conn *a, const char *id, bool rm) {
	struct conn *w = calloc(1, sizeof *w), *s = calloc(1, sizeof *s);
	struct buf path = {0}, body = {0}, msg = {0};
	struct head wh, sh, h;
	if (!w || !s) {
		_exit(125);
	}
	if ((w->fd = dial(r)) < 0 || (s->fd = dial(r)) < 0) {
		lost(r);
	}
	b_puts(&path, "POST " API "/containers/");
	b_puts(&path, id);
	b_puts(&path, rm ? "/wait?condition=removed" : "/wait?condition=next-exit");
	if (path.bad || send_request(w->fd, path.p, "", NULL, 0) < 0) {
		lost(r);
	}
	path.n = 0;
	b_puts(&path, "POST " API "/containers/");
	b_puts(&path, id);
	b_puts(&path, "/attach?stderr=1&stdout=1&stream=1");
	if (path.bad || send_request(s->fd, path.p, "Connection: Upgrade\r\nContent-Type: text/plain\r\nUpgrade: tcp\r\n", NULL, 0) < 0) {
		lost(r);
	}
	// The wait's headers come before it blocks: once both are in, no exit can be missed and
	// no output lost.
	if (read_head(w, &wh) < 0 || read_head(s, &sh) < 0) {
		lost(r);
	}
	struct buf waiterr = {0};
	if (wh.status / 100 != 2) {
		if (read_body(w, &wh, &body) < 0) {
			lost(r);
		}
		daemon_error(&wh, &body, &waiterr);
	}
	if (sh.status != 101 && sh.status / 100 != 2) {
		body.n = 0;
		if (read_body(s, &sh, &body) < 0) {
			lost(r);
		}
		daemon_error(&sh, &body, &msg);
		say(msg.p ? msg.p : "", "", "");
		_exit(125);
	}
	struct proxy px;
	if (proxy_start(&px, r, id) == 0) {
		s->px = w->px = &px;
	}
	path.n = 0;
	b_puts(&path, API "/containers/");
	b_puts(&path, id);
	b_puts(&path, "/start");
	body.n = 0;
	if (path.bad || post(a, path.p, &h, &body) < 0) {
		lost(r);
	}
	if (h.status >= 400) {
		daemon_error(&h, &body, &msg);
		say(msg.p ? msg.p : "", "", "");
		_exit(start_exit(msg.p ? msg.p : ""));
	}
	struct buf sys = {0};
	int d = demux(s, 1, 2, &sys);
	if (d == -3) {
		say("error from daemon in stream: ", sys.p ? sys.p : "", "");
		_exit(1);
	}
	if (d == -2) {
		say("berth: writing the container's output: ", strerror(errno), "");
		_exit(1);
	}
	if (d == -1) {
		say("berth: unrecognized input header in the attach stream", "", "");
		_exit(1);
	}
	if (waiterr.n) {
		say(waiterr.p, "", "");
		_exit(125);
	}
	body.n = 0;
	if (read_body(w, &wh, &body) < 0) {
		say("berth: error waiting for the container: the daemon closed the connection", "", "");
		_exit(125);
	}
	char *m = malloc(body.n + 1);
	long code = 0;
	int ok = m ? berth_fastrun_wait_result(body.p, body.n, &code, m, body.n + 1) : -1;
	if (ok == 0 && m[0]) {
		say(m, "", "");
		_exit(125);
	}
	if (ok < 0) {
		say("berth: error waiting for the container: malformed answer", "", "");
		_exit(125);
	}
	_exit((int)(code & 0xff));
}

static void fastrun(int argc, char **argv, char **envp) {
	// The one global option handled here is the daemon's address (-H, --host), before the verb.
	const char *host = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-H") == 0 || strcmp(argv[i], "--host") == 0) && i + 1 < argc) {
			host = argv[++i];
		} else if (strncmp(argv[i], "--host=", 7) == 0) {
			host = argv[i] + 7;
		} else {
			return;
		}
	}
	if (i + 1 >= argc || strcmp(argv[i], "run") != 0) {
		return;
	}
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "docker-init") == 0) { // berth as a container's --init: tini's arguments
		return;
	}
	const char *off = env_get(envp, "BERTH_FASTRUN", 13);
	if (off && strcmp(off, "0") == 0) {
		return;
	}
	// A closed standard descriptor would be the number of the next connection to the daemon,
	// and the container's output would go to the daemon as requests. The Go runtime opens
	// /dev/null on such descriptors before the Go client runs.
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0) {
			return;
		}
	}
	struct run r;
	memset(&r, 0, sizeof r);
	r.host = host ? host : env_get(envp, "BERTH_HOST", 10);
	if (!r.host || (!*r.host && !host)) {
		r.host = DEFAULT_HOST;
	}
	if (strncmp(r.host, "unix://", 7) != 0 || strlen(r.host + 7) == 0 || strlen(r.host + 7) >= sizeof r.addr.sun_path ||
	    r.host[7] == '@') {
		return; // TCP (TLS), abstract sockets and odd addresses: the Go client
	}
	r.addr.sun_family = AF_UNIX;
	strcpy(r.addr.sun_path, r.host + 7);

	struct opts o;
	struct buf path = {0}, body = {0}, line = {0};
	int parsed = parse_args(argc - i - 1, argv + i + 1, &o);
	if (parsed == 0) {
		build_create(&o, envp, &path, &body);
	}
	bool detach = o.detach, rm = o.rm;
	free(o.env);
	free(o.labels);
	struct conn *a = calloc(1, sizeof *a);
	if (a) {
		a->fd = -1;
	}
	if (parsed < 0 || path.bad || body.bad || !a || (a->fd = dial(&r)) < 0) {
		goto decline;
	}
	b_puts(&line, "POST ");
	b_puts(&line, path.p);
	if (line.bad || send_request(a->fd, line.p, "", body.p, body.n) < 0) {
		goto decline; // nothing reached the daemon
	}
	struct head h;
	struct buf ans = {0};
	if (read_head(a, &h) < 0 || read_body(a, &h, &ans) < 0) {
		// The create may have happened: repeating it could make a second container.
		lost(&r);
	}
	if (h.status != 201) {
		b_free(&ans);
		goto decline; // the Go client repeats it and words the error
	}
	char id[128];
	if (berth_fastrun_json_string(ans.p, ans.n, "Id", id, sizeof id) <= 0 || strspn(id, "0123456789abcdef") != strlen(id)) {
		say("berth: malformed answer to create", "", "");
		_exit(125);
	}
	const char *warn = member(ans.p, ans.p + ans.n, "Warnings");
	if (warn && *warn == '[') {
		const char *p = ws(warn + 1, ans.p + ans.n), *e = ans.p + ans.n;
		char *w = malloc(ans.n + 1);
		while (w && p < e && *p == '"') {
			if (decode_string(p, e, w, ans.n + 1) < 0 || !(p = skip_string(p, e))) {
				break;
			}
			say("WARNING: ", w, "");
			p = ws(p, e);
			if (p < e && *p == ',') {
				p = ws(p + 1, e);
			}
		}
		free(w);
	}
	if (!detach) {
		attached(&r, a, id, rm);
	}
	path.n = 0;
	b_puts(&path, API "/containers/");
	b_puts(&path, id);
	b_puts(&path, "/start");
	ans.n = 0;
	if (path.bad || post(a, path.p, &h, &ans) < 0) {
		lost(&r);
	}
	if (h.status >= 400) {
		struct buf msg = {0};
		daemon_error(&h, &ans, &msg);
		say(msg.p ? msg.p : "", "", "");
		_exit(125);
	}
	size_t n = strlen(id);
	id[n] = '\n';
	_exit(write_all(1, id, n + 1) < 0 ? 1 : 0);

decline:
	if (a && a->fd >= 0) {
		close(a->fd);
	}
	free(a);
	b_free(&path);
	b_free(&body);
	b_free(&line);
}

// glibc passes main's arguments to constructors.
__attribute__((constructor)) static void berth_fastrun(int argc, char **argv, char **envp) {
	fastrun(argc, argv, envp);
}
