/*
 * src/run/channel.c — the run metrics channel: create, append (writers), read
 * (the platform's supervisor). Layout and publication rule: channel_impl.h.
 */
#include "kusari/run.h"
#include "kusari/error.h"
#include "channel_impl.h"
#include "channel_write.h"

#include <errno.h>
#include <stddef.h>
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

/* ---------------------------------------------------------------------------
 * Reading. The writers are the run's entry program: anything in the file may
 * be hostile or half-written. So the reader never maps the file (a writer
 * that truncates it would make a mapped read fault) and never looks at a
 * field twice: it copies slots into its own memory with pread and validates
 * each record there before handing it on. A record that fails a check stops
 * the read with KS_EFORMAT at that record's offset; the records before it
 * have been delivered and '*offset' points at the bad one. */

/* Bytes read per pread: 8,192 slots. */
#define CH_CHUNK ((uint64_t)KS_CH_SLOT * 8192u)

typedef struct ch_reader {
  int fd;
  const char *path;
  char *buf;          /* copy of the file's bytes [base, base + len) */
  char *first;        /* the first of the two reads of ch_fill */
  uint64_t base, len, cap;
} ch_reader;

/* Makes buf hold [from, from + want) of the file (want > 0, whole slots).
 * Reads twice around an acquire fence and keeps the second copy, with the
 * kind word of every slot that was 0 in the first copy set back to 0: so a
 * slot counts as published only if its kind was seen before any byte of the
 * copy kept was loaded, and the writer's release store then guarantees that
 * the whole record is in the copy, also on weakly ordered CPUs. KS_OK, or
 * KS_EFORMAT if the file is shorter than that (truncated by a writer),
 * KS_EIO, KS_ENOMEM. */

/* Orders the reads of one pread pass before the next. The bytes come from
 * the kernel (pread), not from shared memory this process maps, so under
 * ThreadSanitizer (which rejects thread fences and cannot see the writer
 * anyway) a compiler barrier stands in. */
static inline void read_fence(void) {
#if defined(__SANITIZE_THREAD__)
  __atomic_signal_fence(__ATOMIC_ACQUIRE);
#else
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}
static int ch_fill(ch_reader *r, uint64_t from, uint64_t want) {
  if (want > r->cap) {
    char *nb = realloc(r->buf, (size_t)want), *nf = nb ? realloc(r->first, (size_t)want) : NULL;
    if (nb) r->buf = nb;
    if (nf) r->first = nf;
    if (!nb || !nf)
      return ks_error_set(KS_ENOMEM, "out of memory reading metrics channel %s (%llu bytes)", r->path,
                          (unsigned long long)want);
    r->cap = want;
  }
  r->len = 0;
  for (int pass = 0; pass < 2; pass++) {
    char *dst = pass == 0 ? r->first : r->buf;
    uint64_t got = 0;
    while (got < want) {
      ssize_t n = pread(r->fd, dst + got, (size_t)(want - got), (off_t)(from + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ks_error_set(KS_EIO, "cannot read metrics channel %s: %s", r->path, strerror(errno));
      if (n == 0)
        return ks_error_set(KS_EFORMAT, "metrics channel %s ends at byte %llu, before its tail: a writer "
                            "truncated it", r->path, (unsigned long long)(from + got));
      got += (uint64_t)n;
    }
    read_fence();
  }
  static const uint32_t zero = 0;
  for (uint64_t at = 0; at < want; at += KS_CH_SLOT)
    if (memcmp(r->first + at, &zero, sizeof zero) == 0) memcpy(r->buf + at, &zero, sizeof zero);
  r->base = from;
  r->len = want;
  return KS_OK;
}

static int ch_bad(const char *path, uint64_t off, const char *why) {
  return ks_error_set(KS_EFORMAT, "metrics channel %s: corrupt record at byte %llu (%s); it and the records "
                      "after it were not read", path, (unsigned long long)off, why);
}

/* Checks the record whose head slot is at buf offset 'at' (its nslots slots
 * are in buf) and decodes its payload into *out (a malloc'd buffer kept in
 * *pbuf). Returns NULL when it is well formed, else what is wrong. */
static const char *ch_decode(const char *rec, char **pbuf, size_t *pcap, ks_run_record *out) {
  ks_ch_head head;
  memcpy(&head, rec, sizeof head);
  uint64_t name_len = head.name_len, text_len = head.text_len, n = head.nslots;
  if (head.kind != KS_RUN_RECORD_METRIC && head.kind != KS_RUN_RECORD_TAG) return "unknown record kind";
  if (name_len < 1 || name_len > KS_CH_NAME_MAX) return "name length out of range";
  if (text_len > KS_CH_TEXT_MAX) return "text length out of range";
  uint64_t payload = name_len + 1 + text_len + 1;
  if (n != ks_ch_slots_for(payload)) return "slot count does not match the lengths";
  for (uint64_t i = 1; i < n; i++) {
    uint32_t k;
    memcpy(&k, rec + i * KS_CH_SLOT, sizeof k);
    if (k != KS_CH_CONT) return "a continuation slot is not marked as one";
  }
  if ((size_t)payload > *pcap) {
    char *nb = realloc(*pbuf, (size_t)payload);
    if (!nb) return "out of memory";
    *pbuf = nb;
    *pcap = (size_t)payload;
  }
  char *dst = *pbuf;
  uint64_t first = payload < KS_CH_HEAD_PAYLOAD ? payload : KS_CH_HEAD_PAYLOAD;
  memcpy(dst, rec + offsetof(ks_ch_head, payload), (size_t)first);
  for (uint64_t pos = first, i = 1; pos < payload; i++) {
    uint64_t c = payload - pos < KS_CH_CONT_PAYLOAD ? payload - pos : KS_CH_CONT_PAYLOAD;
    memcpy(dst + pos, rec + i * KS_CH_SLOT + offsetof(ks_ch_cont, payload), (size_t)c);
    pos += c;
  }
  if (memchr(dst, '\0', (size_t)name_len) || dst[name_len] != '\0') return "the name is not a string of its length";
  if (memchr(dst + name_len + 1, '\0', (size_t)text_len) || dst[payload - 1] != '\0')
    return "the text is not a string of its length";
  *out = (ks_run_record){(int)head.kind, dst, dst + name_len + 1, head.step, head.value, head.time, 0};
  if (head.kind == KS_RUN_RECORD_METRIC && text_len > 0) {
    /* a metric's text is its rank (decimal, 1..KS_CH_RANK_MAX) */
    long r = 0;
    for (const char *c = out->text; *c; c++) {
      if (*c < '0' || *c > '9' || r > KS_CH_RANK_MAX) return "a metric's rank is not a number";
      r = r * 10 + (*c - '0');
    }
    if (r < 1 || r > KS_CH_RANK_MAX) return "a metric's rank is out of range";
    out->rank = (int)r;
  }
  return NULL;
}

int ks_run_channel_read(const char *path, uint64_t *offset, int final, ks_run_record_fn fn, void *ctx) {
  if (!path || !offset || !fn) return ks_error_set(KS_EINVAL, "ks_run_channel_read: NULL argument");
  ch_reader r = {.fd = open(path, O_RDONLY | O_CLOEXEC), .path = path};
  if (r.fd < 0) return ks_error_set(KS_EIO, "cannot open metrics channel %s: %s", path, strerror(errno));
  char *pbuf = NULL;
  size_t pcap = 0;
  int rc = KS_OK;
  uint64_t off = *offset < KS_CH_SLOT ? KS_CH_SLOT : *offset;
  struct stat st;
  ks_ch_header h;
  if (fstat(r.fd, &st) != 0) {
    rc = ks_error_set(KS_EIO, "cannot stat metrics channel %s: %s", path, strerror(errno));
    goto out;
  }
  if ((uint64_t)st.st_size < KS_CH_SLOT || pread(r.fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
    rc = ks_error_set(KS_EFORMAT, "metrics channel %s is not a channel file (too short)", path);
    goto out;
  }
  read_fence();
  if (memcmp(h.magic, KS_CH_MAGIC, 8) != 0 || h.version != KS_CH_VERSION || h.slot != KS_CH_SLOT ||
      h.capacity != (uint64_t)st.st_size) {
    rc = ks_error_set(KS_EFORMAT, "metrics channel %s has a bad header (not written by this kusari version)", path);
    goto out;
  }
  if (off % KS_CH_SLOT != 0 || off > h.capacity) {
    rc = ks_error_set(KS_EINVAL, "metrics channel %s: read offset %llu is not a record boundary", path,
                      (unsigned long long)off);
    goto out;
  }
  /* a writer moves tail by whole slots up to the capacity (and past it when
   * the channel is full); anything else is clamped to what the file holds */
  uint64_t tail = h.tail > h.capacity ? h.capacity : h.tail;
  tail -= tail % KS_CH_SLOT;
  while (off + KS_CH_SLOT <= tail) {
    /* the head slot (and the chunk after it) in memory */
    if (off < r.base || off + KS_CH_SLOT > r.base + r.len) {
      uint64_t want = tail - off < CH_CHUNK ? tail - off : CH_CHUNK;
      if ((rc = ch_fill(&r, off, want)) != KS_OK) break;
    }
    const char *rec = r.buf + (off - r.base);
    uint32_t kind, nslots;
    memcpy(&kind, rec, sizeof kind);
    memcpy(&nslots, rec + offsetof(ks_ch_head, nslots), sizeof nslots);
    if (kind == 0 || kind == KS_CH_CONT) {
      /* unpublished: still being written, or abandoned by a killed writer */
      if (!final && kind == 0) break;
      off += KS_CH_SLOT;
      continue;
    }
    if (nslots == 0 || (uint64_t)nslots > (tail - off) / KS_CH_SLOT) {
      rc = ch_bad(path, off, nslots == 0 ? "no slots" : "its slots run past the channel's tail");
      break;
    }
    uint64_t bytes = (uint64_t)nslots * KS_CH_SLOT;
    if (off + bytes > r.base + r.len) {
      if ((rc = ch_fill(&r, off, bytes > CH_CHUNK ? bytes : (tail - off < CH_CHUNK ? tail - off : CH_CHUNK))) != KS_OK)
        break;
      rec = r.buf;
    }
    ks_run_record rr;
    const char *why = ch_decode(rec, &pbuf, &pcap, &rr);
    if (why) {
      rc = strcmp(why, "out of memory") == 0 ? ks_error_set(KS_ENOMEM, "out of memory reading metrics channel %s", path)
                                               : ch_bad(path, off, why);
      break;
    }
    int cb = fn(ctx, &rr);
    if (cb != 0) { rc = cb; break; }
    off += bytes;
  }
out:
  *offset = off;
  free(pbuf);
  free(r.buf);
  free(r.first);
  close(r.fd);
  return rc;
}
