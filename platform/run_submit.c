/*
 * platform/run_submit.c — submitting and canceling runs, as functions that
 * the CLI (cmd_run.c) and, later, sweeps call: validate, snapshot (or reuse
 * a snapshot), record the run as Queued, start its detached supervisor.
 */
#include "kp.h"
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

/* Reads and validates an environment file; returns canonical JSON (free()). */
char *kp_env_load(const char *path) {
  char *s = kp_read_file(path, NULL);
  if (!s) {
    kp_err("cannot read environment file '%s': %s", path, strerror(errno));
    kp_hint("pass --env with a JSON file such as {\"debian_packages\": [\"libopenblas-dev\"], \"build\": \"make\"}");
    return NULL;
  }
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(s, &end, 1);
  if (!cJSON_IsObject(j)) {
    kp_err("environment file '%s' is not a JSON object (parse error near byte %ld)", path,
           end ? (long)(end - s) : 0L);
    kp_hint("expected {\"name\": ..., \"debian_packages\": [...], \"build\": \"make\", \"variables\": {...}}");
    free(s);
    cJSON_Delete(j);
    return NULL;
  }
  free(s);
  const cJSON *it;
  cJSON_ArrayForEach(it, j) {
    const char *k = it->string;
    int ok = 1;
    if (!strcmp(k, "name")) ok = cJSON_IsString(it);
    else if (!strcmp(k, "build")) ok = cJSON_IsString(it);
    else if (!strcmp(k, "debian_packages")) {
      ok = cJSON_IsArray(it);
      const cJSON *p;
      cJSON_ArrayForEach(p, it) {
        const char *n = cJSON_GetStringValue(p);
        if (!n || !*n || strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789.+-:") != strlen(n)) {
          kp_err("environment file '%s': '%s' is not a Debian package name", path, n ? n : "(not a string)");
          cJSON_Delete(j);
          return NULL;
        }
      }
    } else if (!strcmp(k, "variables")) {
      ok = cJSON_IsObject(it);
      const cJSON *v;
      cJSON_ArrayForEach(v, it) if (!cJSON_IsString(v) || !*v->string || strchr(v->string, '=')) ok = 0;
    } else {
      kp_err("environment file '%s': unknown field '%s'", path, k);
      kp_hint("the fields are name, debian_packages, build, variables");
      cJSON_Delete(j);
      return NULL;
    }
    if (!ok) {
      kp_err("environment file '%s': field '%s' has the wrong type", path, k);
      kp_hint("name and build are strings, debian_packages an array of strings, variables an object of strings");
      cJSON_Delete(j);
      return NULL;
    }
  }
  char *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return out;
}

/* Starts the detached supervisor of run 'id' and waits until it is up. */
static int start_supervisor(kp_ws *ws, const char *id) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return kp_err("cannot create a pipe: %s", strerror(errno));
  char rd[4400], slog[4600];
  kp_run_dir(ws, id, rd, sizeof rd);
  snprintf(slog, sizeof slog, "%s/supervisor.log", rd);
  fflush(NULL);
  pid_t child = fork();
  if (child < 0) return kp_err("cannot fork: %s", strerror(errno));
  if (child == 0) {
    setsid();
    pid_t g = fork();
    if (g != 0) _exit(g < 0 ? 1 : 0);
    close(fds[0]);
    int wfd = dup(fds[1]);  /* without O_CLOEXEC */
    int in = open("/dev/null", O_RDONLY);
    int out = open(slog, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) { dup2(out, 1); dup2(out, 2); }
    char fdbuf[16];
    snprintf(fdbuf, sizeof fdbuf, "%d", wfd);
    char *argv[] = {kp_self_exe, "--workspace", ws->root, "__supervise", (char *)id, fdbuf, NULL};
    execv(kp_self_exe, argv);
    _exit(127);
  }
  close(fds[1]);
  int st;
  waitpid(child, &st, 0);
  char buf[8] = "";
  ssize_t n, got = 0;
  while (got < 3 && (n = read(fds[0], buf + got, (size_t)(3 - got))) > 0) got += n;
  close(fds[0]);
  if (got != 3 || memcmp(buf, "ok\n", 3) != 0) {
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
  }
  char env_hash[65] = "";
  if (sub->env_json) kp_sha256_hex(sub->env_json, strlen(sub->env_json), env_hash);
  int rc = -1;
  sqlite3_stmt *st = NULL;
  char *args_json = NULL;
  /* compute target: named, or the only one there is */
  char comp[256] = "";
  if (sub->compute) {
    if (kp_db_prepare(ws, &st, "SELECT name FROM computes WHERE name=?") != 0) goto out;
    kp_bind_text(st, 1, sub->compute);
    if (kp_db_row(st) <= 0) {
      kp_err("no compute target named '%s'", sub->compute);
      kp_hint("create it with 'kusari compute create %s --type local --max-nodes 1'", sub->compute);
      goto out;
    }
    snprintf(comp, sizeof comp, "%s", sub->compute);
  } else {
    if (kp_db_prepare(ws, &st, "SELECT name FROM computes") != 0) goto out;
    int n = 0;
    while (kp_db_row(st) > 0) {
      n++;
      snprintf(comp, sizeof comp, "%s", kp_col_text(st, 0));
    }
    if (n != 1) {
      kp_err(n ? "there are %d compute targets; say which one with --compute NAME" : "no compute target given and none exists", n);
      kp_hint(n ? "list them with 'kusari compute list'" : "create one with 'kusari compute create cpu --type local --max-nodes 1'");
      goto out;
    }
  }
  sqlite3_finalize(st);
  st = NULL;
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
    cJSON *envj = sub->env_json ? cJSON_Parse(sub->env_json) : NULL;
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

  if (kp_db_begin(ws) != 0) goto out;
  if (kp_db_prepare(ws, &st, "INSERT OR IGNORE INTO experiments(name, created) VALUES(?, ?)") != 0) goto fail;
  kp_bind_text(st, 1, sub->experiment);
  sqlite3_bind_double(st, 2, kp_now());
  if (kp_db_done(ws, st) != 0) goto fail;
  sqlite3_finalize(st);
  if (kp_db_prepare(ws, &st,
                    "INSERT INTO runs(experiment_id, status, compute, source, entry, args, snapshot, snapshot_bytes,"
                    " env_json, env_hash, created, parent_id) VALUES((SELECT id FROM experiments WHERE name=?1),"
                    " 'Queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)") != 0)
    goto fail;
  kp_bind_text(st, 1, sub->experiment);
  kp_bind_text(st, 2, comp);
  kp_bind_text(st, 3, src_abs);
  kp_bind_text(st, 4, sub->entry);
  kp_bind_text(st, 5, args_json);
  kp_bind_text(st, 6, out->snapshot);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)out->bytes);
  kp_bind_text(st, 8, sub->env_json);
  kp_bind_text(st, 9, sub->env_json ? env_hash : NULL);
  sqlite3_bind_double(st, 10, kp_now());
  kp_bind_text(st, 11, sub->parent_id);
  if (kp_db_done(ws, st) != 0) goto fail;
  sqlite3_finalize(st);
  st = NULL;
  sqlite3_int64 seq = sqlite3_last_insert_rowid(ws->db);
  snprintf(out->id, sizeof out->id, "%s_%lld", sub->experiment, (long long)seq);
  if (kp_db_prepare(ws, &st, "UPDATE runs SET id=? WHERE seq=?") != 0) goto fail;
  kp_bind_text(st, 1, out->id);
  sqlite3_bind_int64(st, 2, seq);
  if (kp_db_done(ws, st) != 0) goto fail;
  sqlite3_finalize(st);
  st = NULL;
  for (int i = 0; i < sub->ntags; i++) {
    const char *eq = strchr(sub->tags[i], '=');
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - sub->tags[i]), sub->tags[i]);
    if (kp_db_prepare(ws, &st, "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES(?,?,?)") != 0) goto fail;
    kp_bind_text(st, 1, out->id);
    kp_bind_text(st, 2, key);
    kp_bind_text(st, 3, eq + 1);
    if (kp_db_done(ws, st) != 0) goto fail;
    sqlite3_finalize(st);
    st = NULL;
  }
  if (kp_db_commit(ws) != 0) goto fail;
  snprintf(out->compute, sizeof out->compute, "%s", comp);
  char rd[4400], logs[4600];
  kp_run_dir(ws, out->id, rd, sizeof rd);
  snprintf(logs, sizeof logs, "%s/logs", rd);
  if (kp_mkdirs(logs, 0755) != 0 || start_supervisor(ws, out->id) != 0) {
    sqlite3_stmt *f;
    if (kp_db_prepare(ws, &f, "UPDATE runs SET status='Failed', ended=?, error='its supervisor did not start' WHERE id=?") == 0) {
      sqlite3_bind_double(f, 1, kp_now());
      kp_bind_text(f, 2, out->id);
      kp_db_done(ws, f);
      sqlite3_finalize(f);
    }
    goto out;
  }
  rc = 0;
  goto out;
fail:
  kp_db_rollback(ws);
out:
  sqlite3_finalize(st);
  cJSON_free(args_json);
  return rc;
}

int kp_run_cancel(kp_ws *ws, const char *id, double grace, const char *reason) {
  sqlite3_stmt *st;
  if (kp_db_prepare(ws, &st,
                    "UPDATE runs SET cancel_requested=1, cancel_grace=?, cancel_reason=? WHERE id=?"
                    " AND status NOT IN ('Completed','Failed','Canceled')") != 0)
    return -1;
  sqlite3_bind_double(st, 1, grace);
  kp_bind_text(st, 2, reason && *reason ? reason : "canceled by the user");
  kp_bind_text(st, 3, id);
  int rc = kp_db_done(ws, st);
  int changed = sqlite3_changes(ws->db);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (changed == 0) return kp_err("run %s has already ended; there is nothing to cancel", id);
  if (kp_db_prepare(ws, &st, "SELECT supervisor_pid, supervisor_start FROM runs WHERE id=?") == 0) {
    kp_bind_text(st, 1, id);
    if (kp_db_row(st) > 0) {
      pid_t p = (pid_t)sqlite3_column_int(st, 0);
      if (p > 0 && kp_proc_alive(p, (uint64_t)sqlite3_column_int64(st, 1))) kill(p, SIGUSR1);
    }
    sqlite3_finalize(st);
  }
  return 0;
}
