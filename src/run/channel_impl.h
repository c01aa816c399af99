/*
 * src/run/channel_impl.h — byte layout of the run metrics channel (private to
 * src/run/; the platform reads channels through ks_run_channel_read()).
 *
 * The file is KS_RUN_CHANNEL_BYTES long (sparse). Byte 0 holds the header, one
 * slot long; records start at byte KS_CH_SLOT. A record is 1 head slot plus
 * 'nslots - 1' continuation slots. Every slot starts with a 32-bit kind word:
 * 0 = not published yet, KS_CH_CONT = continuation, else a record kind. The
 * payload ("name\0text\0") starts at head.payload and goes on in the
 * continuations' payload bytes. Writers fill the continuations and the head's
 * fields first and store the head's kind word last (release), so a reader that
 * loads a non-zero kind (acquire) sees the whole record.
 */
#ifndef KUSARI_RUN_CHANNEL_IMPL_H
#define KUSARI_RUN_CHANNEL_IMPL_H

#include <stdint.h>

#define KS_CH_MAGIC "KSRUNCH1"
#define KS_CH_VERSION 1u
#define KS_CH_SLOT 128u
#define KS_CH_CONT 3u
/* Longest name (metric name, tag key) and text (tag value) a writer may put
 * in a record; the reader refuses longer ones as corrupt. */
#define KS_CH_NAME_MAX 255
#define KS_CH_TEXT_MAX 65536
/* Largest rank a metric record may carry (its text, in decimal). */
#define KS_CH_RANK_MAX 999999

typedef struct ks_ch_header {
  char magic[8];        /* KS_CH_MAGIC */
  uint32_t version;     /* KS_CH_VERSION */
  uint32_t slot;        /* KS_CH_SLOT */
  uint64_t capacity;    /* file size in bytes */
  uint64_t tail;        /* next free byte; advanced with atomic fetch-add */
} ks_ch_header;

typedef struct ks_ch_head {
  uint32_t kind;        /* published last */
  uint32_t nslots;      /* slots in this record, >= 1 */
  uint32_t name_len;    /* bytes of name, without its NUL */
  uint32_t text_len;    /* bytes of text, without its NUL */
  int64_t step;
  double value;
  double time;
  char payload[KS_CH_SLOT - 40];
} ks_ch_head;

typedef struct ks_ch_cont {
  uint32_t kind;        /* KS_CH_CONT */
  uint32_t pad;
  char payload[KS_CH_SLOT - 8];
} ks_ch_cont;

_Static_assert(sizeof(ks_ch_head) == KS_CH_SLOT, "head slot size");
_Static_assert(sizeof(ks_ch_cont) == KS_CH_SLOT, "continuation slot size");
_Static_assert(sizeof(ks_ch_header) <= KS_CH_SLOT, "header size");

#define KS_CH_HEAD_PAYLOAD (KS_CH_SLOT - 40u)
#define KS_CH_CONT_PAYLOAD (KS_CH_SLOT - 8u)

/* Slots needed for a payload of 'n' bytes. */
static inline uint32_t ks_ch_slots_for(uint64_t n) {
  if (n <= KS_CH_HEAD_PAYLOAD) return 1;
  return 1u + (uint32_t)((n - KS_CH_HEAD_PAYLOAD + KS_CH_CONT_PAYLOAD - 1) / KS_CH_CONT_PAYLOAD);
}

#endif
