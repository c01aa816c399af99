/*
 * src/iterators/serial_iterator.c — chainer.iterators.SerialIterator.
 *
 * One next() is Chainer's iterator_statemachine: take order[i:i+batch]; while
 * the end of the order is reached, take the tail, draw the next order (when
 * shuffling), bump the epoch and continue from the new order's start with
 * what is left of the batch (repeat) or stop there (no repeat).
 */
#include "kusari/iterator.h"

#include <stdlib.h>
#include <string.h>

#include "kusari/error.h"      /* ks_error_set, KS_E* */

struct ks_serial_iterator {
  int64_t  size;              /* N                                         */
  int64_t  batch_size;
  int      repeat;
  int      shuffle;
  int64_t  position;          /* current_position                          */
  int64_t  epoch;
  int      is_new_epoch;
  int64_t  prev_epoch;        /* -1: previous_epoch_detail is None          */
  int64_t  prev_position;
  ks_rng   rng;
  int64_t *order;             /* N entries with shuffle, NULL otherwise     */
  int64_t *batch;             /* batch_size entries, handed out by next()   */
};

int ks_serial_iterator_new(ks_serial_iterator **out, int64_t size, int64_t batch_size,
                           int repeat, int shuffle, uint64_t seed)
{
  if (!out)
    return ks_error_set(KS_EINVAL, "ks_serial_iterator_new: out is NULL");
  *out = NULL;
  if (batch_size < 1)
    return ks_error_set(KS_EINVAL, "SerialIterator: batch_size must be >= 1, got %lld",
                        (long long)batch_size);
  /* Chainer loops forever on an empty dataset (repeat or not): refuse it */
  if (size < 1)
    return ks_error_set(KS_EINVAL, "SerialIterator: dataset size must be >= 1, got %lld",
                        (long long)size);
  if ((uint64_t)batch_size > SIZE_MAX / sizeof(int64_t) || (uint64_t)size > SIZE_MAX / sizeof(int64_t))
    return ks_error_set(KS_EINVAL, "SerialIterator: size or batch_size too large");

  ks_serial_iterator *it = calloc(1, sizeof *it);
  if (!it)
    return ks_error_set(KS_ENOMEM, "cannot allocate a SerialIterator");
  it->size = size;
  it->batch_size = batch_size;
  it->repeat = repeat != 0;
  it->shuffle = shuffle != 0;
  ks_rng_seed(&it->rng, seed);
  it->batch = malloc((size_t)batch_size * sizeof(int64_t));
  if (it->shuffle && size > 0)
    it->order = malloc((size_t)size * sizeof(int64_t));
  if (!it->batch || (it->shuffle && size > 0 && !it->order)) {
    ks_serial_iterator_free(it);
    return ks_error_set(KS_ENOMEM, "cannot allocate a SerialIterator of %lld examples, batch %lld",
                        (long long)size, (long long)batch_size);
  }
  ks_serial_iterator_reset(it);
  *out = it;
  return KS_OK;
}

void ks_serial_iterator_free(ks_serial_iterator *it)
{
  if (!it)
    return;
  free(it->order);
  free(it->batch);
  free(it);
}

void ks_serial_iterator_reset(ks_serial_iterator *it)
{
  if (!it)
    return;
  if (it->shuffle && it->size > 0)
    ks_rng_permutation(&it->rng, it->order, it->size);
  it->position = 0;
  it->epoch = 0;
  it->is_new_epoch = 0;
  it->prev_epoch = -1;
  it->prev_position = 0;
}

/* Appends order[i:j] (or i..j-1 without shuffle) to the batch at *k. */
static void take(ks_serial_iterator *it, int64_t i, int64_t j, int64_t *k)
{
  int64_t *dst = it->batch + *k;
  if (it->order) {
    memcpy(dst, it->order + i, (size_t)(j - i) * sizeof(int64_t));
  } else {
    for (int64_t v = i; v < j; v++)
      *dst++ = v;
  }
  *k += j - i;
}

int ks_serial_iterator_next(ks_serial_iterator *it, const int64_t **indices, int64_t *n)
{
  if (!it || !indices || !n)
    return ks_error_set(KS_EINVAL, "ks_serial_iterator_next: NULL argument");
  *indices = NULL;
  *n = 0;
  /* Chainer sets _previous_epoch_detail before the state machine, also when
   * it then raises StopIteration. */
  it->prev_epoch = it->epoch;
  it->prev_position = it->position;
  if (!it->repeat && it->epoch > 0)
    return KS_ITER_END;

  const int64_t size = it->size;
  int64_t i = it->position;
  int64_t i_end = i + it->batch_size;
  if (!it->repeat && i_end > size)
    i_end = size;
  int is_new_epoch = 0;
  int64_t k = 0;
  while (i_end >= size) {
    take(it, i, size, &k);
    if (it->order)
      ks_rng_permutation(&it->rng, it->order, size);
    i = 0;
    i_end = it->repeat ? i_end - size : 0;
    it->epoch++;
    is_new_epoch = 1;
  }
  take(it, i, i_end, &k);
  it->position = i_end;
  it->is_new_epoch = is_new_epoch;
  *indices = it->batch;
  *n = k;
  return KS_OK;
}

int64_t ks_serial_iterator_size(const ks_serial_iterator *it) { return it->size; }
int64_t ks_serial_iterator_batch_size(const ks_serial_iterator *it) { return it->batch_size; }
int ks_serial_iterator_repeat(const ks_serial_iterator *it) { return it->repeat; }
int ks_serial_iterator_shuffle(const ks_serial_iterator *it) { return it->shuffle; }
int64_t ks_serial_iterator_current_position(const ks_serial_iterator *it) { return it->position; }
int64_t ks_serial_iterator_epoch(const ks_serial_iterator *it) { return it->epoch; }
int ks_serial_iterator_is_new_epoch(const ks_serial_iterator *it) { return it->is_new_epoch; }
const int64_t *ks_serial_iterator_order(const ks_serial_iterator *it) { return it->order; }

static double detail(int64_t epoch, int64_t position, int64_t size)
{
  return size > 0 ? (double)epoch + (double)position / (double)size : (double)epoch;
}

double ks_serial_iterator_epoch_detail(const ks_serial_iterator *it)
{
  return detail(it->epoch, it->position, it->size);
}

double ks_serial_iterator_previous_epoch_detail(const ks_serial_iterator *it)
{
  if (it->prev_epoch < 0)
    return -1.0;
  return detail(it->prev_epoch, it->prev_position, it->size);
}

/* ---- state ------------------------------------------------------------------ */

int ks_serial_iterator_get_state(const ks_serial_iterator *it, ks_serial_iterator_state *st)
{
  if (!it || !st)
    return ks_error_set(KS_EINVAL, "ks_serial_iterator_get_state: NULL argument");
  st->current_position = it->position;
  st->epoch = it->epoch;
  st->is_new_epoch = it->is_new_epoch;
  st->previous_epoch = it->prev_epoch;
  st->previous_position = it->prev_position;
  st->rng = it->rng;
  st->order_size = it->order ? it->size : 0;
  st->order = it->order;
  return KS_OK;
}

int ks_serial_iterator_set_state(ks_serial_iterator *it, const ks_serial_iterator_state *st)
{
  if (!it || !st)
    return ks_error_set(KS_EINVAL, "ks_serial_iterator_set_state: NULL argument");
  const int64_t size = it->size;
  const int64_t want_order = it->order ? size : 0;
  if (st->order_size != want_order)
    return ks_error_set(KS_ESHAPE,
                        "SerialIterator state: order has %lld entries, this iterator "
                        "(size %lld, shuffle %d) needs %lld",
                        (long long)st->order_size, (long long)size, it->shuffle,
                        (long long)want_order);
  if (st->current_position < 0 || st->current_position > size || st->epoch < 0 ||
      (st->is_new_epoch != 0 && st->is_new_epoch != 1) || st->previous_epoch < -1 ||
      st->previous_position < 0 || st->previous_position > size)
    return ks_error_set(KS_EFORMAT,
                        "SerialIterator state out of range: current_position %lld, epoch %lld, "
                        "is_new_epoch %d, previous (%lld, %lld), size %lld",
                        (long long)st->current_position, (long long)st->epoch,
                        st->is_new_epoch, (long long)st->previous_epoch,
                        (long long)st->previous_position, (long long)size);
  if (want_order > 0) {
    if (!st->order)
      return ks_error_set(KS_EINVAL, "SerialIterator state: order is NULL");
    unsigned char *seen = calloc((size_t)size, 1);
    if (!seen)
      return ks_error_set(KS_ENOMEM, "cannot allocate %lld bytes to check an order",
                          (long long)size);
    for (int64_t k = 0; k < size; k++) {
      int64_t v = st->order[k];
      if (v < 0 || v >= size || seen[v]) {
        free(seen);
        return ks_error_set(KS_EFORMAT,
                            "SerialIterator state: order is not a permutation of 0..%lld "
                            "(entry %lld is %lld)",
                            (long long)size - 1, (long long)k, (long long)v);
      }
      seen[v] = 1;
    }
    free(seen);
    if (st->order != it->order)
      memmove(it->order, st->order, (size_t)size * sizeof(int64_t));
  }
  it->position = st->current_position;
  it->epoch = st->epoch;
  it->is_new_epoch = st->is_new_epoch;
  it->prev_epoch = st->previous_epoch;
  it->prev_position = st->previous_position;
  it->rng = st->rng;
  return KS_OK;
}

static int put_scalar(ks_state_put_fn put, void *ud, const char *key, int64_t value)
{
  if (value < INT32_MIN || value > INT32_MAX)
    return ks_error_set(KS_EUNSUPPORTED, "SerialIterator state: %s = %lld does not fit int32",
                        key, (long long)value);
  int32_t v = (int32_t)value;
  int64_t shape[1] = {1};
  ks_tensor t;
  int rc = ks_tensor_view_init(&t, KS_I32, 0, shape, &v);
  if (rc)
    return rc;
  return put(ud, key, &t);
}

int ks_serial_iterator_save_state(const ks_serial_iterator *it, ks_state_put_fn put, void *ud)
{
  if (!it || !put)
    return ks_error_set(KS_EINVAL, "ks_serial_iterator_save_state: NULL argument");
  int rc;
  if ((rc = put_scalar(put, ud, "current_position", it->position)) ||
      (rc = put_scalar(put, ud, "epoch", it->epoch)) ||
      (rc = put_scalar(put, ud, "is_new_epoch", it->is_new_epoch)) ||
      (rc = put_scalar(put, ud, "previous_epoch", it->prev_epoch)) ||
      (rc = put_scalar(put, ud, "previous_position", it->prev_position)))
    return rc;

  int32_t words[8];
  for (int w = 0; w < 4; w++) {
    words[2 * w] = (int32_t)(uint32_t)(it->rng.s[w] & 0xffffffffu);
    words[2 * w + 1] = (int32_t)(uint32_t)(it->rng.s[w] >> 32);
  }
  int64_t rshape[1] = {8};
  ks_tensor t;
  if ((rc = ks_tensor_view_init(&t, KS_I32, 1, rshape, words)))
    return rc;
  if ((rc = put(ud, "rng_state", &t)))
    return rc;

  if (!it->order)
    return KS_OK;
  if (it->size > INT32_MAX)
    return ks_error_set(KS_EUNSUPPORTED, "SerialIterator state: order of %lld entries does not fit int32",
                        (long long)it->size);
  int32_t *o = malloc((size_t)it->size * sizeof(int32_t));
  if (!o)
    return ks_error_set(KS_ENOMEM, "cannot allocate the order for saving");
  for (int64_t k = 0; k < it->size; k++)
    o[k] = (int32_t)it->order[k];
  int64_t oshape[1] = {it->size};
  rc = ks_tensor_view_init(&t, KS_I32, 1, oshape, o);
  if (!rc)
    rc = put(ud, "order", &t);
  free(o);
  return rc;
}

/* Fetches key and checks it is int32 with 'count' elements (count 1: a
 * scalar of ndim 0 or shape (1,)). */
static int get_i32(ks_state_get_fn get, void *ud, const char *key, int64_t count,
                   const int32_t **data)
{
  const ks_tensor *t = NULL;
  int rc = get(ud, key, &t);
  if (rc)
    return rc;
  if (!t)
    return ks_error_set(KS_ENOTFOUND, "SerialIterator state: %s missing", key);
  int ok = t->dtype == KS_I32 && t->size == count &&
           (count == 1 ? t->ndim <= 1 : (t->ndim == 1 && t->shape[0] == count));
  if (!ok) {
    char buf[96];
    return ks_error_set(KS_ESHAPE, "SerialIterator state: %s is %s %s, expected int32 with %lld element%s",
                        key, ks_dtype_name(t->dtype), ks_shape_str(t->ndim, t->shape, buf, sizeof buf),
                        (long long)count, count == 1 ? "" : "s");
  }
  *data = ks_tensor_i32(t);
  return KS_OK;
}

int ks_serial_iterator_load_state(ks_serial_iterator *it, ks_state_get_fn get, void *ud)
{
  if (!it || !get)
    return ks_error_set(KS_EINVAL, "ks_serial_iterator_load_state: NULL argument");
  static const char *const keys[5] = {"current_position", "epoch", "is_new_epoch",
                                      "previous_epoch", "previous_position"};
  int64_t v[5];
  int rc;
  for (int k = 0; k < 5; k++) {
    const int32_t *p = NULL;
    if ((rc = get_i32(get, ud, keys[k], 1, &p)))
      return rc;
    v[k] = p[0];
  }
  ks_serial_iterator_state st = {
    .current_position = v[0], .epoch = v[1], .is_new_epoch = (int)v[2],
    .previous_epoch = v[3], .previous_position = v[4],
  };
  const int32_t *w = NULL;
  if ((rc = get_i32(get, ud, "rng_state", 8, &w)))
    return rc;
  for (int k = 0; k < 4; k++)
    st.rng.s[k] = (uint64_t)(uint32_t)w[2 * k] | (uint64_t)(uint32_t)w[2 * k + 1] << 32;
  if (!it->order)
    return ks_serial_iterator_set_state(it, &st);

  const int32_t *o = NULL;
  if ((rc = get_i32(get, ud, "order", it->size, &o)))
    return rc;
  int64_t *order = malloc((size_t)it->size * sizeof(int64_t));
  if (!order)
    return ks_error_set(KS_ENOMEM, "cannot allocate the order for loading");
  for (int64_t k = 0; k < it->size; k++)
    order[k] = o[k];
  st.order_size = it->size;
  st.order = order;
  rc = ks_serial_iterator_set_state(it, &st);
  free(order);
  return rc;
}
