// fastrun: `berth run` without the Go runtime for the plain, non-interactive case (see
// fastrun.c). The declarations here are for the tests, which compare the C client's requests
// with the Go client's and fuzz its parsers.
#ifndef BERTH_FASTRUN_H
#define BERTH_FASTRUN_H

#include <stddef.h>

// The API version the C client speaks: the daemon's own (version.APIVersion; a test keeps
// them equal).
#define BERTH_FASTRUN_API_VERSION "1.51"

// berth_fastrun_request parses `berth run ARGS` (args excludes "berth run") with the
// environment envp and, when the C client handles them, writes the create request's path and
// query to path (NUL-terminated, at most path_max bytes) and its JSON body to body, and sets
// *detach. It returns the body's length, or -1 when the Go client must handle the arguments,
// or -2 when a buffer is too small.
long berth_fastrun_request(int argc, char **args, char **envp, char *path, size_t path_max,
                           char *body, size_t body_max, int *detach);

// berth_fastrun_json_string finds the string member key of the JSON object in (n bytes) and
// decodes it into out (NUL-terminated, truncated to out_max-1 bytes). It returns its decoded
// length, or -1 when there is no such string member or the JSON is malformed before it.
long berth_fastrun_json_string(const char *in, size_t n, const char *key, char *out, size_t out_max);

// berth_fastrun_wait_result decodes a wait answer ({"StatusCode":N,"Error":{"Message":M}}):
// it sets *code to N, writes M (empty when none) to msg and returns 0, or -1 when malformed.
long berth_fastrun_wait_result(const char *in, size_t n, long *code, char *msg, size_t msg_max);

// berth_fastrun_read_answer reads one HTTP answer from fd (the test's pipe) and writes its
// body to body. It returns the status code, or -1 on a malformed or truncated answer.
int berth_fastrun_read_answer(int fd, char *body, size_t body_max, long *body_len);

// berth_fastrun_demux copies the multiplexed stream read from in to out_fd (stdout frames)
// and err_fd (stderr frames). It returns 0 at the stream's end, or -1 on a malformed stream.
int berth_fastrun_demux(int in, int out_fd, int err_fd);

#endif
