/*
 * src/backend/cpu_kernels.h — the CPU kernels of the differentiable functions,
 * declared for the table in cpu.c. Contracts are those of the matching
 * ks_backend_ops members in include/kusari/backend.h.
 */
#ifndef KUSARI_CPU_KERNELS_H
#define KUSARI_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "kusari/random.h"

void ks__cpu_copy(void *dst, const void *src, size_t bytes);
void ks__cpu_scale(int64_t n, float alpha, const float *x, float *y);
void ks__cpu_add(int64_t n, int64_t m, const float *a, const float *b, float *y);
void ks__cpu_sub(int64_t n, int64_t m, const float *a, const float *b, float *y);
void ks__cpu_mul(int64_t n, int64_t m, const float *a, const float *b, float *y);
void ks__cpu_broadcast_rows(int64_t n, int64_t m, const float *b, float *y);
void ks__cpu_col_sum(int64_t n, int64_t m, const float *x, float *out);
void ks__cpu_sum_axis(int64_t outer, int64_t c, int64_t inner, float alpha, const float *x,
                      float *y);
void ks__cpu_broadcast_axis(int64_t outer, int64_t c, int64_t inner, float alpha,
                            const float *gy, float *gx);
void ks__cpu_sum_sq(int64_t n, float alpha, const float *x, float *out);

void ks__cpu_relu_forward(int64_t n, const float *x, float *y);
void ks__cpu_relu_backward(int64_t n, const float *y, const float *gy, float *gx);
void ks__cpu_leaky_relu_forward(int64_t n, float slope, const float *x, float *y);
void ks__cpu_leaky_relu_backward(int64_t n, float slope, const float *x, const float *gy,
                                 float *gx);
void ks__cpu_sigmoid_forward(int64_t n, const float *x, float *y);
void ks__cpu_sigmoid_backward(int64_t n, const float *y, const float *gy, float *gx);
void ks__cpu_tanh_forward(int64_t n, const float *x, float *y);
void ks__cpu_tanh_backward(int64_t n, const float *y, const float *gy, float *gx);

void ks__cpu_softmax_forward(int64_t outer, int64_t c, int64_t inner, const float *x, float *y);
void ks__cpu_softmax_backward(int64_t outer, int64_t c, int64_t inner, const float *y,
                              const float *gy, float *gx);
void ks__cpu_log_softmax_forward(int64_t outer, int64_t c, int64_t inner, const float *x,
                                 float *y);
void ks__cpu_log_softmax_backward(int64_t outer, int64_t c, int64_t inner, const float *y,
                                  const float *gy, float *gx);

int64_t ks__cpu_softmax_xent_forward(int64_t n, int64_t c, const float *x, const int32_t *t,
                                     int32_t ignore, float *p, float *loss);
void ks__cpu_softmax_xent_backward(int64_t n, int64_t c, const float *p, const int32_t *t,
                                   int32_t ignore, float scale, float *gx);
int64_t ks__cpu_accuracy(int64_t n, int64_t c, const float *y, const int32_t *t, int32_t ignore,
                         float *out);
void ks__cpu_dropout_mask(int64_t n, double ratio, ks_rng *rng, float *mask);

/* Threads for a kernel doing about 'work' element operations split into
 * 'tasks' independent pieces: 1 below KS_CPU_PAR_MIN (a fork/join costs more),
 * else ks_get_num_threads() capped at tasks. */
#define KS_CPU_PAR_MIN 32768
int ks__cpu_threads_for(int64_t work, int64_t tasks);
/* Runs fn(arg, t) for t in [0, tasks) on 'threads' threads (1: inline, in
 * order) of kusari's thread pool (pool.h, shared with the GEMM panels).
 * Every threaded kernel goes through here: a task must depend only on its
 * index (which thread runs it is not fixed), so results are the same bits
 * on any thread count. */
typedef void (*ks__cpu_task_fn)(void *arg, int64_t t);
void ks__cpu_parallel_for(int64_t tasks, int threads, ks__cpu_task_fn fn, void *arg);

/* convolutional networks (cpu_conv.c) */
struct ks_conv_geom;
void ks__cpu_im2col(const struct ks_conv_geom *g, const float *x, float *col);
void ks__cpu_col2im(const struct ks_conv_geom *g, const float *col, float *x);
void ks__cpu_swap01(int64_t a, int64_t b, int64_t inner, const float *src, const float *bias,
                    float *dst);
void ks__cpu_channel_sum(int64_t n, int64_t c, int64_t inner, const float *x, float *out);
void ks__cpu_channel_bias(int64_t n, int64_t c, int64_t inner, const float *b, float *y);
void ks__cpu_copy2d(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst,
                    int64_t ldd);
void ks__cpu_max_pool2d_forward(const struct ks_conv_geom *g, const float *x, float *y,
                                int32_t *idx);
void ks__cpu_max_pool2d_backward(const struct ks_conv_geom *g, const int32_t *idx,
                                 const float *gy, float *gx);
void ks__cpu_avg_pool2d_forward(const struct ks_conv_geom *g, const float *x, float *y);
void ks__cpu_avg_pool2d_backward(const struct ks_conv_geom *g, const float *gy, float *gx);
void ks__cpu_bn_stats(int64_t n, int64_t c, int64_t inner, const float *x, float *mean,
                      float *var);
void ks__cpu_bn_forward(int64_t n, int64_t c, int64_t inner, float eps, const float *x,
                        const float *mean, const float *var, const float *gamma,
                        const float *beta, float *y, float *inv_std);
void ks__cpu_bn_backward(int64_t n, int64_t c, int64_t inner, int batch_stats, const float *x,
                         const float *gy, const float *mean, const float *inv_std,
                         const float *gamma, float *gx, float *ggamma, float *gbeta);

#endif
