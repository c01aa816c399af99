/*
 * train_mnist.c — train a multi-layer perceptron on MNIST-format data with
 * libkusari; the C counterpart of Chainer's chainer_mnist.py (the Azure ML
 * sample): Linear(784->U)-ReLU-Linear(U->U)-ReLU-Linear(U->10), MomentumSGD
 * (lr=0.01, momentum=0.9), softmax cross entropy, a manual training loop with
 * a SerialIterator, evaluation on the test set after every epoch.
 *
 * It logs "Batch size", "Epochs" and per-epoch "Accuracy" to the current run
 * (kusari/run.h): inside `kusari run submit` they land in the run's history,
 * outside it nothing is stored. The model is saved as model.npz (keys l1/W,
 * l1/b, ..., readable by numpy and Chainer) in the output directory
 * ($KUSARI_OUTPUT_DIR inside a run), with model.json, the network
 * description that `kusari model deploy` serves it from (inputs in [0, 1]).
 *
 * --communicator mpi trains data-parallel over MPI, like ChainerMN's
 * train_mnist example: `mpirun -np 2 ./train_mnist --communicator mpi`. Rank
 * 0 reads the data and scatter_dataset gives every rank its shard of the
 * training and test sets (kusari/comm.h); the optimizer is multi-node (rank
 * 0's parameters at the first update, the mean gradient over the ranks at
 * every update), the evaluation is over all ranks' shards, and rank 0 alone
 * prints, logs to the run and writes the model. --batchsize is then per
 * rank. The default, --communicator single, is one process as before.
 *
 * Build outside the tree:  cc -O2 train_mnist.c $(pkg-config --cflags --libs kusari)
 */
#include <kusari/kusari.h>
#include <kusari/model_io.h>
#include <kusari/comm.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------- */
/* options */

typedef struct options {
  int batchsize, epochs, unit, gpu_id;
  double lr, momentum;
  const char *output_dir, *data, *communicator;
  unsigned long long seed;
} options;

static void usage(FILE *f) {
  fprintf(f,
    "usage: train_mnist [options]\n"
    "Train an MLP (784-U-U-10) on MNIST-format data and save model.npz.\n\n"
    "  -b, --batchsize N    minibatch size (default 100)\n"
    "  -e, --epochs N       number of sweeps over the training set (default 20)\n"
    "  -u, --unit N         hidden units per layer (default 100)\n"
    "  -o, --output_dir D   where model.npz and model.json are written (default:\n"
    "                       $KUSARI_OUTPUT_DIR inside a kusari run, else ./outputs)\n"
    "  -g, --gpu_id N       device: -1 = CPU (default -1)\n"
    "      --lr X           learning rate of MomentumSGD (default 0.01)\n"
    "      --momentum X     momentum of MomentumSGD (default 0.9)\n"
    "      --data DIR       directory with train-images-idx3-ubyte(.gz) etc.\n"
    "                       (default: $KUSARI_DATA, else Debian's Fashion-MNIST)\n"
    "      --seed N         seed for initialization and shuffling (default 0)\n"
    "      --communicator C single (default): one process; mpi: data-parallel over\n"
    "                       MPI, started by mpirun (ChainerMN's train_mnist): the\n"
    "                       data scattered over the ranks, --batchsize per rank,\n"
    "                       rank 0 prints, logs and writes the model\n"
    "  -h, --help           this help\n");
}

static int parse_int(const char *name, const char *s, int lo, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > 1000000000L) {
    fprintf(stderr, "train_mnist: --%s must be an integer >= %d, got '%s'\n", name, lo, s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static int parse_double(const char *name, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !(v >= 0)) {
    fprintf(stderr, "train_mnist: --%s must be a number >= 0, got '%s'\n", name, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_options(int argc, char **argv, options *o) {
  static const struct option longopts[] = {
    {"batchsize", required_argument, 0, 'b'}, {"epochs", required_argument, 0, 'e'},
    {"unit", required_argument, 0, 'u'},      {"output_dir", required_argument, 0, 'o'},
    {"gpu_id", required_argument, 0, 'g'},    {"lr", required_argument, 0, 'L'},
    {"momentum", required_argument, 0, 'M'},  {"data", required_argument, 0, 'D'},
    {"seed", required_argument, 0, 'S'},      {"help", no_argument, 0, 'h'},
    {"communicator", required_argument, 0, 'c'},
    {0, 0, 0, 0}};
  *o = (options){.batchsize = 100, .epochs = 20, .unit = 100, .gpu_id = -1, .lr = 0.01,
                 .momentum = 0.9, .output_dir = NULL, .data = NULL, .seed = 0,
                 .communicator = "single"};
  int c;
  while ((c = getopt_long(argc, argv, "b:e:u:o:g:h", longopts, NULL)) != -1) {
    switch (c) {
      case 'b': if (parse_int("batchsize", optarg, 1, &o->batchsize)) return -1; break;
      case 'e': if (parse_int("epochs", optarg, 1, &o->epochs)) return -1; break;
      case 'u': if (parse_int("unit", optarg, 1, &o->unit)) return -1; break;
      case 'g': if (parse_int("gpu_id", optarg, -1, &o->gpu_id)) return -1; break;
      case 'o': o->output_dir = optarg; break;
      case 'L': if (parse_double("lr", optarg, &o->lr)) return -1; break;
      case 'M': if (parse_double("momentum", optarg, &o->momentum)) return -1; break;
      case 'D': o->data = optarg; break;
      case 'c':
        if (strcmp(optarg, "single") != 0 && strcmp(optarg, "mpi") != 0) {
          fprintf(stderr, "train_mnist: error: unknown communicator '%s'\n"
                          "  hint: use --communicator single (one process) or mpi (under mpirun)\n", optarg);
          return -1;
        }
        o->communicator = optarg;
        break;
      case 'S': {
        char *end;
        errno = 0;
        o->seed = strtoull(optarg, &end, 10);
        if (errno || *end || end == optarg) {
          fprintf(stderr, "train_mnist: --seed must be a non-negative integer, got '%s'\n", optarg);
          return -1;
        }
        break;
      }
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "train_mnist: unexpected argument '%s' (see --help)\n", argv[optind]);
    return -1;
  }
  /* inside a kusari run: the run's outputs/, kept with the run */
  if (!o->output_dir) {
    const char *run_out = getenv("KUSARI_OUTPUT_DIR");
    o->output_dir = run_out && *run_out ? run_out : "./outputs";
  }
  if (o->gpu_id >= 0) {
    fprintf(stderr, "train_mnist: --gpu_id %d asks for a GPU, but this libkusari has no CUDA "
                    "backend; use -g -1 (CPU)\n", o->gpu_id);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------- */
/* model */

static ks_var *mlp_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h1 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l1"), x));
  ks_var *h2 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l2"), h1));
  return ks_link_forward(ctx, ks_link_child(self, "l3"), h2);
}

static ks_link *mlp_new(int n_units, int n_out, ks_rng *rng) {
  ks_linear_opts lo = {.rng = rng};
  ks_link *model = ks_chain_new();
  if (!model) return NULL;
  if (ks_link_add_child(model, "l1", ks_linear_link_new(0, n_units, &lo)) ||
      ks_link_add_child(model, "l2", ks_linear_link_new(n_units, n_units, &lo)) ||
      ks_link_add_child(model, "l3", ks_linear_link_new(n_units, n_out, &lo))) {
    ks_link_free(model);
    return NULL;
  }
  ks_link_set_forward(model, mlp_forward, NULL);
  return model;
}

/* ---------------------------------------------------------------------------- */

static ks_comm *g_comm;  /* --communicator mpi only */

/* With several ranks, a failure on one ends them all (ChainerMN's global
 * except hook): the others would otherwise wait in their next collective. */
static void die(const char *what) {
  if (g_comm)
    fprintf(stderr, "train_mnist: rank %d: %s: %s\n", ks_comm_rank(g_comm), what, ks_error_last());
  else
    fprintf(stderr, "train_mnist: %s: %s\n", what, ks_error_last());
  if (g_comm && ks_comm_size(g_comm) > 1) ks_comm_abort(g_comm, 1);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads the batch idx[0..n) of ds into arena tensors of ctx as (x, t). */
static int load_batch(ks_ctx *ctx, const ks_dataset *ds, const int64_t *idx, int64_t n,
                      ks_var **x, ks_var **t) {
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){n, ds->row_size});
  ks_tensor *tt = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){n});
  if (!xt || !tt) return ks_error_last_code();
  int rc = ks_dataset_gather(ds, idx, n, ks_tensor_f32(xt), ks_tensor_i32(tt));
  if (rc != KS_OK) return rc;
  *x = ks_var_new(ctx, xt, 0);
  *t = ks_var_new(ctx, tt, 0);
  return KS_OK;
}

/* Mean loss and accuracy over the whole test set, in test mode, no graph;
 * with mpi, over every rank's shard (each key's sum over batches and the
 * batch count summed over the ranks: the mean over all batches). */
static int evaluate(ks_ctx *ctx, ks_link *model, const ks_dataset *test, ks_serial_iterator *it,
                    double *loss_out, double *acc_out) {
  int old_train = ks_ctx_set_train(ctx, 0), old_bp = ks_ctx_set_backprop(ctx, 0);
  double loss_sum = 0, acc_sum = 0;
  int64_t batches = 0, n;
  const int64_t *idx;
  int rc;
  ks_serial_iterator_reset(it);
  while ((rc = ks_serial_iterator_next(it, &idx, &n)) == KS_OK) {
    ks_var *x, *t;
    if ((rc = load_batch(ctx, test, idx, n, &x, &t)) != KS_OK) break;
    ks_var *y = ks_link_forward(ctx, model, x);
    ks_var *loss = ks_softmax_cross_entropy(ctx, y, t, -1);
    ks_var *acc = ks_accuracy(ctx, y, t, -1);
    if (!loss || !acc) { rc = ks_error_last_code(); break; }
    /* like the Chainer example: the mean of per-batch means */
    loss_sum += ks_tensor_f32(loss->data)[0];
    acc_sum += ks_tensor_f32(acc->data)[0];
    batches++;
    ks_ctx_reset(ctx);
  }
  ks_ctx_set_train(ctx, old_train);
  ks_ctx_set_backprop(ctx, old_bp);
  if (rc != KS_ITER_END) return rc;
  if (g_comm) {
    double v[3] = {loss_sum, acc_sum, (double)batches};
    if ((rc = ks_comm_allreduce_f64(g_comm, v, 3)) != KS_OK) return rc;
    loss_sum = v[0];
    acc_sum = v[1];
    batches = (int64_t)v[2];
  }
  *loss_out = batches ? loss_sum / (double)batches : 0;
  *acc_out = batches ? acc_sum / (double)batches : 0;
  return KS_OK;
}

int main(int argc, char **argv) {
  options o;
  if (parse_options(argc, argv, &o)) return 2;
  int rank = 0, size = 1;
  if (strcmp(o.communicator, "mpi") == 0) {
    if (ks_comm_create(&g_comm, "mpi") != KS_OK) {
      fprintf(stderr, "train_mnist: error: %s\n  hint: use --communicator single\n", ks_error_last());
      return 1;
    }
    rank = ks_comm_rank(g_comm);
    size = ks_comm_size(g_comm);
    /* the node's processors shared among its ranks, unless set by the user */
    if (!getenv("KUSARI_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) {
      long procs = sysconf(_SC_NPROCESSORS_ONLN);
      int nt = (int)(procs / ks_comm_intra_size(g_comm));
      ks_set_num_threads(nt < 1 ? 1 : nt);
    }
  }

  const char *coretype = ks_blas_suggested_coretype();
  if (coretype && rank == 0)
    fprintf(stderr, "train_mnist: note: OpenBLAS does not know this CPU and uses its generic "
                    "'%s' kernels; run with OPENBLAS_CORETYPE=%s for several times the speed\n",
            ks_blas_corename(), coretype);

  char data_dir[4096];
  ks_dataset *train = NULL, *test = NULL;
  if (rank == 0) {  /* with mpi, rank 0 reads the data and scatters it below */
    if (ks_mnist_find_dir(o.data, data_dir, sizeof data_dir) != KS_OK) die("no data");
    if (ks_mnist_load(data_dir, 1, &train, &test) != KS_OK) die("loading the data");
    printf("data: %s (train %lld, test %lld)\n", data_dir, (long long)train->size,
           (long long)test->size);
    printf("# unit: %d  minibatch: %d  epochs: %d  seed: %llu\n", o.unit, o.batchsize, o.epochs,
           o.seed);
    if (g_comm)
      printf("# communicator: mpi  ranks: %d (%d node%s)  minibatch: %d per rank, %d in all\n", size,
             ks_comm_inter_size(g_comm), ks_comm_inter_size(g_comm) > 1 ? "s" : "", o.batchsize,
             o.batchsize * size);
    fflush(stdout);
  }
  if (g_comm) {  /* each rank its shard (ChainerMN's scatter_dataset): equal
                  * lengths for training, so every rank makes as many updates;
                  * the test set without duplicates */
    ks_dataset *my_train = NULL, *my_test = NULL;
    if (ks_scatter_dataset(train, g_comm, 1, o.seed + 3, 1, &my_train) != KS_OK ||
        ks_scatter_dataset(test, g_comm, 0, 0, 0, &my_test) != KS_OK)
      die("scattering the data");
    ks_dataset_free(train);
    ks_dataset_free(test);
    train = my_train;
    test = my_test;
  }

  ks_run *run = ks_run_current();
  if (rank == 0) {  /* with mpi, rank 0 alone logs to the run */
    ks_run_log(run, "Batch size", (double)o.batchsize * size);
    ks_run_log(run, "Epochs", o.epochs);
    if (g_comm) ks_run_log(run, "Ranks", size);
  }

  ks_rng rng;
  ks_rng_seed(&rng, o.seed);
  ks_link *model = mlp_new(o.unit, 10, &rng);
  if (!model) die("building the model");
  ks_optimizer *opt = ks_optimizer_momentum_sgd_new(o.lr, o.momentum);
  if (!opt || (g_comm && ks_create_multi_node_optimizer(opt, g_comm) != KS_OK) ||
      ks_optimizer_setup(opt, model) != KS_OK)
    die("setting up the optimizer");

  ks_serial_iterator *train_it, *test_it;
  if (ks_serial_iterator_new(&train_it, train->size, o.batchsize, 1, 1, o.seed + 1 + (uint64_t)rank) != KS_OK ||
      ks_serial_iterator_new(&test_it, test->size, o.batchsize, 0, 0, 0) != KS_OK)
    die("creating the iterators");

  ks_ctx *ctx = ks_ctx_new();
  if (!ctx) die("creating the context");
  ks_ctx_seed(ctx, o.seed + 2);

  double t_start = now_s(), t_epoch = t_start, epoch_loss = 0;
  int64_t epoch_batches = 0;
  while (ks_serial_iterator_epoch(train_it) < o.epochs) {
    const int64_t *idx;
    int64_t n;
    ks_var *x, *t;
    if (ks_serial_iterator_next(train_it, &idx, &n) != KS_OK) die("iterating");
    if (load_batch(ctx, train, idx, n, &x, &t) != KS_OK) die("loading a batch");
    ks_var *loss = ks_softmax_cross_entropy(ctx, ks_link_forward(ctx, model, x), t, -1);
    if (!loss) die("forward");
    ks_link_cleargrads(model);
    if (ks_backward(ctx, loss) != KS_OK) die("backward");
    if (ks_optimizer_update(opt) != KS_OK) die("update");
    epoch_loss += ks_tensor_f32(loss->data)[0];
    epoch_batches++;
    ks_ctx_reset(ctx);

    if (ks_serial_iterator_is_new_epoch(train_it)) {
      double train_s = now_s() - t_epoch, val_loss = 0, val_acc = 0;
      if (evaluate(ctx, model, test, test_it, &val_loss, &val_acc) != KS_OK) die("evaluating");
      if (g_comm) {  /* the training loss over every rank's batches */
        double v[2] = {epoch_loss, (double)epoch_batches};
        if (ks_comm_allreduce_f64(g_comm, v, 2) != KS_OK) die("reducing the loss");
        epoch_loss = v[0];
        epoch_batches = (int64_t)v[1];
      }
      if (rank == 0)
        printf("epoch:%02lld train_loss:%.4f val_loss:%.4f val_accuracy:%.4f (%.2fs)\n",
               (long long)ks_serial_iterator_epoch(train_it), epoch_loss / (double)epoch_batches,
               val_loss, val_acc, train_s);
      fflush(stdout);
      if (rank == 0) ks_run_log(run, "Accuracy", val_acc);
      epoch_loss = 0;
      epoch_batches = 0;
      t_epoch = now_s();
    }
  }

  if (rank != 0) {  /* with mpi, rank 0 alone writes the model */
    ks_ctx_free(ctx);
    ks_serial_iterator_free(train_it);
    ks_serial_iterator_free(test_it);
    ks_optimizer_free(opt);
    ks_link_free(model);
    ks_dataset_free(train);
    ks_dataset_free(test);
    ks_comm_free(g_comm);
    return 0;
  }
  if (mkdir(o.output_dir, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "train_mnist: cannot create %s: %s\n", o.output_dir, strerror(errno));
    return 1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/model.npz", o.output_dir);
  if (ks_save_npz(path, model) != KS_OK) die("saving the model");
  /* the network description beside the weights: `kusari model deploy` rebuilds it */
  static const char *const order[] = {"l1", "relu", "l2", "relu", "l3", NULL};
  /* the inputs are pixels / 255 (ks_mnist_load, scale 1): declared, so the
   * scorer refuses raw pixels instead of answering wrongly */
  snprintf(path, sizeof path, "%s/model.json", o.output_dir);
  const ks_model_desc_opts dopts = {.order = order, .input_range = (const double[]){0, 1},
                                    .input_preprocessing = "grayscale pixels / 255, row by row"};
  if (ks_model_desc_save_ex(path, model, &dopts, 1, (int64_t[]){train->row_size}) != KS_OK)
    die("saving the model description");
  snprintf(path, sizeof path, "%s/model.npz", o.output_dir);
  printf("saved %s (%lld parameters) in %.1fs\n", path, (long long)ks_link_count_params(model),
         now_s() - t_start);
  if (g_comm) {
    ks_comm_stats cs;
    ks_comm_get_stats(g_comm, &cs);
    printf("rank 0 communicated %.1f MB in %lld calls, %.2f s\n", (double)cs.bytes / 1e6, (long long)cs.calls,
           cs.seconds);
  }
  ks_run_flush(run);

  ks_ctx_free(ctx);
  ks_serial_iterator_free(train_it);
  ks_serial_iterator_free(test_it);
  ks_optimizer_free(opt);
  ks_link_free(model);
  ks_dataset_free(train);
  ks_dataset_free(test);
  ks_comm_free(g_comm);
  return 0;
}
