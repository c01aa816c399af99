/*
 * src/core/arena.c — bump allocator with consolidation on reset.
 *
 * Blocks form a list; allocation bumps in the current block and opens a new
 * block (at least twice the previous one) when it does not fit. Reset keeps a
 * single block: if more than one was used, they are freed and replaced by one
 * block of the high-water size, so the next iteration fits without malloc.
 */
#include "kusari/arena.h"
#include "kusari/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KS_ARENA_ALIGN 64
#define KS_ARENA_DEFAULT (1u << 20)

typedef struct ks_block {
  struct ks_block *next;
  size_t cap, used;
  unsigned char *mem;
} ks_block;

struct ks_arena {
  ks_block *head;   /* current block (most recent) */
  size_t used_total, high_water, mallocs;
  void *(*mem_alloc)(size_t bytes); /* block memory: NULL = host (aligned_alloc) */
  void (*mem_free)(void *p);
};

static void *host_alloc(size_t cap) { return aligned_alloc(KS_ARENA_ALIGN, cap); }

static ks_block *block_new(ks_arena *a, size_t cap) {
  ks_block *b = malloc(sizeof *b);
  if (!b) return NULL;
  cap = (cap + KS_ARENA_ALIGN - 1) & ~(size_t)(KS_ARENA_ALIGN - 1);
  b->mem = a->mem_alloc(cap);
  if (!b->mem) { free(b); return NULL; }
  b->cap = cap;
  b->used = 0;
  b->next = NULL;
  a->mallocs++;
  return b;
}

static void blocks_free(ks_arena *a, ks_block *b) {
  while (b) { ks_block *n = b->next; a->mem_free(b->mem); free(b); b = n; }
}

ks_arena *ks_arena_new(size_t initial) { return ks_arena_new_with(initial, NULL, NULL); }

ks_arena *ks_arena_new_with(size_t initial, void *(*mem_alloc)(size_t bytes),
                            void (*mem_free)(void *p)) {
  ks_arena *a = calloc(1, sizeof *a);
  if (!a) { ks_error_set(KS_ENOMEM, "out of memory creating an arena"); return NULL; }
  a->mem_alloc = mem_alloc && mem_free ? mem_alloc : host_alloc;
  a->mem_free = mem_alloc && mem_free ? mem_free : free;
  a->head = block_new(a, initial ? initial : KS_ARENA_DEFAULT);
  if (!a->head) { free(a); ks_error_set(KS_ENOMEM, "out of memory creating an arena"); return NULL; }
  return a;
}

void ks_arena_free(ks_arena *a) {
  if (!a) return;
  blocks_free(a, a->head);
  free(a);
}

void *ks_arena_alloc(ks_arena *a, size_t size) {
  size_t need = (size + KS_ARENA_ALIGN - 1) & ~(size_t)(KS_ARENA_ALIGN - 1);
  if (need == 0) need = KS_ARENA_ALIGN;
  ks_block *b = a->head;
  if (b->cap - b->used < need) {
    size_t cap = b->cap * 2;
    if (cap < need) cap = need;
    ks_block *nb = block_new(a, cap);
    if (!nb) {
      ks_error_set(KS_ENOMEM, "out of memory: arena could not grow to %zu bytes", cap);
      return NULL;
    }
    nb->next = b;
    a->head = b = nb;
  }
  void *p = b->mem + b->used;
  b->used += need;
  a->used_total += need;
  if (a->used_total > a->high_water) a->high_water = a->used_total;
  return p;
}

void *ks_arena_calloc(ks_arena *a, size_t size) {
  void *p = ks_arena_alloc(a, size);
  if (p) memset(p, 0, size);
  return p;
}

void ks_arena_reset(ks_arena *a) {
  if (a->head->next) {
    /* more than one block was needed: replace all by one of high-water size */
    ks_block *nb = block_new(a, a->high_water);
    if (nb) {
      blocks_free(a, a->head);
      a->head = nb;
    } else {
      /* keep the biggest (most recent) block; free the older ones */
      blocks_free(a, a->head->next);
      a->head->next = NULL;
    }
  }
  a->head->used = 0;
  a->used_total = 0;
}

ks_arena_stats ks_arena_get_stats(const ks_arena *a) {
  ks_arena_stats s = {0};
  s.used = a->used_total;
  for (ks_block *b = a->head; b; b = b->next) s.capacity += b->cap;
  s.high_water = a->high_water;
  s.mallocs = a->mallocs;
  return s;
}
