/*
 * platform/main.c — entry of the kusari program: global options, the
 * top-level command table and the dispatcher every command group uses.
 *
 * Global option (accepted anywhere before a "--"): --workspace DIR.
 */
#include "kp.h"
#include "compute.h"
#include "kusari/backend.h" /* ks_blas_corename, ks_blas_suggested_coretype */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char kp_self_exe[4096];
int kp_cmd_service(int argc, char **argv);  /* cmd_service.c */
int kp_cmd_sweep(int argc, char **argv);    /* cmd_sweep.c */
int kp_cmd_server(int argc, char **argv);   /* cmd_server.c */

static const char top_help[] =
  "usage: kusari [--workspace DIR] COMMAND [SUBCOMMAND] [OPTIONS]\n"
  "\n"
  "kusari is a self-hosted ML platform: submit training programs as tracked\n"
  "runs on compute targets, watch their logs and metrics, keep their files,\n"
  "and register their models with versions.\n"
  "\n"
  "The workspace is --workspace DIR, else $KUSARI_WORKSPACE, else, from the\n"
  "current directory up, a workspace or a .kusari/config.json naming one\n"
  "(written by 'kusari workspace create DIR'), else the default workspace\n"
  "under $XDG_DATA_HOME/kusari (or ~/.local/share/kusari). 'kusari workspace\n"
  "show' says which one is in use and why.\n"
  "\n"
  "Example:\n"
  "  kusari compute create cpu --type local --max-nodes 2\n"
  "  RUN=$(kusari run submit --experiment mnist --source examples/mnist \\\n"
  "          --entry train_mnist --env examples/mnist/kusari-env.json -- --epochs 10 | tail -1)\n"
  "  kusari run wait $RUN --show-output\n"
  "  kusari run metrics $RUN\n"
  "  kusari model register --run $RUN --name chainer-dnn-mnist --path outputs/model.npz\n"
  "\n"
  "Run 'kusari COMMAND --help' for a command's options.\n";

static const kp_cmd top_cmds[] = {
  {"workspace", kp_cmd_workspace, "create and show workspaces", NULL},
  {"compute", kp_cmd_compute, "create, list, show and delete compute targets", NULL},
  {"experiment", kp_cmd_experiment, "experiments: list, show, delete", NULL},
  {"run", kp_cmd_run, "submit runs and watch them: wait, list, show, compare, plot, logs, files, metrics, tag, delete", NULL},
  {"log", kp_cmd_log, "log a metric or tag to the current run (from shell or Python entries)", NULL},
  {"model", kp_cmd_model, "register, list, show, download and delete models", NULL},
  {"sweep", kp_cmd_sweep, "hyperparameter sweeps: submit, show, best, wait, cancel, resume, list, plot, delete", NULL},
  {"service", kp_cmd_service, "scoring services of deployed models: list, show, logs, keys, start, stop, delete", NULL},
  {"server", kp_cmd_server, "the tracking server: the workspace's HTTP API (/api/v1), and its tokens", NULL},
  {NULL, NULL, NULL, NULL},
};

int kp_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--")) return 0;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  }
  return 0;
}

static void print_group_help(const char *group, const char *group_help, const kp_cmd *cmds, FILE *out) {
  fputs(group_help, out);
  fprintf(out, "\ncommands:\n");
  for (const kp_cmd *c = cmds; c->name; c++) fprintf(out, "  %-12s %s\n", c->name, c->summary);
  (void)group;
}

int kp_dispatch(const char *group, const char *group_help, const kp_cmd *cmds, int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    print_group_help(group, group_help, cmds, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const kp_cmd *c = cmds; c->name; c++) {
    if (strcmp(c->name, argv[1]) != 0) continue;
    if (c->usage && kp_wants_help(argc - 1, argv + 1)) {
      fputs(c->usage, stdout);
      return 0;
    }
    size_t l = strlen(kp_command);
    snprintf(kp_command + l, sizeof kp_command - l, "%s%s", l ? " " : "", c->name);
    return c->fn(argc - 1, argv + 1);
  }
  fprintf(stderr, "kusari: error: unknown command '%s%s%s'\n", *group ? group : "", *group ? " " : "", argv[1]);
  fprintf(stderr, "  hint: the commands are:");
  for (const kp_cmd *c = cmds; c->name; c++) fprintf(stderr, " %s", c->name);
  fprintf(stderr, "; see 'kusari %s%s--help'\n", group, *group ? " " : "");
  return 2;
}

int main(int argc, char **argv) {
  ssize_t n = readlink("/proc/self/exe", kp_self_exe, sizeof kp_self_exe - 1);
  if (n > 0) kp_self_exe[n] = '\0';
  else snprintf(kp_self_exe, sizeof kp_self_exe, "%s", argv[0]);

  /* pull out --workspace DIR / --workspace=DIR (before any "--") */
  int out = 1;
  int dashdash = 0;
  for (int i = 1; i < argc; i++) {
    if (!dashdash && !strcmp(argv[i], "--")) dashdash = 1;
    if (!dashdash && !strcmp(argv[i], "--workspace")) {
      if (i + 1 >= argc) return kp_usage_err("", "--workspace needs a directory");
      kp_opt_workspace = argv[++i];
      continue;
    }
    if (!dashdash && !strncmp(argv[i], "--workspace=", 12)) {
      kp_opt_workspace = argv[i] + 12;
      continue;
    }
    argv[out++] = argv[i];
  }
  argc = out;
  argv[argc] = NULL;
  if (argc >= 2 && !strcmp(argv[1], "--version")) {
    printf("kusari 0.1.0 (schema %d)\n", KP_SCHEMA_VERSION);
    const char *coretype = ks_blas_suggested_coretype();
    printf("BLAS: OpenBLAS %s kernels", ks_blas_corename());
    if (coretype) printf("; runs get OPENBLAS_CORETYPE=%s", coretype);
    printf("\n");
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "__supervise")) return kp_cmd_supervise(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "__forward")) return kp_cmd_forward(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "__rank")) return kp_cmd_rank(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "__prepare")) return kp_cmd_prepare(argc - 1, argv + 1);
  int rc = kp_dispatch("", top_help, top_cmds, argc, argv);
  if (rc == 0 && kp_store_errors) rc = 1;
  return rc;
}
