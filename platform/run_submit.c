/*
 * platform/run_submit.c — submitting and canceling runs, as functions that
 * the CLI (cmd_run.c) and, later, sweeps call: validate, snapshot (or reuse
 * a snapshot), record the run as Queued, start its detached supervisor.
 */
#include "kp.h"
#include "compute.h"
#include "limits.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int kp_env_resolve(const char *env_json, const char *entry, char **out) {
  *out = NULL;
  cJSON *env = env_json ? cJSON_Parse(env_json) : NULL;
  if (env_json && !cJSON_IsObject(env)) {
    cJSON_Delete(env);
    return kp_err("the run's environment is not a JSON object");
  }
  size_t el = entry ? strlen(entry) : 0;
  int py = el > 3 && !strcmp(entry + el - 3, ".py");
  int pip = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(env, "pip_packages")) > 0;
  if (py || pip) {
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "interpreter"));
    char found[4096];
    if (kp_which(want ? want : "python3", found, sizeof found) != 0) {
      if (want) {
        kp_err("the environment's interpreter '%s' is not an executable file%s", want,
               strchr(want, '/') ? "" : " on your PATH");
        kp_hint("name a Python that exists here, e.g. {\"interpreter\": \"/usr/bin/python3\"}, or leave the field out "
                "to use python3 from your PATH");
      } else {
        kp_err("there is no python3 on your PATH for %s", py ? "the Python entry" : "the environment's pip_packages");
        kp_hint("install Python 3 or activate your environment (venv, pyenv, conda), or name one in the environment "
                "file: {\"interpreter\": \"/usr/bin/python3\"}");
      }
      cJSON_Delete(env);
      return -1;
    }
    if (!env) env = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(env, "interpreter");
    cJSON_AddStringToObject(env, "interpreter", found);
  }
  if (env) {
    *out = cJSON_PrintUnformatted(env);
    cJSON_Delete(env);
    if (!*out) return kp_err("out of memory");
  }
  return 0;
}

/* Starts the detached supervisor of run 'id' and waits until it is up. */
static int start_supervisor(kp_ws *ws, const char *id) {
  char rd[4400], slog[4600], reply[64];
  kp_run_dir(ws, id, rd, sizeof rd);
  snprintf(slog, sizeof slog, "%s/supervisor.log", rd);
  char *argv[] = {kp_self_exe, "--workspace", ws->root, "__supervise", (char *)id, KP_DAEMON_FD, NULL};
  if (kp_daemon_start(argv, slog, NULL, 120, reply, sizeof reply) != 0 || strcmp(reply, "ok") != 0) {
    kp_err("the supervisor of run %s did not start; see %s", id, slog);
    return -1;
  }
  return 0;
}

int kp_run_submit(kp_ws *ws, const kp_submit *sub, kp_submitted *out) {
  memset(out, 0, sizeof *out);
  if (kp_name_ok(sub->experiment) != 0) {
    kp_err("invalid experiment name '%s': use letters, digits, '.', '_' and '-', starting with a letter or digit",
           sub->experiment ? sub->experiment : "");
    return -1;
  }
  if (kp_rel_path_ok(sub->entry) != 0) {
    kp_err("the entry '%s' must be a relative path inside the source directory (no '..', not absolute)",
           sub->entry ? sub->entry : "");
    return -1;
  }
  for (int i = 0; i < sub->ntags; i++) {
    const char *eq = strchr(sub->tags[i], '=');
    if (!eq || eq == sub->tags[i]) return kp_err("tag '%s' must look like key=value", sub->tags[i]);
    if (!strncmp(sub->tags[i], "kusari.", 7)) {
      kp_err("tag '%.*s': keys starting with 'kusari.' are set by kusari itself", (int)(eq - sub->tags[i]), sub->tags[i]);
      kp_hint("use another key");
      return -1;
    }
  }
  /* a distributed run: its shape and its launcher, found now */
  int dist = sub->nodes > 0 || sub->processes_per_node > 0;
  int nodes = sub->nodes > 0 ? sub->nodes : 1, ppn = sub->processes_per_node > 0 ? sub->processes_per_node : 1;
  char launcher[4096] = "";
  if (dist) {
    if (nodes > 1024 || ppn > 1024 || (long)nodes * ppn > 4096) {
      kp_err("a distributed run has at most 1024 nodes, 1024 processes per node and 4096 ranks; got %d x %d", nodes, ppn);
      return -1;
    }
    const char *want = sub->launcher && *sub->launcher ? sub->launcher : getenv("KUSARI_MPIRUN");
    if (!want || !*want) want = "mpirun";
    if (kp_which(want, launcher, sizeof launcher) != 0) {
      kp_err("a distributed run needs an MPI launcher, and '%s' is not an executable file%s", want,
             strchr(want, '/') ? "" : " on your PATH");
      kp_hint("install Open MPI (Debian: apt-get install openmpi-bin), or name the launcher with --mpirun PATH "
              "(or KUSARI_MPIRUN)");
      return -1;
    }
  }
  for (int i = 0; i < sub->nparams; i++)
    if (kp_param_ok(sub->params[i]) != 0)
      return kp_err("param '%s' must look like NAME=VALUE (NAME: letters, digits and '_', not starting with a digit)",
                    sub->params[i]);
  /* the environment as the run will have it: with the submitter's Python */
  char *env_json = NULL;
  if (kp_env_resolve(sub->env_json, sub->entry, &env_json) != 0) return -1;
  char env_hash[65] = "";
  if (env_json) kp_sha256_hex(env_json, strlen(env_json), env_hash);
  int rc = -1;
  char *args_json = NULL;
  /* compute target: named, or the only one there is */
  char comp[256] = "";
  kp_compute *cv = NULL;
  size_t ncv = 0;
  if (kp_store_compute_list(ws->store, sub->compute, &cv, &ncv) != 0) {
    kp_store_report();
    if (kp_store_last_error()->code == KP_STORE_ENOTFOUND)
      kp_hint("create it with 'kusari compute create %s --type local --max-nodes 1'", sub->compute);
    goto out;
  }
  if (ncv == 1) snprintf(comp, sizeof comp, "%s", cv[0].name);
  int max_nodes = ncv == 1 ? cv[0].max_nodes : 0;
  const kp_compute_ops *tops = ncv == 1 ? kp_compute_find(cv[0].type) : NULL;
  if (ncv == 1 && (sub->memory_limit > 0 || sub->cpus > 0) && (!tops || !tops->limits)) {
    kp_err("memory and CPU limits (--memory, --cpus) are enforced on local compute targets only; %s is a %s target",
           comp, cv[0].type);
    kp_hint("leave them out, or submit to a local target");
    kp_computes_free(cv, ncv);
    goto out;
  }
  kp_computes_free(cv, ncv);
  if (ncv != 1) {
    int n = (int)ncv;
    kp_err(n ? "there are %d compute targets; say which one with --compute NAME" : "no compute target given and none exists", n);
    kp_hint(n ? "list them with 'kusari compute list'" : "create one with 'kusari compute create cpu --type local --max-nodes 1'");
    goto out;
  }
  if (dist && nodes > max_nodes) {
    kp_err("the run asks for %d nodes, but compute target %s has at most %d", nodes, comp, max_nodes);
    kp_hint("use --nodes %d or fewer (more --processes-per-node instead), or a target with more nodes", max_nodes);
    goto out;
  }
  const char *source = sub->source ? sub->source : ".";
  char src_abs[4096];
  if (sub->snapshot) {
    /* reuse: the snapshot's manifest must be in the store, and stay there
     * until this run refers to it (a sweep's children use their running
     * parent's snapshot, which keeps it) */
    if (!sub->parent_id && kp_blob_pin(ws) != 0) goto out;
    size_t mlen = 0;
    char *man = strlen(sub->snapshot) == 64 && strspn(sub->snapshot, "0123456789abcdef") == 64
                  ? kp_blob_read(ws, sub->snapshot, &mlen) : NULL;
    cJSON *mj = man ? cJSON_Parse(man) : NULL;
    free(man);
    cJSON *files = mj ? cJSON_GetObjectItemCaseSensitive(mj, "files") : NULL;
    if (!cJSON_IsArray(files)) {
      cJSON_Delete(mj);
      kp_err("'%s' is not a snapshot in this workspace", sub->snapshot);
      kp_hint("'kusari run show RUN' prints a run's snapshot id");
      goto out;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
      out->nfiles++;
      out->bytes += (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(f, "size"));
    }
    cJSON_Delete(mj);
    snprintf(out->snapshot, sizeof out->snapshot, "%s", sub->snapshot);
  } else {
    /* the entry must be in the source unless a build command may create it */
    cJSON *envj = env_json ? cJSON_Parse(env_json) : NULL;
    const char *build = envj ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(envj, "build")) : NULL;
    int has_build = build && *build;
    cJSON_Delete(envj);
    if (!has_build) {
      char ep[8192];
      struct stat est;
      snprintf(ep, sizeof ep, "%s/%s", source, sub->entry);
      if (stat(ep, &est) != 0 || !S_ISREG(est.st_mode)) {
        kp_err("the entry '%s' is not a file in the source directory '%s'", sub->entry, source);
        kp_hint("--entry names a program inside --source (e.g. --source examples/mnist --entry train.py)");
        goto out;
      }
    }
    if (kp_snapshot_create(ws, source, sub->snapshot_limit ? sub->snapshot_limit : KP_SNAPSHOT_LIMIT, out->snapshot,
                           &out->bytes, &out->nfiles) != 0)
      goto out;
  }
  if (sub->snapshot && !sub->source) snprintf(src_abs, sizeof src_abs, "snapshot:%s", sub->snapshot);
  else if (!realpath(source, src_abs)) snprintf(src_abs, sizeof src_abs, "%s", source);
  cJSON *args = cJSON_CreateArray();
  for (int i = 0; i < sub->nargs; i++) cJSON_AddItemToArray(args, cJSON_CreateString(sub->args[i]));
  args_json = cJSON_PrintUnformatted(args);
  cJSON_Delete(args);
  if (!args_json) { kp_err("out of memory"); goto out; }

  {
    size_t nt = sub->ntags > 0 ? (size_t)sub->ntags : 0;
    const char **tk = calloc(nt + 6, sizeof *tk), **tv = calloc(nt + 6, sizeof *tv);
    char(*tkey)[256] = calloc(nt + 1, sizeof *tkey);
    if (!tk || !tv || !tkey) {
      free(tk), free(tv), free(tkey);
      kp_err("out of memory");
      goto out;
    }
    for (size_t i = 0; i < nt; i++) {
      const char *eq = strchr(sub->tags[i], '=');
      snprintf(tkey[i], sizeof tkey[i], "%.*s", (int)(eq - sub->tags[i]), sub->tags[i]);
      tk[i] = tkey[i];
      tv[i] = eq + 1;
    }
    char snodes[16], sppn[16], smem[32], scpus[32];
    if (sub->memory_limit > 0) {
      snprintf(smem, sizeof smem, "%lld", (long long)sub->memory_limit);
      tk[nt] = KP_TAG_MEMORY, tv[nt++] = smem;
    }
    if (sub->cpus > 0) {
      snprintf(scpus, sizeof scpus, "%g", sub->cpus);
      tk[nt] = KP_TAG_CPUS, tv[nt++] = scpus;
    }
    if (dist) {
      snprintf(snodes, sizeof snodes, "%d", nodes);
      snprintf(sppn, sizeof sppn, "%d", ppn);
      tk[nt] = KP_TAG_NODES, tv[nt++] = snodes;
      tk[nt] = KP_TAG_PPN, tv[nt++] = sppn;
      tk[nt] = KP_TAG_LAUNCHER, tv[nt++] = launcher;
    }
    kp_run_new r = {.experiment = sub->experiment, .compute = comp, .source = src_abs, .entry = sub->entry,
                    .args_json = args_json, .snapshot = out->snapshot, .snapshot_bytes = out->bytes,
                    .env_json = env_json, .env_hash = env_hash, .parent_id = sub->parent_id,
                    .tag_keys = tk, .tag_values = tv, .ntags = nt};
    /* the run and its params (--param) are recorded together */
    size_t npar = sub->nparams > 0 ? (size_t)sub->nparams : 0;
    const char **pk = calloc(npar + 1, sizeof *pk), **pv = calloc(npar + 1, sizeof *pv);
    char(*pkey)[256] = calloc(npar + 1, sizeof *pkey);
    int created = -1;
    if (pk && pv && pkey) {
      for (size_t i = 0; i < npar; i++) {
        const char *eq = strchr(sub->params[i], '=');
        snprintf(pkey[i], sizeof pkey[i], "%.*s", (int)(eq - sub->params[i]), sub->params[i]);
        pk[i] = pkey[i];
        pv[i] = eq + 1;
      }
      created = kp_store_begin(ws->store);
      if (created == 0) created = kp_store_run_create(ws->store, &r, out->id, sizeof out->id);
      if (created == 0 && npar) created = kp_store_run_params_set(ws->store, out->id, pk, pv, npar);
      if (created == 0) created = kp_store_commit(ws->store);
      if (created != 0) {
        kp_store_error e = *kp_store_last_error();
        kp_store_rollback(ws->store);
        kp_store_fail(e.code, "%s", e.message);
      }
    } else {
      kp_store_fail(KP_STORE_EBACKEND, "out of memory");
    }
    free(tk), free(tv), free(tkey), free(pk), free(pv), free(pkey);
    if (created != 0) { kp_store_report(); goto out; }
  }
  snprintf(out->compute, sizeof out->compute, "%s", comp);
  char rd[4400], logs[4600];
  kp_run_dir(ws, out->id, rd, sizeof rd);
  snprintf(logs, sizeof logs, "%s/logs", rd);
  if (kp_mkdirs(logs, 0755) != 0 || start_supervisor(ws, out->id) != 0) {
    kp_run_transition t = {.to = KP_RUN_FAILED, .end = 1, .error = "its supervisor did not start"};
    if (kp_store_run_transition(ws->store, out->id, &t) != 0 && kp_store_last_error()->code != KP_STORE_ECONFLICT)
      kp_store_report();
    goto out;
  }
  rc = 0;
out:
  cJSON_free(args_json);
  cJSON_free(env_json);
  return rc;
}

int kp_param_ok(const char *kv) {
  const char *eq = kv ? strchr(kv, '=') : NULL;
  size_t n = eq ? (size_t)(eq - kv) : 0;
  if (n == 0 || n > 250 || (kv[0] >= '0' && kv[0] <= '9') || strlen(eq + 1) > 4096) return -1;
  for (size_t i = 0; i < n; i++)
    if (!((kv[i] >= 'a' && kv[i] <= 'z') || (kv[i] >= 'A' && kv[i] <= 'Z') || (kv[i] >= '0' && kv[i] <= '9') || kv[i] == '_'))
      return -1;
  return 0;
}

int kp_run_cancel(kp_ws *ws, const char *id, double grace, const char *reason) {
  if (kp_store_run_request_cancel(ws->store, id, grace, reason && *reason ? reason : "canceled by the user") != 0)
    return kp_store_report();
  kp_run r;
  if (kp_store_run_get(ws->store, id, &r) == 0) {
    pid_t p = (pid_t)r.supervisor_pid;
    if (p > 0 && kp_proc_alive(p, r.supervisor_start)) kill(p, SIGUSR1);
    kp_run_free(&r);
  }
  return 0;
}

/* ---- remote runs (h-fwd) ------------------------------------------------------------ */
/* The spool workspace of this machine: $KUSARI_SPOOL, else
 * $XDG_CACHE_HOME/kusari/spool, else ~/.cache/kusari/spool. */
static int spool_dir(char *out, size_t n) {
  const char *sp = getenv("KUSARI_SPOOL"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (sp && *sp) snprintf(out, n, "%s", sp);
  else if (xdg && *xdg) snprintf(out, n, "%s/kusari/spool", xdg);
  else if (home && *home) snprintf(out, n, "%s/.cache/kusari/spool", home);
  else return kp_err("no place for the spool of remote runs: set KUSARI_SPOOL (or HOME)");
  return 0;
}

/* creates the run on the server; 0 with its id and compute target */
static int remote_create(kp_ws *ws, const kp_submit *sub, char *rid, size_t rn, char *comp, size_t cn) {
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "experiment", sub->experiment);
  cJSON_AddStringToObject(b, "entry", sub->entry);
  if (sub->compute) cJSON_AddStringToObject(b, "compute", sub->compute);
  char host[256] = "", src[4096];
  gethostname(host, sizeof host - 1);
  cJSON_AddStringToObject(b, "node", host);
  if (realpath(sub->source ? sub->source : ".", src)) {
    char tagged[4400];
    snprintf(tagged, sizeof tagged, "%s:%s", host, src);
    cJSON_AddStringToObject(b, "source", tagged);
  }
  cJSON *a = cJSON_AddArrayToObject(b, "args");
  for (int i = 0; i < sub->nargs; i++) cJSON_AddItemToArray(a, cJSON_CreateString(sub->args[i]));
  cJSON *p = cJSON_AddObjectToObject(b, "params"), *t = cJSON_AddObjectToObject(b, "tags");
  for (int i = 0; i < sub->nparams; i++) {
    const char *eq = strchr(sub->params[i], '=');
    char k[256];
    snprintf(k, sizeof k, "%.*s", (int)(eq - sub->params[i]), sub->params[i]);
    cJSON_AddStringToObject(p, k, eq + 1);
  }
  for (int i = 0; i < sub->ntags; i++) {
    const char *eq = strchr(sub->tags[i], '=');
    char k[256];
    snprintf(k, sizeof k, "%.*s", (int)(eq - sub->tags[i]), sub->tags[i]);
    cJSON_AddStringToObject(t, k, eq + 1);
  }
  char *body = cJSON_PrintUnformatted(b);
  cJSON_Delete(b);
  cJSON *ans = NULL;
  int rc = body ? kp_store_http_send(ws->store, "POST", "runs", body, strlen(body), "application/json", &ans) : -1;
  cJSON_free(body);
  if (rc != 0) {
    kp_err("the tracking server %s did not create the run: %s", ws->remote, kp_store_last_error()->message);
    if (kp_store_last_error()->code == KP_STORE_EINVAL && strstr(kp_store_last_error()->message, "read-write"))
      kp_hint("submitting needs a read-write token: 'kusari server token create NAME' on the server (without --read-only)");
    return -1;
  }
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ans, "id"));
  const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ans, "compute"));
  snprintf(rid, rn, "%s", id ? id : "");
  snprintf(comp, cn, "%s", c ? c : "");
  cJSON_Delete(ans);
  return rid[0] ? 0 : kp_err("the tracking server %s answered the run's creation without its id", ws->remote);
}

int kp_run_submit_remote(kp_ws *ws, const kp_submit *sub, kp_submitted *out) {
  memset(out, 0, sizeof *out);
  if (sub->snapshot) {
    kp_err("--snapshot names a snapshot of a workspace's files; a run submitted to a tracking server (%s) runs on this "
           "machine from --source", ws->remote);
    kp_hint("give --source DIR");
    return -1;
  }
  if (sub->nodes > 0 || sub->processes_per_node > 0 || sub->parent_id) {
    kp_err("distributed runs and sweeps do not run through a tracking server yet (%s)", ws->remote);
    kp_hint("run them on the server's machine with --workspace DIR");
    return -1;
  }
  char dir[4096], mark[4300], rid[256], comp[256];
  if (spool_dir(dir, sizeof dir) != 0) return -1;
  if (remote_create(ws, sub, rid, sizeof rid, comp, sizeof comp) != 0) return -1;
  /* the spool: a local workspace whose runs are forwarded */
  kp_ws lws;
  memset(&lws, 0, sizeof lws);
  int rc = -1;
  const char *why = "the spool workspace could not be opened";
  if (kp_mkdirs(dir, 0700) != 0 || kp_ws_create(&lws, dir, "spool") != 0) goto fail;
  snprintf(mark, sizeof mark, "%s/" KP_SPOOL_MARK, lws.root);
  int mfd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (mfd >= 0) close(mfd);
  kp_compute *cv = NULL;
  size_t ncv = 0;
  if (kp_store_compute_list(lws.store, NULL, &cv, &ncv) != 0) { kp_store_report(); goto fail; }
  kp_computes_free(cv, ncv);
  if (ncv == 0 && kp_store_compute_create(lws.store, "local", "local", 8) != 0) { kp_store_report(); goto fail; }
  kp_submit ls = *sub;
  ls.compute = NULL;
  ls.tags = NULL, ls.ntags = 0; /* they are the server's run's */
  kp_submitted lo;
  why = "it could not start here";
  if (kp_run_submit(&lws, &ls, &lo) != 0) goto fail;
  char rd[4400], flog[4600];
  kp_run_dir(&lws, lo.id, rd, sizeof rd);
  snprintf(flog, sizeof flog, "%s/forward.log", rd);
  char eu[1200], et[1200], reply[64];
  snprintf(eu, sizeof eu, "KUSARI_FORWARD_URL=%s", kp_store_http_url(ws->store));
  snprintf(et, sizeof et, "KUSARI_FORWARD_TOKEN=%s", kp_store_http_token(ws->store));
  const char *env[] = {eu, et, NULL};
  char *argv[] = {kp_self_exe, "--workspace", lws.root, "__forward", lo.id, rid, KP_DAEMON_FD, NULL};
  if (kp_daemon_start(argv, flog, env, 60, reply, sizeof reply) != 0 || strcmp(reply, "ok") != 0) {
    kp_err("the forwarder of run %s did not start; see %s", rid, flog);
    kp_run_cancel(&lws, lo.id, 0, "its forwarder did not start");
    why = "its forwarder did not start";
    goto fail;
  }
  *out = lo;
  snprintf(out->id, sizeof out->id, "%s", rid);
  snprintf(out->compute, sizeof out->compute, "%s", comp);
  fprintf(stderr, "kusari: run %s runs on this machine (spool %s, run %s there) and reports to %s\n", rid, lws.root,
          lo.id, ws->remote);
  rc = 0;
  goto out;
fail:
  {
    /* the server's run ends Failed, saying why */
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "status", "Failed");
    cJSON_AddStringToObject(b, "error", why);
    char *body = cJSON_PrintUnformatted(b), path[400];
    cJSON_Delete(b);
    snprintf(path, sizeof path, "runs/%s/status", rid);
    cJSON *ans = NULL;
    if (body) kp_store_http_send(ws->store, "POST", path, body, strlen(body), "application/json", &ans);
    cJSON_Delete(ans);
    cJSON_free(body);
  }
out:
  if (lws.store) kp_ws_close(&lws);
  return rc;
}
