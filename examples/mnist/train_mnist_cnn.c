/*
 * train_mnist_cnn.c — a convolutional network on MNIST-format data trained
 * the Chainer way: a Trainer with extensions (the C counterpart of Chainer's
 * examples/mnist/train_mnist.py, with the model of its CNN variants).
 *
 *   cnn (default)  Conv(None,32,5)-ReLU-MaxPool2 - Conv(32,64,5)-ReLU-MaxPool2
 *                  - Linear(None,256)-ReLU - Linear(256,10)
 *   mlp            Linear(None,U)-ReLU - Linear(U,U)-ReLU - Linear(U,10)
 *
 * wrapped in a Classifier (softmax cross entropy, accuracy), Adam, and the
 * extensions Evaluator, LogReport, PrintReport, ProgressBar, PlotReport
 * (loss.png, accuracy.png), snapshot (snapshot_iter_<iteration> every
 * --frequency epochs) and RunLogger (values to the platform run; nothing
 * outside one). `-r out/snapshot_iter_N` resumes exactly where that
 * snapshot was taken; `-r out` from the newest snapshot in out/, and
 * `--autoload` from the newest in the output directory when there is one.
 * model.npz (final parameters, Chainer's keys "predictor/conv1/W", ...) and
 * model.json (the network description the platform's scorer rebuilds it
 * from) are written at the end.
 *
 * --communicator mpi trains data-parallel over MPI (ChainerMN's train_mnist
 * example): `mpirun -np 2 ./train_mnist_cnn --communicator mpi`. Rank 0 reads
 * the data and scatter_dataset gives every rank its shard of the training
 * and test sets; the optimizer and the Evaluator are multi-node
 * (kusari/comm.h); the reporting extensions run on rank 0 only and rank 0
 * alone writes model.npz and model.json; each rank takes its own snapshots
 * (snapshot_rank<R>_iter_<iteration>). --batchsize is then per rank. The
 * default, --communicator single, is one process as before.
 *
 * Build outside the tree:  cc -O2 train_mnist_cnn.c $(pkg-config --cflags --libs kusari)
 */
#include <kusari/kusari.h>
#include <kusari/trainer.h>     /* defines: ks_trainer_*, ks_standard_updater_new */
#include <kusari/extensions.h>  /* defines: ks_evaluator_new, ks_log_report_new, ... */
#include <kusari/comm.h>        /* defines: ks_comm_create, ks_scatter_dataset, ... */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------- */
/* options */

typedef struct options {
  int batchsize, epochs, unit;
  double frequency;
  int channels[2], fc_units;
  long long train_size, test_size;
  const char *out, *data, *resume, *arch, *communicator;
  unsigned long long seed;
  int autoload;
  int replicas;
} options;

static void usage(FILE *f) {
  fprintf(f,
    "usage: train_mnist_cnn [options]\n"
    "Train a CNN (or an MLP) on MNIST-format data with the kusari Trainer.\n\n"
    "  -b, --batchsize N    minibatch size (default 100)\n"
    "  -e, --epochs N       number of sweeps over the training set (default 5)\n"
    "  -o, --out DIR        output directory: log, plots, snapshots, model.npz,\n"
    "                       model.json (also --output_dir DIR). Default: inside a\n"
    "                       kusari run $KUSARI_OUTPUT_DIR (the run's outputs/, kept\n"
    "                       with the run), else ./result\n"
    "  -r, --resume FILE    resume from a snapshot (e.g. result/snapshot_iter_600),\n"
    "                       or from the newest snapshot in a directory\n"
    "      --autoload       resume from the newest snapshot in the output directory\n"
    "                       if there is one (rerun the same command after a kill)\n"
    "  -f, --frequency N    take a snapshot every N epochs, fractions too (0.5:\n"
    "                       twice an epoch; default 1)\n"
    "      --arch A         cnn (default) or mlp\n"
    "  -u, --unit N         hidden units: of the mlp's layers (default 100), of\n"
    "                       the cnn's first fully connected layer (default 256)\n"
    "      --channels C1,C2 output channels of the cnn's convolutions (default 32,64)\n"
    "      --data DIR       directory with train-images-idx3-ubyte(.gz) etc.\n"
    "                       (default: $KUSARI_DATA, else Debian's Fashion-MNIST)\n"
    "      --seed N         seed for initialization, shuffling and dropout (default 0)\n"
    "      --train-size N   use the first N training examples (default all)\n"
    "      --test-size N    use the first N test examples (default all)\n"
    "      --replicas N     run each iteration as N data-parallel replicas, one slice\n"
    "                       of the batch each, on the library's threads (Chainer's\n"
    "                       ParallelUpdater; the gradient is the whole batch's).\n"
    "                       On 2 cores, --replicas 2 trains the cnn about 1.3x faster\n"
    "                       than the default 1; the mlp gains nothing (see\n"
    "                       bench/RESULTS.md). Default 1\n"
    "      --communicator C single (default): one process; mpi: data-parallel over\n"
    "                       MPI, started by mpirun (ChainerMN's train_mnist): the\n"
    "                       data scattered over the ranks, --batchsize per rank,\n"
    "                       rank 0 reports and writes the model, each rank its own\n"
    "                       snapshots (snapshot_rank<R>_iter_<iteration>)\n"
    "  -h, --help           this help\n");
}

static int parse_ll(const char *name, const char *s, long long lo, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > 1000000000LL) {
    fprintf(stderr, "train_mnist_cnn: --%s must be an integer >= %lld, got '%s'\n", name, lo, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_int(const char *name, const char *s, int lo, int *out) {
  long long v;
  if (parse_ll(name, s, lo, &v)) return -1;
  *out = (int)v;
  return 0;
}

static int parse_options(int argc, char **argv, options *o) {
  static const struct option longopts[] = {
    {"batchsize", required_argument, 0, 'b'}, {"epochs", required_argument, 0, 'e'},
    {"out", required_argument, 0, 'o'},       {"output_dir", required_argument, 0, 'o'},
    {"resume", required_argument, 0, 'r'},
    {"frequency", required_argument, 0, 'f'}, {"arch", required_argument, 0, 'A'},
    {"unit", required_argument, 0, 'u'},      {"data", required_argument, 0, 'D'},
    {"seed", required_argument, 0, 'S'},      {"train-size", required_argument, 0, 'T'},
    {"test-size", required_argument, 0, 'V'}, {"channels", required_argument, 0, 'C'},
    {"autoload", no_argument, 0, 'L'},    {"replicas", required_argument, 0, 'R'},
    {"communicator", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};
  *o = (options){.batchsize = 100, .epochs = 5, .unit = 0, .frequency = 1, .out = NULL,
                 .channels = {32, 64}, .replicas = 1,
                 .arch = "cnn", .communicator = "single"};
  int c;
  while ((c = getopt_long(argc, argv, "b:e:o:r:f:u:h", longopts, NULL)) != -1) {
    switch (c) {
      case 'b': if (parse_int("batchsize", optarg, 1, &o->batchsize)) return -1; break;
      case 'e': if (parse_int("epochs", optarg, 1, &o->epochs)) return -1; break;
      case 'f': {
        char *end;
        errno = 0;
        o->frequency = strtod(optarg, &end);
        if (errno || *end || end == optarg || !(o->frequency > 0 && o->frequency <= 1e9)) {
          fprintf(stderr, "train_mnist_cnn: --frequency must be a positive number of epochs, got '%s'\n", optarg);
          return -1;
        }
        break;
      }
      case 'u': if (parse_int("unit", optarg, 1, &o->unit)) return -1; break;
      case 'T': if (parse_ll("train-size", optarg, 1, &o->train_size)) return -1; break;
      case 'R':
        if (parse_int("replicas", optarg, 1, &o->replicas)) return -1;
        if (o->replicas > 64) {
          fprintf(stderr, "train_mnist_cnn: --replicas must be 1..64, got '%s'\n", optarg);
          return -1;
        }
        break;
      case 'V': if (parse_ll("test-size", optarg, 1, &o->test_size)) return -1; break;
      case 'C': {
        int a, b, k = -1;
        if (sscanf(optarg, "%d,%d%n", &a, &b, &k) != 2 || optarg[k] || a < 1 || b < 1 || a > 4096 || b > 4096) {
          fprintf(stderr, "train_mnist_cnn: --channels must be two positive integers C1,C2, got '%s'\n", optarg);
          return -1;
        }
        o->channels[0] = a;
        o->channels[1] = b;
        break;
      }
      case 'o': o->out = optarg; break;
      case 'r': o->resume = optarg; break;
      case 'L': o->autoload = 1; break;
      case 'c':
        if (strcmp(optarg, "single") != 0 && strcmp(optarg, "mpi") != 0) {
          fprintf(stderr, "train_mnist_cnn: error: unknown communicator '%s'\n"
                          "  hint: use --communicator single (one process) or mpi (under mpirun)\n", optarg);
          return -1;
        }
        o->communicator = optarg;
        break;
      case 'D': o->data = optarg; break;
      case 'A':
        if (strcmp(optarg, "cnn") != 0 && strcmp(optarg, "mlp") != 0) {
          fprintf(stderr, "train_mnist_cnn: --arch must be cnn or mlp, got '%s'\n", optarg);
          return -1;
        }
        o->arch = optarg;
        break;
      case 'S': {
        char *end;
        errno = 0;
        o->seed = strtoull(optarg, &end, 10);
        if (errno || *end || end == optarg || optarg[0] == '-') {
          fprintf(stderr, "train_mnist_cnn: --seed must be a non-negative integer, got '%s'\n", optarg);
          return -1;
        }
        break;
      }
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return -1;
    }
  }
  if (!o->unit) o->unit = strcmp(o->arch, "cnn") == 0 ? 256 : 100;
  o->fc_units = o->unit;
  /* inside a kusari run, what is not under outputs/ (or logs/) is discarded
   * with the run's working directory: write there unless told otherwise */
  if (!o->out) {
    const char *run_out = getenv("KUSARI_OUTPUT_DIR");
    o->out = run_out && *run_out ? run_out : "result";
  }
  if (optind < argc) {
    fprintf(stderr, "train_mnist_cnn: unexpected argument '%s' (see --help)\n", argv[optind]);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------- */
/* models */

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

static ks_var *cnn_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  // x is (N, 1, 28, 28)
  ks_var *h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv1"), x));  // (N, 32, 24, 24)
  h = ks_max_pooling_2d(ctx, h, 2, 2, 0, 1);                                          // (N, 32, 12, 12)
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv2"), h));            // (N, 64, 8, 8)
  h = ks_max_pooling_2d(ctx, h, 2, 2, 0, 1);                                          // (N, 64, 4, 4)
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "fc3"), h));              // (N, 256)
  return ks_link_forward(ctx, ks_link_child(self, "fc4"), h);                         // (N, 10)
}

static ks_link *cnn_new(int c1, int c2, int units, ks_rng *rng) {
  ks_conv_link_opts co = {.rng = rng};
  ks_linear_opts lo = {.rng = rng};
  ks_link *model = ks_chain_new();
  if (!model) return NULL;
  if (ks_link_add_child(model, "conv1", ks_convolution_2d_link_new(0, c1, 5, 1, 0, &co)) ||
      ks_link_add_child(model, "conv2", ks_convolution_2d_link_new(c1, c2, 5, 1, 0, &co)) ||
      ks_link_add_child(model, "fc3", ks_linear_link_new(0, units, &lo)) ||
      ks_link_add_child(model, "fc4", ks_linear_link_new(units, 10, &lo))) {
    ks_link_free(model);
    return NULL;
  }
  ks_link_set_forward(model, cnn_forward, NULL);
  return model;
}

/* ---------------------------------------------------------------------------- */

static ks_comm *g_comm;  /* --communicator mpi only */

/* With several ranks, a failure on one ends them all (ChainerMN's global
 * except hook): the others would otherwise wait in their next collective. */
static void die(const char *what) {
  if (g_comm)
    fprintf(stderr, "train_mnist_cnn: rank %d: %s: %s\n", ks_comm_rank(g_comm), what, ks_error_last());
  else
    fprintf(stderr, "train_mnist_cnn: %s: %s\n", what, ks_error_last());
  if (g_comm && ks_comm_size(g_comm) > 1) ks_comm_abort(g_comm, 1);
  exit(1);
}

static int extend(ks_trainer *tr, ks_extension *ext) {
  return ks_trainer_extend(tr, ext, NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT);
}

static ks_dataset *take(ks_dataset *ds, long long n) {
  if (!ds || n <= 0 || n >= ds->size) return ds;
  ks_dataset *sub = NULL;
  if (ks_dataset_subset(ds, 0, n, &sub) != KS_OK) die("taking a subset");
  ks_dataset_free(ds);
  return sub;
}

int main(int argc, char **argv) {
  options o;
  if (parse_options(argc, argv, &o)) return 2;
  int cnn = strcmp(o.arch, "cnn") == 0;
  int rank = 0, size = 1;
  if (strcmp(o.communicator, "mpi") == 0) {
    if (ks_comm_create(&g_comm, "mpi") != KS_OK) {
      fprintf(stderr, "train_mnist_cnn: error: %s\n  hint: use --communicator single\n", ks_error_last());
      return 1;
    }
    rank = ks_comm_rank(g_comm);
    size = ks_comm_size(g_comm);
    /* the node's processors shared among its ranks, unless set by the user */
    if (!getenv("KUSARI_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) {
      long procs = sysconf(_SC_NPROCESSORS_ONLN);
      int t = (int)(procs / ks_comm_intra_size(g_comm));
      ks_set_num_threads(t < 1 ? 1 : t);
    }
    if (o.resume) {
      struct stat rst;
      if (stat(o.resume, &rst) != 0 || !S_ISDIR(rst.st_mode)) {
        if (rank == 0)
          fprintf(stderr, "train_mnist_cnn: error: with --communicator mpi, -r takes a directory, got '%s'\n"
                          "  hint: -r DIR resumes each rank from its newest snapshot_rank<R>_iter_* there\n",
                  o.resume);
        ks_comm_free(g_comm);
        return 2;
      }
    }
  }

  const char *coretype = ks_blas_suggested_coretype();
  if (coretype)
    fprintf(stderr, "train_mnist_cnn: note: OpenBLAS does not know this CPU and uses its generic "
                    "'%s' kernels; run with OPENBLAS_CORETYPE=%s for several times the speed\n",
            ks_blas_corename(), coretype);

  char data_dir[4096];
  ks_dataset *train = NULL, *test = NULL;
  if (rank == 0) {  /* with mpi, rank 0 reads the data and scatters it below */
    if (ks_mnist_find_dir(o.data, data_dir, sizeof data_dir) != KS_OK) die("no data");
    /* (N, 1, 28, 28) for the convolutions, (N, 784) for the mlp */
    if (ks_mnist_load(data_dir, cnn ? 3 : 1, &train, &test) != KS_OK) die("loading the data");
    train = take(train, o.train_size);
    test = take(test, o.test_size);
    printf("data: %s (train %lld, test %lld)\n", data_dir, (long long)train->size, (long long)test->size);
    printf("# arch: %s  minibatch: %d  epochs: %d  seed: %llu\n", o.arch, o.batchsize, o.epochs, o.seed);
    if (g_comm)
      printf("# communicator: mpi  ranks: %d (%d node%s)  minibatch: %d per rank, %d in all\n", size,
             ks_comm_inter_size(g_comm), ks_comm_inter_size(g_comm) > 1 ? "s" : "", o.batchsize,
             o.batchsize * size);
    fflush(stdout);
  }
  if (g_comm) {  /* each rank its shard (ChainerMN's scatter_dataset, equal lengths) */
    ks_dataset *my_train = NULL, *my_test = NULL;
    if (ks_scatter_dataset(train, g_comm, 1, o.seed + 3, 1, &my_train) != KS_OK ||
        ks_scatter_dataset(test, g_comm, 1, o.seed + 4, 1, &my_test) != KS_OK)
      die("scattering the data");
    ks_dataset_free(train);
    ks_dataset_free(test);
    train = my_train;
    test = my_test;
    ks_comm_reset_stats(g_comm);  /* the figures printed at the end: training's */
  }

  ks_rng rng;
  ks_rng_seed(&rng, o.seed);
  ks_link *model = ks_classifier_new(cnn ? cnn_new(o.channels[0], o.channels[1], o.fc_units, &rng)
                                        : mlp_new(o.unit, &rng));
  if (!model) die("building the model");
  ks_optimizer *opt = ks_optimizer_adam_new(NULL);
  if (!opt || (g_comm && ks_create_multi_node_optimizer(opt, g_comm) != KS_OK) ||
      ks_optimizer_setup(opt, model) != KS_OK)
    die("setting up the optimizer");

  ks_serial_iterator *train_it, *test_it;
  if (ks_serial_iterator_new(&train_it, train->size, o.batchsize, 1, 1, o.seed + 1 + (uint64_t)rank) != KS_OK ||
      ks_serial_iterator_new(&test_it, test->size, o.batchsize, 0, 0, 0) != KS_OK)
    die("creating the iterators");

  ks_updater *updater;
  ks_updater_opts uo = {.seed = o.seed + 2, .replicas = o.replicas};
  if (ks_standard_updater_new(&updater, train_it, train, opt, &uo) != KS_OK) die("creating the updater");
  ks_trainer *tr;
  if (ks_trainer_new(&tr, updater, KS_TRIGGER(o.epochs, KS_EPOCH), o.out) != KS_OK) die("creating the trainer");

  static const char *const print_keys[] = {"epoch", "main/loss", "validation/main/loss", "main/accuracy",
                                           "validation/main/accuracy", "elapsed_time"};
  static const char *const loss_keys[] = {"main/loss", "validation/main/loss"};
  static const char *const acc_keys[] = {"main/accuracy", "validation/main/accuracy"};
  static const char *const run_keys[] = {"main/loss", "main/accuracy", "validation/main/loss",
                                         "validation/main/accuracy"};
  /* with mpi: the reporting extensions run on rank 0 only, the multi-node
   * Evaluator on every rank (each its shard, the values over all) */
  if (g_comm && ks_trainer_set_comm(tr, g_comm) != KS_OK) die("creating the trainer");
  ks_extension *ev = ks_evaluator_new(test_it, test, model, NULL);
  if (g_comm && ev && ks_create_multi_node_evaluator(ev, g_comm) != KS_OK) die("adding the evaluator");
  char pattern[64];  /* each rank its own snapshots when several share --out */
  snprintf(pattern, sizeof pattern, "snapshot_rank%d_iter_{.updater.iteration}", rank);
  const char *snap_name = g_comm ? pattern : NULL;
  if (extend(tr, ev) ||
      extend(tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)) ||
      extend(tr, ks_print_report_new(print_keys, 6, NULL, NULL)) ||
      extend(tr, ks_plot_report_new(loss_keys, 2, "epoch", "loss.png", NULL)) ||
      extend(tr, ks_plot_report_new(acc_keys, 2, "epoch", "accuracy.png", NULL)) ||
      extend(tr, ks_run_logger_new(run_keys, 4, NULL)) ||
      extend(tr, ks_progress_bar_new(0, NULL)) ||
      ks_trainer_extend(tr, ks_snapshot_new(snap_name, 0), NULL, KS_TRIGGER(o.frequency, KS_EPOCH),
                        KS_PRIORITY_DEFAULT))
    die("adding the extensions");

  ks_run *run = ks_run_current();
  if (rank == 0) {
    ks_run_log(run, "Batch size", (double)o.batchsize * size);
    ks_run_log(run, "Epochs", o.epochs);
    if (g_comm) ks_run_log(run, "Ranks", size);
  }

  /* -r DIR and --autoload: the newest snapshot there (most recently
   * written), like Chainer's autoload; --autoload with none is a first start */
  char latest[4300];
  struct stat st;
  if (o.resume && stat(o.resume, &st) == 0 && S_ISDIR(st.st_mode)) {
    if (ks_snapshot_find_latest(o.resume, snap_name, latest, sizeof latest) != KS_OK) die("resuming");
    o.resume = latest;
  } else if (!o.resume && o.autoload && ks_snapshot_find_latest(o.out, snap_name, latest, sizeof latest) == KS_OK) {
    o.resume = latest;
  }
  if (o.resume) {
    if (ks_trainer_load_snapshot(tr, o.resume) != KS_OK) die("resuming");
    if (rank == 0) printf("resumed from %s at iteration %lld (epoch %lld)\n", o.resume,
           (long long)ks_updater_iteration(updater), (long long)ks_updater_epoch(updater));
    fflush(stdout);
  }
  if (ks_trainer_run(tr) != KS_OK) die("training");
  if (rank != 0) {  /* with mpi, rank 0 alone writes the model */
    ks_trainer_free(tr);
    ks_serial_iterator_free(train_it);
    ks_serial_iterator_free(test_it);
    ks_optimizer_free(opt);
    ks_link_free(model);
    ks_dataset_free(train);
    ks_dataset_free(test);
    ks_comm_free(g_comm);
    return 0;
  }

  char path[4200];
  snprintf(path, sizeof path, "%s/model.npz", o.out);
  if (ks_save_npz(path, model) != KS_OK) die("saving the model");
  printf("saved %s (%lld parameters)\n", path, (long long)ks_link_count_params(model));
  if (g_comm) {
    ks_comm_stats cs;
    ks_comm_get_stats(g_comm, &cs);
    int64_t it = ks_updater_iteration(updater);
    printf("rank 0 communicated %.1f MB in %lld calls, %.2f s after scattering the data; per update: %.0f bytes, "
           "%.2f ms\n", (double)cs.bytes / 1e6, (long long)cs.calls, cs.seconds,
           it ? (double)cs.bytes / (double)it : 0, it ? 1e3 * cs.seconds / (double)it : 0);
  }
  /* The network description beside it (kusari/model_io.h), so that
   * registering the output folder gives a model `kusari model deploy` can
   * serve: the steps of cnn_forward / mlp_forward. Given the Classifier, the
   * description is its predictor's with "root": "predictor", the prefix of
   * the keys in model.npz. The input is one sample as the forward takes it. */
  static const char *const cnn_order[] = {"conv1", "relu", "max_pooling_2d:2:2:0:1", "conv2", "relu",
                                          "max_pooling_2d:2:2:0:1", "fc3", "relu", "fc4", NULL};
  static const char *const mlp_order[] = {"l1", "relu", "l2", "relu", "l3", NULL};
  /* The inputs were pixels / 255 (ks_mnist_load with scale 1): declared,
   * so the scorer refuses raw pixels instead of answering wrongly. */
  snprintf(path, sizeof path, "%s/model.json", o.out);
  const ks_model_desc_opts dopts = {.order = cnn ? cnn_order : mlp_order, .input_range = (const double[]){0, 1},
                                    .input_preprocessing = "grayscale pixels / 255, row by row"};
  if (ks_model_desc_save_ex(path, model, &dopts, cnn ? 3 : 1,
                            cnn ? (int64_t[]){1, 28, 28} : (int64_t[]){train->row_size}) != KS_OK)
    die("saving the model description");
  ks_run_flush(run);

  ks_trainer_free(tr);   /* and the updater */
  ks_serial_iterator_free(train_it);
  ks_serial_iterator_free(test_it);
  ks_optimizer_free(opt);
  ks_link_free(model);
  ks_dataset_free(train);
  ks_dataset_free(test);
  ks_comm_free(g_comm);
  return 0;
}
