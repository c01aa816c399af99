/*
 * platform/supervisor.c — the detached process that carries one run through
 * its lifecycle (`kusari __supervise RUN_ID READY_FD`, started by run submit),
 * plus what any kusari process uses to keep the store true: metric ingestion
 * and reconciliation of runs whose supervisor died.
 *
 *   Queued      wait for a free node of the compute target (FIFO per target)
 *   Preparing   extract the snapshot, check the environment's Debian packages,
 *               run its build command (cached by hash(snapshot, environment))
 *   Running     the entry runs in runs/<id>/wd in its own process group, with
 *               stdout+stderr appended to runs/<id>/logs/std_log.txt; metrics
 *               are ingested from the channel every 250 ms
 *   Finalizing  final ingest; wd/outputs, logs and uploads go to the blob store
 *   Completed | Failed | Canceled
 *
 * Cancel: `run cancel` sets runs.cancel_requested (and sends SIGUSR1 to wake
 * the supervisor); the supervisor sends SIGTERM to the entry's process group,
 * then SIGKILL after runs.cancel_grace seconds.
 */
#include "kp.h"
#include "compute.h"
#include "limits.h"
#include "kusari/error.h"
#include "kusari/backend.h" /* ks_blas_suggested_coretype */
#include "kusari/run.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int kp_status_terminal(const char *s) {
  kp_run_status v;
  return kp_run_status_parse(s, &v) == 0 && kp_run_status_ended(v);
}

void kp_run_dir(const kp_ws *ws, const char *id, char *out, size_t n) {
  snprintf(out, n, "%s/runs/%s", ws->root, id);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- ingestion ------------------------------------------------------------ */
/* Records are moved from a run's channel into the store in chunks of at most
 * KP_INGEST_CHUNK records, one write transaction each: each chunk is one
 * exactly-once batch (its channel offsets commit with its points), and the
 * write lock is released between chunks so that other writers (run submit,
 * model register, other runs) wait for one chunk at most, not for a burst of
 * hundreds of thousands of records. */
#define KP_INGEST_CHUNK 10000

/* The records read from a run's channel, as one batch for the store. */
typedef struct ingest_ctx {
  kp_metric_point *pts;
  size_t npts, cap;
  char **names;  /* distinct metric names (the points point into them) */
  size_t nnames;
  size_t *slots; /* open-addressing hash of names: index + 1, 0 = empty */
  size_t nslots; /* a power of two, at least twice nnames */
  char **tkeys, **tvals;
  size_t ntags;
  int failed;
  int full;      /* the chunk is full: the read stopped before the next record */
} ingest_ctx;

static size_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)h;
}

/* The batch's copy of 'name' (one per distinct name, found in O(1)). */
static const char *intern(ingest_ctx *c, const char *name) {
  if (2 * (c->nnames + 1) > c->nslots) {
    size_t ns = c->nslots ? 2 * c->nslots : 1024;
    size_t *nv = calloc(ns, sizeof *nv);
    if (!nv) return NULL;
    for (size_t i = 0; i < c->nnames; i++) {
      size_t j = name_hash(c->names[i]) & (ns - 1);
      while (nv[j]) j = (j + 1) & (ns - 1);
      nv[j] = i + 1;
    }
    free(c->slots);
    c->slots = nv;
    c->nslots = ns;
  }
  size_t j = name_hash(name) & (c->nslots - 1);
  for (; c->slots[j]; j = (j + 1) & (c->nslots - 1))
    if (!strcmp(c->names[c->slots[j] - 1], name)) return c->names[c->slots[j] - 1];
  if ((c->nnames & (c->nnames - 1)) == 0) { /* grow at powers of two */
    char **nv = realloc(c->names, (c->nnames ? 2 * c->nnames : 1) * sizeof *nv);
    if (!nv) return NULL;
    c->names = nv;
  }
  if (!(c->names[c->nnames] = strdup(name))) return NULL;
  c->slots[j] = ++c->nnames;
  return c->names[c->nnames - 1];
}

static void ingest_reset(ingest_ctx *c) {
  free(c->pts);
  for (size_t i = 0; i < c->nnames; i++) free(c->names[i]);
  free(c->names);
  free(c->slots);
  for (size_t i = 0; i < c->ntags; i++) {
    free(c->tkeys[i]);
    free(c->tvals[i]);
  }
  free(c->tkeys);
  free(c->tvals);
  memset(c, 0, sizeof *c);
}

static int ingest_record(void *vctx, const ks_run_record *r) {
  ingest_ctx *c = vctx;
  if (c->npts + c->ntags >= KP_INGEST_CHUNK) {
    c->full = 1;
    return 1; /* this record starts the next chunk */
  }
  if (r->kind == KS_RUN_RECORD_METRIC) {
    if (c->npts == c->cap) {
      size_t cap = c->cap ? 2 * c->cap : 256;
      kp_metric_point *np = realloc(c->pts, cap * sizeof *np);
      if (!np) { c->failed = 1; return 1; }
      c->pts = np;
      c->cap = cap;
    }
    const char *name = intern(c, r->name);
    if (!name) { c->failed = 1; return 1; }
    c->pts[c->npts++] =
        (kp_metric_point){.name = name, .step = r->step, .time = r->time, .value = r->value, .rank = r->rank};
  } else {
    char **k = realloc(c->tkeys, (c->ntags + 1) * sizeof *k);
    if (k) c->tkeys = k;
    char **v = realloc(c->tvals, (c->ntags + 1) * sizeof *v);
    if (v) c->tvals = v;
    if (!k || !v) { c->failed = 1; return 1; }
    c->tkeys[c->ntags] = strdup(r->name);
    c->tvals[c->ntags] = strdup(r->text);
    c->ntags++;
    if (!c->tkeys[c->ntags - 1] || !c->tvals[c->ntags - 1]) { c->failed = 1; return 1; }
  }
  return 0;
}

/* One chunk: reads up to KP_INGEST_CHUNK records from the stored offset and
 * commits them with the new offset. Returns 1 when more records may follow
 * at once, 0 when the channel was read to its end, -1 on error (printed). */
static int ingest_chunk(kp_ws *ws, const char *run_id, const char *ch, int final) {
  ingest_ctx c = {0};
  kp_run run = {0};
  int rc = -1;
  /* the write lock for the chunk's read: one ingesting process at a time */
  if (kp_store_begin(ws->store) != 0) return kp_store_report();
  if (kp_store_run_get(ws->store, run_id, &run) != 0) { kp_store_report(); goto out; }
  uint64_t offset = run.channel_offset;
  int r = ks_run_channel_read(ch, &offset, final, ingest_record, &c);
  if (c.failed) { kp_err("run %s: out of memory while reading its metrics", run_id); goto out; }
  if (r < 0) {
    kp_err("run %s: %s", run_id, ks_error_last());
    /* keep what was read before the bad record */
  }
  kp_ingest_batch b = {.from = run.channel_offset, .to = offset, .points = c.pts, .npoints = c.npts,
                       .tag_keys = (const char *const *)c.tkeys, .tag_values = (const char *const *)c.tvals,
                       .ntags = c.ntags};
  if (kp_store_metrics_ingest(ws->store, run_id, &b) != 0) {
    kp_err("store: cannot record the metrics of run %s: %s", run_id, kp_store_last_error()->message);
    if (kp_store_last_error()->code == KP_STORE_EBACKEND) kp_store_errors++;
    goto out;
  }
  if (kp_store_commit(ws->store) != 0) { kp_store_report(); goto out; }
  rc = c.full && r >= 0 ? 1 : 0;
out:
  kp_store_rollback(ws->store);
  kp_run_free(&run);
  ingest_reset(&c);
  return rc;
}

int kp_ingest(kp_ws *ws, const char *run_id, int final) {
  char ch[4400];
  kp_run_dir(ws, run_id, ch, sizeof ch);
  strcat(ch, "/channel");
  if (access(ch, F_OK) != 0) return 0;  /* nothing (yet, or any more) */
  int r;
  for (;;) {
    double t0 = kp_now();
    if ((r = ingest_chunk(ws, run_id, ch, final)) != 1) break;
    /* more to come: leave the lock free for as long as the chunk held it
     * (10-100 ms), so that a writer whose busy handler polls (SQLite's
     * sleeps up to 100 ms between tries) finds it free, rather than only
     * the microseconds between two chunks */
    double held = kp_now() - t0;
    sleep_ms(held < 0.01 ? 10 : held > 0.1 ? 100 : (int)(held * 1000));
  }
  return r;
}

static void append_log(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- run files -------------------------------------------------------------- */
/* A run file is kept only when it is the run's own: a regular file, reached
 * without following a symbolic link (every step is openat(O_NOFOLLOW)
 * relative to the directory just read, and the opened file is checked with
 * fstat, so a swap to a link after the check publishes nothing), with one
 * link (a hard link to a file outside the run would publish that file), a
 * name that run files can have (no control characters such as a tab or a
 * newline) and at most KP_WALK_DEPTH folders deep. What is not kept is named
 * in 'note' (the run's log), never dropped silently. */
#define KP_WALK_DEPTH 128

static void walk_note(const char *note, const char *rel, const char *why) {
  if (!note) return;
  char shown[600];
  size_t k = 0;
  const unsigned char *c = (const unsigned char *)rel;
  for (; *c && k + 5 < sizeof shown; c++) { /* control bytes shown as \xNN */
    if (*c < 0x20 || *c == 0x7f) k += (size_t)snprintf(shown + k, sizeof shown - k, "\\x%02x", *c);
    else shown[k++] = (char)*c;
  }
  shown[k] = '\0';
  append_log(note, "kusari: not kept: %s%s: %s\n", shown, *c ? "..." : "", why);
}

/* Stores the files under the directory 'dfd' (closed here) as "prefix/..." */
static int store_walk(kp_ws *ws, const char *run_id, int dfd, const char *prefix, const char *note, int depth) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return kp_err("cannot read the folder %s of run %s: %s", prefix, run_id, strerror(errno));
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char rel[8192];
    if (snprintf(rel, sizeof rel, "%s/%s", prefix, e->d_name) >= (int)sizeof rel) {
      walk_note(note, rel, "its path is longer than 8,191 bytes");
      continue;
    }
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (depth >= KP_WALK_DEPTH) {
        walk_note(note, rel, "a folder more than 128 folders deep (nothing under it is kept)");
        continue;
      }
      int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        walk_note(note, rel, strerror(errno));
        continue;
      }
      rc = store_walk(ws, run_id, sub, rel, note, depth + 1);
      continue;
    }
    if (S_ISLNK(st.st_mode) || !S_ISREG(st.st_mode)) continue; /* links are never followed (docs/PLATFORM.md) */
    if (kp_rel_path_ok(rel) != 0) {
      walk_note(note, rel, "its name has a control character (a tab, a newline, ...), which run file names cannot have");
      continue;
    }
    int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      if (errno != ELOOP && errno != ENOENT) walk_note(note, rel, strerror(errno));
      continue; /* ELOOP: it became a symbolic link after the check */
    }
    struct stat fst;
    if (fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode)) {
      close(fd);
      continue;
    }
    if (fst.st_nlink != 1) {
      char why[128];
      snprintf(why, sizeof why, "it has %ju hard links (a run keeps only files of its own; copy the file instead)",
               (uintmax_t)fst.st_nlink);
      walk_note(note, rel, why);
      close(fd);
      continue;
    }
    char hex[65];
    int64_t size;
    int put = kp_blob_put_fd(ws, fd, rel, hex, &size);
    close(fd);
    if (put != 0) { rc = -1; break; }
    kp_file_entry fe = {.path = rel, .sha256 = hex, .size = size};
    if (kp_store_run_files_put(ws->store, run_id, &fe, 1) != 0) rc = kp_store_report();
  }
  closedir(d);
  return rc;
}

/* The run's own log, where store_walk names what it does not keep. */
static void run_note_path(const kp_ws *ws, const char *run_id, char *out, size_t n) {
  snprintf(out, n, "%s/runs/%s/logs/std_log.txt", ws->root, run_id);
}

int kp_store_tree(kp_ws *ws, const char *run_id, const char *dir, const char *prefix) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : kp_err("cannot read %s: %s", dir, strerror(errno));
  char note[4600];
  run_note_path(ws, run_id, note, sizeof note);
  return store_walk(ws, run_id, fd, prefix, note, 0);
}

/* Removes the tree at 'path' whatever its depth: one directory open at a
 * time (going back up by ".."), names kept on a stack, so no path longer
 * than one name is ever built (a tree deeper than PATH_MAX goes too). */
static int rm_tree(const char *path) {
  int cur = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (cur < 0) {
    if (errno == ENOENT) return 0;
    return (errno == ENOTDIR || errno == ELOOP) ? unlink(path) : -1;
  }
  char **names = NULL; /* names[i]: the directory entered at depth i + 1 */
  size_t depth = 0, cap = 0;
  int rc = 0;
  for (;;) {
    int dup_fd = dup(cur);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
      if (dup_fd >= 0) close(dup_fd);
      rc = -1;
      break;
    }
    char *down = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      struct stat st;
      if (fstatat(cur, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(cur, e->d_name, 0) != 0) rc = -1;
        continue;
      }
      if (unlinkat(cur, e->d_name, AT_REMOVEDIR) == 0) continue; /* empty */
      fchmodat(cur, e->d_name, 0700, 0);
      int sub = openat(cur, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) { rc = -1; continue; }
      if (depth == cap) {
        size_t nc = cap ? 2 * cap : 64;
        char **nv = realloc(names, nc * sizeof *nv);
        if (!nv) { close(sub); rc = -1; continue; }
        names = nv;
        cap = nc;
      }
      if (!(down = strdup(e->d_name))) { close(sub); rc = -1; continue; }
      names[depth++] = down;
      close(cur);
      cur = sub;
      break;
    }
    closedir(d);
    if (down) continue; /* read the folder just entered */
    /* 'cur' is as empty as it gets: go up and remove it */
    if (depth == 0) break;
    int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(cur);
    char *name = names[--depth];
    if (up < 0) { free(name); cur = -1; rc = -1; break; }
    cur = up;
    int gone = unlinkat(cur, name, AT_REMOVEDIR) == 0;
    free(name);
    if (!gone) { rc = -1; break; } /* would read it again forever */
  }
  if (cur >= 0) close(cur);
  while (depth) free(names[--depth]);
  free(names);
  if (rc == 0 && rmdir(path) != 0) rc = -1;
  return rc;
}

/* Stores outputs/, logs/ and uploads of run 'id' (idempotent). */
static int store_run_files(kp_ws *ws, const char *id) {
  char rd[4400], p[4600];
  kp_run_dir(ws, id, rd, sizeof rd);
  int rc = 0;
  snprintf(p, sizeof p, "%s/wd/outputs", rd);
  if (kp_store_tree(ws, id, p, "outputs") != 0) rc = -1;
  /* ./logs of the entry, then the platform's logs (which win a name clash) */
  snprintf(p, sizeof p, "%s/wd/logs", rd);
  if (kp_store_tree(ws, id, p, "logs") != 0) rc = -1;
  snprintf(p, sizeof p, "%s/logs", rd);
  if (kp_store_tree(ws, id, p, "logs") != 0) rc = -1;
  /* uploads keep their own names ("outputs/x.png", "plots/a.png") */
  snprintf(p, sizeof p, "%s/uploads", rd);
  DIR *d = opendir(p);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
      char sub[4900];
      snprintf(sub, sizeof sub, "%s/%s", p, e->d_name);
      struct stat st;
      if (lstat(sub, &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        if (kp_store_tree(ws, id, sub, e->d_name) != 0) rc = -1;
      } else if (S_ISREG(st.st_mode)) {
        char hex[65];
        int64_t size;
        int fd = open(sub, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        int put = kp_blob_put_fd(ws, fd, sub, hex, &size);
        close(fd);
        if (put != 0) {
          rc = -1;
          continue;
        }
        kp_file_entry fe = {.path = e->d_name, .sha256 = hex, .size = size};
        if (kp_store_run_files_put(ws->store, id, &fe, 1) != 0) rc = kp_store_report();
      }
    }
    closedir(d);
  }
  return rc;
}

/* ---- status updates ---------------------------------------------------------- */
/* Sets status (and optionally ended/exit/signal/error) of run 'id' if it is
 * not terminal yet (an ended run keeps its status: not an error here).
 * Returns 0, or -1 on a store error (printed). */
static int set_status(kp_ws *ws, const char *id, kp_run_status status, int end, int exit_code, int sig,
                      const char *error) {
  kp_run_transition t = {.to = status, .end = end, .has_exit_code = exit_code != INT32_MIN, .exit_code = exit_code,
                         .signal = sig, .error = error};
  if (kp_store_run_transition(ws->store, id, &t) == 0) return 0;
  if (kp_store_last_error()->code == KP_STORE_ECONFLICT) return 0;
  return kp_store_report();
}

/* ---- runs whose metrics and files are not all stored yet ------------------- */
/* runs/.unstored/<id> exists from the moment a run's channel is made until
 * its metrics and files are in the store and its working folder and channel
 * are removed. Its supervisor holds an flock on it while it lives; so a
 * marker that nobody locks, of an ended run, means the end of that run met
 * a storage failure (a full disk): reconciliation stores the rest then. */
static void unstored_path(const kp_ws *ws, const char *id, char *out, size_t n) {
  snprintf(out, n, "%s/runs/.unstored/%s", ws->root, id);
}

/* Creates (or opens) run 'id's marker and locks it; returns its fd or -1. */
static int unstored_mark(const kp_ws *ws, const char *id, int wait) {
  char p[4600];
  snprintf(p, sizeof p, "%s/runs/.unstored", ws->root);
  if (mkdir(p, 0700) != 0 && errno != EEXIST) return -1;
  unstored_path(ws, id, p, sizeof p);
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return -1;
  if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The run's error when its metrics or files could not all be stored. */
static void storage_error(const kp_ws *ws, const char *id, const char *also, char *out, size_t n) {
  char disk[128] = "the store refused them";
  struct statvfs v;
  if (kp_store_unreachable()) {
    snprintf(disk, sizeof disk, "the store could not be reached");
  } else if (statvfs(ws->root, &v) == 0) {
    unsigned long long bytes = (unsigned long long)v.f_bavail * v.f_frsize;
    if (bytes < (1ull << 20))
      snprintf(disk, sizeof disk, "the disk holding the workspace is full: %llu KiB free", bytes >> 10);
    else
      snprintf(disk, sizeof disk, "%llu MiB free on the workspace's disk", bytes >> 20);
  }
  snprintf(out, n,
           "the run's metrics and files could not all be stored in workspace %.2000s (%s; see runs/%.200s/supervisor.log)%s%.1000s; "
           "its metrics channel and working folder are kept: free space, then any kusari command (such as "
           "'kusari run list') stores the rest",
           ws->root, disk, id, also && *also ? "; " : "", also ? also : "");
}

/* Removal of a finished run's working directory, channel and marker, once
 * everything in them is stored. */
static void cleanup_run_dir(kp_ws *ws, const char *id) {
  char rd[4400], p[4600];
  kp_run_dir(ws, id, rd, sizeof rd);
  snprintf(p, sizeof p, "%s/wd", rd);
  if (rm_tree(p) != 0) kp_err("cannot remove all of %s: %s", p, strerror(errno));
  snprintf(p, sizeof p, "%s/" KP_SPOOL_MARK, ws->root);
  int spool = access(p, F_OK) == 0; /* a spool's forwarder removes the channel once the server has it */
  snprintf(p, sizeof p, "%s/channel", rd);
  if (!spool) unlink(p);
  unstored_path(ws, id, p, sizeof p);
  unlink(p);
}

/* Stores what is left of ended runs whose marker nobody holds. */
static void store_unstored(kp_ws *ws) {
  char dir[4600];
  snprintf(dir, sizeof dir, "%s/runs/.unstored", ws->root);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int fd = unstored_mark(ws, e->d_name, 0);
    if (fd < 0) continue; /* its supervisor is at work */
    kp_run r = {0};
    if (kp_store_run_get(ws->store, e->d_name, &r) != 0) {
      if (kp_store_last_error()->code == KP_STORE_ENOTFOUND) cleanup_run_dir(ws, e->d_name); /* deleted run */
    } else if (kp_run_status_ended(r.status)) {
      if (kp_ingest(ws, e->d_name, 1) == 0 && store_run_files(ws, e->d_name) == 0) {
        char rd[4400], log[4600], t[64];
        kp_run_dir(ws, e->d_name, rd, sizeof rd);
        snprintf(log, sizeof log, "%s/logs/std_log.txt", rd);
        kp_fmt_time(kp_now(), t, sizeof t);
        append_log(log, "kusari: %s: the rest of this run's metrics and files were stored after the storage failure at its end\n", t);
        snprintf(log, sizeof log, "%s/logs", rd);
        kp_store_tree(ws, e->d_name, log, "logs");
        if (kp_store_tag_set(ws->store, e->d_name, "kusari.stored_late", t) != 0) kp_store_report();
        cleanup_run_dir(ws, e->d_name);
      }
    }
    kp_run_free(&r);
    close(fd);
  }
  closedir(d);
}

/* ---- compute targets ------------------------------------------------------------ */
const kp_compute_ops *kp_compute_of(kp_ws *ws, const char *compute) {
  kp_compute *v = NULL;
  size_t n = 0;
  const kp_compute_ops *ops = NULL;
  if (compute && kp_store_compute_list(ws->store, compute, &v, &n) == 0 && n == 1) ops = kp_compute_find(v[0].type);
  kp_computes_free(v, n);
  return ops ? ops : &kp_compute_local;
}

/* ---- reconciliation ------------------------------------------------------------ */
/* A dead supervisor's job that no local process holds (a Slurm job): the
 * target stops it by the run's ref tag. */
static void reap_job_ref(kp_ws *ws, const char *id, const char *compute) {
  const kp_compute_ops *ops = kp_compute_of(ws, compute);
  kp_tag *t;
  size_t nt;
  if (!ops->ref_tag || !ops->reap_ref || kp_store_tag_list(ws->store, id, &t, &nt) != 0) return;
  for (size_t k = 0; k < nt; k++)
    if (!strcmp(t[k].key, ops->ref_tag) && t[k].value[0]) ops->reap_ref(t[k].value);
  kp_tags_free(t, nt);
}

/* a remote run's last heartbeat (KP_TAG_REMOTE_BEAT), 0 when it is not remote */
static double remote_beat(kp_ws *ws, const char *id) {
  kp_tag *t;
  size_t nt;
  double at = 0;
  if (kp_store_tag_list(ws->store, id, &t, &nt) != 0) return 0;
  for (size_t k = 0; k < nt; k++)
    if (!strcmp(t[k].key, KP_TAG_REMOTE_BEAT)) {
      at = strtod(t[k].value, NULL);
      if (!(at > 0)) at = 1; /* a garbled beat is an old one */
    }
  kp_tags_free(t, nt);
  return at;
}

int kp_reconcile(kp_ws *ws) {
  if (ws->remote[0]) return 0; /* the server's own commands reconcile its runs */
  kp_run *runs;
  size_t nr;
  if (kp_store_run_list_active(ws->store, &runs, &nr) != 0) return kp_store_report();
  struct dead { char id[256], compute[256]; pid_t spid, epid; uint64_t estart; int cancel; } *dead = NULL;
  size_t nd = 0;
  int r = 0;
  double now = kp_now();
  for (size_t i = 0; i < nr; i++) {
    const kp_run *x = &runs[i];
    int has_sup = x->supervisor_pid != 0;
    pid_t spid = (pid_t)x->supervisor_pid;
    double beat = has_sup ? 0 : remote_beat(ws, x->id);
    int is_dead = has_sup ? !kp_proc_alive(spid, x->supervisor_start)
                          : beat > 0 ? now - beat > KP_REMOTE_STALE : (now - x->created > 60.0);
    if (!is_dead) continue;
    void *np = realloc(dead, (nd + 1) * sizeof *dead);
    if (!np) break;
    dead = np;
    snprintf(dead[nd].id, sizeof dead[nd].id, "%s", x->id);
    snprintf(dead[nd].compute, sizeof dead[nd].compute, "%s", x->compute);
    dead[nd].spid = spid;
    dead[nd].epid = (pid_t)x->entry_pid;
    dead[nd].estart = x->entry_start;
    dead[nd].cancel = x->cancel_requested;
    nd++;
  }
  kp_runs_free(runs, nr);
  for (size_t i = 0; i < nd; i++) reap_job_ref(ws, dead[i].id, dead[i].compute);
  for (size_t i = 0; i < nd; i++) {
    /* the entry may outlive its supervisor: stop it so its metrics are final */
    if (dead[i].epid > 0) kp_compute_of(ws, dead[i].compute)->reap(dead[i].epid, dead[i].estart);
    int stored = kp_ingest(ws, dead[i].id, 1) == 0;
    if (store_run_files(ws, dead[i].id) != 0) stored = 0;
    char msg[256], smsg[4600];
    snprintf(msg, sizeof msg, "the run's supervisor (pid %d) died; the run was reconciled", (int)dead[i].spid);
    if (!stored) {
      /* keep the channel and the working folder for store_unstored() */
      int fd = unstored_mark(ws, dead[i].id, 0);
      if (fd >= 0) close(fd);
      storage_error(ws, dead[i].id, msg, smsg, sizeof smsg);
      set_status(ws, dead[i].id, KP_RUN_FAILED, 1, INT32_MIN, 0, smsg);
    } else {
      if (dead[i].cancel) set_status(ws, dead[i].id, KP_RUN_CANCELED, 1, INT32_MIN, 0, NULL);  /* error = cancel_reason */
      else set_status(ws, dead[i].id, KP_RUN_FAILED, 1, INT32_MIN, 0, msg);
      cleanup_run_dir(ws, dead[i].id);
    }
  }
  free(dead);
  store_unstored(ws);
  return r == 0 ? 0 : -1;
}

/* ---- an entry killed for lack of memory ------------------------------------- */
/* The count of the kernel's out-of-memory kills in this process's memory
 * cgroup (the entry's too: it inherits it): cgroup v2's memory.events or
 * v1's memory.oom_control, "oom_kill N". -1 when there is none to read.
 * Read by supervise_entry() before the entry starts and after it ends: a
 * SIGKILL nobody sent (no cancel) while the count went up is reported as
 * running out of memory, not as a bare "killed by signal 9". */
static long long oom_kills(void) {
  FILE *f = fopen("/proc/self/cgroup", "r");
  if (!f) return -1;
  char line[4096], v1[4096] = "", v2[4096] = "";
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = '\0';
    const char *ctrls = c1 + 1, *path = c2 + 1;
    if (!*ctrls) snprintf(v2, sizeof v2, "%s", path);
    else if (!strcmp(ctrls, "memory") || strstr(ctrls, "memory,") == ctrls || strstr(ctrls, ",memory")) snprintf(v1, sizeof v1, "%s", path);
  }
  fclose(f);
  char file[8400];
  const char *cands[3][2] = {{"/sys/fs/cgroup%s/memory.events", v2}, {"/sys/fs/cgroup/unified%s/memory.events", v2},
                             {"/sys/fs/cgroup/memory%s/memory.oom_control", v1}};
  for (int i = 0; i < 3; i++) {
    if (!*cands[i][1]) continue;
    snprintf(file, sizeof file, cands[i][0], strcmp(cands[i][1], "/") ? cands[i][1] : "");
    FILE *g = fopen(file, "r");
    if (!g) continue;
    long long n = -1;
    while (fgets(line, sizeof line, g))
      if (sscanf(line, "oom_kill %lld", &n) == 1) break;
    fclose(g);
    if (n >= 0) return n;
  }
  return -1;
}

/* ---- processes a run leaves behind ------------------------------------------- */
/* The supervisor is a child subreaper (PR_SET_CHILD_SUBREAPER): a process
 * the entry or a build starts and orphans (`setsid sleep 300 &`, a double
 * fork) becomes the supervisor's child instead of init's, whatever its
 * session or process group. So once the entry (or a build) has ended, every
 * child the supervisor still has is something the run left behind:
 * end_descendants kills them all, round after round (a killed one's own
 * children come to us next), and reaps them. Called from supervise() (at
 * start: become_subreaper), run_logged() and supervise_entry() (after the
 * process group's SIGKILL, which covers cancel too). */
static void become_subreaper(void) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    fprintf(stderr, "kusari: cannot become a child subreaper (%s): processes a run orphans may outlive it\n",
            strerror(errno));
}

/* The parent pid of 'pid' from /proc/PID/stat, or -1. */
static pid_t parent_of(pid_t pid, char *comm, size_t ncomm) {
  char p[64], buf[1024];
  snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char *open_p = strchr(buf, '('), *close_p = strrchr(buf, ')'); /* comm may hold spaces and ')' */
  if (!open_p || !close_p || close_p < open_p) return -1;
  snprintf(comm, ncomm, "%.*s", (int)(close_p - open_p - 1), open_p + 1);
  int ppid;
  char state;
  if (sscanf(close_p + 1, " %c %d", &state, &ppid) != 2) return -1;
  return (pid_t)ppid;
}

/* Kills and reaps every child of this process; says how many in 'log'. */
static void end_descendants(const char *log) {
  pid_t self = getpid();
  size_t ended = 0;
  char first[300] = "";
  for (int round = 0; round < 200; round++) {
    size_t seen = 0;
    DIR *d = opendir("/proc");
    if (!d) break;
    struct dirent *e;
    while ((e = readdir(d))) {
      char *end;
      long v = strtol(e->d_name, &end, 10);
      if (*end || v <= 0) continue;
      char comm[64];
      if (parent_of((pid_t)v, comm, sizeof comm) != self) continue;
      seen++;
      if (kill((pid_t)v, SIGKILL) == 0 && !first[0]) snprintf(first, sizeof first, "pid %ld (%s)", v, comm);
    }
    closedir(d);
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) ended++;
    if (!seen) break;
    sleep_ms(10);
  }
  if (ended && log)
    append_log(log, "kusari: ended %zu process%s the run left behind (such as %s)\n", ended, ended == 1 ? "" : "es",
               first[0] ? first : "?");
}

/* ---- the supervisor ------------------------------------------------------------- */
typedef struct sup {
  kp_ws ws;
  char id[256];
  char rd[4400];          /* runs/<id> */
  char experiment[256];
  char compute[256];
  char entry[4096];
  char snapshot[65];
  char *args_json;
  char *env_json;
  char env_hash[65];
  char cancel_reason[512]; /* set by cancel_requested() */
  int max_nodes;           /* of the compute target, once a node is taken */
  int nodes, ppn;          /* launch shape: nodes x processes per node (1 x 1: a plain run) */
  char launcher[4096];     /* the MPI launcher of a distributed run */
  int64_t memory_limit;    /* run submit --memory (bytes), 0: none */
  double cpus;             /* run submit --cpus, 0: none */
  char venv[4700];         /* the environment's Python virtual environment, or "" */
  int unstored_fd;         /* runs/.unstored/<id>, locked (see store_unstored) */
  /* preparation inside the job (targets with prepares_on_node: `kusari
   * __prepare` on the node, without the store: ws.store is NULL there) */
  int on_node;
  char venv_want[4700];    /* on the node: the venv path the entry's argv names (the supervisor's) */
  char build_cache[8];     /* what prepare() found: "none", "hit" or "miss" */
} sup;

static void sup_note(const sup *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static volatile sig_atomic_t g_wake;
static void on_usr1(int sig) { (void)sig; g_wake = 1; }

static int cancel_requested(sup *s, double *grace) {
  if (!s->ws.store) return 0;  /* on the node: a cancel arrives as signals (scancel) */
  kp_run r;
  if (kp_store_run_get(s->ws.store, s->id, &r) != 0) {
    kp_store_report();
    return 0;
  }
  int c = r.cancel_requested;
  if (grace) *grace = r.cancel_grace;
  snprintf(s->cancel_reason, sizeof s->cancel_reason, "%s", r.cancel_reason ? r.cancel_reason : "canceled by the user");
  kp_run_free(&r);
  return c;
}

/* Waits in Queued until this run may take a node. Returns 1 when it did,
 * 0 when canceled meanwhile, -1 on error. */
static int wait_for_node(sup *s) {
  for (;;) {
    kp_reconcile(&s->ws);
    kp_node_claim claim;
    int max = 0;
    if (kp_store_run_claim_node(s->ws.store, s->id, &claim, &max) != 0) return kp_store_report();
    if (claim == KP_CLAIM_TAKEN) {
      s->max_nodes = max;
      return 1;
    }
    if (claim == KP_CLAIM_CANCELED) return 0;
    if (claim == KP_CLAIM_NO_TARGET) {
      set_status(&s->ws, s->id, KP_RUN_FAILED, 1, INT32_MIN, 0, "its compute target no longer exists");
      return -1;
    }
    for (int i = 0; i < 10 && !g_wake; i++) sleep_ms(20);
    g_wake = 0;
  }
}

/* Runs 'argv' in 'dir' with stdout+stderr appended to 'log', in a new
 * process group; returns its pid (or -1). */
static pid_t spawn(const char *dir, const char *log, char *const argv[], char *const envp[]) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  signal(SIGUSR1, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  int in = open("/dev/null", O_RDONLY);
  int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (in < 0 || out < 0 || chdir(dir) != 0) _exit(127);
  dup2(in, 0);
  dup2(out, 1);
  dup2(out, 2);
  if (in > 2) close(in);
  if (out > 2) close(out);
  execve(argv[0], argv, envp);
  fprintf(stderr, "kusari: cannot execute %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

static void append_log(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append_log(const char *log, const char *fmt, ...) {
  FILE *f = fopen(log, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
}

/* Checks the environment's Debian packages; fills 'missing' (space separated). */
static int check_packages(cJSON *env, char *missing, size_t n) {
  missing[0] = '\0';
  cJSON *pk = cJSON_GetObjectItemCaseSensitive(env, "debian_packages");
  cJSON *p;
  cJSON_ArrayForEach(p, pk) {
    const char *name = cJSON_GetStringValue(p);
    if (!name) continue;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "dpkg-query -W -f='${Status}' '%s' 2>/dev/null", name);
    FILE *f = popen(cmd, "r");
    char buf[256] = "";
    if (f) {
      size_t r = fread(buf, 1, sizeof buf - 1, f);
      buf[r] = '\0';
      pclose(f);
    }
    if (!strstr(buf, "install ok installed")) {
      size_t l = strlen(missing);
      snprintf(missing + l, n - l, "%s%s", l ? " " : "", name);
    }
  }
  return missing[0] ? -1 : 0;
}

/* Runs 'argv' in 'dir' (output appended to 'log') until it exits; kills its
 * process group at once when the run is canceled. Returns the wait status,
 * -1 when it could not start, -2 when canceled. */
static int run_logged(sup *s, const char *dir, const char *log, char **argv) {
  pid_t pid = spawn(dir, log, argv, environ);
  if (pid < 0) return -1;
  int status = 0, canceled = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (!canceled && cancel_requested(s, NULL)) {
      canceled = 1;
      kill(-pid, SIGKILL);
    }
    sleep_ms(50);
  }
  kill(-pid, SIGKILL);
  end_descendants(log);
  return canceled ? -2 : status;
}

/* The environment's pip_packages, installed into a virtual environment made
 * with its interpreter and cached in envs/venv-<key> by hash(interpreter,
 * its real path, pip_packages, pip_options, system_site_packages). A lock
 * file (flock) makes concurrent runs of one environment wait for a single
 * build; a build is marked complete by .kusari-ready, so one killed halfway
 * is redone. Sets s->venv. Returns 0, -1 (failed) or -2 (canceled). */
/* The cache key of the environment's virtual environment: the text hashed
 * (malloc'ed) and its hash in 'key'; the interpreter in 'interp' (pointing
 * into env or 'found'). NULL with 'why' set when there is no python3. */
static char *venv_key(cJSON *env, const char **interp, char *found, size_t nfound, char key[65], char *why,
                      size_t whyn) {
  cJSON *pkgs = cJSON_GetObjectItemCaseSensitive(env, "pip_packages");
  *interp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "interpreter"));
  if (!*interp) {
    if (kp_which("python3", found, nfound) != 0) {
      snprintf(why, whyn, "there is no python3 to install the environment's pip_packages with");
      return NULL;
    }
    *interp = found;
  }
  cJSON *opts = cJSON_GetObjectItemCaseSensitive(env, "pip_options");
  int system_site = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(env, "system_site_packages"));
  char real[4096];
  if (!realpath(*interp, real)) snprintf(real, sizeof real, "%s", *interp);
  cJSON *k = cJSON_CreateObject();
  cJSON_AddStringToObject(k, "interpreter", *interp);
  cJSON_AddStringToObject(k, "interpreter_realpath", real);
  cJSON_AddItemToObject(k, "pip_packages", cJSON_Duplicate(pkgs, 1));
  cJSON_AddItemToObject(k, "pip_options", opts ? cJSON_Duplicate(opts, 1) : cJSON_CreateArray());
  cJSON_AddBoolToObject(k, "system_site_packages", system_site);
  char *ktext = cJSON_PrintUnformatted(k);
  cJSON_Delete(k);
  if (!ktext) { snprintf(why, whyn, "out of memory"); return NULL; }
  kp_sha256_hex(ktext, strlen(ktext), key);
  return ktext;
}

static int prepare_venv(sup *s, cJSON *env, const char *buildlog, char *why, size_t whyn) {
  cJSON *pkgs = cJSON_GetObjectItemCaseSensitive(env, "pip_packages");
  if (cJSON_GetArraySize(pkgs) == 0) return 0;
  const char *interp = NULL;
  char found[4096], key[65], dir[4600], lockp[4700], ready[4800];
  char *ktext = venv_key(env, &interp, found, sizeof found, key, why, whyn);
  if (!ktext) return -1;
  cJSON *opts = cJSON_GetObjectItemCaseSensitive(env, "pip_options");
  int system_site = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(env, "system_site_packages"));
  /* on a node: the path the supervisor computed, which the entry's argv names */
  const char *want = s->venv_want[0] ? strrchr(s->venv_want, '/') : NULL;
  if (want && !strncmp(want, "/venv-", 6) && strlen(want + 6) == 64) snprintf(key, sizeof key, "%s", want + 6);
  snprintf(dir, sizeof dir, "%s/envs", s->ws.root);
  if (kp_mkdirs(dir, 0755) != 0) { free(ktext); snprintf(why, whyn, "cannot create %.3000s", dir); return -1; }
  snprintf(s->venv, sizeof s->venv, "%s/envs/venv-%s", s->ws.root, key);
  snprintf(lockp, sizeof lockp, "%s/envs/.venv-%s.lock", s->ws.root, key);
  snprintf(ready, sizeof ready, "%s/.kusari-ready", s->venv);
  int rc = -1, fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(why, whyn, "cannot open %.3000s: %s", lockp, strerror(errno));
    free(ktext);
    s->venv[0] = '\0';
    return -1;
  }
  for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited++) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      snprintf(why, whyn, "cannot lock %.3000s: %s", lockp, strerror(errno));
      goto out;
    }
    if (!waited) append_log(buildlog, "kusari: python environment %.12s: waiting for another run that builds it\n", key);
    if (cancel_requested(s, NULL)) {
      snprintf(why, whyn, "%s (while waiting for the python environment)", s->cancel_reason);
      rc = -2;
      goto out;
    }
    sleep_ms(100);
  }
  struct stat st;
  if (stat(ready, &st) == 0) {
    append_log(buildlog, "kusari: python environment cache hit (%.12s): reusing %s\n", key, s->venv);
    sup_note(s, "python environment cache hit: %s", s->venv);
    rc = 0;
    goto out;
  }
  append_log(buildlog, "kusari: python environment cache miss (%.12s): creating %s with %s%s\n", key, s->venv, interp,
             system_site ? " (with the system's site-packages)" : "");
  sup_note(s, "python environment cache miss: creating %s", s->venv);
  kp_rm_rf(s->venv);
  /* Without pip (ensurepip is most of a venv's creation time); the packages
   * are installed by the interpreter's own pip when it has one that can
   * target another Python (pip >= 22.3: --python), else by a pip that
   * ensurepip puts into the venv (offline: it is bundled with Python). */
  char *vargv[] = {(char *)interp, "-m", "venv", "--without-pip", system_site ? "--system-site-packages" : s->venv,
                   system_site ? s->venv : NULL, NULL};
  int r = run_logged(s, dir, buildlog, vargv);
  if (r == -2) {
    snprintf(why, whyn, "%s (while creating the python environment)", s->cancel_reason);
    rc = -2;
    goto fail;
  }
  if (r != 0) {
    snprintf(why, whyn, "'%.3000s -m venv' could not create the python environment for pip_packages; see logs/build.log "
             "(Debian and Ubuntu need the python3-venv package)", interp);
    goto fail;
  }
  char py[4800];
  snprintf(py, sizeof py, "%s/bin/python", s->venv);
  char *probe[] = {(char *)interp, "-c",
                   "import sys, pip; sys.exit(0 if tuple(int(x) for x in pip.__version__.split('.')[:2]) >= (22, 3) else 1)",
                   NULL};
  int base_pip = run_logged(s, dir, "/dev/null", probe) == 0;
  if (!base_pip) {
    append_log(buildlog, "kusari: %s has no pip that can install into another Python: adding pip to the environment\n",
               interp);
    char *eargv[] = {py, "-m", "ensurepip", "--default-pip", NULL};
    r = run_logged(s, dir, buildlog, eargv);
    if (r == -2) {
      snprintf(why, whyn, "%s (while creating the python environment)", s->cancel_reason);
      rc = -2;
      goto fail;
    }
    if (r != 0) {
      snprintf(why, whyn, "the python environment for pip_packages has no pip (ensurepip failed); see logs/build.log "
               "(Debian and Ubuntu need the python3-venv package)");
      goto fail;
    }
  }
  int no = cJSON_GetArraySize(opts), np = cJSON_GetArraySize(pkgs), a = 0;
  char **pargv = calloc((size_t)(no + np + 10), sizeof *pargv);
  if (!pargv) { snprintf(why, whyn, "out of memory"); goto fail; }
  pargv[a++] = base_pip ? (char *)interp : py;
  pargv[a++] = "-m";
  pargv[a++] = "pip";
  if (base_pip) {
    pargv[a++] = "--python";
    pargv[a++] = py;
  }
  pargv[a++] = "install";
  pargv[a++] = "--disable-pip-version-check";
  pargv[a++] = "--no-input";
  const cJSON *it;
  cJSON_ArrayForEach(it, opts) pargv[a++] = it->valuestring;
  cJSON_ArrayForEach(it, pkgs) pargv[a++] = it->valuestring;
  append_log(buildlog, "kusari: installing pip_packages:");
  for (int i = 0; i < a; i++) append_log(buildlog, " %s", pargv[i]);
  append_log(buildlog, "\n");
  r = run_logged(s, dir, buildlog, pargv);
  free(pargv);
  if (r == -2) {
    snprintf(why, whyn, "%s (while installing pip_packages)", s->cancel_reason);
    rc = -2;
    goto fail;
  }
  if (r != 0) {
    if (r > 0 && WIFEXITED(r))
      snprintf(why, whyn, "installing the environment's pip_packages failed (pip exited with code %d); see logs/build.log",
               WEXITSTATUS(r));
    else
      snprintf(why, whyn, "installing the environment's pip_packages failed; see logs/build.log");
    goto fail;
  }
  if (kp_write_file(ready, ktext, strlen(ktext)) != 0) {
    snprintf(why, whyn, "cannot write %.3000s", ready);
    goto fail;
  }
  append_log(buildlog, "kusari: python environment ready\n");
  rc = 0;
  goto out;
fail:
  kp_rm_rf(s->venv);
out:
  if (rc != 0) s->venv[0] = '\0';
  flock(fd, LOCK_UN);
  close(fd);
  free(ktext);
  return rc;
}

/* Builds (or reuses) the environment; leaves the working tree in rd/wd.
 * Returns 0, -1 on failure or -2 when canceled, with 'why' set. */
static int prepare(sup *s, cJSON *env, char *why, size_t whyn) {
  char wd[4600], logs[4600], buildlog[4700];
  snprintf(wd, sizeof wd, "%s/wd", s->rd);
  snprintf(logs, sizeof logs, "%s/logs", s->rd);
  snprintf(buildlog, sizeof buildlog, "%s/build.log", logs);
  kp_rm_rf(wd);
  char missing[2048];
  if (env && check_packages(env, missing, sizeof missing) != 0) {
    snprintf(why, whyn, "the environment requires Debian package(s) that are not installed: %s "
             "(install them with: apt-get install %s)", missing, missing);
    append_log(buildlog, "kusari: %s\n", why);
    return -1;
  }
  const char *build = env ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "build")) : NULL;
  const char *cache = "none";
  if (!build || !*build) {
    if (kp_snapshot_extract(&s->ws, s->snapshot, wd) != 0) {
      snprintf(why, whyn, "cannot extract snapshot %s", s->snapshot);
      return -1;
    }
  } else {
    char keysrc[256], key[65], final_dir[4600], tmp_dir[4700];
    snprintf(keysrc, sizeof keysrc, "%s\n%s", s->snapshot, s->env_hash);
    kp_sha256_hex(keysrc, strlen(keysrc), key);
    snprintf(final_dir, sizeof final_dir, "%s/envs/%s", s->ws.root, key);
    struct stat st;
    if (stat(final_dir, &st) == 0) {
      cache = "hit";
      append_log(buildlog, "kusari: build cache hit (%.12s): reusing the result of '%s'\n", key, build);
    } else {
      cache = "miss";
      snprintf(tmp_dir, sizeof tmp_dir, "%s/envs/.build-%s-%d", s->ws.root, key, (int)getpid());
      kp_rm_rf(tmp_dir);
      if (kp_snapshot_extract(&s->ws, s->snapshot, tmp_dir) != 0) {
        snprintf(why, whyn, "cannot extract snapshot %s", s->snapshot);
        return -1;
      }
      append_log(buildlog, "kusari: build cache miss (%.12s): running '%s'\n", key, build);
      char *argv[] = {"/bin/sh", "-c", (char *)build, NULL};
      pid_t pid = spawn(tmp_dir, buildlog, argv, environ);
      int status = 0, canceled = 0;
      if (pid < 0) status = -1;
      while (pid > 0) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) break;
        if (!canceled && cancel_requested(s, NULL)) {
          canceled = 1;
          kill(-pid, SIGKILL);  /* a build has nothing to save: no grace period */
        }
        sleep_ms(100);
      }
      kill(-pid, SIGKILL);
      if (canceled) {
        kp_rm_rf(tmp_dir);
        snprintf(why, whyn, "%s (while building)", s->cancel_reason);
        return -2;
      }
      if (status != 0) {
        kp_rm_rf(tmp_dir);
        if (WIFEXITED(status))
          snprintf(why, whyn, "the build command '%s' failed with exit code %d; see logs/build.log", build, WEXITSTATUS(status));
        else
          snprintf(why, whyn, "the build command '%s' failed; see logs/build.log", build);
        return -1;
      }
      if (rename(tmp_dir, final_dir) != 0) kp_rm_rf(tmp_dir);  /* another run built it first */
      append_log(buildlog, "kusari: build finished\n");
    }
    if (kp_copy_tree(final_dir, wd) != 0) {
      snprintf(why, whyn, "cannot copy the built environment into the run's working directory");
      return -1;
    }
  }
  snprintf(s->build_cache, sizeof s->build_cache, "%s", cache);
  char out[4700];
  snprintf(out, sizeof out, "%s/outputs", wd);
  kp_mkdirs(out, 0755);
  return env ? prepare_venv(s, env, buildlog, why, whyn) : 0;
}

/* 0 when the entry can start in 'wd': it exists and is a .py or .sh script
 * or executable; else -1 with 'why' set. */
static int entry_check(const sup *s, const char *wd, char *why, size_t whyn) {
  char path[16384];
  snprintf(path, sizeof path, "%s/%s", wd, s->entry);
  size_t el = strlen(s->entry);
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(why, whyn, "the entry '%s' does not exist in the run's working directory "
             "(check --entry, or that the environment's build command creates it)", s->entry);
    return -1;
  }
  if (!(el > 3 && (!strcmp(s->entry + el - 3, ".py") || !strcmp(s->entry + el - 3, ".sh"))) && !(st.st_mode & S_IXUSR)) {
    snprintf(why, whyn, "the entry '%s' is not executable (chmod +x it, or use a .py or .sh script)", s->entry);
    return -1;
  }
  return 0;
}

/* Builds the entry's argv: an interpreter for .py/.sh, else the file itself.
 * With 'check', the entry must be there (entry_check); without (the run is
 * prepared on the node, later), `kusari __prepare` checks it there. */
static char **entry_argv(sup *s, const char *wd, int check, char *why, size_t whyn) {
  if (check && entry_check(s, wd, why, whyn) != 0) return NULL;
  cJSON *args = cJSON_Parse(s->args_json);
  int na = cJSON_GetArraySize(args);
  char **argv = calloc((size_t)na + 4, sizeof *argv);
  int k = 0;
  char path[16384];
  snprintf(path, sizeof path, "%s/%s", wd, s->entry);
  size_t el = strlen(s->entry);
  if (el > 3 && !strcmp(s->entry + el - 3, ".py")) {
    /* the virtual environment's, else the one recorded at submit, else (a run
     * submitted before interpreters were recorded) python3 from the PATH */
    char py[4800];
    cJSON *env = s->env_json ? cJSON_Parse(s->env_json) : NULL;
    const char *interp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "interpreter"));
    if (s->venv[0]) snprintf(py, sizeof py, "%s/bin/python", s->venv);
    else if (interp) snprintf(py, sizeof py, "%s", interp);
    else if (kp_which("python3", py, sizeof py) != 0) snprintf(py, sizeof py, "/usr/bin/python3");
    cJSON_Delete(env);
    sup_note(s, "python: %s", py);
    argv[k++] = strdup(py);
  }
  else if (el > 3 && !strcmp(s->entry + el - 3, ".sh")) argv[k++] = strdup("/bin/bash");
  argv[k++] = strdup(path);
  cJSON *a;
  cJSON_ArrayForEach(a, args) argv[k++] = strdup(cJSON_GetStringValue(a) ? cJSON_GetStringValue(a) : "");
  cJSON_Delete(args);
  return argv;
}

static char **entry_env(sup *s, const char *wd, cJSON *env) {
  size_t n = 0;
  while (environ[n]) n++;
  cJSON *vars = env ? cJSON_GetObjectItemCaseSensitive(env, "variables") : NULL;
  size_t nv = (size_t)cJSON_GetArraySize(vars);
  /* the run's params (run submit --param) as KUSARI_PARAM_NAME */
  kp_tag *params = NULL;
  size_t np = 0;
  if (kp_store_run_params(s->ws.store, s->id, &params, &np) != 0) kp_store_report();
  char **e = calloc(n + nv + np + 24, sizeof *e);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if ((strncmp(environ[i], "KUSARI_", 7) != 0 || strncmp(environ[i], "KUSARI_NUM_THREADS=", 19) == 0) &&
        strncmp(environ[i], "PATH=", 5) != 0 && strncmp(environ[i], "PYTHONPATH=", 11) != 0 &&
        !(s->venv[0] && (!strncmp(environ[i], "VIRTUAL_ENV=", 12) || !strncmp(environ[i], "PYTHONHOME=", 11))))
      e[k++] = strdup(environ[i]);
  char buf[16384], bindir[4096];
  snprintf(bindir, sizeof bindir, "%s", kp_self_exe);
  char *sl = strrchr(bindir, '/');
  if (sl) *sl = '\0';
  const char *path = getenv("PATH");
#define KP_SETENV(...) (snprintf(buf, sizeof buf, __VA_ARGS__), e[k++] = strdup(buf))
  if (s->venv[0]) {
    /* like an activated venv: its python3 and scripts first (after kusari) */
    KP_SETENV("PATH=%s:%s/bin:%s", bindir, s->venv, path ? path : "/usr/local/bin:/usr/bin:/bin");
    KP_SETENV("VIRTUAL_ENV=%s", s->venv);
  } else {
    KP_SETENV("PATH=%s:%s", bindir, path ? path : "/usr/local/bin:/usr/bin:/bin");
  }
  KP_SETENV("KUSARI_RUN_ID=%s", s->id);
  KP_SETENV("KUSARI_EXPERIMENT=%s", s->experiment);
  KP_SETENV("KUSARI_TRACKING_URI=%s", s->ws.root);
  KP_SETENV("KUSARI_WORKSPACE=%s", s->ws.root);
  KP_SETENV("KUSARI_OUTPUT_DIR=%s/outputs", wd);
  KP_SETENV("KUSARI_METRICS_CHANNEL=%s/channel", s->rd);
  KP_SETENV("KUSARI_UPLOAD_DIR=%s/uploads", s->rd);
  if (!getenv("PYTHONUNBUFFERED")) KP_SETENV("PYTHONUNBUFFERED=1");
  KP_SETENV("PYTHONPATH=%s/../share/kusari/python%s%s", bindir, getenv("PYTHONPATH") ? ":" : "", getenv("PYTHONPATH") ? getenv("PYTHONPATH") : ""); /* the kusari package (docs/PYTHON.md) */
  /* Debian's OpenBLAS falls back to generic kernels on CPUs newer than it;
   * give the entry the kernel set that fits, unless someone chose one (see
   * docs/ARCHITECTURE.md, "OpenBLAS on CPUs newer than it"). */
  const char *coretype = ks_blas_suggested_coretype();
  if (coretype && !getenv("OPENBLAS_CORETYPE") &&
      !(vars && cJSON_GetObjectItemCaseSensitive(vars, "OPENBLAS_CORETYPE")))
    KP_SETENV("OPENBLAS_CORETYPE=%s", coretype);
  /* A local target runs up to max_nodes runs at once on this machine's
   * processors: each run gets its share as its thread count, unless the
   * submitter or the env file chose one (oversubscribed cores make every
   * thread pool wait on descheduled threads). */
  if (s->max_nodes > 0 && kp_compute_of(&s->ws, s->compute)->this_machine) {
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    /* a distributed run's ranks share its nodes' part */
    long share = procs > 0 ? procs / ((long)s->max_nodes * s->ppn) : 1;
    if (share < 1) share = 1;
    static const char *const thread_vars[] = {"KUSARI_NUM_THREADS", "OMP_NUM_THREADS",
                                              "OPENBLAS_NUM_THREADS"};
    for (size_t i = 0; i < sizeof thread_vars / sizeof thread_vars[0]; i++)
      if (!getenv(thread_vars[i]) && !(vars && cJSON_GetObjectItemCaseSensitive(vars, thread_vars[i])))
        KP_SETENV("%s=%ld", thread_vars[i], share);
  }
  for (size_t i = 0; i < np; i++)  /* names that can be variable names (a sweep's may not) */
    if (params[i].key[0] && strspn(params[i].key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
                                strlen(params[i].key))
      KP_SETENV("KUSARI_PARAM_%s=%s", params[i].key, params[i].value);
  kp_tags_free(params, np);
  cJSON *v;
  cJSON_ArrayForEach(v, vars)
    if (cJSON_IsString(v) && v->string) KP_SETENV("%s=%s", v->string, v->valuestring);
#undef KP_SETENV
  return e;
}

static int load_run(sup *s) {
  kp_run r;
  if (kp_store_run_get(s->ws.store, s->id, &r) != 0) return kp_store_report();
  int rc = -1;
  if (r.status == KP_RUN_QUEUED) {
    snprintf(s->experiment, sizeof s->experiment, "%s", r.experiment);
    snprintf(s->compute, sizeof s->compute, "%s", r.compute);
    snprintf(s->entry, sizeof s->entry, "%s", r.entry);
    snprintf(s->snapshot, sizeof s->snapshot, "%s", r.snapshot);
    s->args_json = strdup(r.args_json);
    s->env_json = r.env_json ? strdup(r.env_json) : NULL;
    snprintf(s->env_hash, sizeof s->env_hash, "%s", r.env_hash ? r.env_hash : "");
    rc = 0;
  }
  kp_run_free(&r);
  /* the launch shape, recorded as tags at submit */
  s->nodes = s->ppn = 1;
  kp_tag *t;
  size_t nt;
  if (rc == 0 && kp_store_tag_list(s->ws.store, s->id, &t, &nt) == 0) {
    for (size_t i = 0; i < nt; i++) {
      if (!strcmp(t[i].key, KP_TAG_NODES)) s->nodes = atoi(t[i].value);
      else if (!strcmp(t[i].key, KP_TAG_PPN)) s->ppn = atoi(t[i].value);
      else if (!strcmp(t[i].key, KP_TAG_LAUNCHER)) snprintf(s->launcher, sizeof s->launcher, "%s", t[i].value);
      else if (!strcmp(t[i].key, KP_TAG_MEMORY)) s->memory_limit = strtoll(t[i].value, NULL, 10);
      else if (!strcmp(t[i].key, KP_TAG_CPUS)) s->cpus = strtod(t[i].value, NULL);
    }
    if (s->memory_limit < 0) s->memory_limit = 0;
    if (!(s->cpus > 0)) s->cpus = 0;
    kp_tags_free(t, nt);
    if (s->nodes < 1) s->nodes = 1;
    if (s->ppn < 1) s->ppn = 1;
  }
  return rc;
}


/* One line in runs/<id>/supervisor.log (this process's stderr). */
static void sup_note(const sup *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sup_note(const sup *s, const char *fmt, ...) {
  char t[64];
  kp_fmt_time(kp_now(), t, sizeof t);
  fprintf(stderr, "%s run %s: ", t, s->id);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* The store may be a database server that is away for a while (restarted,
 * a network cut): the final writes are retried while it cannot be reached,
 * for up to this long; if it stays away the channel is kept, so that the
 * reconciliation of the run ingests it later. */
#define KP_FINISH_RETRY_S 300.0

static int finish(sup *s, kp_run_status status, int exit_code, int sig, const char *error) {
  sup_note(s, "Finalizing, then %s%s%s", kp_run_status_name(status), error ? ": " : "", error ? error : "");
  /* nothing is removed before it is stored: on a storage failure (a full
   * disk, or a PostgreSQL store that stays unreachable past the retries) the
   * run ends Failed and keeps its channel and working folder, and its marker
   * (runs/.unstored/<id>) lets reconciliation store them */
  double until = kp_now() + KP_FINISH_RETRY_S;
  int stored = 0;
  for (int attempt = 0;; attempt++) {
    stored = set_status(&s->ws, s->id, KP_RUN_FINALIZING, 0, INT32_MIN, 0, NULL) == 0 && kp_ingest(&s->ws, s->id, 1) == 0;
    if (stored || !kp_store_unreachable() || kp_now() >= until) break;
    if (attempt == 0) sup_note(s, "the store cannot be reached; retrying for up to %.0f s", KP_FINISH_RETRY_S);
    sleep_ms(1000);
  }
  if (store_run_files(&s->ws, s->id) != 0) stored = 0;
  char msg[8192];
  if (!stored) {
    storage_error(&s->ws, s->id, error, msg, sizeof msg);
    char log[4700];
    snprintf(log, sizeof log, "%s/logs/std_log.txt", s->rd);
    append_log(log, "kusari: %s\n", msg);
    sup_note(s, "%s", msg);
    status = KP_RUN_FAILED;
    error = msg;
  }
  int set;
  while ((set = set_status(&s->ws, s->id, status, 1, exit_code, sig, error)) != 0 && kp_store_unreachable() &&
         kp_now() < until)
    sleep_ms(1000);
  if (set != 0) stored = 0;
  if (stored) cleanup_run_dir(&s->ws, s->id);
  return 0;
}

static void free_strv(char **v) {
  for (char **p = v; p && *p; p++) free(*p);
  free(v);
}

/* ---- files the entry wrote where nothing keeps them -------------------------- */
/* The working tree's files (not outputs/ and logs/, which are kept) before the
 * entry runs, so that afterwards the new and changed ones can be named: the
 * run discards them with its working directory. */
typedef struct wd_file {
  char *path;           /* relative to wd */
  off_t size;
  struct timespec mtime;
} wd_file;
typedef struct wd_list {
  wd_file *v;
  size_t n, cap;
  int truncated;        /* more than KP_WD_SCAN_MAX entries: the rest not looked at */
} wd_list;
#define KP_WD_SCAN_MAX 200000

static void wd_scan(const char *root, const char *rel, wd_list *l) {
  char dir[8192];
  snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (!*rel && (!strcmp(e->d_name, "outputs") || !strcmp(e->d_name, "logs"))) continue;
    if (l->n >= KP_WD_SCAN_MAX) { l->truncated = 1; break; }
    char r[8192], full[16384];
    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    snprintf(full, sizeof full, "%s/%s", root, r);
    struct stat st;
    if (lstat(full, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      wd_scan(root, r, l);
      continue;
    }
    if (l->n == l->cap) {
      size_t nc = l->cap ? 2 * l->cap : 256;
      void *np = realloc(l->v, nc * sizeof *l->v);
      if (!np) { l->truncated = 1; break; }
      l->v = np;
      l->cap = nc;
    }
    wd_file *f = &l->v[l->n];
    if (!(f->path = strdup(r))) { l->truncated = 1; break; }
    f->size = st.st_size;
    f->mtime = st.st_mtim;
    l->n++;
  }
  closedir(d);
}

static int cmp_wd_file(const void *a, const void *b) {
  return strcmp(((const wd_file *)a)->path, ((const wd_file *)b)->path);
}

static void wd_list_free(wd_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* Says in the run's log which files the entry created or changed outside
 * outputs/ and logs/ (a few by name, the count of the rest). */
static void report_discarded(const sup *s, const char *wd, wd_list *before, const char *stdlog) {
  wd_list after = {0};
  wd_scan(wd, "", &after);
  qsort(before->v, before->n, sizeof *before->v, cmp_wd_file);
  qsort(after.v, after.n, sizeof *after.v, cmp_wd_file);
  enum { NAMED = 5 };
  char names[NAMED * 300 + 64] = "";
  size_t count = 0;
  for (size_t i = 0; i < after.n; i++) {
    const wd_file *a = &after.v[i];
    const wd_file *b = bsearch(a, before->v, before->n, sizeof *before->v, cmp_wd_file);
    if (b && b->size == a->size && b->mtime.tv_sec == a->mtime.tv_sec && b->mtime.tv_nsec == a->mtime.tv_nsec) continue;
    if (count < NAMED) {
      size_t l = strlen(names);
      snprintf(names + l, sizeof names - l, "%s%.280s", count ? ", " : "", a->path);
    }
    count++;
  }
  if (count) {
    char more[64] = "";
    if (count > NAMED) snprintf(more, sizeof more, " and %zu more", count - NAMED);
    append_log(stdlog,
               "kusari: the entry wrote %zu file%s outside outputs/ and logs/, which the run does not keep: %s%s%s.\n"
               "kusari: write what you want to keep under $KUSARI_OUTPUT_DIR (./outputs) or ./logs.\n",
               count, count == 1 ? "" : "s", names, more, after.truncated ? " (the working tree was not read to its end)" : "");
    sup_note(s, "the entry wrote %zu file(s) outside outputs/ and logs/ (not kept): %s%s", count, names, more);
  }
  wd_list_free(&after);
}

/* ---- preparation inside the job, on the node ------------------------------------ */
/* A target with prepares_on_node (slurm) runs `kusari __prepare RUN_DIR` in
 * the job before the entry, so that the build, the Debian package check and
 * the Python environment happen where the entry runs. Nothing there uses the
 * store: the supervisor writes what preparation needs to RUN_DIR/prepare.json;
 * __prepare writes RUN_DIR/prepare.state,
 *   {"state": "preparing" | "ready" | "failed", "node": H, "error": E, "build_cache": C}
 * (replaced atomically), which the supervisor follows: the run is Preparing
 * while the job runs and the state is not ready, Running once it is, and
 * Failed with E when preparation failed. A requeued job finds "ready" and
 * keeps the working directory (the entry resumes from what it wrote there). */
#define PREP_SPEC "prepare.json"
#define PREP_STATE "prepare.state"

typedef struct prep_state {
  char state[16];     /* "" when there is no state file yet */
  char node[256];
  char error[2048];
  char build_cache[8];
} prep_state;

static void prep_state_read(const char *rd, prep_state *ps) {
  memset(ps, 0, sizeof *ps);
  char p[4700];
  snprintf(p, sizeof p, "%s/" PREP_STATE, rd);
  char *txt = kp_read_file(p, NULL);
  cJSON *j = txt ? cJSON_Parse(txt) : NULL;
  free(txt);
  const char *v;
  if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "state")))) snprintf(ps->state, sizeof ps->state, "%s", v);
  if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "node")))) snprintf(ps->node, sizeof ps->node, "%s", v);
  if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error")))) snprintf(ps->error, sizeof ps->error, "%s", v);
  if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "build_cache"))))
    snprintf(ps->build_cache, sizeof ps->build_cache, "%s", v);
  cJSON_Delete(j);
}

static int prep_state_write(const char *rd, const char *state, const char *node, const char *error, const char *cache) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "state", state);
  cJSON_AddStringToObject(j, "node", node);
  if (error) cJSON_AddStringToObject(j, "error", error);
  if (cache) cJSON_AddStringToObject(j, "build_cache", cache);
  char *txt = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  char p[4700];
  snprintf(p, sizeof p, "%s/" PREP_STATE, rd);
  int rc = txt ? kp_write_file(p, txt, strlen(txt)) : -1;
  free(txt);
  return rc;
}

/* The supervisor's note and record of a preparation on the node that ended well. */
static void prep_ready(sup *s, const prep_state *ps) {
  sup_note(s, "prepared on node %s (build cache: %s)", ps->node, ps->build_cache);
  if (ps->build_cache[0] && kp_store_run_set_build_cache(s->ws.store, s->id, ps->build_cache) != 0) kp_store_report();
}

/* The supervisor's part: an empty working directory (the job's --chdir),
 * the venv path the entry's argv names, and prepare.json. */
static int prep_plan(sup *s, cJSON *env, char *why, size_t whyn) {
  char wd[4600], p[4700];
  snprintf(wd, sizeof wd, "%s/wd", s->rd);
  kp_rm_rf(wd);
  if (kp_mkdirs(wd, 0755) != 0) {
    snprintf(why, whyn, "cannot create the run's working directory %.3000s", wd);
    return -1;
  }
  snprintf(p, sizeof p, "%s/" PREP_STATE, s->rd);
  unlink(p);
  s->venv[0] = '\0';
  if (env && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(env, "pip_packages")) > 0) {
    const char *interp;
    char found[4096], key[65];
    char *ktext = venv_key(env, &interp, found, sizeof found, key, why, whyn);
    if (!ktext) return -1;
    free(ktext);
    snprintf(s->venv, sizeof s->venv, "%s/envs/venv-%s", s->ws.root, key);
  }
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "workspace", s->ws.root);
  cJSON_AddStringToObject(j, "run_id", s->id);
  cJSON_AddStringToObject(j, "snapshot", s->snapshot);
  cJSON_AddStringToObject(j, "env_hash", s->env_hash);
  cJSON_AddStringToObject(j, "entry", s->entry);
  if (s->env_json) cJSON_AddStringToObject(j, "environment", s->env_json);
  cJSON_AddStringToObject(j, "venv", s->venv);
  char *txt = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  snprintf(p, sizeof p, "%s/" PREP_SPEC, s->rd);
  int rc = txt ? kp_write_file(p, txt, strlen(txt)) : -1;
  free(txt);
  if (rc != 0) snprintf(why, whyn, "cannot write %.3000s", p);
  return rc;
}

int kp_cmd_prepare(int argc, char **argv) {
  if (argc != 2 || argv[1][0] != '/') {
    kp_err("__prepare: internal command (run inside a compute target's job), needs the run's directory RUN_DIR");
    return 2;
  }
  sup s;
  memset(&s, 0, sizeof s);
  s.on_node = 1;
  s.unstored_fd = -1;
  snprintf(s.rd, sizeof s.rd, "%s", argv[1]);
  char node[256] = "?", p[4700], why[4096] = "";
  gethostname(node, sizeof node - 1);
  snprintf(p, sizeof p, "%s/" PREP_SPEC, s.rd);
  char *txt = kp_read_file(p, NULL);
  cJSON *spec = txt ? cJSON_Parse(txt) : NULL;
  free(txt);
  const char *ws = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "workspace"));
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "run_id"));
  const char *snap = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "snapshot"));
  const char *eh = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "env_hash"));
  const char *entry = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "entry"));
  const char *envj = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "environment"));
  const char *venv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "venv"));
  if (!ws || !id || !snap || !entry) {
    fprintf(stderr, "kusari: error: %s is missing or not what the run's supervisor writes\n", p);
    cJSON_Delete(spec);
    prep_state_write(s.rd, "failed", node, "the run's preparation file prepare.json is missing or damaged", NULL);
    return 1;
  }
  snprintf(s.ws.root, sizeof s.ws.root, "%s", ws);
  snprintf(s.id, sizeof s.id, "%s", id);
  snprintf(s.snapshot, sizeof s.snapshot, "%s", snap);
  snprintf(s.env_hash, sizeof s.env_hash, "%s", eh ? eh : "");
  snprintf(s.entry, sizeof s.entry, "%s", entry);
  snprintf(s.venv_want, sizeof s.venv_want, "%s", venv ? venv : "");
  cJSON *env = envj ? cJSON_Parse(envj) : NULL;
  cJSON_Delete(spec);
  prep_state ps;
  prep_state_read(s.rd, &ps);
  if (!strcmp(ps.state, "ready")) {
    /* the job was requeued (preempted, a node failed): what the entry wrote
     * in its working directory is its to resume from */
    printf("kusari: the run's environment was prepared before (on %s); the job was requeued: keeping its working "
           "directory\n", ps.node);
    fflush(stdout);
    cJSON_Delete(env);
    return 0;
  }
  /* the notes of preparation go to the supervisor's log, as on a local target */
  int job_err = dup(2);
  char slog[4700];
  snprintf(slog, sizeof slog, "%s/supervisor.log", s.rd);
  int lfd = open(slog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (lfd >= 0) {
    dup2(lfd, 2);
    close(lfd);
  }
  become_subreaper();
  prep_state_write(s.rd, "preparing", node, NULL, NULL);
  sup_note(&s, "preparing on node %s (inside the job)", node);
  char wd[4600];
  snprintf(wd, sizeof wd, "%s/wd", s.rd);
  int rc = prepare(&s, env, why, sizeof why);
  if (rc == 0) rc = entry_check(&s, wd, why, sizeof why);
  cJSON_Delete(env);
  if (rc != 0) {
    prep_state_write(s.rd, "failed", node, why, NULL);
    sup_note(&s, "preparation failed on node %s: %s", node, why);
    dprintf(job_err >= 0 ? job_err : 2, "kusari: run failed while preparing on node %s: %s\n", node, why);
    return 1;
  }
  if (prep_state_write(s.rd, "ready", node, NULL, s.build_cache) != 0) {
    dprintf(job_err >= 0 ? job_err : 2, "kusari: cannot record in %s that the run is prepared\n", s.rd);
    return 1;
  }
  sup_note(&s, "prepared on node %s (build cache: %s%s%s)", node, s.build_cache, s.venv[0] ? "; python environment " : "",
           s.venv);
  if (job_err >= 0) close(job_err);
  return 0;
}

/* Carries run sp->id through its lifecycle; returns the exit status. */
static int supervise_entry(sup *sp, const char *wd, const char *stdlog, char **eargv, char **eenv);
static int supervise(sup *sp, int ready) {
  if (kp_ws_open(&sp->ws) != 0) return 1;
  kp_run_dir(&sp->ws, sp->id, sp->rd, sizeof sp->rd);
  become_subreaper();
  /* register this process, then tell `run submit` we are up */
  int ok = kp_store_run_attach_supervisor(sp->ws.store, sp->id, getpid(), kp_proc_start(getpid())) == 0;
  if (!ok && kp_store_last_error()->code == KP_STORE_EBACKEND) kp_store_report();
  if (!ok || load_run(sp) != 0) return kp_err("__supervise: run %s is not a queued run", sp->id), 1;
  signal(SIGPIPE, SIG_IGN); /* before the write: a submitter that died must not kill us */
  if (write(ready, "ok\n", 3) != 3) { /* submit gave up on us; go on anyway */ }
  close(ready);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

  char logs[4600], stdlog[4700], why[4096] = "";
  snprintf(logs, sizeof logs, "%s/logs", sp->rd);
  snprintf(stdlog, sizeof stdlog, "%s/std_log.txt", logs);
  kp_mkdirs(logs, 0755);

  sup_note(sp, "supervisor %d up; Queued on compute target %s", (int)getpid(), sp->compute);
  int w = wait_for_node(sp);
  if (w == 0) {
    cancel_requested(sp, NULL);  /* loads the reason */
    char msg[700];
    snprintf(msg, sizeof msg, "%s (while queued)", sp->cancel_reason);
    set_status(&sp->ws, sp->id, KP_RUN_CANCELED, 1, INT32_MIN, 0, msg);
    return 0;
  }
  if (w < 0) {
    set_status(&sp->ws, sp->id, KP_RUN_FAILED, 1, INT32_MIN, 0, "the supervisor could not schedule the run");
    return 1;
  }
  /* Preparing */
  sup_note(sp, "took a node; Preparing");
  char chpath[4700];
  snprintf(chpath, sizeof chpath, "%s/channel", sp->rd);
  unlink(chpath);
  sp->unstored_fd = unstored_mark(&sp->ws, sp->id, 1); /* held until this process ends */
  if (ks_run_channel_create(chpath) != KS_OK) {
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, ks_error_last());
    return 1;
  }
  cJSON *env = sp->env_json ? cJSON_Parse(sp->env_json) : NULL;
  /* a target that prepares inside its job: only the plan here */
  sp->on_node = kp_compute_of(&sp->ws, sp->compute)->prepares_on_node;
  int prc = sp->on_node ? prep_plan(sp, env, why, sizeof why) : prepare(sp, env, why, sizeof why);
  if (prc == 0 && !sp->on_node && kp_store_run_set_build_cache(sp->ws.store, sp->id, sp->build_cache) != 0)
    kp_store_report();
  if (prc == -2) {
    finish(sp, KP_RUN_CANCELED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 0;
  }
  if (prc != 0) {
    append_log(stdlog, "kusari: run failed while preparing: %s\n", why);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 1;
  }
  double grace = 10;
  if (cancel_requested(sp, &grace)) {
    snprintf(why, sizeof why, "%s (while preparing)", sp->cancel_reason);
    finish(sp, KP_RUN_CANCELED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 0;
  }
  char wd[4600];
  snprintf(wd, sizeof wd, "%s/wd", sp->rd);
  char **eargv = entry_argv(sp, wd, !sp->on_node, why, sizeof why);
  if (!eargv) {
    append_log(stdlog, "kusari: %s\n", why);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 1;
  }
  char **eenv = entry_env(sp, wd, env);
  cJSON_Delete(env);
  int rc = supervise_entry(sp, wd, stdlog, eargv, eenv);
  free_strv(eargv);
  free_strv(eenv);
  return rc;
}

/* Records each rank's end as the tag KP_TAG_RANKS ("0:exit 0, 1:exit 3"). */
static void record_ranks(sup *sp, const kp_rank_status *ranks, int n) {
  size_t cap = (size_t)n * 40 + 1;
  char *v = calloc(cap, 1);
  if (!v) return;
  for (int r = 0; r < n; r++) {
    char t[64];
    kp_rank_status_text(&ranks[r], t, sizeof t);
    size_t l = strlen(v);
    snprintf(v + l, cap - l, "%s%d:%s", r ? ", " : "", r, t);
  }
  if (kp_store_tag_set(sp->ws.store, sp->id, KP_TAG_RANKS, v) != 0) kp_store_report();
  free(v);
}

/* Runs the entry on the run's compute target and finishes the run; returns
 * the exit status. */
static int supervise_entry(sup *sp, const char *wd, const char *stdlog, char **eargv, char **eenv) {
  char why[4096] = "";
  double grace = 10;
  const kp_compute_ops *target = kp_compute_of(&sp->ws, sp->compute);
  int nranks = sp->nodes * sp->ppn, dist = sp->launcher[0] != '\0';
  /* Running (a target that queues the job: when it says the job runs) */
  if (!target->queues && set_status(&sp->ws, sp->id, KP_RUN_RUNNING, 0, INT32_MIN, 0, NULL) != 0) return 1;
  /* what the working tree holds before the entry runs (on the node: once
   * it is prepared there) */
  wd_list before = {0};
  int scanned = !sp->on_node;
  if (scanned) wd_scan(wd, "", &before);
  long long oom_before = oom_kills();
  char logdir[4600];
  snprintf(logdir, sizeof logdir, "%s/logs", sp->rd);
  char *prep_argv[] = {kp_self_exe, "__prepare", sp->rd, NULL};
  kp_launch l = {.run_id = sp->id, .run_dir = sp->rd, .wd = wd, .log = stdlog, .log_dir = logdir, .argv = eargv,
                 .envp = eenv, .nodes = sp->nodes, .processes_per_node = sp->ppn, .launcher = sp->launcher,
                 .ws_root = sp->ws.root, .compute = sp->compute, .prepare_argv = sp->on_node ? prep_argv : NULL,
                 .memory_limit = sp->memory_limit, .cpus = sp->cpus};
  kp_job *job = NULL;
  int64_t pid = 0;
  uint64_t pstart = 0;
  if (target->launch(&l, &job, &pid, &pstart, why, sizeof why) != 0) {
    wd_list_free(&before);
    append_log(stdlog, "kusari: %s\n", why);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    return 1;
  }
  if (dist)
    sup_note(sp, "Running entry %s on %s as %d ranks (%d node%s x %d) under %s, pid %lld", sp->entry, target->type,
             nranks, sp->nodes, sp->nodes == 1 ? "" : "s", sp->ppn, sp->launcher, (long long)pid);
  else if (pid > 0)
    sup_note(sp, "Running entry %s as pid %lld", sp->entry, (long long)pid);
  const char *lim = target->limits ? target->limits(job) : NULL;
  int rlimit_as = lim && strstr(lim, "RLIMIT_AS") != NULL;
  if (lim) {
    sup_note(sp, "limits: %s", lim);
    append_log(stdlog, "kusari: limits: %s\n", lim);
    if (kp_store_tag_set(sp->ws.store, sp->id, KP_TAG_LIMITS, lim) != 0) kp_store_report();
  }
  const char *ref = target->job_ref ? target->job_ref(job) : NULL;
  if (ref && target->ref_tag) {
    sup_note(sp, "submitted to compute target %s (%s): %s=%s", sp->compute, target->type, target->ref_tag, ref);
    if (kp_store_tag_set(sp->ws.store, sp->id, target->ref_tag, ref) != 0) kp_store_report();
  }
  if (pid > 0 && kp_store_run_attach_entry(sp->ws.store, sp->id, pid, pstart) != 0) kp_store_report();
  int canceled = 0, failed_rank = -1;
  kp_rank_status failed = {0};
  double kill_at = 0;
  kp_job_state st = {.failed_rank = -1};
  /* the run's status follows where a queuing target says the job is */
  int phase = target->queues ? -1 : KP_JOB_RUNNING;
  prep_state ps;
  memset(&ps, 0, sizeof ps);
  for (;;) {
    if (target->poll(job, &st) != 0 || st.ended) break;
    if (sp->on_node && st.phase == KP_JOB_RUNNING) {
      /* the job runs: Preparing until `kusari __prepare` says it is ready */
      if (strcmp(ps.state, "ready") != 0) {
        prep_state_read(sp->rd, &ps);
        if (!strcmp(ps.state, "ready")) {
          prep_ready(sp, &ps);
          if (!scanned) wd_scan(wd, "", &before);
          scanned = 1;
        }
      }
      if (strcmp(ps.state, "ready") != 0) st.phase = KP_JOB_PREPARING;
    }
    if ((int)st.phase != phase) {
      static const kp_run_status of_phase[] = {KP_RUN_RUNNING, KP_RUN_QUEUED, KP_RUN_PREPARING};
      static const char *const phase_name[] = {"Running", "Queued (waiting in the scheduler's queue)",
                                               "Preparing (its nodes are being set up)"};
      phase = (int)st.phase;
      sup_note(sp, "%s", phase_name[phase]);
      set_status(&sp->ws, sp->id, of_phase[phase], 0, INT32_MIN, 0, NULL);
    }
    kp_ingest(&sp->ws, sp->id, 0);
    if (!canceled && failed_rank < 0 && st.failed_rank >= 0) {
      /* one rank failed: the run has failed; stop the others */
      failed_rank = st.failed_rank;
      failed = st.failed;
      char t[64];
      kp_rank_status_text(&failed, t, sizeof t);
      append_log(stdlog, "kusari: rank %d of %d failed (%s): stopping the other ranks (SIGTERM)\n", failed_rank,
                 nranks, t);
      sup_note(sp, "rank %d failed (%s); stopping the others", failed_rank, t);
      target->signal(job, SIGTERM);
      kill_at = kp_now() + 3;
    }
    if (!canceled && failed_rank < 0 && cancel_requested(sp, &grace)) {
      canceled = 1;
      target->signal(job, SIGTERM);
      kill_at = kp_now() + grace;
      append_log(stdlog, "kusari: cancel requested: sent SIGTERM to the run's process%s\n", dist ? "es" : " group");
    }
    if (kill_at > 0 && kp_now() >= kill_at) {
      target->signal(job, SIGKILL);
      kill_at = 0;
      append_log(stdlog, "kusari: grace period over: sent SIGKILL to the run's process%s\n", dist ? "es" : " group");
    }
    for (int i = 0; i < 12 && !g_wake; i++) {
      if (target->poll(job, &st) == 0 && (st.ended || (!canceled && failed_rank < 0 && st.failed_rank >= 0))) break;
      sleep_ms(20);
    }
    g_wake = 0;
  }
  int status = st.wait_status;
  if (sp->on_node && strcmp(ps.state, "ready") != 0) {  /* prepared and ended between two polls */
    prep_state_read(sp->rd, &ps);
    if (!strcmp(ps.state, "ready")) prep_ready(sp, &ps);
  }
  /* a queued job that ran and completed between two polls: it did run */
  if (phase != KP_JOB_RUNNING && st.ended && !canceled && !st.canceled && !st.reason[0])
    set_status(&sp->ws, sp->id, KP_RUN_RUNNING, 0, INT32_MIN, 0, NULL);
  if (failed_rank < 0 && st.failed_rank >= 0 && !canceled) {
    failed_rank = st.failed_rank;
    failed = st.failed;
  }
  kp_rank_status *ranks = dist ? calloc((size_t)nranks, sizeof *ranks) : NULL;
  target->collect(job, ranks, ranks ? nranks : 0);
  if (ranks) record_ranks(sp, ranks, nranks);
  end_descendants(stdlog); /* whatever the entry orphaned outside its group or session */
  if (scanned) report_discarded(sp, wd, &before, stdlog);
  wd_list_free(&before);
  if (canceled) {
    free(ranks);
    return finish(sp, KP_RUN_CANCELED, WIFEXITED(status) ? WEXITSTATUS(status) : INT32_MIN,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, NULL);  /* error = cancel_reason */
  }
  if (st.canceled) {  /* canceled outside kusari (e.g. scancel): the target says how */
    free(ranks);
    return finish(sp, KP_RUN_CANCELED, INT32_MIN, 0, st.reason[0] ? st.reason : "canceled outside kusari");
  }
  if (sp->on_node && !strcmp(ps.state, "failed")) {
    /* preparation on the node failed: its reason, no exit code of the entry */
    free(ranks);
    snprintf(why, sizeof why, "preparing the run on node %.200s failed: %.3000s", ps.node, ps.error);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    return 1;
  }
  if (sp->on_node && !ps.state[0] && WIFEXITED(status) && WEXITSTATUS(status) == 97) {
    /* the batch script's check: the node does not see the workspace */
    free(ranks);
    snprintf(why, sizeof why, "the run's directory %.2000s is not visible on the Slurm node that took the job (exit code "
             "97): nodes must see the workspace at the same path (a shared filesystem); %.1000s; see logs/std_log.txt",
             wd, st.reason[0] ? st.reason : "");
    finish(sp, KP_RUN_FAILED, 97, 0, why);
    return 1;
  }
  if (st.reason[0] && failed_rank < 0) {
    /* the target knows why the job ended (a scheduler's state and reason) */
    free(ranks);
    snprintf(why, sizeof why, "%.3000s; see logs/std_log.txt", st.reason);
    finish(sp, KP_RUN_FAILED, WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : INT32_MIN,
           WIFSIGNALED(status) ? WTERMSIG(status) : 0, why);
    return 0;
  }
  if (dist) {
    int rc = 0;
    if (failed_rank >= 0) {
      char t[64];
      kp_rank_status_text(&failed, t, sizeof t);
      snprintf(why, sizeof why, "rank %d of %d failed: %s%s; the other ranks were stopped; see logs/std_log_rank_%d.txt",
               failed_rank, nranks, failed.signal ? "killed by " : "", t, failed_rank);
      finish(sp, KP_RUN_FAILED, failed.signal ? INT32_MIN : failed.exit_code, failed.signal, why);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      /* every rank must have ended well: a rank without a status did not run */
      int missing = -1;
      for (int r = 0; r < nranks && missing < 0; r++)
        if (!ranks || !ranks[r].known) missing = r;
      if (missing < 0) {
        rc = finish(sp, KP_RUN_COMPLETED, 0, 0, NULL);
      } else {
        snprintf(why, sizeof why, "%.2000s exited with code 0 but rank %d of %d left no exit status; see logs/std_log.txt",
                 sp->launcher, missing, nranks);
        finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
      }
    } else if (WIFEXITED(status)) {
      snprintf(why, sizeof why, "the MPI launcher %.2000s exited with code %d; see logs/std_log.txt", sp->launcher,
               WEXITSTATUS(status));
      finish(sp, KP_RUN_FAILED, WEXITSTATUS(status), 0, why);
    } else {
      int sg = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      snprintf(why, sizeof why, "the MPI launcher was killed by signal %d (%s)", sg, kp_signal_name(sg));
      finish(sp, KP_RUN_FAILED, INT32_MIN, sg, why);
    }
    free(ranks);
    return rc;
  }
  free(ranks);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return finish(sp, KP_RUN_COMPLETED, 0, 0, NULL);
  if (WIFEXITED(status)) {
    char m[32] = "";
    if (rlimit_as) kp_limit_memory_text(sp->memory_limit, m, sizeof m);
    snprintf(why, sizeof why, "the entry exited with code %d%s%s%s; see logs/std_log.txt", WEXITSTATUS(status),
             rlimit_as ? " (it ran with its address space limited to " : "", m,
             rlimit_as ? " by RLIMIT_AS, run submit --memory: an allocation past that fails)" : "");
    finish(sp, KP_RUN_FAILED, WEXITSTATUS(status), 0, why);
  } else {
    int sg = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    long long oom_after = sg == SIGKILL && oom_before >= 0 ? oom_kills() : -1;
    if (sg == SIGKILL && st.oom_killed && sp->memory_limit > 0) {
      char m[32];
      kp_limit_memory_text(sp->memory_limit, m, sizeof m);
      snprintf(why, sizeof why,
               "out of memory (limit %s): the kernel's out-of-memory killer ended the entry (signal 9, SIGKILL) when the "
               "run reached its memory limit (run submit --memory)", m);
      append_log(stdlog, "kusari: %s\n", why);
    } else if (oom_after > oom_before) {
      snprintf(why, sizeof why,
               "the entry ran out of memory: the kernel's out-of-memory killer ended it (signal 9, SIGKILL; it acted "
               "in the run's memory cgroup while the entry ran)");
      append_log(stdlog, "kusari: %s\n", why);
    } else {
      snprintf(why, sizeof why, "the entry was killed by signal %d (%s)", sg, kp_signal_name(sg));
    }
    finish(sp, KP_RUN_FAILED, INT32_MIN, sg, why);
  }
  return 0;
}

int kp_cmd_supervise(int argc, char **argv) {
  if (argc < 3) return kp_err("__supervise: internal command, needs RUN_ID READY_FD"), 2;
  sup s;
  memset(&s, 0, sizeof s);
  s.unstored_fd = -1;
  snprintf(s.id, sizeof s.id, "%s", argv[1]);
  int rc = supervise(&s, atoi(argv[2]));
  if (s.unstored_fd >= 0) close(s.unstored_fd);
  free(s.args_json);
  free(s.env_json);
  kp_ws_close(&s.ws);
  return rc;
}

/* ---- remote runs: forwarding to the tracking server (h-fwd) ------------------------
 * `kusari __forward LOCAL_ID REMOTE_ID READY_FD`, started by `run submit`
 * against a server (run_submit.c, kp_run_submit_remote) in the spool
 * workspace (--workspace), with the server's URL and token in
 * KUSARI_FORWARD_URL and KUSARI_FORWARD_TOKEN. The local run is supervised
 * as any other; this process follows it and sends the server what it has
 * not acknowledged yet: the metrics channel in batches by byte offset (the
 * server applies each offset range once), the log by byte offset, the
 * status, and at the end the run's files, then its end status. What the
 * server acknowledged is only in memory; everything else stays on disk in
 * the spool (the channel is kept past the run's end, see cleanup_run_dir),
 * and a failed request is retried with backoff (0.2 s doubling to 5 s). */
typedef struct fwd {
  kp_ws ws;
  kp_store *srv;
  const char *lid, *rid;
  char rd[4400];
  uint64_t choff, loff;
  int sent_status, canceled;
  double last_beat;
} fwd;

static int fwd_post(fwd *f, const char *method, const char *sub, const void *body, size_t n, const char *ctype, cJSON **out) {
  char path[8800];
  snprintf(path, sizeof path, "runs/%s%s", f->rid, sub);
  cJSON *j = NULL;
  int rc = kp_store_http_send(f->srv, method, path, body, n, ctype, &j);
  if (out) *out = j;
  else cJSON_Delete(j);
  if (rc != 0) kp_err("forward %s %s: %s", method, path, kp_store_last_error()->message);
  return rc;
}

/* the metrics channel from the acknowledged offset: 0 when all of it is sent */
static int fwd_metrics(fwd *f, int final) {
  char ch[4600];
  snprintf(ch, sizeof ch, "%s/channel", f->rd);
  if (access(ch, F_OK) != 0) return 0;
  for (;;) {
    ingest_ctx c = {0};
    uint64_t off = f->choff;
    int r = ks_run_channel_read(ch, &off, final, ingest_record, &c);
    if (c.failed) { ingest_reset(&c); return kp_err("forward: out of memory"); }
    if (r < 0) kp_err("run %s: %s", f->lid, ks_error_last());
    if (off == f->choff) { ingest_reset(&c); return 0; }
    cJSON *b = cJSON_CreateObject(), *pts = cJSON_AddArrayToObject(b, "points"), *tags = cJSON_AddObjectToObject(b, "tags");
    cJSON_AddNumberToObject(b, "from", (double)f->choff);
    cJSON_AddNumberToObject(b, "to", (double)off);
    for (size_t i = 0; i < c.npts; i++) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "name", c.pts[i].name);
      cJSON_AddItemToObject(o, "value", kp_json_metric_exact(c.pts[i].value));
      if (c.pts[i].step >= 0) cJSON_AddNumberToObject(o, "step", (double)c.pts[i].step);
      cJSON_AddItemToObject(o, "timestamp", kp_json_metric_exact(c.pts[i].time));
      cJSON_AddItemToArray(pts, o);
    }
    for (size_t i = 0; i < c.ntags; i++) {
      cJSON_DeleteItemFromObjectCaseSensitive(tags, c.tkeys[i]);
      cJSON_AddStringToObject(tags, c.tkeys[i], c.tvals[i]);
    }
    int full = c.full;
    ingest_reset(&c);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    if (!body) return kp_err("forward: out of memory");
    int rc = fwd_post(f, "POST", "/metrics", body, strlen(body), "application/json", NULL);
    cJSON_free(body);
    if (rc != 0) return -1;
    f->choff = off;
    if (!full || r < 0) return 0;
  }
}

/* the log from the acknowledged offset: 0 when all of it is sent */
static int fwd_log(fwd *f) {
  char p[4700];
  snprintf(p, sizeof p, "%s/logs/std_log.txt", f->rd);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  static char buf[256 * 1024];
  int rc = 0;
  for (;;) {
    ssize_t k = pread(fd, buf, sizeof buf, (off_t)f->loff);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    char sub[64];
    snprintf(sub, sizeof sub, "/logs?offset=%llu", (unsigned long long)f->loff);
    if (fwd_post(f, "POST", sub, buf, (size_t)k, "text/plain", NULL) != 0) { rc = -1; break; }
    f->loff += (uint64_t)k;
  }
  close(fd);
  return rc;
}

/* the run's stored files (outputs, logs), each PUT once more on a retry */
static int fwd_files(fwd *f) {
  kp_stored_file *v;
  size_t n;
  if (kp_store_run_files_list(f->ws.store, f->lid, NULL, &v, &n) != 0) return kp_store_report();
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    size_t len = 0;
    char *data = kp_blob_read(&f->ws, v[i].sha256, &len);
    if (!data && v[i].size > 0) { rc = kp_err("forward: cannot read the blob of %s", v[i].path); break; }
    char sub[8400] = "/files/";
    size_t at = strlen(sub);
    for (const unsigned char *q = (const unsigned char *)v[i].path; *q && at + 4 < sizeof sub; q++) {
      int plain = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || strchr("/._-~", *q);
      at += (size_t)snprintf(sub + at, sizeof sub - at, plain ? "%c" : "%%%02X", *q);
    }
    rc = fwd_post(f, "PUT", sub, data ? data : "", data ? len : 0, "application/octet-stream", NULL);
    free(data);
  }
  kp_stored_files_free(v, n);
  return rc;
}

/* a status report (or a heartbeat: status NULL); carries out a cancel the server asks for */
static int fwd_status(fwd *f, const kp_run *r, int final) {
  cJSON *b = cJSON_CreateObject();
  if (final || (int)r->status != f->sent_status) {
    cJSON_AddStringToObject(b, "status", kp_run_status_name(r->status));
    if (final && r->error) cJSON_AddStringToObject(b, "error", r->error);
    if (final && r->has_exit_code) cJSON_AddNumberToObject(b, "exit_code", r->exit_code);
  }
  char *body = cJSON_PrintUnformatted(b);
  cJSON_Delete(b);
  cJSON *ans = NULL;
  int rc = body ? fwd_post(f, "POST", "/status", body, strlen(body), "application/json", &ans) : -1;
  cJSON_free(body);
  if (rc != 0) return -1;
  f->sent_status = (int)r->status;
  f->last_beat = kp_now();
  const cJSON *cr = cJSON_GetObjectItemCaseSensitive(ans, "cancel_requested");
  if (!final && cJSON_IsTrue(cr) && !f->canceled) {
    const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ans, "cancel_reason"));
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(ans, "cancel_grace");
    if (kp_run_cancel(&f->ws, f->lid, cJSON_IsNumber(g) ? g->valuedouble : 10.0, why) == 0) f->canceled = 1;
  }
  cJSON_Delete(ans);
  return 0;
}

int kp_cmd_forward(int argc, char **argv) {
  if (argc != 4) return kp_err("usage: kusari __forward LOCAL_RUN REMOTE_RUN READY_FD (started by run submit)"), 2;
  fwd f = {.lid = argv[1], .rid = argv[2], .sent_status = -1};
  int ready = atoi(argv[3]);
  const char *url = getenv("KUSARI_FORWARD_URL"), *tok = getenv("KUSARI_FORWARD_TOKEN");
  if (!url || kp_ws_open(&f.ws) != 0 || kp_store_http_open(url, tok, &f.srv) != 0)
    return kp_err("__forward: cannot open the spool workspace or the server's store"), 1;
  kp_run_dir(&f.ws, f.lid, f.rd, sizeof f.rd);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  if (write(ready, "ok\n", 3) != 3) { /* submit gave up on us; go on anyway */ }
  close(ready);
  double backoff = 0.2, t_end = 0;
  for (;;) {
    kp_run r;
    if (kp_store_run_get(f.ws.store, f.lid, &r) != 0) {
      kp_store_report();
      sleep_ms(1000);
      continue;
    }
    int ended = kp_run_status_ended(r.status), ok = 1;
    if (ended && t_end == 0) t_end = kp_now();
    if (fwd_metrics(&f, ended) != 0) ok = 0;
    if (ok && fwd_log(&f) != 0) ok = 0;
    if (ok && !ended && ((int)r.status != f.sent_status || kp_now() - f.last_beat > 5.0) && fwd_status(&f, &r, 0) != 0) ok = 0;
    int done = 0;
    if (ok && ended && fwd_files(&f) == 0 && fwd_status(&f, &r, 1) == 0) done = 1;
    kp_run_free(&r);
    if (done) break;
    if (ended && kp_now() - t_end > 7 * 86400.0) {
      kp_err("forward: the server did not take run %s's end for 7 days; giving up (the spool keeps it)", f.rid);
      return 1;
    }
    if (ok && !ended) backoff = 0.2;
    else if (!ok) backoff = backoff * 2 > 5.0 ? 5.0 : backoff * 2;
    sleep_ms((int)((ok ? 0.3 : backoff) * 1000));
  }
  char ch[4600];
  snprintf(ch, sizeof ch, "%s/channel", f.rd);
  unlink(ch);
  kp_store_close(f.srv);
  kp_ws_close(&f.ws);
  return 0;
}
