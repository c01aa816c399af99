/*
 * fuzz/fuzz_util.h — helpers shared by the libFuzzer targets: the readers
 * under test take a path, so each input is written to one in-memory file
 * (memfd) reached through /proc/self/fd.
 */
#ifndef KUSARI_FUZZ_UTIL_H
#define KUSARI_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes 'n' bytes (then 'pad' zero bytes) to the target's in-memory file,
 * replacing what it held; returns its path. Aborts if that fails (a broken
 * harness must not pass as "no crash"). */
static inline const char *fz_file(const void *data, size_t n, size_t pad) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("kusari-fuzz", 0);
    if (fd < 0) { perror("memfd_create"); abort(); }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (n && pwrite(fd, data, n, 0) != (ssize_t)n) ||
      ftruncate(fd, (off_t)(n + pad)) != 0) {
    perror("fuzz input file");
    abort();
  }
  return path;
}

/* abort() with a message when 'cond' is false: an invariant of a parser's
 * successful result that the fuzzer should report as a crash. */
#define FZ_CHECK(cond)                                                        \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                \
    }                                                                         \
  } while (0)

#endif
