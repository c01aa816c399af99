/*
 * src/links/link_device.c — ks_link_to_device: moves every parameter (data
 * and gradient) and every float persistent of a link tree to a device
 * (Chainer's to_gpu / to_cpu). Data crosses through the backends' copies.
 */
#include "link_impl.h"
#include "kusari/backend.h"
#include "kusari/error.h"

#include <stdlib.h>

/* buffer of 'bytes' on 'to' holding a copy of view 'v' (on its own device) */
static void *moved(const ks_tensor *v, ks_device to, const ks_backend_ops *be_to) {
  ks_tensor tmp = *v;
  tmp.data = be_to->alloc(ks_tensor_nbytes(v) ? ks_tensor_nbytes(v) : 64);
  if (!tmp.data) {
    ks_error_set(KS_ENOMEM, "ks_link_to_device: out of memory on device '%s'", be_to->name);
    return NULL;
  }
  tmp.device = to;
  if (ks_tensor_copy(&tmp, v) != KS_OK) { be_to->free(tmp.data); return NULL; }
  return tmp.data;
}

int ks_link_to_device(ks_link *link, ks_device dev) {
  if (!link) return ks_error_set(KS_EINVAL, "ks_link_to_device: link is NULL");
  const ks_backend_ops *be_to = ks_backend_for_device(dev);
  if (!be_to)
    return ks_error_set(KS_EUNSUPPORTED, "ks_link_to_device: no backend serves device %d:%d",
                        (int)dev.type, dev.id);
  int n = 0;
  ks_flat_entry *f = ks__link_flat(link, &n);
  if (!f && n) return ks_error_last_code();
  for (int i = 0; i < n; i++)
    if (f[i].param->pack)
      return ks_error_set(KS_EUNSUPPORTED, "ks_link_to_device: parameter '%s' is in a flat pack "
                          "(ks_link_pack): move the model before packing it", f[i].param->path);
  for (int i = 0; i < n; i++) {
    ks_param *p = f[i].param;
    if (!p->initialized || ks_device_equal(p->data.device, dev)) continue;
    const ks_backend_ops *be_from = ks_backend_for_device(p->data.device);
    void *d = moved(&p->data, dev, be_to);
    void *g = d ? moved(&p->grad, dev, be_to) : NULL;
    if (!d || !g) {
      if (d) be_to->free(d);
      return ks_error_last_code();
    }
    if (be_from) { be_from->free(p->own_data); be_from->free(p->own_grad); }
    p->own_data = d;
    p->own_grad = g;
    p->data.data = d;
    p->grad.data = g;
    p->data.device = p->grad.device = dev;
  }
  int np = 0;
  ks_persist_entry *pl = ks__link_persist_list(link, &np);
  int rc = KS_OK;
  for (int i = 0; i < np && rc == KS_OK; i++)
    if (pl[i].p->t) rc = ks_to_device(pl[i].p->t, dev);
  ks__persist_list_free(pl, np);
  return rc;
}
