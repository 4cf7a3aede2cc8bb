// The shim's steady state, in C. `berth shim` sets a container up in Go, then re-executes its own
// binary with _BERTH_CSHIM in the environment; berth_cshim below, a constructor, finds it before
// the Go runtime starts and runs the whole steady state here: a poll loop that serves the shim's
// HTTP API on the inherited socket, writes the json-file log, fans output out to attached clients,
// reaps the container, records its exit and ends the process. The Go runtime never initializes,
// which keeps an idle shim at a few hundred KiB of private memory. Work that needs the runtime
// (exec, kill of every process, delete) is done by short-lived `berth shim-helper` children.
//
// It must never return into Go once it took over, never block on a client, and never let the
// marker variable reach a child.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cshim.h"

#define HEAD_MAX 8192                 // request line and headers
#define BODY_MAX (1u << 20)           // exec request body, as the Go server's LimitReader
#define READ_CHUNK 32768              // one read of container output
#define MAX_LOG_LINE 16384            // json-file line split, as Docker's
#define ATTACH_QUEUE_MAX (4u << 20)   // an attached client may lag this much, then is dropped
#define EXEC_QUEUE_HIGH (256u << 10)  // exec output is read only while its client keeps up
#define RESP_QUEUE_MAX (64u << 10)
#define MAX_CONNS 256
#define MAX_HELPERS 32
#define MAX_EXEC_RECORDS 256          // finished exec statuses kept, as maxExecRecords
#define MAX_EARLY 1024
#define ID_MAX 128
#define DRAIN_MS 2000                 // drainTimeout
#define LINGER_MS 5000                // serving after the exit for clients mid-call
#define HEAD_TIMEOUT_MS 10000         // ReadHeaderTimeout
#define START_HUP_MS 5000             // awaitFifo's bound after the init's byte
#define DELETE_MAX_MS 30000
// The runtime delete waits this long after the exit: a daemon that is up deletes the container
// itself (at once for --rm, before any restart), and then no helper has to start at all. The
// helper is for exits the daemon did not see.
#define DELETE_DEFER_MS 250

enum { ST_CREATED, ST_RUNNING, ST_EXITED };
enum { CS_HEAD, CS_BODY, CS_RESP, CS_WAIT, CS_ATTACH, CS_EXEC, CS_PENDING };
enum { H_EXEC = 1, H_KILL, H_DELETE };

struct qbuf {
	char *p;
	size_t off, len, cap;
};

struct exec;

struct conn {
	int fd;
	int st;
	int dead;
	int64_t deadline;
	char h[HEAD_MAX];  // request head; after a hijack, stdin bytes not yet written [hoff, hlen)
	size_t hlen, hoff;
	struct qbuf q;
	unsigned want_in : 1, want_out : 1, want_err : 1, in_eof : 1, fin : 1, start_wait : 1;
	// exec request being read
	int memfd;
	size_t body_left;
	char exid[ID_MAX + 1];
	unsigned ex_stdin : 1, ex_detach : 1, ex_tty : 1;
	struct exec *ex;  // CS_EXEC: the process streamed on this connection
};

struct exec {
	char id[ID_MAX + 1];
	int pid;
	int running;
	int code;
	int tty;
	int fd_out, fd_err, fd_in, master;  // -1 when closed
	int64_t done_at;                    // when it exited, for the drain bound; 0 while running
	struct conn *c;
	struct exec *next;
};

struct helper {
	int pid;  // 0: free slot
	int fd;   // our end of the answer socket; -1 once answered
	int kind;
	int reaped;
	struct conn *c;
	struct exec *ex;
};

struct stream {
	int fd;
	int id;  // 1 stdout, 2 stderr
	char *partial;
	size_t plen;
};

struct early {
	int pid, code;
};

static struct {
	int lfd, sigfd, stdin_fd, master, logfd;
	int ready;  // the launcher's pipe: "ok" once serving, or "error MSG"
	int tty, once;
	int initpid;
	char *id, *dir, *rr, *fifo, *oom;
	int state;
	struct timespec started, exited;
	int exit_code, oom_killed;
	int init_reaped;
	int64_t drain_deadline;
	int finalized;
	int64_t linger_deadline;
	int delete_pending;
	int64_t delete_deadline;
	int64_t delete_at; // when the deferred delete is due; 0 when none is scheduled
	unsigned long long log_lost;  // log entries that could not be written
	int64_t log_err_next;         // when the next "write log" message may go to shim.log
	struct stream st[2];
	int nstreams;
	// Start in progress: phase 1 waits for the init's byte, phase 2 for the fifo's hang-up.
	int start_phase, fifofd, pidfd;
	int64_t start_deadline;
	struct conn *conns[MAX_CONNS];
	int nconns;
	struct exec *execs, *execs_tail;
	int nexecs;
	struct early *early;
	int nearly, capearly;
	struct helper helpers[MAX_HELPERS];
	// early_out is the last line the init wrote before Start: after it reported ready it
	// applies rlimits, capabilities and seccomp, and a failure there is only on its stderr.
	char early_out[512];
	int sock_known;
	dev_t sock_dev;
	ino_t sock_ino;
	char sockpath[sizeof(((struct sockaddr_un *)0)->sun_path)];
} G;

// ---- small utilities ----

static int64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// lazy_log is shim.log for a spare shim, opened as stdout and stderr only when there is something
// to write: most shims never log, and every file made costs a container's start (a create on
// some filesystems is slow).
static char lazy_log[PATH_MAX];

static void ensure_log(void) {
	if (lazy_log[0] == 0) {
		return;
	}
	int fd = open(lazy_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	lazy_log[0] = 0;
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
}

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...) {
	ensure_log();
	char b[1024];
	int n = snprintf(b, sizeof b, "berth shim %s: ", G.id ? G.id : "?");
	if (n < 0 || (size_t)n >= sizeof b) {
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(b + n, sizeof b - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0) {
		return;
	}
	size_t len = (size_t)n + ((size_t)m < sizeof b - (size_t)n - 1 ? (size_t)m : sizeof b - (size_t)n - 2);
	b[len++] = '\n';
	ssize_t w;
	do {
		w = write(2, b, len);
	} while (w < 0 && errno == EINTR);
}

static void xclose(int *fd) {
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static int set_flags(int fd) {
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		return -1;
	}
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static size_t put_u64(char *out, uint64_t v) {
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++) {
		out[i] = tmp[n - 1 - i];
	}
	return n;
}

static size_t put_i64(char *out, int64_t v) {
	if (v < 0) {
		out[0] = '-';
		return 1 + put_u64(out + 1, (uint64_t)(-(v + 1)) + 1);
	}
	return put_u64(out, (uint64_t)v);
}

static size_t put_str(char *out, const char *s) {
	size_t n = strlen(s);
	memcpy(out, s, n);
	return n;
}

static void put2(char *o, unsigned v) {
	o[0] = (char)('0' + v / 10 % 10);
	o[1] = (char)('0' + v % 10);
}

// berth_cshim_time formats a time as Go's time.RFC3339Nano in UTC (no fraction when zero,
// trailing zeros trimmed). out needs 40 bytes.
size_t berth_cshim_time(char *out, int64_t sec, long nsec) {
	int64_t days = sec / 86400, rem = sec % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	// Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
	days += 719468;
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	unsigned doe = (unsigned)(days - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;
	y += (m <= 2);
	size_t n = 0;
	if (y < 0 || y > 9999) {
		y = y < 0 ? 0 : 9999;
	}
	put2(out, (unsigned)(y / 100));
	put2(out + 2, (unsigned)(y % 100));
	n = 4;
	out[n++] = '-';
	put2(out + n, m);
	n += 2;
	out[n++] = '-';
	put2(out + n, d);
	n += 2;
	out[n++] = 'T';
	put2(out + n, (unsigned)(rem / 3600));
	n += 2;
	out[n++] = ':';
	put2(out + n, (unsigned)(rem / 60 % 60));
	n += 2;
	out[n++] = ':';
	put2(out + n, (unsigned)(rem % 60));
	n += 2;
	if (nsec > 0 && nsec < 1000000000) {
		char f[9];
		long v = nsec;
		for (int i = 8; i >= 0; i--) {
			f[i] = (char)('0' + v % 10);
			v /= 10;
		}
		int last = 8;
		while (last > 0 && f[last] == '0') {
			last--;
		}
		out[n++] = '.';
		memcpy(out + n, f, (size_t)last + 1);
		n += (size_t)last + 1;
	}
	out[n++] = 'Z';
	return n;
}

// utf8_len returns the length of the valid UTF-8 sequence at s (n bytes left) as Go's
// utf8.DecodeRune accepts it, and 0 for an invalid or truncated one. *r receives the rune.
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *r) {
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) {
		need = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0) {
			lo = 0xA0;
		} else if (c == 0xED) {
			hi = 0x9F;
		}
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0) {
			lo = 0x90;
		} else if (c == 0xF4) {
			hi = 0x8F;
		}
	} else {
		return 0;
	}
	if (n < need || s[1] < lo || s[1] > hi) {
		return 0;
	}
	for (size_t i = 2; i < need; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF) {
			return 0;
		}
	}
	uint32_t v = c & (need == 2 ? 0x1F : need == 3 ? 0x0F : 0x07);
	for (size_t i = 1; i < need; i++) {
		v = v << 6 | (s[i] & 0x3F);
	}
	*r = v;
	return need;
}

// berth_cshim_json_str writes s as a JSON string the way Go's encoding/json does (HTML-safe
// escaping, \ufffd for invalid UTF-8, U+2028/9 escaped). out needs 6*n+2 bytes.
size_t berth_cshim_json_str(char *out, const unsigned char *s, size_t n) {
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	out[o++] = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
				out[o++] = (char)c;
				continue;
			}
			out[o++] = '\\';
			switch (c) {
			case '"':
			case '\\':
				out[o++] = (char)c;
				break;
			case '\b':
				out[o++] = 'b';
				break;
			case '\f':
				out[o++] = 'f';
				break;
			case '\n':
				out[o++] = 'n';
				break;
			case '\r':
				out[o++] = 'r';
				break;
			case '\t':
				out[o++] = 't';
				break;
			default:
				out[o++] = 'u';
				out[o++] = '0';
				out[o++] = '0';
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 0xF];
			}
			continue;
		}
		uint32_t r = 0;
		size_t l = utf8_len(s + i, n - i, &r);
		if (l == 0) {
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
			i++;
			continue;
		}
		if (r == 0x2028 || r == 0x2029) {
			memcpy(out + o, r == 0x2028 ? "\\u2028" : "\\u2029", 6);
			o += 6;
		} else {
			memcpy(out + o, s + i, l);
			o += l;
		}
		i += l;
	}
	out[o++] = '"';
	return o;
}

// berth_cshim_log_entry encodes one json-file entry, newline included, as LogWriter did. out needs
// berth_cshim_log_entry_max(n) bytes.
size_t berth_cshim_log_entry(char *out, const char *stream, const unsigned char *line, size_t n, int64_t sec, long nsec) {
	size_t o = put_str(out, "{\"log\":");
	o += berth_cshim_json_str(out + o, line, n);
	o += put_str(out + o, ",\"stream\":\"");
	o += put_str(out + o, stream);
	o += put_str(out + o, "\",\"time\":\"");
	o += berth_cshim_time(out + o, sec, nsec);
	o += put_str(out + o, "\"}\n");
	return o;
}

size_t berth_cshim_log_entry_max(size_t n) { return 6 * n + 128; }

// ---- queues ----

static void q_free(struct qbuf *q) {
	free(q->p);
	q->p = NULL;
	q->off = q->len = q->cap = 0;
}

// q_push appends to q, keeping it under limit. -1: over the limit or out of memory.
static int q_push(struct qbuf *q, const void *p, size_t n, size_t limit) {
	if (n == 0) {
		return 0;
	}
	if (q->len + n > limit) {
		return -1;
	}
	if (q->off + q->len + n > q->cap) {
		if (q->off > 0) {
			memmove(q->p, q->p + q->off, q->len);
			q->off = 0;
		}
		if (q->len + n > q->cap) {
			size_t nc = q->cap ? q->cap * 2 : 4096;
			while (nc < q->len + n) {
				nc *= 2;
			}
			char *np = realloc(q->p, nc);
			if (np == NULL) {
				return -1;
			}
			q->p = np;
			q->cap = nc;
		}
	}
	memcpy(q->p + q->off + q->len, p, n);
	q->len += n;
	return 0;
}

// ---- connections ----

static void conn_kill(struct conn *c);

// conn_flush writes what is queued; on a write error the connection is dropped.
static void conn_flush(struct conn *c) {
	while (c->q.len > 0 && !c->dead) {
		ssize_t w = send(c->fd, c->q.p + c->q.off, c->q.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				return;
			}
			conn_kill(c);
			return;
		}
		c->q.off += (size_t)w;
		c->q.len -= (size_t)w;
	}
	if (c->dead) {
		return;
	}
	q_free(&c->q);
	if (c->fin || c->st == CS_RESP) {
		if (c->st != CS_RESP) {
			shutdown(c->fd, SHUT_WR);
		}
		conn_kill(c);
	}
}

// conn_send writes at once what the socket takes and queues the rest, up to limit.
static int conn_send(struct conn *c, const void *p, size_t n, size_t limit) {
	if (c->dead) {
		return -1;
	}
	const char *b = p;
	while (c->q.len == 0 && n > 0) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				break;
			}
			conn_kill(c);
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	if (q_push(&c->q, b, n, limit) < 0) {
		conn_kill(c);
		return -1;
	}
	return 0;
}

static const char *status_text(int code) {
	switch (code) {
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Request Entity Too Large";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

// respond answers a request and closes the connection once the answer is written.
static void respond(struct conn *c, int code, const char *ctype, const char *body, size_t blen) {
	char h[256];
	size_t n = put_str(h, "HTTP/1.1 ");
	n += put_u64(h + n, (uint64_t)code);
	h[n++] = ' ';
	n += put_str(h + n, status_text(code));
	n += put_str(h + n, "\r\n");
	if (code != 204) {
		n += put_str(h + n, "Content-Type: ");
		n += put_str(h + n, ctype);
		n += put_str(h + n, "\r\nContent-Length: ");
		n += put_u64(h + n, blen);
		n += put_str(h + n, "\r\n");
		if (code >= 400) {
			n += put_str(h + n, "X-Content-Type-Options: nosniff\r\n");
		}
	}
	n += put_str(h + n, "Connection: close\r\n\r\n");
	c->st = CS_RESP;
	if (conn_send(c, h, n, RESP_QUEUE_MAX) == 0 && code != 204) {
		conn_send(c, body, blen, RESP_QUEUE_MAX);
	}
	if (!c->dead && c->q.len == 0) {
		conn_kill(c);
	}
}

static void respond_err(struct conn *c, int code, const char *msg) {
	char b[4200];
	size_t n = strlen(msg);
	if (n > sizeof b - 2) {
		n = sizeof b - 2;
	}
	memcpy(b, msg, n);
	b[n++] = '\n';
	respond(c, code, "text/plain; charset=utf-8", b, n);
}

static void respond_json(struct conn *c, const char *b, size_t n) {
	respond(c, 200, "application/json", b, n);
}

static void hijack_ok(struct conn *c) {
	static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n";
	conn_send(c, h, sizeof h - 1, ATTACH_QUEUE_MAX);
}

// ---- status documents ----

static size_t put_time_field(char *o, const char *name, const struct timespec *t) {
	size_t n = put_str(o, ",\"");
	n += put_str(o + n, name);
	n += put_str(o + n, "\":\"");
	n += berth_cshim_time(o + n, t->tv_sec, t->tv_nsec);
	o[n++] = '"';
	return n;
}

// status_json renders shim.Status; b needs 6*ID_MAX+512 bytes.
static size_t status_json(char *b) {
	static const char *names[] = {"created", "running", "exited"};
	size_t n = put_str(b, "{\"id\":");
	n += berth_cshim_json_str(b + n, (const unsigned char *)G.id, strlen(G.id));
	n += put_str(b + n, ",\"pid\":");
	n += put_i64(b + n, G.initpid);
	n += put_str(b + n, ",\"state\":\"");
	n += put_str(b + n, names[G.state]);
	b[n++] = '"';
	if (G.started.tv_sec || G.started.tv_nsec) {
		n += put_time_field(b + n, "startedAt", &G.started);
	}
	n += put_str(b + n, ",\"exitCode\":");
	n += put_i64(b + n, G.exit_code);
	if (G.exited.tv_sec || G.exited.tv_nsec) {
		n += put_time_field(b + n, "exitedAt", &G.exited);
	}
	n += put_str(b + n, ",\"oomKilled\":");
	n += put_str(b + n, G.oom_killed ? "true" : "false");
	b[n++] = '}';
	return n;
}

static size_t exec_json(char *b, const struct exec *e) {
	size_t n = put_str(b, "{\"id\":");
	n += berth_cshim_json_str(b + n, (const unsigned char *)e->id, strlen(e->id));
	n += put_str(b + n, ",\"pid\":");
	n += put_i64(b + n, e->pid);
	n += put_str(b + n, ",\"running\":");
	n += put_str(b + n, e->running ? "true" : "false");
	n += put_str(b + n, ",\"exitCode\":");
	n += put_i64(b + n, e->code);
	b[n++] = '}';
	return n;
}

static void respond_status(struct conn *c) {
	char b[6 * ID_MAX + 512];
	size_t n = status_json(b);
	b[n++] = '\n';
	respond_json(c, b, n);
}

// ---- container output and the log ----

static void log_write(const char *stream, const char *p, size_t n) {
	if (G.logfd < 0) {
		return;
	}
	size_t cap = berth_cshim_log_entry_max(n);
	char *b = malloc(cap);
	if (b == NULL) {
		logmsg("write log: out of memory");
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	size_t len = berth_cshim_log_entry(b, stream, (const unsigned char *)p, n, ts.tv_sec, ts.tv_nsec);
	// One write per entry, so that `logs -f` sees whole entries as they happen.
	size_t off = 0;
	int err = 0;
	while (off < len) {
		ssize_t w = write(G.logfd, b + off, len - off);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			err = errno;
			break;
		}
		off += (size_t)w;
	}
	free(b);
	if (err == 0) {
		return;
	}
	// A torn entry would run into the next one and spoil both: cut it off (the shim is the
	// file's only writer). The entry is lost, as Docker loses it.
	struct stat st;
	if (off > 0 && fstat(G.logfd, &st) == 0 && st.st_size >= (off_t)off && ftruncate(G.logfd, st.st_size - (off_t)off) < 0) {
		logmsg("write log: cut a partial entry: %s", strerror(errno));
	}
	// The container keeps writing while the disk is full: a message a minute, not one per
	// entry (shim.log is on the exec root, usually tmpfs).
	G.log_lost++;
	int64_t now = now_ms();
	if (now >= G.log_err_next) {
		logmsg("write log: %s (%llu entries lost so far)", strerror(err), G.log_lost);
		G.log_err_next = now + 60000;
	}
}

// log_stream splits a stream's bytes into entries: one per line, a line without newline cut at
// MAX_LOG_LINE, a partial line kept until its newline or the stream's end.
static void log_stream(struct stream *s, const char *p, size_t n) {
	const char *name = s->id == 2 ? "stderr" : "stdout";
	while (n > 0) {
		size_t room = MAX_LOG_LINE - s->plen;
		size_t look = n < room ? n : room;
		const char *nl = memchr(p, '\n', look);
		size_t take = nl ? (size_t)(nl - p) + 1 : look;
		if (s->plen == 0 && (nl || take == MAX_LOG_LINE)) {
			log_write(name, p, take);
		} else {
			if (s->partial == NULL && (s->partial = malloc(MAX_LOG_LINE)) == NULL) {
				logmsg("write log: out of memory");
				return;
			}
			memcpy(s->partial + s->plen, p, take);
			s->plen += take;
			if (nl || s->plen == MAX_LOG_LINE) {
				log_write(name, s->partial, s->plen);
				s->plen = 0;
			}
		}
		if (s->plen == 0 && s->partial) {
			free(s->partial);
			s->partial = NULL;
		}
		p += take;
		n -= take;
	}
}

static void log_flush(struct stream *s) {
	if (s->plen > 0) {
		log_write(s->id == 2 ? "stderr" : "stdout", s->partial, s->plen);
	}
	free(s->partial);
	s->partial = NULL;
	s->plen = 0;
}

static int frame(struct conn *c, int stream, const char *p, size_t n, size_t limit) {
	unsigned char h[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
	                      (unsigned char)(n >> 8), (unsigned char)n};
	if (conn_send(c, h, 8, limit) < 0) {
		return -1;
	}
	return conn_send(c, p, n, limit);
}

static void fanout(int stream, const char *p, size_t n) {
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = G.conns[i];
		if (c->dead || c->st != CS_ATTACH || c->fin) {
			continue;
		}
		if ((stream == 1 && !c->want_out) || (stream == 2 && !c->want_err)) {
			continue;
		}
		// A client that lags beyond the bound is dropped: the container never waits for it.
		if (G.tty) {
			conn_send(c, p, n, ATTACH_QUEUE_MAX);
		} else {
			frame(c, stream, p, n, ATTACH_QUEUE_MAX);
		}
	}
}

static void stream_eof(struct stream *s) {
	log_flush(s);
	if (s->fd == G.master) {
		s->fd = -1;  // the master stays open for resize and input
	} else {
		xclose(&s->fd);
	}
}

// keep_early_line keeps the last non-empty line of p in G.early_out.
static void keep_early_line(const char *p, size_t n) {
	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r')) {
		n--;
	}
	size_t start = n;
	while (start > 0 && p[start - 1] != '\n') {
		start--;
	}
	size_t len = n - start;
	if (len == 0) {
		return;
	}
	if (len >= sizeof G.early_out) {
		len = sizeof G.early_out - 1;
	}
	memcpy(G.early_out, p + start, len);
	G.early_out[len] = 0;
}

static void stream_read(struct stream *s) {
	char buf[READ_CHUNK];
	ssize_t n = read(s->fd, buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		return;
	}
	if (n <= 0) {
		// EIO is how a pty master reports that the slave side closed.
		stream_eof(s);
		return;
	}
	if (G.state == ST_CREATED) {
		keep_early_line(buf, (size_t)n);  // no user process has run yet: this is the init's
	}
	log_stream(s, buf, (size_t)n);
	fanout(s->id, buf, (size_t)n);
}

static int streams_open(void) {
	for (int i = 0; i < G.nstreams; i++) {
		if (G.st[i].fd >= 0) {
			return 1;
		}
	}
	return 0;
}

// ---- stdin ----

static void close_stdin(void) {
	if (G.stdin_fd >= 0 && G.stdin_fd != G.master) {
		close(G.stdin_fd);
	}
	G.stdin_fd = -1;
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = G.conns[i];
		if (c->st == CS_ATTACH) {
			c->hoff = c->hlen = 0;
		}
	}
}

// write_pending writes a connection's pending input to fd. 1: all written; 0: fd is full; -1:
// fd is gone (the data is dropped).
static int write_pending(struct conn *c, int fd) {
	while (c->hoff < c->hlen) {
		ssize_t w = write(fd, c->h + c->hoff, c->hlen - c->hoff);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN) {
				return 0;
			}
			c->hoff = c->hlen = 0;
			return -1;
		}
		c->hoff += (size_t)w;
	}
	c->hoff = c->hlen = 0;
	return 1;
}

// input_target is where a hijacked connection's input goes: the exec's stdin or pty, or the
// container's.
static int input_target(struct conn *c) {
	if (c->st == CS_EXEC) {
		if (c->ex == NULL) {
			return -1;
		}
		return c->ex->tty ? c->ex->master : c->ex->fd_in;
	}
	return c->want_in ? G.stdin_fd : -1;
}

static void input_ended(struct conn *c) {
	if (c->st == CS_EXEC) {
		if (c->ex && !c->ex->tty) {
			xclose(&c->ex->fd_in);
		}
	} else if (G.once && !G.tty && c->want_in) {
		close_stdin();
	}
}

static void push_input(struct conn *c) {
	int fd = input_target(c);
	if (fd < 0) {
		c->hoff = c->hlen = 0;
	} else if (write_pending(c, fd) < 0 && c->st == CS_EXEC && c->ex && !c->ex->tty) {
		xclose(&c->ex->fd_in);
	}
	if (c->in_eof && c->hoff == c->hlen) {
		input_ended(c);
	}
}

// hijacked_read takes a hijacked client's input while nothing of it is pending.
static void hijacked_read(struct conn *c) {
	ssize_t n = read(c->fd, c->h, sizeof c->h);
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		return;
	}
	c->hoff = 0;
	if (n <= 0) {
		c->hlen = 0;
		c->in_eof = 1;
		input_ended(c);
		return;
	}
	c->hlen = (size_t)n;
	push_input(c);
}

// ---- exec records ----

static struct exec *exec_find(const char *id) {
	struct exec *found = NULL;
	for (struct exec *e = G.execs; e; e = e->next) {
		if (strcmp(e->id, id) == 0) {
			found = e;  // the newest of a reused id, as the Go table's overwrite
		}
	}
	return found;
}

static void exec_close_fds(struct exec *e) {
	xclose(&e->fd_out);
	xclose(&e->fd_err);
	xclose(&e->fd_in);
	xclose(&e->master);
}

static void exec_trim(void) {
	int finished = 0;
	for (struct exec *e = G.execs; e; e = e->next) {
		finished += !e->running && e->c == NULL;
	}
	struct exec **pp = &G.execs, *prev = NULL;
	while (*pp && finished > MAX_EXEC_RECORDS) {
		struct exec *e = *pp;
		if (!e->running && e->c == NULL) {
			*pp = e->next;
			if (G.execs_tail == e) {
				G.execs_tail = prev;
			}
			exec_close_fds(e);
			free(e);
			finished--;
			continue;
		}
		prev = e;
		pp = &e->next;
	}
}

static void exec_finish(struct exec *e, int code) {
	if (!e->running) {
		return;
	}
	e->running = 0;
	e->code = code;
	e->done_at = now_ms();
	if (e->done_at == 0) {
		e->done_at = 1;
	}
}

static void exec_register(struct exec *e) {
	e->next = NULL;
	if (G.execs_tail) {
		G.execs_tail->next = e;
	} else {
		G.execs = e;
	}
	G.execs_tail = e;
	for (int i = 0; i < G.nearly; i++) {
		if (G.early[i].pid == e->pid) {
			int code = G.early[i].code;
			G.early[i] = G.early[--G.nearly];
			exec_finish(e, code);
			break;
		}
	}
	if (G.init_reaped) {
		exec_finish(e, 137);
	}
	exec_trim();
}

// exec_helpers_pending tells whether an exec helper has not answered yet: only then can a
// reaped process be an exec whose PID we do not know yet.
static int exec_helpers_pending(void) {
	for (int i = 0; i < MAX_HELPERS; i++) {
		if (G.helpers[i].pid && G.helpers[i].kind == H_EXEC && G.helpers[i].fd >= 0) {
			return 1;
		}
	}
	return 0;
}

static void exec_exited(int pid, int code) {
	for (struct exec *e = G.execs; e; e = e->next) {
		if (e->running && e->pid == pid) {
			exec_finish(e, code);
			return;
		}
	}
	// Reaped before the helper told us its PID (or not an exec at all). Kept only while an exec
	// is being started, and dropped once none is (see helper_read): the process of a failed
	// exec (killed by the runtime) or any other adopted child would otherwise stay here,
	// filling the table so that later exits are lost, or matching a later exec that reuses
	// the PID.
	if (!exec_helpers_pending()) {
		return;
	}
	if (G.nearly == G.capearly) {
		if (G.capearly >= MAX_EARLY) {
			return;
		}
		int nc = G.capearly ? G.capearly * 2 : 16;
		struct early *ne = realloc(G.early, (size_t)nc * sizeof *ne);
		if (ne == NULL) {
			return;
		}
		G.early = ne;
		G.capearly = nc;
	}
	G.early[G.nearly++] = (struct early){pid, code};
}

// exec_stream_end ends an exec's stream: EOF to its client once the output is written.
static void exec_stream_end(struct exec *e) {
	struct conn *c = e->c;
	exec_close_fds(e);
	e->c = NULL;
	if (c && !c->dead) {
		c->ex = NULL;
		c->fin = 1;
		conn_flush(c);
	}
}

static void exec_read(struct exec *e, int *fd, int stream) {
	char buf[READ_CHUNK];
	ssize_t n = read(*fd, buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		return;
	}
	if (n <= 0) {
		if (fd == &e->master) {
			// Keep the master for resize until the stream ends; stop reading it.
			e->tty = 2;
		} else {
			xclose(fd);
		}
		return;
	}
	struct conn *c = e->c;
	if (c == NULL) {
		return;
	}
	if (e->tty) {
		conn_send(c, buf, (size_t)n, SIZE_MAX);
	} else {
		frame(c, stream, buf, (size_t)n, SIZE_MAX);
	}
}

static int exec_output_open(const struct exec *e) {
	if (e->tty) {
		return e->tty == 1 && e->master >= 0;
	}
	return e->fd_out >= 0 || e->fd_err >= 0;
}

// ---- helpers (berth shim-helper) ----

// spawn_helper starts `berth shim-helper` with src[i] as its fd i (-1: /dev/null for 0-2, none
// above) and fd 3 the socket on which it answers with one message.
static struct helper *spawn_helper(int kind, char *const argv[], const int fds[6]) {
	ensure_log();  // the helper logs to our stderr
	struct helper *h = NULL;
	for (int i = 0; i < MAX_HELPERS; i++) {
		if (G.helpers[i].pid == 0) {
			h = &G.helpers[i];
			break;
		}
	}
	if (h == NULL) {
		errno = EAGAIN;
		return NULL;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		return NULL;
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		errno = e;
		return NULL;
	}
	int src[6];
	int nfd = 0;
	for (int i = 0; i < 6; i++) {
		src[i] = i == 3 ? sv[1] : fds[i] >= 0 ? fds[i] : i < 3 ? devnull : -1;
		if (src[i] >= 0) {
			nfd = i + 1;
		}
	}
	pid_t pid = fork();
	if (pid == 0) {
		// The child: only system calls until execve. Every source moves above the targets
		// first, so that no dup2 overwrites a source still to be placed.
		int tmp[6];
		for (int i = 0; i < nfd; i++) {
			tmp[i] = src[i] < 0 ? -1 : fcntl(src[i], F_DUPFD_CLOEXEC, 10);
			if (src[i] >= 0 && tmp[i] < 0) {
				_exit(127);
			}
		}
		for (int i = 0; i < nfd; i++) {
			if (tmp[i] >= 0 && dup2(tmp[i], i) < 0) {
				_exit(127);
			}
		}
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		extern char **environ;
		execve("/proc/self/exe", argv, environ);
		_exit(127);
	}
	int e = errno;
	close(sv[1]);
	close(devnull);
	if (pid < 0) {
		close(sv[0]);
		errno = e;
		return NULL;
	}
	memset(h, 0, sizeof *h);
	h->pid = pid;
	h->fd = sv[0];
	h->kind = kind;
	return h;
}

static void finish_start(int ok, const char *msg);

static void kill_all(struct conn *c, int sig) {
	char sigs[16];
	sigs[put_u64(sigs, (uint64_t)sig)] = 0;
	char *argv[] = {"berth", "shim-helper", "kill", "--root", G.rr, "--id", G.id, "--signal", sigs, NULL};
	const int fds[6] = {-1, -1, 2, -1, -1, -1};
	struct helper *h = spawn_helper(H_KILL, argv, fds);
	if (h == NULL) {
		char m[256];
		snprintf(m, sizeof m, "kill: start helper: %s", strerror(errno));
		respond_err(c, 500, m);
		return;
	}
	h->c = c;
	c->st = CS_PENDING;
}

static void start_delete(void) {
	char pids[24];
	pids[put_u64(pids, (uint64_t)G.initpid)] = 0;
	char *argv[] = {"berth", "shim-helper", "delete", "--root", G.rr, "--id", G.id, "--pid", pids, NULL};
	const int fds[6] = {-1, -1, 2, -1, -1, -1};
	struct helper *h = spawn_helper(H_DELETE, argv, fds);
	if (h == NULL) {
		logmsg("delete container: start helper: %s", strerror(errno));
		return;
	}
	G.delete_pending = 1;
	G.delete_deadline = now_ms() + DELETE_MAX_MS;
}

static void helper_answer(struct helper *h, const char *msg, int fd);

static void helper_read(struct helper *h) {
	char buf[4200];
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, sizeof buf - 1};
	struct msghdr m = {0};
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = ctl.b;
	m.msg_controllen = sizeof ctl.b;
	ssize_t n = recvmsg(h->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		return;
	}
	int fd = -1;
	if (n > 0) {
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				int *fds = (int *)CMSG_DATA(cm);
				for (size_t i = 0; i < nfds; i++) {
					if (fd < 0) {
						fd = fds[i];
					} else {
						close(fds[i]);
					}
				}
			}
		}
		buf[n] = 0;
	} else {
		snprintf(buf, sizeof buf, "error shim helper ended without an answer");
	}
	xclose(&h->fd);
	helper_answer(h, buf, fd);
	if (h->reaped) {
		h->pid = 0;
	}
	if (h->kind == H_EXEC && !exec_helpers_pending()) {
		G.nearly = 0;  // every started exec took its early exit, if any; the rest is not ours
	}
}

// ---- exec requests ----

static void exec_begin(struct conn *c) {
	if (G.state == ST_EXITED || G.init_reaped) {
		xclose(&c->memfd);
		respond_err(c, 409, "container is not running");
		return;
	}
	struct exec *e = calloc(1, sizeof *e);
	if (e == NULL) {
		xclose(&c->memfd);
		respond_err(c, 500, "out of memory");
		return;
	}
	e->fd_out = e->fd_err = e->fd_in = e->master = -1;
	e->running = 1;
	memcpy(e->id, c->exid, sizeof e->id);
	e->tty = c->ex_tty && !c->ex_detach;
	int child[3] = {-1, -1, -1};
	char err[256] = "";
	if (!c->ex_detach && !e->tty) {
		int po[2], pe[2], pi[2] = {-1, -1};
		if (pipe2(po, O_CLOEXEC) < 0) {
			snprintf(err, sizeof err, "stdout pipe: %s", strerror(errno));
		} else if (pipe2(pe, O_CLOEXEC) < 0) {
			snprintf(err, sizeof err, "stderr pipe: %s", strerror(errno));
			close(po[0]);
			close(po[1]);
		} else if (c->ex_stdin && pipe2(pi, O_CLOEXEC) < 0) {
			snprintf(err, sizeof err, "stdin pipe: %s", strerror(errno));
			close(po[0]);
			close(po[1]);
			close(pe[0]);
			close(pe[1]);
		} else {
			e->fd_out = po[0];
			e->fd_err = pe[0];
			e->fd_in = pi[1];
			child[0] = pi[0];
			child[1] = po[1];
			child[2] = pe[1];
		}
	}
	struct helper *h = NULL;
	if (err[0] == 0) {
		char sock[sizeof G.sockpath + 32] = "";
		char *argv[12] = {"berth", "shim-helper", "exec", "--root", G.rr, "--id", G.id};
		int a = 7;
		if (c->ex_detach) {
			argv[a++] = "--detach";
		}
		if (e->tty) {
			char shortid[13];
			size_t l = strlen(e->id);
			l = l > 12 ? 12 : l;
			memcpy(shortid, e->id, l);
			shortid[l] = 0;
			snprintf(sock, sizeof sock, "%s/e-%s.sock", G.dir, shortid);
			argv[a++] = "--console";
			argv[a++] = sock;
		}
		argv[a] = NULL;
		// Without a pipe for it, the exec's stdio is /dev/null (spawn_helper's default); fd 5,
		// our stderr (shim.log), takes the runtime's warnings.
		const int fds[6] = {child[0], child[1], child[2], -1, c->memfd, 2};
		h = spawn_helper(H_EXEC, argv, fds);
		if (h == NULL) {
			snprintf(err, sizeof err, "start helper: %s", strerror(errno));
		}
	}
	for (int i = 0; i < 3; i++) {
		xclose(&child[i]);
	}
	xclose(&c->memfd);
	if (h == NULL) {
		exec_close_fds(e);
		free(e);
		char m[300];
		snprintf(m, sizeof m, "exec failed: %s", err);
		respond_err(c, 500, m);
		return;
	}
	h->c = c;
	h->ex = e;
	c->st = CS_PENDING;
}

static void exec_answer(struct helper *h, const char *msg, int fd) {
	struct conn *c = h->c;
	struct exec *e = h->ex;
	int pid = 0;
	if (strncmp(msg, "ok ", 3) == 0) {
		char *end;
		long v = strtol(msg + 3, &end, 10);
		if (v > 0 && v < INT32_MAX) {
			pid = (int)v;
		}
	}
	if (pid == 0) {
		if (fd >= 0) {
			close(fd);
		}
		exec_close_fds(e);
		free(e);
		if (c) {
			const char *m = strncmp(msg, "error ", 6) == 0 ? msg + 6 : msg;
			char b[4300];
			snprintf(b, sizeof b, "exec failed: %s", m);
			respond_err(c, 500, b);
		}
		return;
	}
	e->pid = pid;
	if (e->tty) {
		e->master = fd;
		if (fd >= 0 && set_flags(fd) < 0) {
			logmsg("exec console: %s", strerror(errno));
		}
	} else if (fd >= 0) {
		close(fd);
	}
	if (e->fd_out >= 0) {
		set_flags(e->fd_out);
		set_flags(e->fd_err);
	}
	if (e->fd_in >= 0) {
		set_flags(e->fd_in);
	}
	exec_register(e);
	if (c == NULL || c->dead || c->ex_detach) {
		exec_close_fds(e);
		if (c && !c->dead) {
			char b[6 * ID_MAX + 128];
			size_t n = exec_json(b, e);
			b[n++] = '\n';
			respond_json(c, b, n);
		}
		return;
	}
	if (e->tty && e->master < 0) {
		exec_close_fds(e);
		respond_err(c, 500, "exec console: the runtime sent no pty master");
		return;
	}
	e->c = c;
	c->ex = e;
	c->st = CS_EXEC;
	hijack_ok(c);
	if (c->hlen > c->hoff) {
		push_input(c);
	}
}

static void helper_answer(struct helper *h, const char *msg, int fd) {
	switch (h->kind) {
	case H_EXEC:
		exec_answer(h, msg, fd);
		return;
	case H_KILL:
		if (fd >= 0) {
			close(fd);
		}
		if (h->c && !h->c->dead) {
			if (strcmp(msg, "ok") == 0) {
				respond(h->c, 204, "", "", 0);
			} else {
				respond_err(h->c, 500, strncmp(msg, "error ", 6) == 0 ? msg + 6 : msg);
			}
		}
		return;
	case H_DELETE:
		if (fd >= 0) {
			close(fd);
		}
		if (strcmp(msg, "ok") != 0) {
			logmsg("delete container from runtime: %s", strncmp(msg, "error ", 6) == 0 ? msg + 6 : msg);
		}
		G.delete_pending = 0;
		return;
	}
}

// ---- start ----

// init_exit_msg says that the init ended before Start, with its last words when it left any.
static const char *init_exit_msg(void) {
	static char m[sizeof G.early_out + 64];
	for (int i = 0; i < G.nstreams; i++) {
		if (G.st[i].fd >= 0) {
			stream_read(&G.st[i]);  // what it wrote last may not have been read yet
		}
	}
	if (G.early_out[0] == 0) {
		return "container init exited before start";
	}
	snprintf(m, sizeof m, "container init exited before start: %s", G.early_out);
	return m;
}

static void finish_start(int ok, const char *msg) {
	xclose(&G.fifofd);
	xclose(&G.pidfd);
	G.start_phase = 0;
	if (ok && G.state == ST_CREATED) {
		G.state = ST_RUNNING;
		clock_gettime(CLOCK_REALTIME, &G.started);
	}
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = G.conns[i];
		if (c->dead || !c->start_wait) {
			continue;
		}
		c->start_wait = 0;
		if (ok) {
			// The status saves the caller a /state round trip (an exit may show already).
			respond_status(c);
		} else {
			char m[600];
			snprintf(m, sizeof m, "start container: %s", msg);
			respond_err(c, 409, m);
		}
	}
}

// Hooks: the daemon never sets OCI hooks, and this path does not run poststart hooks.
static void begin_start(struct conn *c) {
	int never_started = G.started.tv_sec == 0 && G.started.tv_nsec == 0;
	if (never_started && (G.state == ST_EXITED || (G.state == ST_CREATED && G.init_reaped))) {
		char m[sizeof G.early_out + 128];
		snprintf(m, sizeof m, "start container: %s", init_exit_msg());
		respond_err(c, 409, m);
		return;
	}
	if (G.state != ST_CREATED || G.init_reaped) {
		static const char *names[] = {"created", "running", "exited"};
		char m[6 * ID_MAX + 64];
		snprintf(m, sizeof m, "container %s is %s, not created", G.id, G.init_reaped ? "exited" : names[G.state]);
		respond_err(c, 409, m);
		return;
	}
	c->st = CS_PENDING;
	c->start_wait = 1;
	if (G.start_phase) {
		return;  // joins the start in progress
	}
	// Watch the init before opening the fifo: once open, the init may run to completion.
	G.pidfd = (int)syscall(SYS_pidfd_open, G.initpid, 0);
	if (G.pidfd < 0 && errno != ENOSYS) {
		finish_start(0, init_exit_msg());
		return;
	}
	G.fifofd = open(G.fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (G.fifofd < 0) {
		char m[300];
		snprintf(m, sizeof m, "open exec fifo: %s", strerror(errno));
		finish_start(0, m);
		return;
	}
	G.start_phase = 1;
	G.start_deadline = 0;
}

// start_poll advances a start on fifo or pidfd events (or a timeout with no pidfd).
static void start_poll(short fifo_ev, short pid_ev) {
	char buf[16];
	if (G.start_phase == 1) {
		ssize_t n = read(G.fifofd, buf, sizeof buf);
		int exited = pid_ev != 0 || (G.pidfd < 0 && (G.init_reaped || kill(G.initpid, 0) < 0));
		if (n <= 0 && !exited) {
			if (n == 0 && (fifo_ev & POLLHUP)) {
				finish_start(0, "container init closed the exec fifo without starting");
			}
			return;
		}
		if (n <= 0) {
			finish_start(0, init_exit_msg());
			return;
		}
		if (unlink(G.fifo) < 0 && errno != ENOENT) {
			char m[300];
			snprintf(m, sizeof m, "remove exec fifo: %s", strerror(errno));
			finish_start(0, m);
			return;
		}
		G.start_phase = 2;
		G.start_deadline = now_ms() + START_HUP_MS;
	}
	// Phase 2: EOF once the init exec'd (its close-on-exec write end closed) or died.
	for (;;) {
		ssize_t n = read(G.fifofd, buf, sizeof buf);
		if (n > 0) {
			continue;
		}
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) || pid_ev || now_ms() >= G.start_deadline) {
			finish_start(1, NULL);
		}
		return;
	}
}

// ---- the exit ----

static int read_oom(void) {
	if (G.oom == NULL || G.oom[0] == 0) {
		return 0;
	}
	int fd = open(G.oom, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT) {
			logmsg("read %s: %s", G.oom, strerror(errno));
		}
		return 0;
	}
	char b[4096];
	size_t n = 0;
	while (n < sizeof b - 1) {
		ssize_t r = read(fd, b + n, sizeof b - 1 - n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			break;
		}
		n += (size_t)r;
	}
	close(fd);
	b[n] = 0;
	// As parseKeyedCount: a line of exactly two fields, "oom_kill N".
	for (char *line = b, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next) {
			*next++ = 0;
		}
		char key[32], val[32], extra[2];
		if (sscanf(line, "%31s %31s %1s", key, val, extra) == 2 && strcmp(key, "oom_kill") == 0) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(val, &end, 10);
			if (errno == 0 && *end == 0 && val[0] != '-') {
				return v > 0;
			}
		}
	}
	return 0;
}

static int write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

// finalize records the exit once the output drained: log closed, exit file renamed into place,
// clients told; then the file is made durable and the runtime's state deleted.
static void finalize(void) {
	G.finalized = 1;
	for (int i = 0; i < G.nstreams; i++) {
		if (G.st[i].fd >= 0) {
			logmsg("container output still open after exit; closing it");
			stream_eof(&G.st[i]);
		} else {
			log_flush(&G.st[i]);
		}
	}
	xclose(&G.logfd);
	G.oom_killed = read_oom();
	G.state = ST_EXITED;
	clock_gettime(CLOCK_REALTIME, &G.exited);
	close_stdin();
	if (G.start_phase) {
		// Phase 2 means the init's byte came: the start happened, the process then ended.
		finish_start(G.start_phase == 2, G.start_phase == 2 ? "" : init_exit_msg());
	}
	char b[6 * ID_MAX + 512];
	size_t n = status_json(b);
	char path[4200], tmp[4200];
	int dirfd = open(G.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof path, "%s/exit.json", G.dir);
	snprintf(tmp, sizeof tmp, "%s/.exit.json.tmpXXXXXX", G.dir);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		logmsg("write exit status: %s", strerror(errno));
	} else if (write_all(fd, b, n) < 0 || fchmod(fd, 0600) < 0 || rename(tmp, path) < 0) {
		logmsg("write exit status: %s", strerror(errno));
		close(fd);
		unlink(tmp);
		fd = -1;
	}
	// Attached streams end (after what they have queued), waiters get the status.
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = G.conns[i];
		if (c->dead) {
			continue;
		}
		if (c->st == CS_ATTACH) {
			c->fin = 1;
			conn_flush(c);
		} else if (c->st == CS_WAIT) {
			respond_status(c);
		}
	}
	if (fd >= 0) {
		if (fsync(fd) < 0) {
			logmsg("sync exit status: %s", strerror(errno));
		}
		close(fd);
	}
	if (dirfd >= 0) {
		if (fsync(dirfd) < 0) {
			logmsg("sync exit status: %s", strerror(errno));
		}
		close(dirfd);
	}
	G.linger_deadline = now_ms() + LINGER_MS;
	G.delete_at = now_ms() + DELETE_DEFER_MS;
}

static void fail_execs(void) {
	for (struct exec *e = G.execs; e; e = e->next) {
		exec_finish(e, 137);
	}
}

static int exit_code_of(int ws) {
	if (WIFEXITED(ws)) {
		return WEXITSTATUS(ws);
	}
	if (WIFSIGNALED(ws)) {
		return 128 + WTERMSIG(ws);
	}
	return 0;
}

static void reap(void) {
	for (;;) {
		int ws;
		pid_t pid = waitpid(-1, &ws, WNOHANG);
		if (pid < 0 && errno == EINTR) {
			continue;
		}
		if (pid <= 0) {
			break;
		}
		if (!WIFEXITED(ws) && !WIFSIGNALED(ws)) {
			continue;
		}
		if (pid == G.initpid && !G.init_reaped) {
			G.init_reaped = 1;
			G.exit_code = exit_code_of(ws);
			G.drain_deadline = now_ms() + DRAIN_MS;
			continue;
		}
		int helper = 0;
		for (int i = 0; i < MAX_HELPERS; i++) {
			struct helper *h = &G.helpers[i];
			if (h->pid == pid) {
				h->reaped = 1;
				if (h->fd < 0) {
					h->pid = 0;
				}
				helper = 1;
				break;
			}
		}
		if (!helper) {
			exec_exited(pid, exit_code_of(ws));
		}
	}
	if (G.init_reaped) {
		// The init's death ended the container; execs still running are gone with it.
		fail_execs();
	}
}

// ---- HTTP ----

static int hexval(char c) {
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

// query_get finds key in a query string (url.Values semantics: first value wins) and decodes
// it into out. 0 when absent or too long; out is then empty (callers parse it either way).
static int query_get(const char *q, const char *key, char *out, size_t cap) {
	size_t kl = strlen(key);
	if (cap == 0) {
		return 0;
	}
	out[0] = 0;
	while (q && *q) {
		const char *end = strchr(q, '&');
		size_t len = end ? (size_t)(end - q) : strlen(q);
		if (len >= kl && strncmp(q, key, kl) == 0 && (len == kl || q[kl] == '=')) {
			const char *v = len == kl ? q + len : q + kl + 1;
			size_t vl = (size_t)(q + len - v), o = 0;
			for (size_t i = 0; i < vl; i++) {
				if (o + 1 >= cap) {
					out[0] = 0;
					return 0;
				}
				char ch = v[i];
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%' && i + 2 < vl && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
					ch = (char)(hexval(v[i + 1]) << 4 | hexval(v[i + 2]));
					i += 2;
				}
				out[o++] = ch;
			}
			out[o] = 0;
			return 1;
		}
		q = end ? end + 1 : NULL;
	}
	return 0;
}

// parse_uint accepts what strconv.ParseUint(s, 10, bits) does, bounded by max.
static int parse_uint(const char *s, unsigned long max, unsigned long *v) {
	if (*s == 0) {
		return -1;
	}
	unsigned long x = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9') {
			return -1;
		}
		x = x * 10 + (unsigned long)(*s - '0');
		if (x > max) {
			return -1;
		}
	}
	*v = x;
	return 0;
}

static int valid_id(const char *s) {
	size_t n = strlen(s);
	if (n == 0 || n > ID_MAX) {
		return 0;
	}
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '+')) {
			return 0;
		}
	}
	return 1;
}

static int resize_fd(int fd, const char *q, struct conn *c, const char *notty) {
	char hs[16], ws[16];
	unsigned long h, w;
	query_get(q, "h", hs, sizeof hs);
	query_get(q, "w", ws, sizeof ws);
	if (parse_uint(hs, 65535, &h) < 0 || parse_uint(ws, 65535, &w) < 0) {
		respond_err(c, 400, "invalid h or w");
		return -1;
	}
	if (fd < 0) {
		respond_err(c, 400, notty);
		return -1;
	}
	struct winsize wsz = {.ws_row = (unsigned short)h, .ws_col = (unsigned short)w};
	if (ioctl(fd, TIOCSWINSZ, &wsz) < 0) {
		respond_err(c, 400, strerror(errno));
		return -1;
	}
	respond(c, 204, "", "", 0);
	return 0;
}

static void begin_attach(struct conn *c, const char *q) {
	char v[8];
	query_get(q, "stdin", v, sizeof v);
	c->want_in = strcmp(v, "1") == 0;
	query_get(q, "stdout", v, sizeof v);
	c->want_out = strcmp(v, "1") == 0;
	query_get(q, "stderr", v, sizeof v);
	c->want_err = strcmp(v, "1") == 0;
	c->st = CS_ATTACH;
	hijack_ok(c);
	if (G.finalized) {
		// Output already ended: EOF at once, as the closed broadcaster did.
		c->fin = 1;
		conn_flush(c);
	}
}

static void route(struct conn *c, const char *method, const char *path, const char *q, size_t clen) {
	int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
	struct {
		const char *path;
		int post;
	} routes[] = {{"/state", 0}, {"/wait", 0}, {"/start", 1}, {"/kill", 1}, {"/resize", 1}, {"/attach", 1}, {"/exec", 1}, {"/exec/state", 0}, {"/exec/resize", 1}};
	int r = -1;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (strcmp(path, routes[i].path) == 0) {
			r = (int)i;
			break;
		}
	}
	if (r < 0) {
		respond_err(c, 404, "404 page not found");
		return;
	}
	if (routes[r].post ? !post : !get) {
		respond_err(c, 405, "Method Not Allowed");
		return;
	}
	switch (r) {
	case 0:
		respond_status(c);
		return;
	case 1:
		if (G.finalized) {
			respond_status(c);
		} else {
			c->st = CS_WAIT;
		}
		return;
	case 2:
		begin_start(c);
		return;
	case 3: {
		char s[16], all[8];
		unsigned long sig;
		query_get(q, "signal", s, sizeof s);
		query_get(q, "all", all, sizeof all);
		const char *sp = s[0] == '+' ? s + 1 : s;
		if (parse_uint(sp, 64, &sig) < 0 || sig == 0) {
			respond_err(c, 400, "invalid signal");
			return;
		}
		if (G.finalized || G.init_reaped) {
			respond(c, 204, "", "", 0);
			return;
		}
		if (strcmp(all, "1") == 0) {
			kill_all(c, (int)sig);
			return;
		}
		if (kill(G.initpid, (int)sig) < 0 && errno != ESRCH) {
			char m[128];
			snprintf(m, sizeof m, "kill container init: %s", strerror(errno));
			respond_err(c, 500, m);
			return;
		}
		respond(c, 204, "", "", 0);
		return;
	}
	case 4:
		resize_fd(G.master, q, c, "container has no TTY");
		return;
	case 5:
		begin_attach(c, q);
		return;
	case 6: {
		char v[8];
		if (!query_get(q, "id", c->exid, sizeof c->exid) || !valid_id(c->exid) || clen == 0 || clen > BODY_MAX) {
			respond_err(c, 400, "invalid exec request");
			return;
		}
		query_get(q, "stdin", v, sizeof v);
		c->ex_stdin = strcmp(v, "1") == 0;
		query_get(q, "detach", v, sizeof v);
		c->ex_detach = strcmp(v, "1") == 0;
		query_get(q, "tty", v, sizeof v);
		c->ex_tty = strcmp(v, "1") == 0;
		c->memfd = memfd_create("berth-exec", MFD_CLOEXEC);
		if (c->memfd < 0) {
			char m[128];
			snprintf(m, sizeof m, "exec failed: %s", strerror(errno));
			respond_err(c, 500, m);
			return;
		}
		c->body_left = clen;
		c->st = CS_BODY;
		return;
	}
	case 7: {
		char id[ID_MAX + 1];
		query_get(q, "id", id, sizeof id);
		struct exec *e = exec_find(id);
		if (e == NULL) {
			respond_err(c, 404, "no such exec");
			return;
		}
		char b[6 * ID_MAX + 128];
		size_t n = exec_json(b, e);
		b[n++] = '\n';
		respond_json(c, b, n);
		return;
	}
	case 8: {
		char id[ID_MAX + 1];
		query_get(q, "id", id, sizeof id);
		struct exec *e = exec_find(id);
		resize_fd(e && e->c ? e->master : -1, q, c, "exec has no TTY");
		return;
	}
	}
}

// body_feed moves request body bytes from the head buffer (or the socket) into the exec's memfd;
// what follows the body is the exec's first input.
static void body_feed(struct conn *c, const char *p, size_t n, size_t *used) {
	size_t take = n < c->body_left ? n : c->body_left;
	if (take > 0 && write_all(c->memfd, p, take) < 0) {
		xclose(&c->memfd);
		respond_err(c, 500, "exec failed: buffer request");
		*used = n;
		return;
	}
	c->body_left -= take;
	*used = take;
	if (c->body_left == 0) {
		if (lseek(c->memfd, 0, SEEK_SET) < 0) {
			xclose(&c->memfd);
			respond_err(c, 500, "exec failed: buffer request");
			return;
		}
		exec_begin(c);
	}
}

// handle_head parses a complete request head in c->h[0:end].
static void handle_head(struct conn *c, size_t end) {
	c->h[end - 2] = 0;  // ends the last header line
	char *line = c->h;
	char *eol = strstr(line, "\r\n");
	if (eol == NULL) {
		respond_err(c, 400, "bad request");
		return;
	}
	*eol = 0;
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		respond_err(c, 400, "bad request");
		return;
	}
	*sp1 = 0;
	*sp2 = 0;
	char *target = sp1 + 1;
	size_t clen = 0;
	for (char *hl = eol + 2; hl && *hl;) {
		char *next = strstr(hl, "\r\n");
		if (next) {
			*next = 0;
			next += 2;
		}
		char *colon = strchr(hl, ':');
		if (colon) {
			*colon = 0;
			char *v = colon + 1;
			while (*v == ' ' || *v == '\t') {
				v++;
			}
			if (strcasecmp(hl, "Content-Length") == 0) {
				unsigned long n;
				if (parse_uint(v, 1ul << 30, &n) < 0) {
					respond_err(c, 400, "bad Content-Length");
					return;
				}
				clen = n;
			} else if (strcasecmp(hl, "Transfer-Encoding") == 0 && strcasecmp(v, "identity") != 0) {
				respond_err(c, 501, "unsupported transfer encoding");
				return;
			}
		}
		hl = next;
	}
	char *q = strchr(target, '?');
	if (q) {
		*q++ = 0;
	}
	// The rest of the buffer is the body and, for a hijack, the first input.
	size_t rest = c->hlen - end;
	char extra[HEAD_MAX];
	memcpy(extra, c->h + end, rest);
	route(c, line, target, q, clen);
	if (c->dead || c->st == CS_RESP) {
		return;
	}
	size_t used = 0;
	if (c->st == CS_BODY) {
		body_feed(c, extra, rest, &used);
		if (c->dead || c->st == CS_RESP) {
			return;
		}
	} else if (c->st == CS_ATTACH || c->st == CS_PENDING) {
		used = c->st == CS_ATTACH ? 0 : (clen < rest ? clen : rest);
	} else {
		used = rest;  // the body of a request that takes none
	}
	memcpy(c->h, extra + used, rest - used);
	c->hoff = 0;
	c->hlen = rest - used;
	if (c->st == CS_ATTACH && c->hlen > 0) {
		push_input(c);
	}
}

static void conn_read(struct conn *c) {
	if (c->st == CS_BODY) {
		char buf[8192];
		ssize_t n = read(c->fd, buf, sizeof buf);
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			return;
		}
		if (n <= 0) {
			conn_kill(c);
			return;
		}
		size_t used = 0;
		body_feed(c, buf, (size_t)n, &used);
		if (!c->dead && c->st != CS_RESP && used < (size_t)n) {
			memcpy(c->h, buf + used, (size_t)n - used);
			c->hoff = 0;
			c->hlen = (size_t)n - used;
		}
		return;
	}
	if (c->st == CS_ATTACH || c->st == CS_EXEC) {
		hijacked_read(c);
		return;
	}
	if (c->st == CS_WAIT) {
		char buf[512];
		ssize_t n = read(c->fd, buf, sizeof buf);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
			conn_kill(c);  // the waiter went away
		}
		return;
	}
	// CS_HEAD
	ssize_t n = read(c->fd, c->h + c->hlen, sizeof c->h - c->hlen);
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		return;
	}
	if (n <= 0) {
		conn_kill(c);
		return;
	}
	size_t from = c->hlen >= 3 ? c->hlen - 3 : 0;
	c->hlen += (size_t)n;
	char *end = memmem(c->h + from, c->hlen - from, "\r\n\r\n", 4);
	if (end) {
		handle_head(c, (size_t)(end - c->h) + 4);
	} else if (c->hlen == sizeof c->h) {
		respond_err(c, 431, "request header too large");
	}
}

static void conn_kill(struct conn *c) {
	if (c->dead) {
		return;
	}
	c->dead = 1;
	xclose(&c->fd);
	xclose(&c->memfd);
	q_free(&c->q);
	if (c->st == CS_ATTACH) {
		// A client dropped (it lagged, or its socket failed) ended its attach as much as one
		// that closed its input: with stdin-once the container's stdin closes either way.
		c->hoff = c->hlen = 0;
		input_ended(c);
	}
	if (c->ex) {
		exec_close_fds(c->ex);
		c->ex->c = NULL;
		c->ex = NULL;
	}
	for (int i = 0; i < MAX_HELPERS; i++) {
		if (G.helpers[i].pid && G.helpers[i].c == c) {
			G.helpers[i].c = NULL;
		}
	}
}

static void conns_gc(void) {
	int j = 0;
	for (int i = 0; i < G.nconns; i++) {
		if (G.conns[i]->dead) {
			free(G.conns[i]);
		} else {
			G.conns[j++] = G.conns[i];
		}
	}
	G.nconns = j;
}

static void accept_conns(void) {
	for (;;) {
		int fd = accept4(G.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED) {
				continue;
			}
			return;
		}
		struct conn *c = NULL;
		if (G.nconns < MAX_CONNS) {
			c = malloc(sizeof *c);
		}
		if (c == NULL) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, h));
		memset(&c->hlen, 0, sizeof *c - offsetof(struct conn, hlen));
		c->fd = fd;
		c->memfd = -1;
		c->st = CS_HEAD;
		c->deadline = now_ms() + HEAD_TIMEOUT_MS;
		G.conns[G.nconns++] = c;
	}
}

// ---- setup and the loop ----

static void unlink_socket(void) {
	struct stat st;
	// Only our own socket: a restarted container's new shim may already listen at the path.
	if (G.sock_known && stat(G.sockpath, &st) == 0 && st.st_dev == G.sock_dev && st.st_ino == G.sock_ino) {
		unlink(G.sockpath);
	}
}

static void die(const char *what) {
	int e = errno;
	logmsg("%s: %s", what, strerror(e));
	if (G.ready > 0) {
		char m[256];
		int n = snprintf(m, sizeof m, "error shim: %s: %s\n", what, strerror(e));
		if (n > 0) {
			write_all(G.ready, m, (size_t)n < sizeof m ? (size_t)n : sizeof m - 1);
		}
	}
	_exit(1);
}

static char *decode_value(const char *v, size_t n) {
	char *o = malloc(n + 1);
	if (o == NULL) {
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '%' && i + 2 < n && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
			o[k++] = (char)(hexval(v[i + 1]) << 4 | hexval(v[i + 2]));
			i += 2;
		} else {
			o[k++] = v[i];
		}
	}
	o[k] = 0;
	return o;
}

static int adopt(const int fds[5]);

static int parse_config(const char *s) {
	int fds[5] = {-1, -1, -1, -1, -1};  // ls, out, err, in, log
	G.master = -1;
	G.initpid = 0;
	for (const char *p = s; p && *p;) {
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq) {
			size_t kl = (size_t)(eq - p);
			char *v = decode_value(eq + 1, len - kl - 1);
			if (v == NULL) {
				return -1;
			}
			char key[16] = "";
			if (kl < sizeof key) {
				memcpy(key, p, kl);
			}
			long num = strtol(v, NULL, 10);
			int keep = 0;
			if (!strcmp(key, "ls")) {
				fds[0] = (int)num;
			} else if (!strcmp(key, "out")) {
				fds[1] = (int)num;
			} else if (!strcmp(key, "err")) {
				fds[2] = (int)num;
			} else if (!strcmp(key, "in")) {
				fds[3] = (int)num;
			} else if (!strcmp(key, "log")) {
				fds[4] = (int)num;
			} else if (!strcmp(key, "pty")) {
				G.master = (int)num;
			} else if (!strcmp(key, "ready")) {
				G.ready = (int)num;
			} else if (!strcmp(key, "pid")) {
				G.initpid = (int)num;
			} else if (!strcmp(key, "tty")) {
				G.tty = num == 1;
			} else if (!strcmp(key, "once")) {
				G.once = num == 1;
			} else if (!strcmp(key, "id")) {
				G.id = v, keep = 1;
			} else if (!strcmp(key, "dir")) {
				G.dir = v, keep = 1;
			} else if (!strcmp(key, "rr")) {
				G.rr = v, keep = 1;
			} else if (!strcmp(key, "fifo")) {
				G.fifo = v, keep = 1;
			} else if (!strcmp(key, "oom")) {
				G.oom = v, keep = 1;
			}
			if (!keep) {
				free(v);
			}
		}
		p = end ? end + 1 : NULL;
	}
	return adopt(fds);
}

// adopt takes the shim's descriptors (ls, out, err, in, log; -1 when absent) once G's other
// fields are set, and checks the whole configuration.
static int adopt(const int fds[5]) {
	G.lfd = fds[0];
	G.st[0] = (struct stream){fds[1], 1, NULL, 0};
	G.st[1] = (struct stream){fds[2], 2, NULL, 0};
	G.stdin_fd = fds[3];
	G.logfd = fds[4];
	if (G.tty) {
		G.st[0].fd = G.master;
		G.st[1].fd = -1;
		G.stdin_fd = G.master;
		G.nstreams = 1;
	} else {
		G.nstreams = 2;
	}
	if (G.lfd < 0 || G.initpid <= 0 || !G.id || !valid_id(G.id) || !G.dir || !G.rr || !G.fifo || (G.tty && G.master < 0)) {
		errno = EINVAL;
		return -1;
	}
	int all[] = {G.lfd, G.st[0].fd, G.st[1].fd, G.stdin_fd, G.logfd, G.master};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		if (all[i] >= 0 && set_flags(all[i]) < 0) {
			return -1;
		}
	}
	if (G.logfd >= 0) {
		// The log is written with blocking writes: it is a regular file.
		int fl = fcntl(G.logfd, F_GETFL);
		if (fl >= 0) {
			fcntl(G.logfd, F_SETFL, fl & ~O_NONBLOCK);
		}
	}
	return 0;
}

enum { K_LISTEN = 1, K_SIG, K_STREAM, K_STDIN, K_CONN, K_EXOUT, K_EXERR, K_EXMASTER, K_EXIN, K_HELPER, K_FIFO, K_PIDFD };

struct tag {
	int kind;
	void *p;
};

static void handle_signals(int *term) {
	struct signalfd_siginfo si;
	for (;;) {
		ssize_t n = read(G.sigfd, &si, sizeof si);
		if (n != (ssize_t)sizeof si) {
			break;
		}
		if (si.ssi_signo == SIGTERM) {
			*term = 1;
		}
	}
	reap();
}

static int conn_pending_input(void) {
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = G.conns[i];
		if (!c->dead && c->st == CS_ATTACH && c->hoff < c->hlen) {
			return 1;
		}
	}
	return 0;
}

static void loop(void) {
	enum { MAXP = 16 + MAX_CONNS * 5 + MAX_HELPERS };
	struct pollfd *pf = malloc(MAXP * sizeof *pf);
	struct tag *tags = malloc(MAXP * sizeof *tags);
	if (pf == NULL || tags == NULL) {
		die("allocate poll set");
	}
	int term = 0;
	for (;;) {
		int64_t now = now_ms();
		// Deadlines.
		if (G.init_reaped && !G.finalized && (!streams_open() || now >= G.drain_deadline)) {
			finalize();
		}
		if (G.start_phase == 2 && now >= G.start_deadline) {
			start_poll(0, 0);
		}
		for (int i = 0; i < G.nconns; i++) {
			struct conn *c = G.conns[i];
			if (!c->dead && (c->st == CS_HEAD || c->st == CS_BODY) && now >= c->deadline) {
				conn_kill(c);
			}
		}
		for (struct exec *e = G.execs; e; e = e->next) {
			if (e->c && !e->running && (!exec_output_open(e) || now >= e->done_at + DRAIN_MS)) {
				exec_stream_end(e);
			}
		}
		conns_gc();
		exec_trim();
		if (G.finalized && G.delete_at != 0 && now >= G.delete_at) {
			G.delete_at = 0;
			char sp[4400];
			snprintf(sp, sizeof sp, "%s/%s", G.rr, G.id);
			// Gone: the daemon deleted it (or nothing was left to delete).
			if (access(sp, F_OK) == 0) {
				start_delete();
			}
		}
		if (G.finalized) {
			int helpers = 0;
			for (int i = 0; i < MAX_HELPERS; i++) {
				helpers += G.helpers[i].pid != 0 && G.helpers[i].kind != H_DELETE;
			}
			int delete_done = G.delete_at == 0 && (!G.delete_pending || now >= G.delete_deadline);
			if (delete_done && ((G.nconns == 0 && helpers == 0) || now >= G.linger_deadline)) {
				break;
			}
		}
		if (term) {
			if (G.init_reaped && !G.finalized) {
				// The container already exited (its output was draining): record the exit
				// before leaving, or it is lost.
				finalize();
			}
			break;
		}
		// The poll set.
		int n = 0;
		int64_t next = now + 60000;
#define ADD(fd_, ev_, kind_, p_)                                         \
	do {                                                                 \
		pf[n] = (struct pollfd){.fd = (fd_), .events = (short)(ev_)};    \
		tags[n] = (struct tag){(kind_), (p_)};                           \
		n++;                                                             \
	} while (0)
		ADD(G.sigfd, POLLIN, K_SIG, NULL);
		ADD(G.lfd, POLLIN, K_LISTEN, NULL);
		for (int i = 0; i < G.nstreams; i++) {
			if (G.st[i].fd >= 0) {
				ADD(G.st[i].fd, POLLIN, K_STREAM, &G.st[i]);
			}
		}
		if (G.stdin_fd >= 0 && conn_pending_input()) {
			ADD(G.stdin_fd, POLLOUT, K_STDIN, NULL);
		}
		if (G.start_phase) {
			ADD(G.fifofd, POLLIN, K_FIFO, NULL);
			if (G.pidfd >= 0) {
				ADD(G.pidfd, POLLIN, K_PIDFD, NULL);
			} else if (now + 2 < next) {
				next = now + 2;
			}
			if (G.start_phase == 2 && G.start_deadline < next) {
				next = G.start_deadline;
			}
		}
		for (int i = 0; i < MAX_HELPERS; i++) {
			if (G.helpers[i].pid && G.helpers[i].fd >= 0) {
				ADD(G.helpers[i].fd, POLLIN, K_HELPER, &G.helpers[i]);
			}
		}
		for (int i = 0; i < G.nconns && n < MAXP - 5; i++) {
			struct conn *c = G.conns[i];
			short ev = 0;
			int reading = c->st == CS_HEAD || c->st == CS_BODY || c->st == CS_WAIT ||
			              ((c->st == CS_ATTACH || c->st == CS_EXEC) && !c->in_eof && c->hoff == c->hlen);
			if (reading) {
				ev |= POLLIN;
			}
			if (c->q.len > 0) {
				ev |= POLLOUT;
			}
			if (ev) {
				ADD(c->fd, ev, K_CONN, c);
			}
			if (c->st == CS_HEAD || c->st == CS_BODY) {
				if (c->deadline < next) {
					next = c->deadline;
				}
			}
			struct exec *e = c->ex;
			if (c->st == CS_EXEC && e) {
				int room = c->q.len < EXEC_QUEUE_HIGH;
				if (room && e->tty == 1 && e->master >= 0) {
					ADD(e->master, POLLIN, K_EXMASTER, e);
				}
				if (room && !e->tty && e->fd_out >= 0) {
					ADD(e->fd_out, POLLIN, K_EXOUT, e);
				}
				if (room && !e->tty && e->fd_err >= 0) {
					ADD(e->fd_err, POLLIN, K_EXERR, e);
				}
				int in = e->tty ? e->master : e->fd_in;
				if (in >= 0 && c->hoff < c->hlen) {
					ADD(in, POLLOUT, K_EXIN, c);
				}
				if (!e->running && e->done_at + DRAIN_MS < next) {
					next = e->done_at + DRAIN_MS;
				}
			}
		}
		if (G.init_reaped && !G.finalized && G.drain_deadline < next) {
			next = G.drain_deadline;
		}
		if (G.finalized && G.delete_at != 0 && G.delete_at < next) {
			next = G.delete_at;
		}
		if (G.finalized) {
			int64_t d = G.delete_pending ? G.delete_deadline : G.linger_deadline;
			if (d < next) {
				next = d;
			}
			if (G.linger_deadline < next) {
				next = G.linger_deadline;
			}
		}
#undef ADD
		int timeout = next <= now ? 0 : (int)(next - now);
		int r = poll(pf, (nfds_t)n, timeout);
		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			die("poll");
		}
		short fifo_ev = 0, pid_ev = 0;
		for (int i = 0; i < n; i++) {
			short re = pf[i].revents;
			if (re == 0) {
				continue;
			}
			struct tag t = tags[i];
			switch (t.kind) {
			case K_SIG:
				handle_signals(&term);
				break;
			case K_LISTEN:
				accept_conns();
				break;
			case K_STREAM: {
				struct stream *s = t.p;
				if (s->fd >= 0) {
					stream_read(s);
				}
				break;
			}
			case K_STDIN:
				for (int j = 0; j < G.nconns && G.stdin_fd >= 0; j++) {
					struct conn *c = G.conns[j];
					if (!c->dead && c->st == CS_ATTACH && c->hoff < c->hlen) {
						push_input(c);
					}
				}
				break;
			case K_CONN: {
				struct conn *c = t.p;
				if (c->dead) {
					break;
				}
				if (re & POLLOUT) {
					conn_flush(c);
				}
				if (!c->dead && (re & (POLLIN | POLLHUP | POLLERR))) {
					int reading = c->st == CS_HEAD || c->st == CS_BODY || c->st == CS_WAIT ||
					              ((c->st == CS_ATTACH || c->st == CS_EXEC) && !c->in_eof && c->hoff == c->hlen);
					if (reading) {
						conn_read(c);
					} else if (re & POLLERR) {
						conn_kill(c);
					}
				}
				break;
			}
			case K_EXOUT:
			case K_EXERR:
			case K_EXMASTER: {
				struct exec *e = t.p;
				int *fd = t.kind == K_EXOUT ? &e->fd_out : t.kind == K_EXERR ? &e->fd_err : &e->master;
				if (e->c && *fd >= 0 && pf[i].fd == *fd) {
					exec_read(e, fd, t.kind == K_EXERR ? 2 : 1);
				}
				break;
			}
			case K_EXIN: {
				struct conn *c = t.p;
				if (!c->dead && c->st == CS_EXEC) {
					push_input(c);
				}
				break;
			}
			case K_HELPER: {
				struct helper *h = t.p;
				if (h->pid && h->fd >= 0) {
					helper_read(h);
				}
				break;
			}
			case K_FIFO:
				fifo_ev = re;
				break;
			case K_PIDFD:
				pid_ev = re;
				break;
			}
		}
		if (G.start_phase && (fifo_ev || pid_ev || G.pidfd < 0)) {
			start_poll(fifo_ev, pid_ev);
		}
	}
	if (term) {
		logmsg("terminated%s", G.finalized ? "" : "; leaving the container running");
	}
	unlink_socket();
	_exit(0);
}

// ---- entry points for the package's tests (cshim.go); never called in a shim ----

// test_reset makes G a container whose init was reaped, with no stdio, log, socket, helpers or
// runtime: requests then have no effect outside this process (no signal, no start, no helper).
static void test_reset(void) {
	static char id[] = "test", dir[] = "/nonexistent", fifo[] = "/nonexistent/fifo";
	while (G.execs) {
		struct exec *e = G.execs;
		G.execs = e->next;
		exec_close_fds(e);
		free(e);
	}
	G.execs_tail = NULL;
	G.nearly = 0;
	memset(G.helpers, 0, sizeof G.helpers);
	G.id = id;
	G.dir = G.rr = dir;
	G.fifo = fifo;
	G.oom = NULL;
	G.lfd = G.sigfd = G.stdin_fd = G.master = G.logfd = G.ready = G.fifofd = G.pidfd = -1;
	G.tty = G.once = 0;
	G.initpid = 0x7fffffff;  // above any pid_max: never a process
	G.state = ST_RUNNING;
	G.init_reaped = 1;
	G.finalized = 0;
	G.start_phase = 0;
	G.nstreams = 0;
	G.nconns = 0;
}

// berth_cshim_http_test serves one connection whose client sends req in pieces of chunk bytes
// (0: at once) and returns what the server answered (at most cap bytes in out).
size_t berth_cshim_http_test(const unsigned char *req, size_t n, size_t chunk, char *out, size_t cap) {
	test_reset();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		return 0;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	c->fd = sv[0];
	c->memfd = -1;
	c->st = CS_HEAD;
	c->deadline = INT64_MAX;
	if (chunk == 0) {
		chunk = n ? n : 1;
	}
	size_t off = 0, o = 0;
	for (;;) {
		int progress = 0;
		if (off < n) {
			ssize_t w = send(sv[1], req + off, n - off < chunk ? n - off : chunk, MSG_NOSIGNAL);
			if (w > 0) {
				off += (size_t)w;
				progress = 1;
			}
		}
		// What the loop does on POLLIN and POLLOUT.
		for (;;) {
			int reading = c->st == CS_HEAD || c->st == CS_BODY || c->st == CS_WAIT ||
			              ((c->st == CS_ATTACH || c->st == CS_EXEC) && !c->in_eof && c->hoff == c->hlen);
			struct pollfd p = {.fd = c->fd, .events = POLLIN};
			if (c->dead || !reading || poll(&p, 1, 0) <= 0) {
				break;
			}
			conn_read(c);
			progress = 1;
		}
		if (!c->dead && c->q.len > 0) {
			conn_flush(c);
		}
		char buf[4096];
		ssize_t r;
		while ((r = read(sv[1], buf, sizeof buf)) > 0) {
			size_t k = (size_t)r < cap - o ? (size_t)r : cap - o;
			memcpy(out + o, buf, k);
			o += k;
			progress = 1;
		}
		if (!progress) {
			break;
		}
	}
	conn_kill(c);
	free(c);
	close(sv[1]);
	return o;
}

// berth_cshim_exec_exit_test replays what the loop sees around execs, without processes: junk
// adopted children reaped while no exec is starting (the processes of failed execs), then exec
// "e1" whose process (pid) is reaped before its helper's answer, then exec "e2" whose process
// has the PID of the first junk child and still runs. It returns e1's exit code (-1: its exit
// was lost) and in *e2_running whether e2 is still running.
int berth_cshim_exec_exit_test(int junk, int pid, int *e2_running) {
	test_reset();
	G.init_reaped = 0;
	for (int i = 0; i < junk; i++) {
		exec_exited(1000 + i, 255);
	}
	const char *ids[2] = {"e1", "e2"};
	int pids[2] = {pid, 1000};
	for (int k = 0; k < 2; k++) {
		int sv[2];
		struct exec *e = calloc(1, sizeof *e);
		if (e == NULL || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			free(e);
			return -2;
		}
		e->fd_out = e->fd_err = e->fd_in = e->master = -1;
		e->running = 1;
		strcpy(e->id, ids[k]);
		struct helper *h = &G.helpers[0];
		*h = (struct helper){.pid = 1, .fd = sv[0], .kind = H_EXEC, .reaped = 1, .ex = e};
		if (k == 0) {
			exec_exited(pid, 7);
		}
		char msg[32];
		snprintf(msg, sizeof msg, "ok %d", pids[k]);
		send(sv[1], msg, strlen(msg), MSG_NOSIGNAL);
		helper_read(h);
		close(sv[1]);
	}
	struct exec *e1 = exec_find("e1"), *e2 = exec_find("e2");
	*e2_running = e2 && e2->running;
	return e1 && !e1->running ? e1->code : -1;
}

static void serve(void) __attribute__((noreturn));
static void spare(char **argv) __attribute__((noreturn));

// berth_cshim takes over the process when `berth shim` re-executed itself with _BERTH_CSHIM,
// and runs a spare shim (see spare below) when the daemon started one with _BERTH_CSPARE. glibc
// passes main's arguments to constructors. The variables alone are not enough: the binary is
// also a container's --init (/sbin/docker-init), whose environment is the container's.
__attribute__((constructor)) static void berth_cshim(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || strcmp(argv[1], "shim") != 0) {
		return;
	}
	if (getenv(BERTH_CSPARE_ENV) != NULL && argc > 2 && strcmp(argv[2], "--pool") == 0) {
		spare(argv);
	}
	const char *spec = getenv(BERTH_CSHIM_ENV);
	if (spec == NULL) {
		return;
	}
	G.ready = -1;
	char *copy = strdup(spec);
	// Never passed on: helpers and the container's exec processes must not see it.
	unsetenv(BERTH_CSHIM_ENV);
	if (copy == NULL) {
		die("copy configuration");
	}
	// Big blocks (log entries of long lines, lagging clients' queues) go back to the kernel
	// when freed, so that a container that was once busy costs no more idle than a quiet one.
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024);
	if (parse_config(copy) < 0) {
		die("bad " BERTH_CSHIM_ENV);
	}
	free(copy);
	serve();
}

// serve runs the steady state once G is configured; it never returns.
static void serve(void) {
	G.fifofd = G.pidfd = -1;
	G.state = ST_CREATED;
	size_t dl = strlen(G.dir);
	if (dl + sizeof "/shim.sock" <= sizeof G.sockpath) {
		memcpy(G.sockpath, G.dir, dl);
		memcpy(G.sockpath + dl, "/shim.sock", sizeof "/shim.sock");
		struct stat st;
		if (stat(G.sockpath, &st) == 0) {
			G.sock_known = 1;
			G.sock_dev = st.st_dev;
			G.sock_ino = st.st_ino;
		}
	}
	// The shim outlives the daemon and its terminal; only the container's exit ends it.
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_SETMASK, &set, NULL) < 0) {
		die("sigprocmask");
	}
	G.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (G.sigfd < 0) {
		die("signalfd");
	}
	// Set before the handover by the Go side; kept across execve, set again in case it is not.
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		die("set child subreaper");
	}
	if (G.ready >= 0) {
		fcntl(G.ready, F_SETFD, FD_CLOEXEC);
	}
	// A child that exited during the handover sent its SIGCHLD to the Go process.
	reap();
	if (G.ready >= 0) {
		write_all(G.ready, "ok\n", 3);
		xclose(&G.ready);
	}
	loop();
	_exit(0);
}

// ---- spare mode ----
//
// The daemon keeps spare shims started (`berth shim --pool`, with _BERTH_CSPARE): C from the
// first instruction, so that a spare costs an exec and no Go start-up. A spare waits on fd 3 for
// a job (spare.go's SpareJob): a container the runtime has prepared in the daemon up to the
// start of its init (linux.Prepared), and the shim's settings. It then does the rest of what
// the runtime's CreatePid does, in C: it starts "berth init" in the container's namespaces,
// sends the C init its program, moves it into its cgroup, waits for it to be ready and writes
// the runtime's state file. It reports on fd 3 as a set-up shim does ("ok" once it serves,
// "error MSG" or "init JSON" on failure, after killing the init) and becomes the steady state.

enum {
	J_ID = 1, J_DIR, J_LOG, J_RR, J_FIFO, J_OOM, J_TTY, J_STDIN, J_ONCE, J_CLONE,
	J_ENV, J_PROG, J_PROC, J_STATE, J_PRE, J_SUF, J_MAX
};

#define SPARE_JOB_MAX (64u << 20)
#define SPARE_MAX_LIST 64
#define SPARE_CONSOLE_MS 10000
// The init's error answer is at most cinit.c's 1024-byte message with each byte escaped as
// \u00XX, and the daemon reads Docker's exit code (126, 127) from its words: it must come
// through whole.
#define SPARE_ANSWER_MAX 8192

struct job {
	char *s[J_MAX];     // the string of each single-valued tag
	size_t n[J_MAX];    // its length
	char *env[SPARE_MAX_LIST + 1];
	size_t nenv;
	char *procs[SPARE_MAX_LIST];
	size_t nprocs;
};

static int read_full(int fd, void *p, size_t n) {
	char *b = p;
	while (n > 0) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			if (r == 0) {
				errno = EPIPE;
			}
			return -1;
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

// parse_job splits the job's records: {u32 tag, u32 len, len bytes}, native byte order. Each
// value is moved back over its record's header and NUL-terminated there, in place.
static int parse_job(char *b, size_t n, struct job *j) {
	memset(j, 0, sizeof *j);
	size_t off = 0;
	while (off < n) {
		uint32_t h[2];
		if (n - off < sizeof h) {
			return -1;
		}
		memcpy(h, b + off, sizeof h);
		off += sizeof h;
		if (h[1] > n - off || h[0] == 0 || h[0] >= J_MAX) {
			return -1;
		}
		char *v = b + off;
		size_t len = h[1];
		// Move the value back over its header so that its terminating NUL never overwrites
		// the next record's header.
		memmove(v - sizeof h, v, len);
		v -= sizeof h;
		v[len] = 0;
		off += len;
		if (h[0] != J_PROG && h[0] != J_CLONE && memchr(v, 0, len) != NULL) {
			return -1;
		}
		if (h[0] == J_ENV) {
			if (j->nenv >= SPARE_MAX_LIST) {
				return -1;
			}
			j->env[j->nenv++] = v;
		} else if (h[0] == J_PROC) {
			if (j->nprocs >= SPARE_MAX_LIST) {
				return -1;
			}
			j->procs[j->nprocs++] = v;
		} else {
			j->s[h[0]] = v;
			j->n[h[0]] = len;
		}
	}
	j->env[j->nenv] = NULL;
	return 0;
}

static int job_flag(const struct job *j, int tag) { return j->s[tag] != NULL && j->s[tag][0] == '1'; }

// job_env is the value of the init's environment variable name, or NULL.
static const char *job_env(const struct job *j, const char *name) {
	size_t n = strlen(name);
	for (size_t i = 0; i < j->nenv; i++) {
		if (strncmp(j->env[i], name, n) == 0 && j->env[i][n] == '=') {
			return j->env[i] + n + 1;
		}
	}
	return NULL;
}

// The C init (internal/runtime/linux/cinit.c), in the same binary whenever the runtime is: weak,
// so that this package links (and its tests run) without it, and the spare then execs
// "berth init" instead.
extern void berth_cinit_direct(const char *nsenter) __attribute__((weak, noreturn));

static int spare_report_fd = 3;
static int spare_initpid;

// spare_fail reports a failed job on fd 3, ends the init if one started and exits; what the
// runtime made (cgroup, state directory) is the daemon's to remove (linux.Prepared.Abort).
__attribute__((format(printf, 1, 2), noreturn)) static void spare_fail(const char *fmt, ...) {
	char m[SPARE_ANSWER_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = 0;
	}
	if ((size_t)n >= sizeof m) {
		n = sizeof m - 1;
	}
	for (int i = 0; i < n; i++) {
		if (m[i] == '\n') {
			m[i] = ' ';
		}
	}
	if (spare_initpid > 0) {
		kill(spare_initpid, SIGKILL);
		while (waitpid(spare_initpid, NULL, 0) < 0 && errno == EINTR) {
		}
	}
	logmsg("%s", m);
	char out[sizeof m + 2];
	int k = snprintf(out, sizeof out, "%s\n", m);
	write_all(spare_report_fd, out, (size_t)k < sizeof out ? (size_t)k : sizeof out - 1);
	_exit(1);
}

// set_cmdline shows the shim as one started for its container ("berth shim --id ID"), within
// the room the spare's own command line left (the daemon pads it).
static void set_cmdline(char **argv, const char *id) {
	if (argv == NULL || argv[0] == NULL) {
		return;
	}
	char *start = argv[0], *end = argv[0];
	for (char **a = argv; *a != NULL; a++) {
		if (*a != end && a != argv) {
			break;  // not contiguous: leave it
		}
		end = *a + strlen(*a) + 1;
	}
	size_t room = (size_t)(end - start);
	char t[256];
	int n = snprintf(t, sizeof t, "berth%cshim%c--id%c%s", 0, 0, 0, id);
	if (n < 0 || (size_t)n + 1 > room || (size_t)n + 1 > sizeof t) {
		return;
	}
	memset(start, 0, room);
	memcpy(start, t, (size_t)n);
}

// move_fds places the init's descriptors at 0..count-1: first above every target, then down,
// so that no source is overwritten before it is moved. dup2 clears close-on-exec.
static int move_fds(int *fds, int count) {
	for (int i = 0; i < count; i++) {
		int d = fcntl(fds[i], F_DUPFD_CLOEXEC, 16);
		if (d < 0) {
			return -1;
		}
		fds[i] = d;
	}
	for (int i = 0; i < count; i++) {
		if (dup2(fds[i], i) < 0) {
			return -1;
		}
	}
	return 0;
}

// close_from closes every descriptor from lowest up.
static int close_from(int lowest) {
	if (syscall(SYS_close_range, (unsigned)lowest, ~0U, 0) == 0) {
		return 0;
	}
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL) {
		return -1;
	}
	int fds[1024], n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < 1024) {
		int fd = atoi(e->d_name);
		if (fd >= lowest && fd != dirfd(d)) {
			fds[n++] = fd;
		}
	}
	closedir(d);
	for (int i = 0; i < n; i++) {
		close(fds[i]);
	}
	return n < 1024 ? 0 : -1;
}

static int write_file_str(const char *path, const char *s) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		return -1;
	}
	int r = write_all(fd, s, strlen(s));
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

// proc_start_time is field 22 of /proc/PID/stat, as the runtime records it against PID reuse.
static int proc_start_time(int pid, unsigned long long *t) {
	char path[64], b[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return -1;
	}
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0) {
		errno = EIO;
		return -1;
	}
	b[n] = 0;
	char *p = strrchr(b, ')');
	if (p == NULL) {
		errno = EIO;
		return -1;
	}
	// p is at the space before field 3 (state); each step moves to the space before the next.
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (p == NULL) {
			errno = EIO;
			return -1;
		}
	}
	*t = strtoull(p + 1, NULL, 10);
	return 0;
}

static int recv_master(int sock) {
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int r;
	while ((r = poll(&p, 1, SPARE_CONSOLE_MS)) < 0 && errno == EINTR) {
	}
	if (r <= 0) {
		errno = r == 0 ? ETIMEDOUT : errno;
		return -1;
	}
	char buf[256];
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) < 0) {
		return -1;
	}
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
		errno = EBADMSG;
		return -1;
	}
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

static void spare(char **argv) {
	unsetenv(BERTH_CSPARE_ENV);
	// An init that dies before it read its program must give an error, not kill the spare
	// (the init resets what is ignored here before anything of the container runs).
	signal(SIGPIPE, SIG_IGN);
	G.ready = -1;
	fcntl(3, F_SETFD, FD_CLOEXEC);
	uint32_t hdr[2];
	if (read_full(3, hdr, sizeof hdr) < 0) {
		_exit(0);  // the daemon closed the pool
	}
	if (hdr[0] != BERTH_SPARE_MAGIC || hdr[1] > SPARE_JOB_MAX) {
		spare_fail("error shim: bad job header");
	}
	char *b = malloc((size_t)hdr[1] + 1);
	if (b == NULL || read_full(3, b, hdr[1]) < 0) {
		spare_fail("error shim: read job: %s", strerror(errno));
	}
	struct job j;
	if (parse_job(b, hdr[1], &j) < 0 || !j.s[J_ID] || !valid_id(j.s[J_ID]) || !j.s[J_DIR] || !j.s[J_RR] ||
	    !j.s[J_FIFO] || !j.s[J_PROG] || !j.s[J_CLONE] || !j.s[J_STATE] || !j.s[J_PRE] || !j.s[J_SUF] ||
	    j.nprocs == 0 || j.n[J_CLONE] != 8) {
		spare_fail("error shim: malformed job");
	}
	G.id = j.s[J_ID];
	G.dir = j.s[J_DIR];
	G.rr = j.s[J_RR];
	G.fifo = j.s[J_FIFO];
	G.oom = j.s[J_OOM];
	G.tty = job_flag(&j, J_TTY);
	G.once = job_flag(&j, J_ONCE);
	G.master = -1;
	set_cmdline(argv, G.id);

	// The shim's own messages go to shim.log in its directory, as a started shim's do.
	snprintf(lazy_log, sizeof lazy_log, "%s/shim.log", G.dir);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		spare_fail("error shim: set child subreaper: %s", strerror(errno));
	}
	int fds[5] = {-1, -1, -1, -1, -1};  // ls, out, err, in, log
	// The init's descriptors: stdin, stdout, stderr, the sync socket, the exec fifo and, with
	// a terminal, the socket the pty master comes back on.
	int child[6] = {-1, -1, -1, -1, -1, -1};
	int nchild = 5;
	int sync[2], cons[2] = {-1, -1};
	if (G.tty) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cons) < 0) {
			spare_fail("error shim: console socket: %s", strerror(errno));
		}
		child[0] = child[1] = child[2] = null;
		child[5] = cons[1];
		nchild = 6;
	} else {
		int out[2], err[2];
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
			spare_fail("error shim: stdio pipes: %s", strerror(errno));
		}
		fds[1] = out[0], child[1] = out[1];
		fds[2] = err[0], child[2] = err[1];
		if (job_flag(&j, J_STDIN)) {
			int in[2];
			if (pipe2(in, O_CLOEXEC) < 0) {
				spare_fail("error shim: stdin pipe: %s", strerror(errno));
			}
			fds[3] = in[1], child[0] = in[0];
		} else if ((child[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
			spare_fail("error shim: open /dev/null: %s", strerror(errno));
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) < 0) {
		spare_fail("error shim: socketpair: %s", strerror(errno));
	}
	child[3] = sync[1];
	child[4] = open(G.fifo, O_PATH | O_CLOEXEC);
	if (child[4] < 0) {
		spare_fail("error shim: open exec fifo: %s", strerror(errno));
	}
	uint64_t flags;
	memcpy(&flags, j.s[J_CLONE], sizeof flags);
	char *init_argv[] = {"berth", "init", NULL};
	pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0) {
		spare_fail("error create container: start container init: %s", strerror(errno));
	}
	if (pid == 0) {
		if (move_fds(child, nchild) == 0) {
			// With no exec, close-on-exec closes nothing: the shim's descriptors (the far end
			// of the sync socket among them, whose EOF tells the init that the shim died)
			// must go now.
			if (berth_cinit_direct != NULL && close_from(nchild) == 0) {
				// This process is single-threaded C: the child runs the C init as it is, with
				// no exec of "berth init" (~0.5 ms).
				berth_cinit_direct(job_env(&j, "_BERTH_NSENTER"));
			}
			execve("/proc/self/exe", init_argv, j.env);
		}
		_exit(127);
	}
	spare_initpid = pid;
	for (int i = 0; i < 6; i++) {
		if (child[i] >= 0 && (i == 0 || child[i] != child[i - 1])) {
			close(child[i]);
		}
	}
	// As CreatePid: the program first (the init mounts while it is moved), then the cgroup,
	// then the byte that lets the init go on.
	if (write_all(sync[0], j.s[J_PROG], j.n[J_PROG]) < 0) {
		spare_fail("error create container: send config to container init: %s", strerror(errno));
	}
	// While the init sets the container up: the shim's directory, socket and log, and the
	// runtime's state (each file made may be slow; none is the init's business).
	if (mkdir(G.dir, 0700) < 0 && errno != EEXIST) {
		spare_fail("error shim: create %s: %s", G.dir, strerror(errno));
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/shim.sock", G.dir) >= (int)sizeof sa.sun_path) {
		spare_fail("error shim: socket path too long");
	}
	unlink(sa.sun_path);
	fds[0] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || bind(fds[0], (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(sa.sun_path, 0600) < 0 ||
	    listen(fds[0], 128) < 0) {
		spare_fail("error shim: listen on %s: %s", sa.sun_path, strerror(errno));
	}
	if (j.s[J_LOG] && j.s[J_LOG][0]) {
		fds[4] = open(j.s[J_LOG], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fds[4] < 0) {
			spare_fail("error shim: open log %s: %s", j.s[J_LOG], strerror(errno));
		}
	}
	unsigned long long start;
	if (proc_start_time(pid, &start) < 0) {
		spare_fail("error create container: read init start time: %s", strerror(errno));
	}
	// The runtime's state, written as its writeStateFile does: renamed into place, no fsync.
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.tmp", j.s[J_STATE]);
	int sf = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	char mid[64];
	int ml = snprintf(mid, sizeof mid, "\"pid\":%d,\"startTime\":%llu", pid, start);
	if (sf < 0 || write_all(sf, j.s[J_PRE], j.n[J_PRE]) < 0 || write_all(sf, mid, (size_t)ml) < 0 ||
	    write_all(sf, j.s[J_SUF], j.n[J_SUF]) < 0 || close(sf) < 0 || rename(tmp, j.s[J_STATE]) < 0) {
		unlink(tmp);
		spare_fail("error create container: write %s: %s", j.s[J_STATE], strerror(errno));
	}
	// The daemon makes the cgroup meanwhile; one byte says it is there.
	char go;
	if (read_full(3, &go, 1) < 0 || go != 1) {
		spare_fail("error create container: the daemon gave up");
	}
	char pidstr[16];
	snprintf(pidstr, sizeof pidstr, "%d", pid);
	for (size_t i = 0; i < j.nprocs; i++) {
		if (write_file_str(j.procs[i], pidstr) < 0) {
			spare_fail("error create container: join cgroup: write %s: %s", j.procs[i], strerror(errno));
		}
	}
	(void)write_all(sync[0], "\1", 1);
	// The answer: one JSON line, which the daemon decodes when it is not "ready".
	char line[SPARE_ANSWER_MAX];
	size_t ln = 0;
	for (;;) {
		ssize_t r = read(sync[0], line + ln, sizeof line - 1 - ln);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			if (ln == 0) {
				spare_fail("error create container: container init exited during setup");
			}
			break;
		}
		ln += (size_t)r;
		if (memchr(line, '\n', ln) != NULL || ln == sizeof line - 1) {
			break;
		}
	}
	line[ln] = 0;
	char *nl = strchr(line, '\n');
	if (nl != NULL) {
		*nl = 0;
	}
	if (strcmp(line, "{\"type\":\"ready\"}") != 0) {
		spare_fail("init %s", line);
	}
	close(sync[0]);
	if (G.tty) {
		G.master = recv_master(cons[0]);
		if (G.master < 0) {
			spare_fail("error receive console: %s", strerror(errno));
		}
		close(cons[0]);
	}
	G.initpid = pid;
	G.ready = 3;
	if (adopt(fds) < 0) {
		spare_fail("error shim: bad configuration");
	}
	// The job (the init's program above all) is done with: keep the few strings the steady
	// state uses and give the rest back, as a shim started afresh would not have it.
	G.id = strdup(G.id);
	G.dir = strdup(G.dir);
	G.rr = strdup(G.rr);
	G.fifo = strdup(G.fifo);
	G.oom = G.oom ? strdup(G.oom) : NULL;
	if (!G.id || !G.dir || !G.rr || !G.fifo) {
		spare_fail("error shim: out of memory");
	}
	free(b);
	malloc_trim(0);
	serve();
}
