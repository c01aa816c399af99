/*
 * kusari/iterator.h — SerialIterator with chainer.iterators.SerialIterator's
 * semantics (Chainer v7, iterators/_statemachine.py).
 *
 * The iterator walks indices 0..N-1 of a dataset of N examples in batches of
 * batch_size; next() hands back the batch's indices and the caller gathers
 * the examples (ks_dataset_gather). Behaviour, exactly as Chainer:
 *   - shuffle: the order is a fresh permutation of 0..N-1 drawn from the
 *     iterator's seeded ks_rng at creation/reset and at every epoch end;
 *     without shuffle the order is 0..N-1.
 *   - repeat = 1: endless. A batch that reaches the end of the order takes
 *     the rest of its examples from the next epoch's order (a new
 *     permutation when shuffling), so every batch has batch_size indices;
 *     epoch is incremented and is_new_epoch is 1 for that batch (also when
 *     the batch ends exactly at N).
 *   - repeat = 0: one sweep; the last batch may be partial (N % batch_size),
 *     it sets epoch = 1, is_new_epoch = 1, current_position = 0, and every
 *     next() after it returns KS_ITER_END.
 *   - epoch_detail = epoch + current_position / N; previous_epoch_detail is
 *     epoch_detail before the last next(), or -1.0 (Chainer: None) before the
 *     first next() and after reset.
 * Reset does not reseed: like Chainer, it draws the next permutation from
 * the RNG's current state.
 */
#ifndef KUSARI_ITERATOR_H
#define KUSARI_ITERATOR_H

#include <stdint.h>

#include "kusari/random.h"   /* ks_rng */
#include "kusari/tensor.h"   /* ks_tensor (state export) */

#ifdef __cplusplus
extern "C" {
#endif

/* Positive return of ks_serial_iterator_next: no more batches (repeat = 0).
 * Errors are negative (kusari/error.h), so `while (next(...) == KS_OK)` works. */
#define KS_ITER_END 1

typedef struct ks_serial_iterator ks_serial_iterator;

/* New iterator over a dataset of 'size' examples. shuffle: 0/1; seed seeds
 * the shuffle RNG (ignored without shuffle). KS_EINVAL if batch_size < 1
 * or size < 1 (Chainer's state machine loops forever on an empty dataset).
 * *out is NULL on failure. Free with ks_serial_iterator_free. */
int ks_serial_iterator_new(ks_serial_iterator **out, int64_t size, int64_t batch_size,
                           int repeat, int shuffle, uint64_t seed);
/* NULL is a no-op. */
void ks_serial_iterator_free(ks_serial_iterator *it);

/* Next batch: *indices points at *n indices (1 <= *n <= batch_size) in a buffer owned by the iterator,
 * valid until the next call of next/reset/set_state/free. Returns KS_OK,
 * KS_ITER_END (no batch; *indices NULL, *n 0) once a repeat = 0 iterator is
 * done, or KS_EINVAL on NULL arguments. Never allocates. */
int ks_serial_iterator_next(ks_serial_iterator *it, const int64_t **indices, int64_t *n);

/* Back to the start (position 0, epoch 0, is_new_epoch 0, previous
 * epoch_detail none); draws a new order when shuffling. */
void ks_serial_iterator_reset(ks_serial_iterator *it);

int64_t ks_serial_iterator_size(const ks_serial_iterator *it);        /* N            */
int64_t ks_serial_iterator_batch_size(const ks_serial_iterator *it);
int     ks_serial_iterator_repeat(const ks_serial_iterator *it);
int     ks_serial_iterator_shuffle(const ks_serial_iterator *it);
int64_t ks_serial_iterator_current_position(const ks_serial_iterator *it);
int64_t ks_serial_iterator_epoch(const ks_serial_iterator *it);
int     ks_serial_iterator_is_new_epoch(const ks_serial_iterator *it);
double  ks_serial_iterator_epoch_detail(const ks_serial_iterator *it);
/* -1.0 when Chainer's would be None. */
double  ks_serial_iterator_previous_epoch_detail(const ks_serial_iterator *it);
/* The current order (N entries; NULL without shuffle). Valid like indices. */
const int64_t *ks_serial_iterator_order(const ks_serial_iterator *it);

/* ---- state (for snapshots) --------------------------------------------------
 * Everything that determines the future batches. previous_epoch_detail is
 * kept as the exact pair (previous_epoch, previous_position) instead of a
 * double: previous_epoch_detail = previous_epoch + previous_position / N,
 * and previous_epoch == -1 means none. */
typedef struct ks_serial_iterator_state {
  int64_t current_position;
  int64_t epoch;
  int     is_new_epoch;
  int64_t previous_epoch;      /* -1: no previous epoch_detail */
  int64_t previous_position;
  ks_rng  rng;                 /* shuffle RNG state (the next permutation)    */
  int64_t order_size;          /* N with shuffle, 0 without                   */
  const int64_t *order;        /* get: the iterator's own array (valid like
                                  indices); set: copied from here             */
} ks_serial_iterator_state;

/* Fills *st from the iterator. Never fails for valid arguments. */
int ks_serial_iterator_get_state(const ks_serial_iterator *it, ks_serial_iterator_state *st);
/* Restores a state taken from an iterator with the same size and shuffle
 * setting (batch_size and repeat are configuration, not state). Checks
 * everything first and changes nothing on error: KS_ESHAPE if order_size
 * does not match, KS_EFORMAT if order is not a permutation of 0..N-1 or a
 * position/epoch is out of range. */
int ks_serial_iterator_set_state(ks_serial_iterator *it, const ks_serial_iterator_state *st);

/* The state as named tensors, for a snapshot writer. Calls put(ud, key, t)
 * once per key, with t a temporary view valid during the call only:
 *   "current_position" int32 (), "epoch" int32 (), "is_new_epoch" int32 (),
 *   "previous_epoch" int32 (), "previous_position" int32 (),
 *   "rng_state" int32 (8,) (the 4 uint64 words, low 32 bits first),
 *   "order" int32 (N,) (only with shuffle).
 * Stops at and returns the first nonzero value put returns. KS_EUNSUPPORTED
 * if a value does not fit int32. Allocates one temporary (N,) buffer. */
typedef int (*ks_state_put_fn)(void *ud, const char *key, const ks_tensor *t);
int ks_serial_iterator_save_state(const ks_serial_iterator *it, ks_state_put_fn put, void *ud);

/* The reverse: get(ud, key, &t) must set t to the tensor saved under key
 * (owned by the caller, read during the call) or return nonzero (returned
 * as is, e.g. KS_ENOTFOUND). Checks dtype/shape of each tensor (KS_ESHAPE
 * naming the key) and then validates like set_state. */
typedef int (*ks_state_get_fn)(void *ud, const char *key, const ks_tensor **t);
int ks_serial_iterator_load_state(ks_serial_iterator *it, ks_state_get_fn get, void *ud);

#ifdef __cplusplus
}
#endif
#endif
