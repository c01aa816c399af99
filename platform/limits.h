/*
 * platform/limits.h — a run's optional resource limits (`run submit --memory
 * 512M --cpus 1`, a sweep file's run.memory / run.cpus): their parsing and
 * how they are written back. Pure functions (no store, no processes), so the
 * sweep file's parser and its fuzz target link them alone. Enforcement is the
 * compute target's (compute_local.c: cgroup v2, cgroup v1, else setrlimit).
 */
#ifndef KUSARI_PLATFORM_LIMITS_H
#define KUSARI_PLATFORM_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define KP_MEMORY_MIN (4LL << 20)  /* below this no program starts */
#define KP_MEMORY_MAX (1LL << 50)
#define KP_CPUS_MAX 1024.0

/* Tags that record a run's limits at submit (bytes; processors as "%g"),
 * and how the target enforced them (set by kusari, not by hand). */
#define KP_TAG_MEMORY "kusari.memory_limit"
#define KP_TAG_CPUS "kusari.cpu_limit"
#define KP_TAG_LIMITS "kusari.limits"

/* "512M", "2G", "1.5G", "4096K", "1073741824" (K, M, G, T: powers of 1024; an
 * optional trailing "B" or "iB") into bytes, from KP_MEMORY_MIN to
 * KP_MEMORY_MAX. 0, or -1 with why ("must be ...") set. */
int kp_limit_memory_parse(const char *s, int64_t *bytes, char *why, size_t whyn);
/* "1", "0.5", "2.25": processors, from 0.01 to KP_CPUS_MAX. 0, or -1 with why set. */
int kp_limit_cpus_parse(const char *s, double *cpus, char *why, size_t whyn);
/* bytes as the shortest exact "512M" / "1536K" / "123" text. */
void kp_limit_memory_text(int64_t bytes, char *out, size_t n);

#endif
