/*
 * platform/compute.c — the registry of compute target types (compute.h).
 * A new type is its own file (compute_<type>.c) and one line here.
 */
#include "compute.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

const kp_compute_ops *const kp_compute_types[] = {
  &kp_compute_local,
  &kp_compute_slurm,
  NULL,
};

const kp_compute_ops *kp_compute_find(const char *type) {
  for (int i = 0; type && kp_compute_types[i]; i++)
    if (!strcmp(kp_compute_types[i]->type, type)) return kp_compute_types[i];
  return NULL;
}

void kp_compute_type_names(char *out, size_t n) {
  out[0] = '\0';
  for (int i = 0; kp_compute_types[i]; i++) {
    size_t l = strlen(out);
    snprintf(out + l, n - l, "%s%s", i ? ", " : "", kp_compute_types[i]->type);
  }
}

const char *kp_signal_name(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGINT: return "SIGINT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

void kp_rank_status_text(const kp_rank_status *r, char *out, size_t n) {
  if (!r->known) snprintf(out, n, "unknown");
  else if (r->signal) snprintf(out, n, "signal %d (%s)", r->signal, kp_signal_name(r->signal));
  else snprintf(out, n, "exit %d", r->exit_code);
}
