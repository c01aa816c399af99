/*
 * platform/delete.c — deleting runs (`run delete`), sweeps with their
 * children (`sweep delete`) and experiments with all of their runs
 * (`experiment delete`).
 *
 * Nothing active is deleted: a run that is Queued, Preparing, Running or
 * Finalizing (a running sweep is a Running parent run) makes the command
 * refuse. The rows (runs, metrics, tags, files, sweep records, the experiment:
 * kp_store_runs_delete, kp_store_experiment_delete) go in one transaction, which checks again what it deletes; after the commit
 * the runs' live directories are removed and their blobs (files, snapshot
 * manifests and the source files those list) are collected by blob.c, which
 * keeps every blob something else still refers to: another run's files or
 * snapshot (sweep children share their parent's), a registered model version
 * (a model registered from a deleted run keeps its files and its lineage
 * names the deleted run), a scoring service's entry.
 *
 * A sweep child is not deleted alone (its sweep would show a hole): delete
 * the sweep. A sweep is not deleted by `run delete` either.
 */
#include "kp.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct idlist {
  char (*id)[300];
  char (*status)[32];
  int n, cap;
} idlist;

static void ids_free(idlist *l) {
  free(l->id);
  free(l->status);
  memset(l, 0, sizeof *l);
}

static int ids_add(idlist *l, const char *id, const char *status) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->id[i], id)) return 0;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    void *a = realloc(l->id, (size_t)cap * sizeof *l->id);
    if (a) l->id = a;
    void *b = realloc(l->status, (size_t)cap * sizeof *l->status);
    if (b) l->status = b;
    if (!a || !b) return kp_err("out of memory");
    l->cap = cap;
  }
  snprintf(l->id[l->n], sizeof l->id[l->n], "%s", id);
  snprintf(l->status[l->n], sizeof l->status[l->n], "%s", status);
  l->n++;
  return 0;
}

/* Adds runs 'v' to 'l'; 0 or -1. */
static int add_briefs(const kp_run_brief *v, size_t n, idlist *l) {
  for (size_t i = 0; i < n; i++)
    if (ids_add(l, v[i].id, kp_run_status_name(v[i].status)) != 0) return -1;
  return 0;
}

/* The runs to delete. Returns 0, 1 (not found / not allowed: printed) or -1
 * (store error). */
static int collect(kp_ws *ws, kp_del_kind kind, const char *const *names, int n, idlist *out) {
  memset(out, 0, sizeof *out);
  int rc = 0;
  if (kind == KP_DEL_RUNS) {
    for (int i = 0; i < n && rc == 0; i++) {
      kp_run r;
      int sweep = 0;
      if (kp_store_run_get(ws->store, names[i], &r) != 0) {
        if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) { kp_store_report(); rc = -1; break; }
        kp_err("no run with id '%s' in this workspace; nothing was deleted", names[i]);
        kp_hint("list runs with 'kusari run list'");
        rc = 1;
        break;
      }
      if (kp_store_run_is_sweep(ws->store, names[i], &sweep) != 0) {
        kp_store_report();
        rc = -1;
      } else if (sweep) {
        kp_err("run %s is a sweep; nothing was deleted", names[i]);
        kp_hint("delete it with its child runs: 'kusari sweep delete %s'", names[i]);
        rc = 1;
      } else if (r.parent_id) {
        kp_err("run %s is a child run of sweep %s and is not deleted alone; nothing was deleted", names[i], r.parent_id);
        kp_hint("delete the whole sweep: 'kusari sweep delete %s'", r.parent_id);
        rc = 1;
      } else if (ids_add(out, r.id, kp_run_status_name(r.status)) != 0) {
        rc = -1;
      }
      kp_run_free(&r);
    }
  } else {
    kp_run_brief *v;
    size_t nv;
    int got = kind == KP_DEL_SWEEP ? kp_store_sweep_runs(ws->store, names[0], &v, &nv)
                                   : kp_store_experiment_runs(ws->store, names[0], &v, &nv);
    if (got != 0) {
      if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) return kp_store_report();
      if (kind == KP_DEL_SWEEP) {
        kp_err("no sweep with id '%s' in this workspace; nothing was deleted", names[0]);
        kp_hint("list sweeps with 'kusari sweep list'");
      } else {
        kp_err("no experiment named '%s' in this workspace; nothing was deleted", names[0]);
        kp_hint("list experiments with 'kusari experiment list'");
      }
      return 1;
    }
    rc = add_briefs(v, nv, out);
    kp_run_briefs_free(v, nv);
  }
  if (rc != 0) ids_free(out);
  return rc;
}

/* Prints an error naming the active runs of 'l'; 1 when there are any. */
static int refuse_active(const char *cmd, const idlist *l) {
  int na = 0;
  for (int i = 0; i < l->n; i++) na += !kp_status_terminal(l->status[i]);
  if (!na) return 0;
  char list[1024] = "";
  int shown = 0;
  for (int i = 0; i < l->n && shown < 5; i++) {
    if (kp_status_terminal(l->status[i])) continue;
    size_t k = strlen(list);
    snprintf(list + k, sizeof list - k, "%s%s (%s)", shown ? ", " : "", l->id[i], l->status[i]);
    shown++;
  }
  kp_err("%s: %d run%s still active: %s%s; nothing was deleted", cmd, na, na == 1 ? " is" : "s are", list,
         na > shown ? ", ..." : "");
  kp_hint("wait for them to end, or cancel them ('kusari run cancel RUN', 'kusari sweep cancel SWEEP'), then delete");
  return 1;
}

/* The ids of 'l' as an array of pointers into it (free() it). */
static const char **id_ptrs(const idlist *l) {
  const char **v = calloc((size_t)l->n + 1, sizeof *v);
  if (!v) { kp_err("out of memory"); return NULL; }
  for (int i = 0; i < l->n; i++) v[i] = l->id[i];
  return v;
}

typedef struct hexlist {
  char (*v)[65];
  size_t n, cap;
} hexlist;

static int hex_add(hexlist *h, const char *s) {
  if (strlen(s) != 64) return 0;
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 64;
    void *p = realloc(h->v, cap * sizeof *h->v);
    if (!p) return kp_err("out of memory");
    h->v = p;
    h->cap = cap;
  }
  snprintf(h->v[h->n++], 65, "%s", s);
  return 0;
}

/* The blobs runs 'ids' refer to: their files, their snapshot manifests and
 * the files those list. */
static int candidates(kp_ws *ws, const char *const *ids, size_t n, hexlist *h) {
  char **files, **snaps;
  size_t nf, ns;
  if (kp_store_runs_blobs(ws->store, ids, n, &files, &nf, &snaps, &ns) != 0) return kp_store_report();
  int rc = 0;
  for (size_t i = 0; i < nf && rc == 0; i++) rc = hex_add(h, files[i]);
  for (size_t i = 0; i < ns && rc == 0; i++) {
    const char *snap = snaps[i];
    if (strlen(snap) != 64) continue;
    if (hex_add(h, snap) != 0) { rc = -1; break; }
    char p[4200];
    kp_blob_path(ws, snap, p, sizeof p);
    char *txt = kp_read_file(p, NULL);
    if (!txt) continue;  /* already gone: nothing to collect */
    cJSON *man = cJSON_Parse(txt);
    free(txt);
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(man, "files")) {
      const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
      if (sha && hex_add(h, sha) != 0) { rc = -1; break; }
    }
    cJSON_Delete(man);
  }
  kp_strings_free(files, nf);
  kp_strings_free(snaps, ns);
  return rc;
}

/* Asks on the terminal; 1 = yes. */
static int confirm(const char *what) {
  fprintf(stderr, "Delete %s? This cannot be undone. [y/N] ", what);
  fflush(stderr);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 0;
  return !strcmp(line, "y\n") || !strcmp(line, "Y\n") || !strcmp(line, "yes\n") || !strcmp(line, "YES\n");
}

static void fmt_ids(const idlist *l, char *out, size_t n) {
  out[0] = '\0';
  for (int i = 0; i < l->n && i < 8; i++) {
    size_t k = strlen(out);
    snprintf(out + k, n - k, "%s%s", i ? ", " : "", l->id[i]);
  }
  if (l->n > 8) {
    size_t k = strlen(out);
    snprintf(out + k, n - k, " and %d more", l->n - 8);
  }
}

int kp_delete(const char *cmd, kp_del_kind kind, const char *const *names, int n, int yes, int dry_run) {
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  idlist l;
  hexlist h = {0};
  const char **ids = NULL;
  int rc = collect(&ws, kind, names, n, &l);
  if (rc != 0) { kp_ws_close(&ws); return 1; }
  if (refuse_active(cmd, &l)) { rc = 1; goto out; }
  /* the plan */
  int64_t nfiles = 0, bytes = 0;
  rc = 1;
  ids = id_ptrs(&l);
  if (!ids) goto out;
  if (kp_store_runs_files_size(ws.store, ids, (size_t)l.n, &nfiles, &bytes) != 0) { kp_store_report(); goto out; }
  char idtext[4096], what[4600];
  fmt_ids(&l, idtext, sizeof idtext);
  if (kind == KP_DEL_EXPERIMENT)
    snprintf(what, sizeof what, "experiment %s with its %d run%s%s%s", names[0], l.n, l.n == 1 ? "" : "s", l.n ? ": " : "", idtext);
  else if (kind == KP_DEL_SWEEP)
    snprintf(what, sizeof what, "sweep %s with its %d child run%s", names[0], l.n - 1, l.n == 2 ? "" : "s");
  else
    snprintf(what, sizeof what, "%d run%s: %s", l.n, l.n == 1 ? "" : "s", idtext);
  if (dry_run) {
    printf("Would delete %s (%lld stored file%s, %.2f MB before deduplication, and their metrics and tags)\n", what,
           (long long)nfiles, nfiles == 1 ? "" : "s", (double)bytes / 1e6);
    printf("Nothing was deleted (--dry-run).\n");
    rc = 0;
    goto out;
  }
  if (!yes) {
    if (!isatty(0)) {
      kp_err("%s asks for confirmation, and standard input is not a terminal; nothing was deleted", cmd);
      kp_hint("add --yes to delete without asking (--dry-run shows what would go)");
      rc = 2;
      goto out;
    }
    if (!confirm(what)) {
      fprintf(stderr, "Nothing was deleted.\n");
      rc = 1;
      goto out;
    }
  }
  /* the transaction: what to delete is read again under the write lock */
  ids_free(&l);
  free(ids);
  ids = NULL;
  if (kp_store_begin(ws.store) != 0) { kp_store_report(); goto out; }
  int c = collect(&ws, kind, names, n, &l);
  if (c != 0 || refuse_active(cmd, &l) || !(ids = id_ptrs(&l)) || candidates(&ws, ids, (size_t)l.n, &h) != 0) {
    kp_store_rollback(ws.store);
    goto out;
  }
  if (kp_store_runs_delete(ws.store, ids, (size_t)l.n) != 0 ||
      (kind == KP_DEL_EXPERIMENT && kp_store_experiment_delete(ws.store, names[0]) != 0) ||
      kp_store_commit(ws.store) != 0) {
    kp_store_report();
    kp_store_rollback(ws.store);
    goto out;
  }
  rc = 0;
  /* after the commit: live directories, then blobs */
  for (int i = 0; i < l.n; i++) {
    char rd[4400];
    kp_run_dir(&ws, l.id[i], rd, sizeof rd);
    kp_rm_rf(rd);
  }
  printf("Deleted %s\n", what);
  kp_gc_result g;
  if (kp_blob_collect(&ws, h.v, h.n, &g) != 0) {
    kp_hint("the runs are deleted; their unreferenced blobs stay in %s/blobs until a later delete collects them", ws.root);
  } else {
    printf("Removed %d blob%s (%.2f MB); kept %d still used by other runs, snapshots or models\n", g.removed,
           g.removed == 1 ? "" : "s", (double)g.bytes / 1e6, g.kept);
    if (g.deferred)
      printf("Left %d blob%s for the next delete to collect: another kusari process was storing files\n", g.deferred,
             g.deferred == 1 ? "" : "s");
  }
out:
  free(ids);
  free(h.v);
  ids_free(&l);
  kp_ws_close(&ws);
  return rc;
}
