/*
 * platform/service.h — scoring services (issue 6): the built-in scorer that
 * rebuilds a network from its description (service_model.c), the HTTP
 * server (service_server.c) and the `kusari service` / `kusari model deploy`
 * commands (cmd_service.c). Internal to the kusari program.
 */
#ifndef KUSARI_PLATFORM_SERVICE_H
#define KUSARI_PLATFORM_SERVICE_H

#include "kp.h"

#include <kusari/kusari.h>

/* ---- the built-in scorer (model.json + model.npz) ------------------------- */
typedef struct kp_scorer kp_scorer;

/* Finds model.json under 'dir' (at any depth) and the .npz beside it
 * (model.npz, else the only .npz there), builds the network and loads the
 * weights. NULL with a message in err on failure. */
kp_scorer *kp_scorer_load(const char *dir, char *err, size_t errn);
void kp_scorer_free(kp_scorer *s);
/* Floats per sample (product of the description's input shape). */
int64_t kp_scorer_width(const kp_scorer *s);
int64_t kp_scorer_classes(const kp_scorer *s);
/* Where the description was found (for logs). */
const char *kp_scorer_desc_path(const kp_scorer *s);
/* logits (n x classes) of the n samples in x (n x width), computed in ctx
 * (test mode, no graph); the result lives in ctx until ks_ctx_reset. NULL
 * on failure (ks_error_last()). Safe to call from several threads at once,
 * each with its own ctx. */
const float *kp_scorer_run(kp_scorer *s, ks_ctx *ctx, const float *x, int64_t n);

/* ---- the server -------------------------------------------------------------- */
/* `kusari service serve NAME [--ready-fd FD]`: runs service NAME of the
 * workspace in the foreground until SIGTERM/SIGINT. */
int kp_service_serve(int argc, char **argv);

#endif
