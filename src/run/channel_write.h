/*
 * src/run/channel_write.h — internal writer side of the metrics channel,
 * shared by client.c and channel.c.
 */
#ifndef KUSARI_RUN_CHANNEL_WRITE_H
#define KUSARI_RUN_CHANNEL_WRITE_H

#include <stddef.h>
#include <stdint.h>

/* Maps channel 'path' (shared; read-write when 'writable'); on success *base
 * and *cap describe the mapping, to be released with munmap(*base, *cap). */
int ks__ch_map(const char *path, int writable, void **base, uint64_t *cap);
/* Appends one record (see channel_impl.h for the publication rule). Safe to
 * call from several threads and processes at once. */
int ks__ch_append(void *base, uint64_t cap, uint32_t kind, const char *name, size_t name_len,
                  const char *text, size_t text_len, int64_t step, double value, double time);

#endif
