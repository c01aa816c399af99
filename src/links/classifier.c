/*
 * src/links/classifier.c — chainer.links.Classifier: a Chain whose only
 * child is "predictor" (so its parameters are "predictor/l1/W", ... exactly
 * as Chainer saves an L.Classifier), computing softmax cross entropy and
 * accuracy over the predictor's output. As in Chainer, the loss ignores
 * label -1 but the accuracy counts it as a miss.
 */
#include "link_impl.h"
#include "kusari/error.h"
#include "kusari/functions.h"

static const char classifier_type[] = "Classifier";

static ks_var *classifier_predict(ks_ctx *ctx, ks_link *link, ks_var *x) {
  return ks_link_forward(ctx, ks_link_child(link, "predictor"), x);
}

ks_link *ks_classifier_new(ks_link *predictor) {
  if (!predictor) return NULL;
  ks_link *link = ks__link_alloc(classifier_type);
  if (!link) { ks_link_free(predictor); return NULL; }
  link->forward = classifier_predict;
  if (ks_link_add_child(link, "predictor", predictor) != KS_OK) { ks_link_free(link); return NULL; }
  return link;
}

ks_var *ks_classifier_forward(ks_ctx *ctx, ks_link *clf, ks_var *x, ks_var *t, ks_var **y_out,
                              ks_var **accuracy) {
  if (y_out) *y_out = NULL;
  if (accuracy) *accuracy = NULL;
  if (!x || !t) return NULL;
  if (!clf || clf->type_name != classifier_type) {
    ks_error_set(KS_EINVAL, "ks_classifier_forward: link is not a Classifier");
    return NULL;
  }
  ks_var *y = classifier_predict(ctx, clf, x);
  ks_var *loss = ks_softmax_cross_entropy(ctx, y, t, -1);
  if (!loss) return NULL;
  if (y_out) *y_out = y;
  if (accuracy) {
    /* L.Classifier's accfun is F.accuracy with its default ignore_label=None:
     * a sample the loss ignores (label -1) still counts, as a miss */
    *accuracy = ks_accuracy(ctx, y, t, KS_IGNORE_NONE);
    if (!*accuracy) return NULL;
  }
  return loss;
}
