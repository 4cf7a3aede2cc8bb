// Interface of cshim.c for the Go side of package shim.
#ifndef BERTH_CSHIM_H
#define BERTH_CSHIM_H
#include <stddef.h>
#include <stdint.h>

// The environment variable that hands a set-up shim over to the C steady state; keep in step
// with envCShim in handover.go.
#define BERTH_CSHIM_ENV "_BERTH_CSHIM"
// The environment variable of a spare shim, which takes its container from a job (spare.go).
#define BERTH_CSPARE_ENV "_BERTH_CSPARE"
#define BERTH_SPARE_MAGIC 0x314a5342u /* "BSJ1" */

size_t berth_cshim_time(char *out, int64_t sec, long nsec);
size_t berth_cshim_json_str(char *out, const unsigned char *s, size_t n);
size_t berth_cshim_log_entry(char *out, const char *stream, const unsigned char *line, size_t n, int64_t sec, long nsec);
size_t berth_cshim_log_entry_max(size_t n);
// For the package's tests only: they drive the server without a shim (see cshim.c).
size_t berth_cshim_http_test(const unsigned char *req, size_t n, size_t chunk, char *out, size_t cap);
int berth_cshim_exec_exit_test(int junk, int pid, int *e2_running);
#endif
