/*
 * tests/platform/service_model.c — helper of platform_service: builds a small
 * Sequential CNN with libkusari (conv, batch norm, relu, pooling, a grouped
 * deconvolution, a dilated convolution without bias, dropout, linear),
 * saves model.npz + model.json (ks_model_desc_save) into DIR, and
 * writes DIR/inputs.json (a batch for POST /score) and DIR/expected.json
 * (the library's own offline predictions and logits for that batch). Also
 * checks the description API's error cases. With a second argument CDIR it
 * also writes CDIR/{model.npz, model.json, inputs.json, expected.json} for a
 * Chain CNN shaped like examples/mnist/train_mnist_cnn (conv-relu-pool x2,
 * fc-relu-fc, its own forward), described with ks_model_desc_save_chain.
 * Exit 0 on success.
 *
 *   service_model DIR [CDIR]
 */
#include <kusari/kusari.h>
#include <kusari/model_io.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 7
#define C 2
#define H 6
#define W 6

static int fails;
#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "service_model: FAIL: " __VA_ARGS__); fprintf(stderr, "\n"); fails++; } } while (0)

static ks_var *my_fn(ks_ctx *ctx, ks_var *x) { return ks_relu(ctx, x); }

/* writes inputs.json and expected.json (test-mode forward) of n samples in dir */
static int write_io(const char *dir, ks_link *model, const float *xs, int n, int c, int h, int w) {
  char p[4096];
  const int width = c * h * w;
  snprintf(p, sizeof p, "%s/inputs.json", dir);
  FILE *f = fopen(p, "w");
  if (!f) return -1;
  fprintf(f, "{\"data\": [");
  for (int i = 0; i < n; i++) {
    fprintf(f, "%s[", i ? ", " : "");
    for (int k = 0; k < width; k++) fprintf(f, "%s%.9g", k ? ", " : "", xs[i * width + k]);
    fprintf(f, "]");
  }
  fprintf(f, "]}\n");
  fclose(f);
  ks_ctx *ctx = ks_ctx_new();
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){n, c, h, w});
  memcpy(ks_tensor_f32(xt), xs, (size_t)(n * width) * sizeof(float));
  ks_var *y = ks_link_forward(ctx, model, ks_var_new(ctx, xt, 0));
  if (!y || y->data->ndim != 2) { fprintf(stderr, "eval: %s\n", ks_error_last()); ks_ctx_free(ctx); return -1; }
  const int C_ = (int)y->data->shape[1];
  const float *yv = ks_tensor_f32(y->data);
  snprintf(p, sizeof p, "%s/expected.json", dir);
  f = fopen(p, "w");
  fprintf(f, "{\"predictions\": [");
  for (int i = 0; i < n; i++) {
    int best = 0;
    for (int k = 1; k < C_; k++)
      if (yv[i * C_ + k] > yv[i * C_ + best]) best = k;
    fprintf(f, "%s%d", i ? ", " : "", best);
  }
  fprintf(f, "], \"logits\": [");
  for (int i = 0; i < n; i++) {
    fprintf(f, "%s[", i ? ", " : "");
    for (int k = 0; k < C_; k++) fprintf(f, "%s%.9g", k ? ", " : "", yv[i * C_ + k]);
    fprintf(f, "]");
  }
  fprintf(f, "]}\n");
  fclose(f);
  ks_ctx_free(ctx);
  return 0;
}

/* the forward of examples/mnist/train_mnist_cnn, on 1x12x12 inputs */
static ks_var *cnn_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv1"), x));
  h = ks_max_pooling_2d(ctx, h, 2, 2, 0, 1);
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv2"), h));
  h = ks_max_pooling_2d(ctx, h, 2, 2, 0, 1);
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "fc3"), h));
  return ks_link_forward(ctx, ks_link_child(self, "fc4"), h);
}

static int chain_cnn(const char *dir) {
  ks_rng rng;
  ks_rng_seed(&rng, 7);
  ks_conv_link_opts co = {.rng = &rng};
  ks_linear_opts lo = {.rng = &rng};
  ks_link *model = ks_chain_new();
  if (ks_link_add_child(model, "conv1", ks_convolution_2d_link_new(0, 4, 5, 1, 0, &co)) ||
      ks_link_add_child(model, "conv2", ks_convolution_2d_link_new(4, 6, 3, 1, 0, &co)) ||
      ks_link_add_child(model, "fc3", ks_linear_link_new(0, 16, &lo)) ||
      ks_link_add_child(model, "fc4", ks_linear_link_new(16, 10, &lo))) {
    fprintf(stderr, "chain: %s\n", ks_error_last());
    return -1;
  }
  ks_link_set_forward(model, cnn_forward, NULL);
  enum { n = 9, width = 144 };
  float xs[n * width];
  for (int i = 0; i < n * width; i++) xs[i] = (float)ks_rng_uniform(&rng);
  ks_ctx *ctx = ks_ctx_new();
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){n, 1, 12, 12});
  memcpy(ks_tensor_f32(xt), xs, sizeof xs);
  int rc = ks_link_forward(ctx, model, ks_var_new(ctx, xt, 0)) ? 0 : -1;  /* initializes the lazy layers */
  ks_ctx_free(ctx);
  char p[4096];
  static const char *const order[] = {"conv1", "relu", "max_pooling_2d:2:2:0:1", "conv2", "relu",
                                      "max_pooling_2d:2:2:0:1", "fc3", "relu", "fc4", NULL};
  snprintf(p, sizeof p, "%s/model.npz", dir);
  if (rc == 0 && ks_save_npz(p, model) != KS_OK) rc = -1;
  snprintf(p, sizeof p, "%s/model.json", dir);
  if (rc == 0 && ks_model_desc_save_chain(p, model, order, 3, (int64_t[]){1, 12, 12}) != KS_OK) rc = -1;
  if (rc == 0) rc = write_io(dir, model, xs, n, 1, 12, 12);
  if (rc != 0) fprintf(stderr, "chain cnn: %s\n", ks_error_last());
  ks_link_free(model);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) { fprintf(stderr, "usage: service_model DIR [CDIR]\n"); return 2; }
  const char *dir = argv[1];
  char p[4096];
  ks_rng rng;
  ks_rng_seed(&rng, 42);
  ks_conv_link_opts co = {.rng = &rng};
  ks_conv_link_opts co2 = {.rng = &rng, .nobias = 1, .dilate = 2};
  ks_conv_link_opts cod = {.rng = &rng, .groups = 2};
  ks_linear_opts lo = {.rng = &rng};
  ks_link *seq = ks_sequential_new();
  if (!seq || ks_sequential_append(seq, ks_convolution_2d_link_new(0, 4, 3, 1, 1, &co)) ||
      ks_sequential_append(seq, ks_batch_normalization_link_new(4, NULL)) || ks_sequential_append_fn(seq, ks_relu) ||
      ks_sequential_append_max_pooling_2d(seq, 2, 2, 0, 1) ||
      ks_sequential_append(seq, ks_deconvolution_2d_link_new(4, 4, 2, 1, 0, &cod)) ||
      ks_sequential_append(seq, ks_convolution_2d_link_new(4, 6, 2, 1, 0, &co2)) ||
      ks_sequential_append_fn(seq, ks_tanh) || ks_sequential_append_average_pooling_2d(seq, 2, 1, 0) ||
      ks_sequential_append_dropout(seq, 0.3) || ks_sequential_append(seq, ks_linear_link_new(0, 10, &lo))) {
    fprintf(stderr, "service_model: building: %s\n", ks_error_last());
    return 1;
  }
  /* before a forward the lazy layers cannot be described */
  snprintf(p, sizeof p, "%s/model.json", dir);
  CHECK(ks_model_desc_save(p, seq, 3, (int64_t[]){C, H, W}) == KS_ESTATE, "lazy layers: KS_ESTATE (%s)", ks_error_last());

  ks_ctx *ctx = ks_ctx_new();
  float xs[N * C * H * W];
  for (int i = 0; i < N * C * H * W; i++) xs[i] = (float)(ks_rng_uniform(&rng) * 2 - 1);
  /* one train-mode forward: initializes the lazy layers and moves the BN statistics */
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){N, C, H, W});
  memcpy(ks_tensor_f32(xt), xs, sizeof xs);
  ks_ctx_set_train(ctx, 1);
  if (!ks_link_forward(ctx, seq, ks_var_new(ctx, xt, 0))) { fprintf(stderr, "forward: %s\n", ks_error_last()); return 1; }
  ks_ctx_reset(ctx);

  snprintf(p, sizeof p, "%s/model.npz", dir);
  if (ks_save_npz(p, seq) != KS_OK) { fprintf(stderr, "save_npz: %s\n", ks_error_last()); return 1; }
  snprintf(p, sizeof p, "%s/model.json", dir);
  if (ks_model_desc_save(p, seq, 3, (int64_t[]){C, H, W}) != KS_OK) { fprintf(stderr, "desc: %s\n", ks_error_last()); return 1; }

  /* inputs: written with %.9g, which reads back as the same float32 */
  snprintf(p, sizeof p, "%s/inputs.json", dir);
  FILE *f = fopen(p, "w");
  fprintf(f, "{\"data\": [");
  for (int i = 0; i < N; i++) {
    fprintf(f, "%s[", i ? ", " : "");
    for (int k = 0; k < C * H * W; k++) fprintf(f, "%s%.9g", k ? ", " : "", xs[i * C * H * W + k]);
    fprintf(f, "]");
  }
  fprintf(f, "]}\n");
  fclose(f);

  /* the library's offline answer, in test mode */
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){N, C, H, W});
  memcpy(ks_tensor_f32(xt), xs, sizeof xs);
  ks_var *y = ks_link_forward(ctx, seq, ks_var_new(ctx, xt, 0));
  if (!y || y->data->ndim != 2 || y->data->shape[1] != 10) { fprintf(stderr, "eval: %s\n", ks_error_last()); return 1; }
  const float *yv = ks_tensor_f32(y->data);
  snprintf(p, sizeof p, "%s/expected.json", dir);
  f = fopen(p, "w");
  fprintf(f, "{\"predictions\": [");
  for (int i = 0; i < N; i++) {
    int best = 0;
    for (int k = 1; k < 10; k++)
      if (yv[i * 10 + k] > yv[i * 10 + best]) best = k;
    fprintf(f, "%s%d", i ? ", " : "", best);
  }
  fprintf(f, "], \"logits\": [");
  for (int i = 0; i < N; i++) {
    fprintf(f, "%s[", i ? ", " : "");
    for (int k = 0; k < 10; k++) fprintf(f, "%s%.9g", k ? ", " : "", yv[i * 10 + k]);
    fprintf(f, "]");
  }
  fprintf(f, "]}\n");
  fclose(f);

  /* error cases of the description API */
  snprintf(p, sizeof p, "%s/bad.json", dir);
  ks_link *chain = ks_chain_new();
  ks_link_add_child(chain, "fc", ks_linear_link_new(3, 2, NULL));
  CHECK(ks_model_desc_save(p, chain, 1, (int64_t[]){3}) == KS_EUNSUPPORTED, "a Chain: KS_EUNSUPPORTED");
  CHECK(ks_model_desc_save_chain(p, chain, (const char *[]){"fc", "softplus", NULL}, 1, (int64_t[]){3}) == KS_EINVAL,
        "unknown step: KS_EINVAL");
  CHECK(strstr(ks_error_last(), "softplus") != NULL, "the message names the step: %s", ks_error_last());
  CHECK(ks_model_desc_save_chain(p, chain, (const char *[]){"fc", NULL}, 0, NULL) == KS_EINVAL, "no input shape: KS_EINVAL");
  CHECK(ks_model_desc_save_chain(p, chain, (const char *[]){"fc", "max_pooling_2d:x", NULL}, 1, (int64_t[]){3}) == KS_EINVAL,
        "bad pooling step: KS_EINVAL");
  CHECK(ks_model_desc_save_chain(p, chain, (const char *[]){"relu", "fc", "dropout:0.25", "max_pooling_2d:3:2:1:0", NULL}, 1,
                                 (int64_t[]){3}) == KS_OK, "chain with steps: %s", ks_error_last());
  ks_link_free(chain);
  ks_link *s2 = ks_sequential_new();
  ks_sequential_append(s2, ks_linear_link_new(3, 2, NULL));
  ks_sequential_append_fn(s2, my_fn);
  CHECK(ks_model_desc_save(p, s2, 1, (int64_t[]){3}) == KS_EUNSUPPORTED, "a user function: KS_EUNSUPPORTED");
  CHECK(strstr(ks_error_last(), "layer 1") != NULL, "the message names the layer: %s", ks_error_last());
  ks_link_free(s2);

  ks_ctx_free(ctx);
  ks_link_free(seq);
  if (argc == 3 && chain_cnn(argv[2]) != 0) fails++;
  if (fails) return 1;
  printf("service_model: wrote %s/model.npz, model.json, inputs.json, expected.json\n", dir);
  return 0;
}
