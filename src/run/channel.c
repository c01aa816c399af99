/*
 * src/run/channel.c — the run metrics channel: create, append (writers), read
 * (the platform's supervisor). Layout and publication rule: channel_impl.h.
 */
#include "kusari/run.h"
#include "kusari/error.h"
#include "channel_impl.h"
#include "channel_write.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ks_run_channel_create(const char *path) {
  if (!path) return ks_error_set(KS_EINVAL, "ks_run_channel_create: path is NULL");
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ks_error_set(KS_EIO, "cannot create metrics channel %s: %s", path, strerror(errno));
  ks_ch_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, KS_CH_MAGIC, 8);
  h.version = KS_CH_VERSION;
  h.slot = KS_CH_SLOT;
  h.capacity = KS_RUN_CHANNEL_BYTES;
  h.tail = KS_CH_SLOT;
  int rc = KS_OK;
  if (ftruncate(fd, (off_t)KS_RUN_CHANNEL_BYTES) != 0 ||
      pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fsync(fd) != 0)
    rc = ks_error_set(KS_EIO, "cannot initialise metrics channel %s: %s", path, strerror(errno));
  close(fd);
  if (rc != KS_OK) unlink(path);
  return rc;
}

int ks__ch_map(const char *path, int writable, void **base, uint64_t *cap) {
  int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return ks_error_set(KS_EIO, "cannot open metrics channel %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < KS_CH_SLOT) {
    close(fd);
    return ks_error_set(KS_EFORMAT, "metrics channel %s is not a channel file (too short)", path);
  }
  void *p = mmap(NULL, (size_t)st.st_size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return ks_error_set(KS_EIO, "cannot map metrics channel %s: %s", path, strerror(errno));
  const ks_ch_header *h = p;
  if (memcmp(h->magic, KS_CH_MAGIC, 8) != 0 || h->version != KS_CH_VERSION || h->slot != KS_CH_SLOT ||
      h->capacity != (uint64_t)st.st_size) {
    munmap(p, (size_t)st.st_size);
    return ks_error_set(KS_EFORMAT, "metrics channel %s has a bad header (not written by this kusari version)", path);
  }
  *base = p;
  *cap = h->capacity;
  return KS_OK;
}

int ks__ch_append(void *base, uint64_t cap, uint32_t kind, const char *name, size_t name_len,
                  const char *text, size_t text_len, int64_t step, double value, double time) {
  uint64_t n = (uint64_t)name_len + 1 + text_len + 1;
  uint32_t nslots = ks_ch_slots_for(n);
  ks_ch_header *h = base;
  uint64_t off = __atomic_fetch_add(&h->tail, (uint64_t)nslots * KS_CH_SLOT, __ATOMIC_RELAXED);
  if (off + (uint64_t)nslots * KS_CH_SLOT > cap)
    return ks_error_set(KS_EIO, "metrics channel is full (%llu bytes); the run logged too much",
                        (unsigned long long)cap);
  char *rec = (char *)base + off;
  ks_ch_head *head = (ks_ch_head *)rec;
  /* payload = name \0 text \0, spread over head and continuation payloads */
  uint64_t pos = 0;
  for (int part = 0; part < 2; part++) {
    const char *src = part == 0 ? name : text;
    size_t len = part == 0 ? name_len : text_len;
    for (size_t i = 0; i <= len; i++, pos++) {
      char c = i < len ? src[i] : '\0';
      if (pos < KS_CH_HEAD_PAYLOAD) {
        head->payload[pos] = c;
      } else {
        uint64_t q = pos - KS_CH_HEAD_PAYLOAD;
        ks_ch_cont *ct = (ks_ch_cont *)(rec + KS_CH_SLOT * (1 + q / KS_CH_CONT_PAYLOAD));
        ct->payload[q % KS_CH_CONT_PAYLOAD] = c;
      }
    }
  }
  for (uint32_t i = 1; i < nslots; i++)
    __atomic_store_n(&((ks_ch_cont *)(rec + KS_CH_SLOT * i))->kind, KS_CH_CONT, __ATOMIC_RELAXED);
  head->nslots = nslots;
  head->name_len = (uint32_t)name_len;
  head->text_len = (uint32_t)text_len;
  head->step = step;
  head->value = value;
  head->time = time;
  __atomic_store_n(&head->kind, kind, __ATOMIC_RELEASE);
  return KS_OK;
}

/* Copies payload byte range [from, from+len) of the record at 'rec' to 'dst'. */
static void ch_payload(const char *rec, uint64_t from, uint64_t len, char *dst) {
  const ks_ch_head *head = (const ks_ch_head *)rec;
  for (uint64_t i = 0; i < len; i++) {
    uint64_t pos = from + i;
    if (pos < KS_CH_HEAD_PAYLOAD) {
      dst[i] = head->payload[pos];
    } else {
      uint64_t q = pos - KS_CH_HEAD_PAYLOAD;
      dst[i] = ((const ks_ch_cont *)(rec + KS_CH_SLOT * (1 + q / KS_CH_CONT_PAYLOAD)))->payload[q % KS_CH_CONT_PAYLOAD];
    }
  }
  dst[len] = '\0';
}

int ks_run_channel_read(const char *path, uint64_t *offset, int final, ks_run_record_fn fn, void *ctx) {
  if (!path || !offset || !fn) return ks_error_set(KS_EINVAL, "ks_run_channel_read: NULL argument");
  void *base;
  uint64_t cap;
  int rc = ks__ch_map(path, 0, &base, &cap);
  if (rc != KS_OK) return rc;
  ks_ch_header *h = base;
  uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
  if (tail > cap) tail = cap;
  uint64_t off = *offset < KS_CH_SLOT ? KS_CH_SLOT : *offset;
  char *buf = NULL;
  size_t bufcap = 0;
  rc = KS_OK;
  while (off + KS_CH_SLOT <= tail) {
    const char *rec = (const char *)base + off;
    const ks_ch_head *head = (const ks_ch_head *)rec;
    uint32_t kind = __atomic_load_n(&head->kind, __ATOMIC_ACQUIRE);
    if (kind == 0 || kind == KS_CH_CONT) {
      /* unpublished: still being written, or abandoned by a killed writer */
      if (!final && kind == 0) break;
      off += KS_CH_SLOT;
      continue;
    }
    uint64_t n = head->nslots;
    if (n == 0 || off + n * KS_CH_SLOT > tail || (kind != KS_RUN_RECORD_METRIC && kind != KS_RUN_RECORD_TAG) ||
        (uint64_t)head->name_len + head->text_len + 2 > n * KS_CH_SLOT) {
      rc = ks_error_set(KS_EFORMAT, "metrics channel %s: corrupt record at byte %llu", path,
                        (unsigned long long)off);
      break;
    }
    size_t need = (size_t)head->name_len + head->text_len + 2;
    if (need > bufcap) {
      char *nb = realloc(buf, need);
      if (!nb) { rc = ks_error_set(KS_ENOMEM, "out of memory reading metrics channel"); break; }
      buf = nb;
      bufcap = need;
    }
    ch_payload(rec, 0, head->name_len, buf);
    ch_payload(rec, (uint64_t)head->name_len + 1, head->text_len, buf + head->name_len + 1);
    ks_run_record r = {(int)kind, buf, buf + head->name_len + 1, head->step, head->value, head->time};
    int cb = fn(ctx, &r);
    if (cb != 0) { rc = cb; break; }
    off += n * KS_CH_SLOT;
  }
  *offset = off;
  free(buf);
  munmap(base, (size_t)cap);
  return rc;
}
