/*
 * src/comm/comm.c — communicators (kusari/comm.h): the single-process one,
 * and MPI's when libkusari is built with it (KUSARI_WITH_MPI, set by the
 * CMake option KUSARI_MPI). Everything above the few primitives (bcast,
 * allreduce of floats / doubles, gather, barrier) is written once for both.
 */
#include "kusari/comm.h"
#include "kusari/error.h"
#include "links/link_impl.h"
#include "comm_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef KUSARI_WITH_MPI
#include <mpi.h>
#endif

struct ks_comm {
  const ks__comm_hooks *hooks; /* first: see comm_impl.h */
  int mpi; /* 0: single */
  int rank, size, intra_rank, intra_size, inter_rank, inter_size;
  ks_comm_stats stats;
#ifdef KUSARI_WITH_MPI
  MPI_Comm world, intra;
#endif
};

/* MPI's counts are int: large buffers go in pieces of at most this many
 * elements. */
#define KS_MPI_MAX_COUNT ((int64_t)1 << 30)

int ks_comm_mpi_built(void) {
#ifdef KUSARI_WITH_MPI
  return 1;
#else
  return 0;
#endif
}

#ifdef KUSARI_WITH_MPI
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

/* ---------------------------------------------------------------------------- */
/* MPI primitives */

#ifdef KUSARI_WITH_MPI
static int g_mpi_refs;      /* live MPI communicators                        */
static int g_mpi_we_init;   /* kusari called MPI_Init_thread                 */

static int mpi_fail(int err, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", err);
  return ks_error_set(KS_EIO, "%s failed: %s", what, msg);
}
#define MPI_TRY(call, what)                           \
  do {                                                \
    int mpi_rc_ = (call);                             \
    if (mpi_rc_ != MPI_SUCCESS) return mpi_fail(mpi_rc_, what); \
  } while (0)


static int mpi_open(ks_comm *c) {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized)
    return ks_error_set(KS_ESTATE, "MPI was already finalized in this process: an MPI communicator cannot be "
                        "created again after the last one was freed");
  if (!inited) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return ks_error_set(KS_EIO, "MPI_Init_thread failed (error %d)", rc);
    g_mpi_we_init = 1;
  }
  /* errors come back as codes (kusari reports them) instead of aborting */
  MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &c->world), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN);
  g_mpi_refs++;
  c->mpi = 1;
  MPI_TRY(MPI_Comm_rank(c->world, &c->rank), "MPI_Comm_rank");
  MPI_TRY(MPI_Comm_size(c->world, &c->size), "MPI_Comm_size");
  /* intra: the ranks sharing this node's memory; inter: node index and count
   * (node leaders, intra rank 0, number themselves and tell their node) */
  MPI_TRY(MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->intra),
          "MPI_Comm_split_type");
  MPI_Comm_set_errhandler(c->intra, MPI_ERRORS_RETURN);
  MPI_TRY(MPI_Comm_rank(c->intra, &c->intra_rank), "MPI_Comm_rank");
  MPI_TRY(MPI_Comm_size(c->intra, &c->intra_size), "MPI_Comm_size");
  MPI_Comm leaders;
  MPI_TRY(MPI_Comm_split(c->world, c->intra_rank == 0 ? 0 : MPI_UNDEFINED, c->rank, &leaders), "MPI_Comm_split");
  int node[2] = {0, 1};
  if (leaders != MPI_COMM_NULL) {
    MPI_Comm_rank(leaders, &node[0]);
    MPI_Comm_size(leaders, &node[1]);
    MPI_Comm_free(&leaders);
  }
  MPI_TRY(MPI_Bcast(node, 2, MPI_INT, 0, c->intra), "MPI_Bcast");
  c->inter_rank = node[0];
  c->inter_size = node[1];
  return KS_OK;
}

static void mpi_close(ks_comm *c) {
  if (c->intra != MPI_COMM_NULL) MPI_Comm_free(&c->intra);
  if (c->world != MPI_COMM_NULL) MPI_Comm_free(&c->world);
  if (--g_mpi_refs == 0 && g_mpi_we_init) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
}
#endif

/* Launched by an MPI launcher: the variables Open MPI, PMI (MPICH, Slurm)
 * and PMIx set for each rank. */
static int under_mpi_launcher(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return 1;
  }
  return 0;
}

static int overlap_arm(ks_comm *c, ks_link *model, struct ks__overlap **out);
static int overlap_finish(struct ks__overlap *ov);
static void overlap_release(struct ks__overlap *ov);

static const ks__comm_hooks g_hooks = {
  ks_comm_rank, ks_comm_size, ks_comm_bcast_data, ks_comm_allreduce_grad, ks_comm_allreduce_f64,
  ks_multi_node_batch_normalization, overlap_arm, overlap_finish, overlap_release,
};

int ks_comm_create(ks_comm **out, const char *name) {
  if (!out) return ks_error_set(KS_EINVAL, "ks_comm_create: out is NULL");
  *out = NULL;
  if (!name) name = "auto";
  int want_mpi;
  if (strcmp(name, "single") == 0) want_mpi = 0;
  else if (strcmp(name, "mpi") == 0 || strcmp(name, "naive") == 0 || strcmp(name, "flat") == 0) want_mpi = 1;
  else if (strcmp(name, "auto") == 0) want_mpi = under_mpi_launcher();
  else
    return ks_error_set(KS_EINVAL, "unknown communicator '%s' (known: single, mpi, auto; naive and flat mean mpi)",
                        name);
#ifndef KUSARI_WITH_MPI
  if (want_mpi)
    return ks_error_set(KS_EUNSUPPORTED,
                        "communicator '%s': this libkusari was built without MPI%s; install Open MPI "
                        "(apt-get install libopenmpi-dev openmpi-bin) and rebuild with -DKUSARI_MPI=ON, "
                        "or use the 'single' communicator",
                        name, strcmp(name, "auto") == 0 ? " but the process was started by an MPI launcher" : "");
#endif
  ks_comm *c = calloc(1, sizeof *c);
  if (!c) return ks_error_set(KS_ENOMEM, "out of memory creating a communicator");
  c->hooks = &g_hooks;
  c->size = c->intra_size = c->inter_size = 1;
#ifdef KUSARI_WITH_MPI
  c->world = c->intra = MPI_COMM_NULL;
  if (want_mpi) {
    int rc = mpi_open(c);
    if (rc != KS_OK) {
      if (c->mpi) mpi_close(c);
      free(c);
      return rc;
    }
  }
#endif
  *out = c;
  return KS_OK;
}

void ks_comm_free(ks_comm *comm) {
  if (!comm) return;
#ifdef KUSARI_WITH_MPI
  if (comm->mpi) mpi_close(comm);
#endif
  free(comm);
}

const char *ks_comm_name(const ks_comm *c) { return c && c->mpi ? "mpi" : "single"; }
int ks_comm_rank(const ks_comm *c) { return c ? c->rank : 0; }
int ks_comm_size(const ks_comm *c) { return c ? c->size : 1; }
int ks_comm_intra_rank(const ks_comm *c) { return c ? c->intra_rank : 0; }
int ks_comm_intra_size(const ks_comm *c) { return c ? c->intra_size : 1; }
int ks_comm_inter_rank(const ks_comm *c) { return c ? c->inter_rank : 0; }
int ks_comm_inter_size(const ks_comm *c) { return c ? c->inter_size : 1; }

void ks_comm_get_stats(const ks_comm *c, ks_comm_stats *out) {
  if (out) *out = c ? c->stats : (ks_comm_stats){0, 0, 0};
}
void ks_comm_reset_stats(ks_comm *c) {
  if (c) c->stats = (ks_comm_stats){0, 0, 0};
}

int ks_comm_abort(ks_comm *c, int code) {
  if (!c) return ks_error_set(KS_EINVAL, "ks_comm_abort: comm is NULL");
#ifdef KUSARI_WITH_MPI
  if (c->mpi) MPI_Abort(c->world, code);
#endif
  (void)code;
  return KS_OK;
}

int ks_comm_barrier(ks_comm *c) {
  if (!c) return ks_error_set(KS_EINVAL, "ks_comm_barrier: comm is NULL");
#ifdef KUSARI_WITH_MPI
  if (c->mpi) {
    double t0 = now_s();
    MPI_TRY(MPI_Barrier(c->world), "MPI_Barrier");
    c->stats.calls++;
    c->stats.seconds += now_s() - t0;
  }
#endif
  return KS_OK;
}

/* The primitives. On a single communicator they are identities. */
int ks_comm_bcast(ks_comm *c, void *buf, int64_t bytes, int root) {
  if (!c || (!buf && bytes > 0) || bytes < 0) return ks_error_set(KS_EINVAL, "ks_comm_bcast: bad argument");
  if (root < 0 || root >= c->size)
    return ks_error_set(KS_EINVAL, "ks_comm_bcast: root %d is not a rank of %d", root, c->size);
#ifdef KUSARI_WITH_MPI
  if (c->mpi) {
    double t0 = now_s();
    for (int64_t off = 0; off < bytes; off += KS_MPI_MAX_COUNT) {
      int64_t n = bytes - off < KS_MPI_MAX_COUNT ? bytes - off : KS_MPI_MAX_COUNT;
      MPI_TRY(MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, c->world), "MPI_Bcast");
      c->stats.calls++;
    }
    c->stats.bytes += bytes;
    c->stats.seconds += now_s() - t0;
  }
#endif
  return KS_OK;
}

static int allreduce_f32_sum(ks_comm *c, float *v, int64_t n) {
#ifdef KUSARI_WITH_MPI
  if (c->mpi) {
    double t0 = now_s();
    for (int64_t off = 0; off < n; off += KS_COMM_BUCKET) {
      int64_t k = n - off < KS_COMM_BUCKET ? n - off : KS_COMM_BUCKET;
      MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v + off, (int)k, MPI_FLOAT, MPI_SUM, c->world), "MPI_Allreduce");
      c->stats.calls++;
    }
    c->stats.bytes += n * (int64_t)sizeof(float);
    c->stats.seconds += now_s() - t0;
  }
#endif
  (void)c; (void)v; (void)n;
  return KS_OK;
}

int ks_comm_allreduce_f64(ks_comm *c, double *v, int64_t n) {
  if (!c || (!v && n > 0) || n < 0) return ks_error_set(KS_EINVAL, "ks_comm_allreduce_f64: bad argument");
#ifdef KUSARI_WITH_MPI
  if (c->mpi) {
    double t0 = now_s();
    for (int64_t off = 0; off < n; off += KS_MPI_MAX_COUNT) {
      int64_t k = n - off < KS_MPI_MAX_COUNT ? n - off : KS_MPI_MAX_COUNT;
      MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v + off, (int)k, MPI_DOUBLE, MPI_SUM, c->world), "MPI_Allreduce");
      c->stats.calls++;
    }
    c->stats.bytes += n * (int64_t)sizeof(double);
    c->stats.seconds += now_s() - t0;
  }
#endif
  return KS_OK;
}

int ks_comm_gather_f64(ks_comm *c, const double *send, int64_t n, double *recv, int root) {
  if (!c || (!send && n > 0) || n < 0 || n > KS_MPI_MAX_COUNT)
    return ks_error_set(KS_EINVAL, "ks_comm_gather_f64: bad argument");
  if (root < 0 || root >= c->size)
    return ks_error_set(KS_EINVAL, "ks_comm_gather_f64: root %d is not a rank of %d", root, c->size);
  if (c->rank == root && !recv && n > 0) return ks_error_set(KS_EINVAL, "ks_comm_gather_f64: recv is NULL on the root");
#ifdef KUSARI_WITH_MPI
  if (c->mpi) {
    double t0 = now_s();
    MPI_TRY(MPI_Gather(send, (int)n, MPI_DOUBLE, recv, (int)n, MPI_DOUBLE, root, c->world), "MPI_Gather");
    c->stats.calls++;
    c->stats.bytes += n * (int64_t)sizeof(double);
    c->stats.seconds += now_s() - t0;
    return KS_OK;
  }
#endif
  if (n > 0 && recv != send) memmove(recv, send, (size_t)n * sizeof *send);
  return KS_OK;
}

/* ---------------------------------------------------------------------------- */
/* model */

/* Checks that every rank has the same parameter count and total size (the
 * cheapest check that the blocks line up); also on a single communicator
 * nothing to compare. */
static int check_same_layout(ks_comm *c, const char *fn, int64_t nparams, int64_t total, int64_t npersist) {
  if (c->size == 1) return KS_OK;
  double mine[3] = {(double)nparams, (double)total, (double)npersist};
  double sum[3] = {mine[0], mine[1], mine[2]};
  int rc = ks_comm_allreduce_f64(c, sum, 3);
  if (rc != KS_OK) return rc;
  for (int i = 0; i < 3; i++)
    if (sum[i] != mine[i] * c->size)
      return ks_error_set(KS_ESTATE,
                          "%s: the ranks' models differ (this rank: %lld parameters, %lld floats, %lld persistent "
                          "values; build the same model on every rank)",
                          fn, (long long)nparams, (long long)total, (long long)npersist);
  return KS_OK;
}

int ks_comm_bcast_data(ks_comm *c, ks_link *model) {
  if (!c || !model) return ks_error_set(KS_EINVAL, "ks_comm_bcast_data: NULL argument");
  int n = 0;
  ks_flat_entry *flat = ks__link_flat(model, &n);
  if (!flat && n) return ks_error_last_code();
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (!flat[i].param->initialized)
      return ks_error_set(KS_ESTATE, "ks_comm_bcast_data: parameter %s is not initialized yet (run a forward "
                          "pass first, or give the link its input size)", flat[i].path);
    total += flat[i].param->data.size;
  }
  int np = 0;
  ks_persist_entry *pl = ks__link_persist_list(model, &np);
  if (!pl && np) return ks_error_last_code();
  int rc = check_same_layout(c, "ks_comm_bcast_data", n, total, np);
  if (rc == KS_OK && c->size > 1) {
    if (ks_link_is_packed(model) && model->pack) {
      rc = ks_comm_bcast(c, model->pack->data, model->pack->size * (int64_t)sizeof(float), 0);
    } else {
      for (int i = 0; i < n && rc == KS_OK; i++)
        rc = ks_comm_bcast(c, flat[i].param->data.data, flat[i].param->data.size * (int64_t)sizeof(float), 0);
    }
    for (int i = 0; i < np && rc == KS_OK; i++) {
      ks_persistent *p = pl[i].p;
      rc = p->is_int ? ks_comm_bcast(c, &p->ival, sizeof p->ival, 0)
                     : ks_comm_bcast(c, p->t->data, (int64_t)ks_tensor_nbytes(p->t), 0);
    }
  }
  ks__persist_list_free(pl, np);
  return rc;
}

static void scale_f32(float *v, int64_t n, float a) {
  for (int64_t i = 0; i < n; i++) v[i] *= a;
}

int ks_comm_allreduce_grad(ks_comm *c, ks_link *model) {
  if (!c || !model) return ks_error_set(KS_EINVAL, "ks_comm_allreduce_grad: NULL argument");
  int n = 0;
  ks_flat_entry *flat = ks__link_flat(model, &n);
  if (!flat && n) return ks_error_last_code();
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    ks_param *p = flat[i].param;
    if (!p->initialized)
      return ks_error_set(KS_ESTATE, "ks_comm_allreduce_grad: parameter %s is not initialized yet", flat[i].path);
    total += p->data.size;
    if (!p->var.grad_valid) { /* zero_fill */
      memset(p->grad.data, 0, ks_tensor_nbytes(&p->grad));
      p->var.grad_valid = 1;
    }
  }
  if (c->size == 1) return KS_OK;
  const float inv = 1.0f / (float)c->size;
  int rc = KS_OK;
  if (ks_link_is_packed(model) && model->pack) {
    /* the padding between parameters is zero on every rank and stays zero */
    rc = allreduce_f32_sum(c, model->pack->grad, model->pack->size);
    if (rc == KS_OK) scale_f32(model->pack->grad, model->pack->size, inv);
  } else {
    for (int i = 0; i < n && rc == KS_OK; i++) {
      ks_param *p = flat[i].param;
      rc = allreduce_f32_sum(c, ks_tensor_f32(&p->grad), p->grad.size);
      if (rc == KS_OK) scale_f32(ks_tensor_f32(&p->grad), p->grad.size, inv);
    }
  }
  (void)total;
  return rc;
}

/* ---------------------------------------------------------------------------- */
/* overlap of the gradients' allreduce with backward (the multi-node optimizer)
 *
 * The packed gradient block is cut, from its end, into buckets of whole
 * parameters of at least KS_COMM_OVERLAP_BUCKET floats (backward finishes
 * the last layers' parameters first). Each parameter's ks_grad_hook counts
 * its bucket's finished parameters; when the last one is done the bucket's
 * MPI_Iallreduce (sum, in place) starts while backward goes on with earlier
 * layers, and every later hook call tests the requests in flight so that MPI
 * progresses them. finish waits for them, reduces the buckets that never
 * started (parameters outside this step's graph: zero_fill) with a blocking
 * allreduce, and scales the block by 1/size: the same floats as
 * ks_comm_allreduce_grad (the sums are of the same values in the same rank
 * order). A second backward before the update (gradient accumulation) first
 * folds a bucket that already started: it waits for it and divides it by
 * size, so that the next sum over the ranks counts it once. */
#define KS_COMM_OVERLAP_BUCKET ((int64_t)1 << 18)

typedef struct ov_param {
  ks_grad_hook hook;     /* first: the hook's address is the entry's */
  struct ks__overlap *ov;
  ks_param *param;
  int bucket;
  int done;              /* finished in this step's backward */
} ov_param;

typedef struct ov_bucket {
  int64_t begin, end;    /* floats of the block */
  int nparams, ndone;
  int started;           /* 1: in flight or complete */
#ifdef KUSARI_WITH_MPI
  MPI_Request req;
#endif
} ov_bucket;

struct ks__overlap {
  ks_comm *c;
  ks_pack *pack;
  ov_param *params;
  int nparams;
  ov_bucket *buckets;
  int nbuckets;
  int failed;            /* an MPI call of a hook failed: finish reports it */
};

#ifdef KUSARI_WITH_MPI
static void ov_progress(struct ks__overlap *ov) {
  for (int b = 0; b < ov->nbuckets; b++) {
    ov_bucket *bk = &ov->buckets[b];
    if (bk->started && bk->req != MPI_REQUEST_NULL) {
      int flag = 0;
      if (MPI_Test(&bk->req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) ov->failed = 1;
    }
  }
}

static int ov_wait(struct ks__overlap *ov, ov_bucket *bk) {
  if (!bk->started || bk->req == MPI_REQUEST_NULL) return KS_OK;
  double t0 = now_s();
  MPI_TRY(MPI_Wait(&bk->req, MPI_STATUS_IGNORE), "MPI_Wait");
  ov->c->stats.seconds += now_s() - t0;
  return KS_OK;
}

static void ov_start(struct ks__overlap *ov, ov_bucket *bk) {
  /* parameters this graph did not reach count as zeros (zero_fill) */
  for (int i = 0; i < ov->nparams; i++) {
    ov_param *e = &ov->params[i];
    if (&ov->buckets[e->bucket] == bk && !e->param->var.grad_valid) {
      memset(e->param->grad.data, 0, ks_tensor_nbytes(&e->param->grad));
      e->param->var.grad_valid = 1;
    }
  }
  double t0 = now_s();
  if (MPI_Iallreduce(MPI_IN_PLACE, ov->pack->grad + bk->begin, (int)(bk->end - bk->begin), MPI_FLOAT, MPI_SUM,
                     ov->c->world, &bk->req) != MPI_SUCCESS)
    ov->failed = 1;
  bk->started = 1;
  ov->c->stats.calls++;
  ov->c->stats.bytes += (bk->end - bk->begin) * (int64_t)sizeof(float);
  ov->c->stats.seconds += now_s() - t0;
}

static void ov_hook(ks_grad_hook *h, ks_var *v, int event) {
  ov_param *e = (ov_param *)h;
  struct ks__overlap *ov = e->ov;
  ov_bucket *bk = &ov->buckets[e->bucket];
  (void)v;
  if (event == 0) {
    /* this backward will add to the parameter's gradient */
    if (bk->started) {
      /* a second backward before the update: fold the bucket's sum */
      if (ov_wait(ov, bk) != KS_OK) ov->failed = 1;
      scale_f32(ov->pack->grad + bk->begin, bk->end - bk->begin, 1.0f / (float)ov->c->size);
      bk->started = 0;
      bk->ndone = 0;
      for (int i = 0; i < ov->nparams; i++)
        if (ov->params[i].bucket == e->bucket) ov->params[i].done = 0;
    } else if (e->done) {
      e->done = 0;
      bk->ndone--;
    }
    return;
  }
  if (!e->done) {
    e->done = 1;
    if (++bk->ndone == bk->nparams && !bk->started) ov_start(ov, bk);
  }
  ov_progress(ov);
}
#endif

static void overlap_release(struct ks__overlap *ov) {
  if (!ov) return;
#ifdef KUSARI_WITH_MPI
  for (int b = 0; b < ov->nbuckets; b++) ov_wait(ov, &ov->buckets[b]);
#endif
  for (int i = 0; i < ov->nparams; i++)
    if (ov->params[i].param->var.grad_hook == &ov->params[i].hook) ov->params[i].param->var.grad_hook = NULL;
  free(ov->params);
  free(ov->buckets);
  free(ov);
}

static int overlap_arm(ks_comm *c, ks_link *model, struct ks__overlap **out) {
  *out = NULL;
#ifdef KUSARI_WITH_MPI
  ks_pack *pk = model->pack;
  const char *env = getenv("KUSARI_COMM_OVERLAP");  /* 0: one allreduce after backward (benchmarks) */
  if (env && !strcmp(env, "0")) return KS_OK;
  /* the bucket size in floats (tests use small ones to get many buckets) */
  const char *bs = getenv("KUSARI_COMM_OVERLAP_BUCKET");
  int64_t bucket = bs && atoll(bs) > 0 ? (int64_t)atoll(bs) : KS_COMM_OVERLAP_BUCKET;
  if (!c->mpi || c->size == 1 || !pk || !ks_link_is_packed(model) || pk->n == 0) return KS_OK;
  for (int i = 1; i < pk->n; i++)
    if (pk->offsets[i] < pk->offsets[i - 1]) return KS_OK; /* not in block order: no overlap */
  struct ks__overlap *ov = calloc(1, sizeof *ov);
  if (ov) {
    ov->params = calloc((size_t)pk->n, sizeof *ov->params);
    ov->buckets = calloc((size_t)pk->n, sizeof *ov->buckets);
  }
  if (!ov || !ov->params || !ov->buckets) {
    if (ov) { free(ov->params); free(ov->buckets); free(ov); }
    return ks_error_set(KS_ENOMEM, "out of memory for the multi-node optimizer's buckets");
  }
  ov->c = c;
  ov->pack = pk;
  ov->nparams = pk->n;
  /* from the end of the block: whole parameters, at least KS_COMM_OVERLAP_BUCKET
   * floats a bucket (the first bucket of the block takes what is left) */
  int64_t end = pk->size;
  int nb = 0;
  for (int i = pk->n - 1; i >= 0; i--) {
    ov_param *e = &ov->params[i];
    e->hook.fn = ov_hook;
    e->ov = ov;
    e->param = pk->params[i];
    e->bucket = nb;
    ov->buckets[nb].nparams++;
    if (end - pk->offsets[i] >= bucket || i == 0) {
      ov->buckets[nb].begin = i == 0 ? 0 : pk->offsets[i];
      ov->buckets[nb].end = end;
      ov->buckets[nb].req = MPI_REQUEST_NULL;
      end = ov->buckets[nb].begin;
      nb++;
    }
  }
  ov->nbuckets = nb;
  for (int b = 0; b < nb; b++)
    if (ov->buckets[b].end - ov->buckets[b].begin > KS_MPI_MAX_COUNT) { overlap_release(ov); return KS_OK; }
  for (int i = 0; i < ov->nparams; i++) ov->params[i].param->var.grad_hook = &ov->params[i].hook;
  *out = ov;
#else
  (void)c; (void)model;
#endif
  return KS_OK;
}

static int overlap_finish(struct ks__overlap *ov) {
  int rc = KS_OK;
#ifdef KUSARI_WITH_MPI
  for (int b = 0; b < ov->nbuckets; b++) {
    ov_bucket *bk = &ov->buckets[b];
    if (bk->started) {
      if (rc == KS_OK) rc = ov_wait(ov, bk);
      continue;
    }
    for (int i = 0; i < ov->nparams; i++) {
      ov_param *e = &ov->params[i];
      if (e->bucket == b && !e->param->var.grad_valid) { /* zero_fill */
        memset(e->param->grad.data, 0, ks_tensor_nbytes(&e->param->grad));
        e->param->var.grad_valid = 1;
      }
    }
    if (rc == KS_OK) rc = allreduce_f32_sum(ov->c, ov->pack->grad + bk->begin, bk->end - bk->begin);
  }
  if (rc == KS_OK && ov->failed) rc = ks_error_set(KS_EIO, "MPI_Iallreduce of a gradient bucket failed during backward");
  if (rc == KS_OK) scale_f32(ov->pack->grad, ov->pack->size, 1.0f / (float)ov->c->size);
  for (int b = 0; b < ov->nbuckets; b++) {
    ov->buckets[b].started = 0;
    ov->buckets[b].ndone = 0;
    ov->buckets[b].req = MPI_REQUEST_NULL;
  }
  for (int i = 0; i < ov->nparams; i++) ov->params[i].done = 0;
  ov->failed = 0;
#else
  (void)ov;
#endif
  return rc;
}

/* ---------------------------------------------------------------------------- */
/* observations */

int ks_comm_mean_observation(ks_comm *c, ks_reporter *obs) {
  if (!c || !obs) return ks_error_set(KS_EINVAL, "ks_comm_mean_observation: NULL argument");
  if (c->size == 1) return KS_OK;
  int n = ks_reporter_size(obs);
  /* the key count and a hash of the keys must agree */
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; i++)
    for (const char *k = ks_reporter_key(obs, i); *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ull;
  double *v = malloc(sizeof(double) * (size_t)(n + 2));
  if (!v) return ks_error_set(KS_ENOMEM, "out of memory");
  v[0] = n;
  v[1] = (double)(h >> 12); /* exact in a double */
  for (int i = 0; i < n; i++) v[i + 2] = ks_reporter_value(obs, i);
  double head[2] = {v[0], v[1]};
  int rc = ks_comm_allreduce_f64(c, v, n + 2);
  if (rc == KS_OK && (v[0] != head[0] * c->size || v[1] != head[1] * c->size))
    rc = ks_error_set(KS_ESTATE, "ks_comm_mean_observation: the ranks reported different keys (this rank: %d)", n);
  for (int i = 0; i < n && rc == KS_OK; i++) {
    char *key = strdup(ks_reporter_key(obs, i));
    if (!key) { rc = ks_error_set(KS_ENOMEM, "out of memory"); break; }
    /* the reporter's own prefix would be added again: report under the full key */
    const char *pre = ks_reporter_prefix(obs);
    char *saved = pre && *pre ? strdup(pre) : NULL;
    if (pre && *pre && !saved) { free(key); rc = ks_error_set(KS_ENOMEM, "out of memory"); break; }
    if (saved) ks_reporter_set_prefix(obs, NULL);
    rc = ks_reporter_report(obs, key, v[i + 2] / c->size);
    if (saved) ks_reporter_set_prefix(obs, saved);
    free(saved);
    free(key);
  }
  free(v);
  return rc;
}

/* ---------------------------------------------------------------------------- */
/* scatter_dataset */

void ks_scatter_index(int64_t n, int size, int rank, int force_equal_length, int64_t *b, int64_t *e) {
  if (size < 1) size = 1;
  if (n < 0) n = 0;
  if (force_equal_length) {
    int64_t sub = (n + size - 1) / size;
    *b = n * rank / size; /* n * rank fits: n < 2^62 / size in practice */
    *e = *b + sub;
    return;
  }
  int64_t base = n / size, extra = n % size;
  *b = rank * base + (rank < extra ? rank : extra);
  *e = *b + base + (rank < extra ? 1 : 0);
}

int ks_scatter_dataset(const ks_dataset *ds, ks_comm *c, int shuffle, uint64_t seed, int force_equal_length,
                       ks_dataset **out) {
  if (!out) return ks_error_set(KS_EINVAL, "ks_scatter_dataset: out is NULL");
  *out = NULL;
  if (!c) return ks_error_set(KS_EINVAL, "ks_scatter_dataset: comm is NULL");
  /* header from rank 0: N, image ndim and shape (a failure on rank 0 is
   * sent as N = -1 so that the other ranks fail too instead of waiting) */
  int64_t head[2 + KS_MAX_DIMS] = {0};
  if (c->rank == 0) {
    if (!ds || !ds->images || !ds->labels) {
      head[0] = -1;
    } else {
      head[0] = ds->size;
      head[1] = ds->images->ndim;
      for (int i = 0; i < ds->images->ndim; i++) head[2 + i] = ds->images->shape[i];
    }
  }
  int rc = ks_comm_bcast(c, head, sizeof head, 0);
  if (rc != KS_OK) return rc;
  if (head[0] < 0) return ks_error_set(KS_EINVAL, "ks_scatter_dataset: rank 0 has no dataset to scatter");
  const int64_t n = head[0];
  const int ndim = (int)head[1];
  /* the full set on every rank: rank 0's own, the others' received */
  const ks_dataset *full = ds;
  ks_dataset *recv = NULL;
  if (c->rank != 0) {
    ks_tensor *im = ks_tensor_new(KS_F32, ndim, head + 2);
    ks_tensor *lb = ks_tensor_new(KS_I32, 1, (int64_t[]){n});
    if (!im || !lb || (rc = ks_dataset_from_tensors(im, lb, &recv)) != KS_OK) {
      ks_tensor_free(im);
      ks_tensor_free(lb);
      return rc != KS_OK ? rc : ks_error_last_code();
    }
    full = recv;
  }
  if ((rc = ks_comm_bcast(c, full->images->data, (int64_t)ks_tensor_nbytes(full->images), 0)) != KS_OK ||
      (rc = ks_comm_bcast(c, full->labels->data, (int64_t)ks_tensor_nbytes(full->labels), 0)) != KS_OK) {
    ks_dataset_free(recv);
    return rc;
  }
  int64_t b, e;
  ks_scatter_index(n, c->size, c->rank, force_equal_length, &b, &e);
  int64_t *order = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
  if (!order) { ks_dataset_free(recv); return ks_error_set(KS_ENOMEM, "out of memory"); }
  if (shuffle) {
    ks_rng rng;
    ks_rng_seed(&rng, seed);
    ks_rng_permutation(&rng, order, n);
  } else {
    for (int64_t i = 0; i < n; i++) order[i] = i;
  }
  int64_t shape[KS_MAX_DIMS];
  for (int i = 0; i < ndim; i++) shape[i] = head[2 + i];
  shape[0] = e - b;
  ks_tensor *im = ks_tensor_new(KS_F32, ndim, shape);
  ks_tensor *lb = ks_tensor_new(KS_I32, 1, (int64_t[]){e - b});
  ks_dataset *mine = NULL;
  if (!im || !lb || (rc = ks_dataset_from_tensors(im, lb, &mine)) != KS_OK) {
    rc = rc != KS_OK ? rc : ks_error_last_code();
    ks_tensor_free(im);
    ks_tensor_free(lb);
  } else {
    rc = ks_dataset_gather(full, order + b, e - b, ks_tensor_f32(mine->images), ks_tensor_i32(mine->labels));
    if (rc != KS_OK) { ks_dataset_free(mine); mine = NULL; }
  }
  free(order);
  ks_dataset_free(recv);
  *out = mine;
  return rc;
}
