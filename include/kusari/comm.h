/*
 * kusari/comm.h — data-parallel training across processes (ChainerMN's
 * concepts under C names): a communicator, broadcast of the parameters,
 * the mean of the gradients over ranks, observations, a multi-node
 * optimizer and evaluator, and scatter_dataset.
 *
 *   ks_comm *comm;
 *   if (ks_comm_create(&comm, "auto") != KS_OK) die(ks_error_last());
 *   ks_dataset *mine;                       // this rank's shard
 *   ks_scatter_dataset(train, comm, 1, 0, 1, &mine);
 *   ks_optimizer *opt = ks_optimizer_adam_new(NULL);
 *   ks_create_multi_node_optimizer(opt, comm);
 *   ks_optimizer_setup(opt, model);
 *   ... train on 'mine' exactly as in one process ...
 *   ks_comm_free(comm);
 *
 * The same program runs with and without mpirun: "auto" is the MPI
 * communicator when the process was started by an MPI launcher and the
 * single-process one otherwise; "single" is always rank 0 of 1 (every call
 * is then a no-op that succeeds), "mpi" is MPI_COMM_WORLD (a plain start
 * without mpirun is rank 0 of 1 too, MPI's singleton). MPI is optional at
 * build time (cmake -DKUSARI_MPI=AUTO|ON|OFF): without it "mpi" fails with
 * KS_EUNSUPPORTED and a message saying how to get it, "auto" and "single"
 * work. ks_comm_mpi_built() says which.
 *
 * Collectives are calls every rank makes in the same order (MPI's rule); a
 * rank that stops calling them leaves the others waiting, so a program that
 * fails on one rank should call ks_comm_abort (ChainerMN installs the same
 * as a global exception hook). Communicators are created and used from one
 * thread (MPI_THREAD_FUNNELED); kusari's kernel threads never call MPI.
 */
#ifndef KUSARI_COMM_H
#define KUSARI_COMM_H

#include <stdint.h>
#include "kusari/datasets.h"   /* ks_dataset */
#include "kusari/link.h"       /* ks_link */
#include "kusari/optimizer.h"  /* ks_optimizer */
#include "kusari/trainer.h"    /* ks_reporter, ks_extension */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_comm ks_comm;

/* 1 when libkusari was built with MPI, else 0. */
int ks_comm_mpi_built(void);

/* name: "single", "mpi" or "auto" (see the top; ChainerMN's "naive" and
 * "flat" are accepted as "mpi": on the CPU they are the same). The first
 * MPI communicator initializes MPI (unless the program did) and the last
 * one freed finalizes it (only if kusari initialized it). KS_EINVAL for an
 * unknown name; KS_EUNSUPPORTED for "mpi" without MPI in the build. */
int ks_comm_create(ks_comm **out, const char *name);
void ks_comm_free(ks_comm *comm);  /* NULL: no-op */

/* "single" or "mpi". */
const char *ks_comm_name(const ks_comm *comm);
int ks_comm_rank(const ks_comm *comm);        /* 0 .. size-1                     */
int ks_comm_size(const ks_comm *comm);
int ks_comm_intra_rank(const ks_comm *comm);  /* rank among this node's ranks    */
int ks_comm_intra_size(const ks_comm *comm);  /* ranks on this node              */
int ks_comm_inter_rank(const ks_comm *comm);  /* this node's index               */
int ks_comm_inter_size(const ks_comm *comm);  /* number of nodes                 */

/* Ends every rank of the job (MPI_Abort) with 'code'; on a single
 * communicator, returns KS_OK and does nothing (the caller exits itself). */
int ks_comm_abort(ks_comm *comm, int code);
int ks_comm_barrier(ks_comm *comm);

/* ---- model ------------------------------------------------------------------------ */
/* bcast_data: every parameter's data and every persistent value (batch
 * normalization's running statistics, ...) of 'model' from rank 0 to all
 * ranks; the models must have the same parameters (names and shapes; they
 * are checked by their count and total size). One call for a packed model's
 * parameter block. KS_ESTATE when a parameter is not initialized yet. */
int ks_comm_bcast_data(ks_comm *comm, ks_link *model);
/* allreduce_grad (ChainerMN's multi_node_mean_grad with zero_fill): every
 * parameter's gradient becomes its mean over the ranks. A cleared gradient
 * counts as zeros (and is then valid). A packed model's gradient block goes
 * in buckets of at most KS_COMM_BUCKET floats, so one call for models up to
 * 4M parameters. */
#define KS_COMM_BUCKET ((int64_t)1 << 22)
int ks_comm_allreduce_grad(ks_comm *comm, ks_link *model);

/* ---- observations (allreduce_obj / gather_obj / bcast_obj for numbers) ------------ */
/* v[0..n) becomes its sum over the ranks (ChainerMN's allreduce_obj sums;
 * divide by ks_comm_size for a mean). */
int ks_comm_allreduce_f64(ks_comm *comm, double *v, int64_t n);
/* Rank root receives every rank's send[0..n) in rank order in
 * recv[0..size*n) (recv is ignored elsewhere and may be NULL there). */
int ks_comm_gather_f64(ks_comm *comm, const double *send, int64_t n, double *recv, int root);
/* buf[0..bytes) from root to every rank. */
int ks_comm_bcast(ks_comm *comm, void *buf, int64_t bytes, int root);
/* Every value of 'obs' becomes its mean over the ranks (ChainerMN's
 * ObservationAggregator): all ranks must have reported the same keys in the
 * same order (KS_ESTATE otherwise, on every rank). */
int ks_comm_mean_observation(ks_comm *comm, ks_reporter *obs);

/* ---- traffic (for benchmarks) -------------------------------------------------------- */
typedef struct ks_comm_stats {
  int64_t calls;       /* collective calls made by this rank                        */
  int64_t bytes;       /* payload bytes this rank handed to them                   */
  double seconds;      /* wall time spent inside them (waiting for others included) */
} ks_comm_stats;
void ks_comm_get_stats(const ks_comm *comm, ks_comm_stats *out);
void ks_comm_reset_stats(ks_comm *comm);

/* ---- multi-node optimizer (chainermn.create_multi_node_optimizer) -------------------- */
/* Makes 'opt' a multi-node optimizer on 'comm' (in place: the same pointer
 * keeps working everywhere, the Trainer included). Each ks_optimizer_update
 * then, as ChainerMN's _MultiNodeOptimizer.update:
 *   - when the target's parameters are new to it (the first update, or after
 *     they were repacked / added): broadcasts the model from rank 0
 *     (ks_comm_bcast_data). If any rank held other parameter values, that
 *     call does nothing else: no step, t unchanged (its gradients were
 *     computed from each rank's own starting point, so they are dropped;
 *     ChainerMN always skips here). If every rank already held rank 0's
 *     values bit for bit (the same seed, or every rank loaded the same
 *     trainer's snapshot), the update goes on as below: no batch is lost and
 *     a resumed run continues exactly;
 *   - the gradients become their mean over the ranks
 *     (ks_comm_allreduce_grad), then the wrapped update runs once, its hooks
 *     included, so WeightDecay and GradientClipping see the mean gradient.
 * comm must outlive the optimizer's updates; NULL comm undoes it. */
int ks_create_multi_node_optimizer(ks_optimizer *opt, ks_comm *comm);

/* ---- multi-node evaluator (chainermn.create_multi_node_evaluator) -------------------- */
/* Makes the Evaluator 'ev' (ks_evaluator_new) evaluate this rank's iterator
 * and report, on every rank, the values over all ranks' batches: each
 * key's sum over batches and batch count are summed over the ranks, so the
 * result is the mean over all batches of all ranks — a single-process
 * Evaluator over the same batches. ChainerMN reports the mean of the ranks'
 * means, which is the same when every rank has as many batches (the default
 * equal-length shards of ks_scatter_dataset). KS_EINVAL if ev is not an
 * Evaluator. */
int ks_create_multi_node_evaluator(ks_extension *ev, ks_comm *comm);

/* ---- multi-node trainer ------------------------------------------------------------ */
/* Extensions whose ops have rank0_only (LogReport, PrintReport, ProgressBar,
 * PlotReport, RunLogger, snapshot_object) then run on rank 0 only, so one
 * program adds the same extensions on every rank. The others run on every
 * rank: the Evaluator (multi-node: it communicates), schedules, and the
 * trainer snapshot, which is each rank's own (name it per rank, e.g.
 * "snapshot_rank1_iter_{.updater.iteration}", when the ranks share --out).
 * KS_ESTATE while the trainer runs. */
int ks_trainer_set_comm(ks_trainer *tr, ks_comm *comm);

/* ---- multi-node batch normalization (chainermn.links.MultiNodeBatchNormalization) ---- */
/* F.batch_normalization over the union of every rank's batch: mean and
 * biased variance per channel over all ranks' x (two allreduces of C
 * doubles), and in backward the sums of gy and gy * x_hat over all ranks
 * (one allreduce of 2C doubles), so R ranks x batch b normalize and
 * differentiate as one process with batch R*b (once the multi-node
 * optimizer takes the mean of the gradients). running_mean / running_var
 * (either may be NULL) are updated like ks_batch_normalization's with the
 * global count M in the unbiased factor M/(M-1) (ChainerMN uses the local
 * count), so they equal one process's too. The gradients of gamma and
 * beta are the mean over ranks (ChainerMN's). Every rank must call it, in
 * the same order, in train mode. CPU tensors. */
ks_var *ks_multi_node_batch_normalization(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta, double eps,
                                          ks_tensor *running_mean, ks_tensor *running_var, double decay,
                                          ks_comm *comm);
/* chainermn.links.create_mnbn_model: every BatchNormalization link in
 * 'model' (itself included) normalizes over all ranks in train mode from
 * now on (test mode uses its running statistics, as before). In place;
 * *n_replaced (optional) receives how many links. comm NULL undoes it. */
int ks_create_mnbn_model(ks_link *model, ks_comm *comm, int *n_replaced);

/* ---- scatter_dataset (chainermn.scatter_dataset) ------------------------------------ */
/* Rank 0's dataset (the argument of other ranks is ignored and may be NULL)
 * is broadcast and each rank gets *out, a new dataset with its shard:
 * examples order[b .. e) where order is 0..N-1, or with shuffle a
 * permutation from ks_rng seeded with 'seed' (the same on every rank; not
 * numpy's RandomState stream), and [b, e) is ks_scatter_index's.
 * force_equal_length 1 (ChainerMN's default): every shard has ceil(N/size)
 * examples; shard i starts at floor(N*i/size), so the last ends at N, every
 * example is in some shard, and when size does not divide N,
 * size*ceil(N/size) - N examples are in two neighbouring shards (N=10 on 3
 * ranks: [0,4) [3,7) [6,10)). force_equal_length 0: no duplicates, the
 * first N % size shards have one more (N=10 on 3: [0,4) [4,7) [7,10)).
 * Free *out with ks_dataset_free. */
int ks_scatter_dataset(const ks_dataset *ds, ks_comm *comm, int shuffle, uint64_t seed,
                       int force_equal_length, ks_dataset **out);
/* The shard bounds of rank 'rank' of 'size' for N examples (see above). */
void ks_scatter_index(int64_t n, int size, int rank, int force_equal_length, int64_t *b, int64_t *e);

#ifdef __cplusplus
}
#endif
#endif
