/*
 * train_mnist_mpi.c — data-parallel training of the MNIST MLP over MPI, the
 * C counterpart of ChainerMN's examples/mnist/train_mnist.py:
 *
 *   mpirun -np 2 ./train_mnist_mpi --epochs 5 --batchsize 100
 *   ./train_mnist_mpi                      # the same program, one process
 *
 * Rank 0 loads the data and scatter_dataset gives every rank its shard of
 * the training and test sets; each rank trains the same
 * Classifier(Linear(None,U)-ReLU - Linear(U,U)-ReLU - Linear(U,10)) on its
 * shard with a multi-node Adam (rank 0's parameters broadcast at the first
 * update, the mean gradient over ranks at every update), the multi-node
 * Evaluator reports the whole test set's loss and accuracy, and rank 0 alone
 * reports (LogReport, PrintReport, RunLogger: ks_trainer_set_comm) and
 * writes model.npz and model.json. --batchsize is per rank: the effective batch is ranks x that.
 *
 * Build outside the tree:  cc -O2 train_mnist_mpi.c $(pkg-config --cflags --libs kusari)
 * (libkusari built with MPI for more than one process; without it
 * --communicator mpi says so and "auto" runs as one process).
 */
#include <kusari/kusari.h>
#include <kusari/comm.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct options {
  int batchsize, epochs, unit, autoload;
  double frequency;
  long long train_size, test_size;
  const char *out, *data, *communicator;
  unsigned long long seed;
} options;

static void usage(FILE *f) {
  fprintf(f,
    "usage: [mpirun -np N] train_mnist_mpi [options]\n"
    "Train the MNIST MLP data-parallel over MPI (ChainerMN's train_mnist).\n\n"
    "  -b, --batchsize N      minibatch size of each rank (default 100)\n"
    "  -e, --epochs N         sweeps over the training set (default 20)\n"
    "  -u, --unit N           hidden units per layer (default 1000)\n"
    "  -o, --out DIR          rank 0's output: log, model.npz, model.json\n"
    "                         (default ./result)\n"
    "      --communicator C   mpi, single or auto: mpi under mpirun, else one\n"
    "                         process (default auto)\n"
    "      --data DIR         directory with train-images-idx3-ubyte(.gz) etc.\n"
    "                         (default: $KUSARI_DATA, else Debian's Fashion-MNIST)\n"
    "  -f, --frequency N      every rank saves its own snapshot every N epochs\n"
    "                         (snapshot_rank<R>_iter_<iteration> in --out; default:\n"
    "                         none)\n"
    "      --autoload         each rank resumes from its newest snapshot in --out\n"
    "                         (same number of ranks: the run continues exactly)\n"
    "      --seed N           seed of the initialization and shuffling (default 0)\n"
    "      --train-size N     use the first N training examples (default all)\n"
    "      --test-size N      use the first N test examples (default all)\n"
    "  -h, --help             this help\n");
}

static int parse_ll(const char *name, const char *s, long long lo, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > 1000000000LL) {
    fprintf(stderr, "train_mnist_mpi: --%s must be an integer >= %lld, got '%s'\n", name, lo, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_options(int argc, char **argv, options *o) {
  static const struct option longopts[] = {
    {"batchsize", required_argument, 0, 'b'}, {"epochs", required_argument, 0, 'e'},
    {"unit", required_argument, 0, 'u'},      {"out", required_argument, 0, 'o'},
    {"communicator", required_argument, 0, 'c'}, {"data", required_argument, 0, 'D'},
    {"seed", required_argument, 0, 'S'},      {"train-size", required_argument, 0, 'T'},
    {"test-size", required_argument, 0, 'V'}, {"help", no_argument, 0, 'h'},
    {"frequency", required_argument, 0, 'f'}, {"autoload", no_argument, 0, 'L'},
    {0, 0, 0, 0}};
  *o = (options){.batchsize = 100, .epochs = 20, .unit = 1000, .out = "result", .communicator = "auto"};
  long long v;
  int c;
  while ((c = getopt_long(argc, argv, "b:e:u:o:f:h", longopts, NULL)) != -1) {
    switch (c) {
      case 'b': if (parse_ll("batchsize", optarg, 1, &v)) return -1; o->batchsize = (int)v; break;
      case 'e': if (parse_ll("epochs", optarg, 1, &v)) return -1; o->epochs = (int)v; break;
      case 'u': if (parse_ll("unit", optarg, 1, &v)) return -1; o->unit = (int)v; break;
      case 'T': if (parse_ll("train-size", optarg, 1, &o->train_size)) return -1; break;
      case 'V': if (parse_ll("test-size", optarg, 1, &o->test_size)) return -1; break;
      case 'S': if (parse_ll("seed", optarg, 0, &v)) return -1; o->seed = (unsigned long long)v; break;
      case 'o': o->out = optarg; break;
      case 'c': o->communicator = optarg; break;
      case 'L': o->autoload = 1; break;
      case 'f': {
        char *end;
        errno = 0;
        o->frequency = strtod(optarg, &end);
        if (errno || *end || end == optarg || !(o->frequency > 0 && o->frequency <= 1e9)) {
          fprintf(stderr, "train_mnist_mpi: --frequency must be a positive number of epochs, got '%s'\n", optarg);
          return -1;
        }
        break;
      }
      case 'D': o->data = optarg; break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "train_mnist_mpi: unexpected argument '%s' (see --help)\n", argv[optind]);
    return -1;
  }
  return 0;
}

static ks_comm *g_comm;

/* A failure on one rank ends them all (ChainerMN's global except hook):
 * the others would otherwise wait in their next collective. */
static void die(const char *what) {
  fprintf(stderr, "train_mnist_mpi: rank %d: %s: %s\n", ks_comm_rank(g_comm), what, ks_error_last());
  if (g_comm && ks_comm_size(g_comm) > 1) ks_comm_abort(g_comm, 1);
  exit(1);
}

static ks_var *mlp_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h1 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l1"), x));
  ks_var *h2 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l2"), h1));
  return ks_link_forward(ctx, ks_link_child(self, "l3"), h2);
}

static ks_link *mlp_new(int n_units, ks_rng *rng) {
  ks_linear_opts lo = {.rng = rng};
  ks_link *model = ks_chain_new();
  if (!model) return NULL;
  if (ks_link_add_child(model, "l1", ks_linear_link_new(0, n_units, &lo)) ||
      ks_link_add_child(model, "l2", ks_linear_link_new(n_units, n_units, &lo)) ||
      ks_link_add_child(model, "l3", ks_linear_link_new(n_units, 10, &lo))) {
    ks_link_free(model);
    return NULL;
  }
  ks_link_set_forward(model, mlp_forward, NULL);
  return model;
}

static ks_dataset *take(ks_dataset *ds, long long n) {
  if (!ds || n <= 0 || n >= ds->size) return ds;
  ks_dataset *sub = NULL;
  if (ks_dataset_subset(ds, 0, n, &sub) != KS_OK) die("taking a subset");
  ks_dataset_free(ds);
  return sub;
}

static int extend(ks_trainer *tr, ks_extension *ext) {
  return ks_trainer_extend(tr, ext, NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT);
}

int main(int argc, char **argv) {
  options o;
  if (parse_options(argc, argv, &o)) return 2;
  if (ks_comm_create(&g_comm, o.communicator) != KS_OK) {
    fprintf(stderr, "train_mnist_mpi: %s\n", ks_error_last());
    return 1;
  }
  const int rank = ks_comm_rank(g_comm), size = ks_comm_size(g_comm);
  /* the node's processors shared among its ranks, unless set by the user */
  if (!getenv("KUSARI_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) {
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(procs / ks_comm_intra_size(g_comm));
    ks_set_num_threads(t < 1 ? 1 : t);
  }

  /* rank 0 reads the data; scatter_dataset gives each rank its shard */
  ks_dataset *train = NULL, *test = NULL;
  if (rank == 0) {
    char data_dir[4096];
    if (ks_mnist_find_dir(o.data, data_dir, sizeof data_dir) != KS_OK) die("no data");
    if (ks_mnist_load(data_dir, 1, &train, &test) != KS_OK) die("loading the data");
    train = take(train, o.train_size);
    test = take(test, o.test_size);
    printf("data: %s (train %lld, test %lld)\n", data_dir, (long long)train->size, (long long)test->size);
    printf("# communicator: %s  ranks: %d (%d node%s)  minibatch: %d per rank  epochs: %d\n",
           ks_comm_name(g_comm), size, ks_comm_inter_size(g_comm), ks_comm_inter_size(g_comm) > 1 ? "s" : "",
           o.batchsize, o.epochs);
    fflush(stdout);
  }
  ks_dataset *my_train = NULL, *my_test = NULL;
  if (ks_scatter_dataset(train, g_comm, 1, o.seed + 3, 1, &my_train) != KS_OK ||
      ks_scatter_dataset(test, g_comm, 1, o.seed + 4, 1, &my_test) != KS_OK)
    die("scattering the data");
  ks_dataset_free(train);
  ks_dataset_free(test);

  ks_rng rng;
  ks_rng_seed(&rng, o.seed);
  ks_link *model = ks_classifier_new(mlp_new(o.unit, &rng));
  if (!model) die("building the model");
  ks_optimizer *opt = ks_optimizer_adam_new(NULL);
  if (!opt || ks_create_multi_node_optimizer(opt, g_comm) != KS_OK || ks_optimizer_setup(opt, model) != KS_OK)
    die("setting up the optimizer");

  ks_serial_iterator *train_it, *test_it;
  if (ks_serial_iterator_new(&train_it, my_train->size, o.batchsize, 1, 1, o.seed + 1 + (uint64_t)rank) != KS_OK ||
      ks_serial_iterator_new(&test_it, my_test->size, o.batchsize, 0, 0, 0) != KS_OK)
    die("creating the iterators");
  ks_updater *updater;
  if (ks_standard_updater_new(&updater, train_it, my_train, opt, NULL) != KS_OK) die("creating the updater");
  ks_trainer *tr;
  if (ks_trainer_new(&tr, updater, KS_TRIGGER(o.epochs, KS_EPOCH), o.out) != KS_OK) die("creating the trainer");

  /* the same extensions on every rank: with the communicator on the
   * trainer, the reporting ones run on rank 0 only; the multi-node
   * Evaluator runs on all (each evaluates its shard) */
  if (ks_trainer_set_comm(tr, g_comm) != KS_OK) die("creating the trainer");
  ks_extension *ev = ks_evaluator_new(test_it, my_test, model, NULL);
  if (!ev || ks_create_multi_node_evaluator(ev, g_comm) != KS_OK || extend(tr, ev) != KS_OK)
    die("adding the evaluator");
  static const char *const print_keys[] = {"epoch", "main/loss", "validation/main/loss", "main/accuracy",
                                           "validation/main/accuracy", "elapsed_time"};
  static const char *const run_keys[] = {"main/loss", "main/accuracy", "validation/main/loss",
                                         "validation/main/accuracy"};
  if (extend(tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)) ||
      extend(tr, ks_print_report_new(print_keys, 6, NULL, NULL)) ||
      extend(tr, ks_run_logger_new(run_keys, 4, NULL)))
    die("adding the extensions");
  if (rank == 0) {
    ks_run *run = ks_run_current();
    ks_run_log(run, "Batch size", (double)o.batchsize * size);
    ks_run_log(run, "Epochs", o.epochs);
    ks_run_log(run, "Ranks", size);
  }
  /* snapshots: each rank its own (its iterator's position and order, and
   * rank 0 its reports too); the parameters are the same on every rank, so
   * a resumed run's first update goes on without a lost step */
  char pattern[64];
  snprintf(pattern, sizeof pattern, "snapshot_rank%d_iter_{.updater.iteration}", rank);
  if (o.frequency > 0 &&
      ks_trainer_extend(tr, ks_snapshot_new(pattern, 0), NULL, KS_TRIGGER(o.frequency, KS_EPOCH),
                        KS_PRIORITY_DEFAULT) != KS_OK)
    die("adding the snapshot extension");
  char latest[4300];
  if (o.autoload && ks_snapshot_find_latest(o.out, pattern, latest, sizeof latest) == KS_OK) {
    if (ks_trainer_load_snapshot(tr, latest) != KS_OK) die("resuming");
    if (rank == 0) printf("resumed from %s at iteration %lld\n", latest, (long long)ks_updater_iteration(updater));
  }
  if (ks_trainer_run(tr) != KS_OK) die("training");

  if (rank == 0) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.npz", o.out);
    if (ks_save_npz(path, model) != KS_OK) die("saving the model");
    static const char *const order[] = {"l1", "relu", "l2", "relu", "l3", NULL};
    snprintf(path, sizeof path, "%s/model.json", o.out);
    if (ks_model_desc_save_chain(path, model, order, 1, (int64_t[]){my_train->row_size}) != KS_OK)
      die("saving the model description");
    ks_comm_stats st;
    ks_comm_get_stats(g_comm, &st);
    printf("saved %s/model.npz; rank 0 communicated %.1f MB in %lld calls, %.2f s\n", o.out, st.bytes / 1e6,
           (long long)st.calls, st.seconds);
    ks_run_flush(ks_run_current());
  }

  ks_trainer_free(tr);
  ks_serial_iterator_free(train_it);
  ks_serial_iterator_free(test_it);
  ks_optimizer_free(opt);
  ks_link_free(model);
  ks_dataset_free(my_train);
  ks_dataset_free(my_test);
  ks_comm_free(g_comm);
  return 0;
}
