/*
 * platform/cmd_log.c — `kusari log metric|tag`: the run protocol from the
 * command line, for shell and Python entries. Writes to the same metrics
 * channel as libkusari's run client (it *is* the run client).
 */
#include "kp.h"
#include "kusari/error.h"
#include "kusari/run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offline is not an error (like a script run by hand), but say so. */
static int offline_note(void) {
  const char *id = getenv("KUSARI_RUN_ID");
  if (id && *id)
    fprintf(stderr, "kusari: run %s has no usable metrics channel (has it ended?); nothing was logged\n", id);
  else
    fprintf(stderr, "kusari: not inside a kusari run (KUSARI_RUN_ID is not set); nothing was logged\n");
  return 0;
}

static int log_metric(int argc, char **argv) {
  const char *pos[2], *step = NULL;
  int np = 0;
  kp_opt opts[] = {{.name = "step", .val = &step}, {0}};
  if (kp_parse("log metric", argc, argv, opts, pos, &np, 2, NULL)) return 2;
  if (np != 2) return kp_usage_err("log metric", "usage: kusari log metric NAME VALUE [--step N]");
  char *end;
  errno = 0;
  double v = strtod(pos[1], &end);
  /* nan, inf and -inf are values too (a diverged loss is worth seeing); an
   * overflow such as 1e999 is an error, not a silent infinity */
  if ((errno && !(errno == ERANGE && fabs(v) < 1.0)) || *end || end == pos[1])
    return kp_usage_err("log metric", "VALUE '%s' is not a number (write it like 0.91, -3, 1e-4, nan, inf or -inf)",
                        pos[1]);
  long long s = -1;
  if (step && (kp_parse_int(step, &s) != 0 || s < 0 || s > KS_RUN_STEP_MAX))
    return kp_usage_err("log metric", "--step must be a non-negative integer of at most %lld, got '%s'", (long long)KS_RUN_STEP_MAX,
                        step);
  ks_run *run = ks_run_current();
  int rc = ks_run_log_step(run, pos[0], (int64_t)s, v);
  if (rc != KS_OK) return kp_err("%s", ks_error_last()), 1;
  if (ks_run_is_offline(run)) return offline_note();
  return 0;
}

static int log_tag(int argc, char **argv) {
  const char *pos[2];
  int np = 0;
  if (kp_parse("log tag", argc, argv, NULL, pos, &np, 2, NULL)) return 2;
  if (np != 2) return kp_usage_err("log tag", "usage: kusari log tag KEY VALUE");
  ks_run *run = ks_run_current();
  if (ks_run_tag(run, pos[0], pos[1]) != KS_OK) return kp_err("%s", ks_error_last()), 1;
  if (ks_run_is_offline(run)) return offline_note();
  return 0;
}

static const kp_cmd cmds[] = {
  {"metric", log_metric, "log one metric value to the current run",
   "usage: kusari log metric NAME VALUE [--step N]\n\n"
   "Appends VALUE to metric NAME of the run this process belongs to (found through\n"
   "KUSARI_RUN_ID and KUSARI_METRICS_CHANNEL, set by the platform). Without --step,\n"
   "the step is the number of earlier values of NAME. Outside a run it logs nothing.\n"
   "A step is at most 9007199254740991 (2^53 - 1, exact in every JSON reader);\n"
   "implicit steps stop there too (repeating it rather than wrapping around).\n\n"
   "VALUE is a decimal number; nan, inf and -inf are recorded as they are (a loss\n"
   "that diverged is a result worth seeing) and shown as such by 'run metrics';\n"
   "sweeps never take a non-finite value as a child's best. A value too large for\n"
   "a double (1e999) is refused.\n"},
  {"tag", log_tag, "set a tag on the current run",
   "usage: kusari log tag KEY VALUE\n\nSets tag KEY=VALUE on the current run.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_log(int argc, char **argv) {
  return kp_dispatch("log", "usage: kusari log SUBCOMMAND\n\nLog to the current run from any program.\n", cmds, argc, argv);
}
