/*
 * platform/kp.h — internal header of the kusari program (not installed).
 *
 * The program is a table of commands (main.c); each cmd_<name>.c implements
 * one command group. Shared pieces: the workspace store (store.c: SQLite +
 * migrations), the blob store (blob.c), snapshots (snapshot.c), the run
 * supervisor (supervisor.c), compute targets (compute.h: compute_local.c)
 * and small helpers (util.c).
 *
 * Convention: kp_* helpers return 0 on success and -1 on failure after
 * printing "kusari: error: ..." (what was wrong and what to do) to stderr.
 * Command functions return the process exit status.
 */
#ifndef KUSARI_PLATFORM_KP_H
#define KUSARI_PLATFORM_KP_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* the schema version of the workspace store (store_sqlite.c migrates to it) */
#define KP_SCHEMA_VERSION kp_store_sqlite_schema_version()

/* ---- command table ------------------------------------------------------ */
typedef struct kp_cmd {
  const char *name;
  int (*fn)(int argc, char **argv);  /* argv[0] is the command's name */
  const char *summary;               /* one line, shown in the parent's help */
  const char *usage;                 /* full help text, printed by --help */
} kp_cmd;

/* Dispatches argv[1] among 'cmds' (NULL-terminated); prints 'group's help on
 * --help, no subcommand or an unknown one. */
int kp_dispatch(const char *group, const char *group_help, const kp_cmd *cmds, int argc, char **argv);
/* 1 when argv (before a "--") asks for help. */
int kp_wants_help(int argc, char **argv);

int kp_cmd_workspace(int argc, char **argv);
int kp_cmd_compute(int argc, char **argv);
int kp_cmd_experiment(int argc, char **argv);
int kp_cmd_run(int argc, char **argv);
int kp_cmd_log(int argc, char **argv);
int kp_cmd_model(int argc, char **argv);
int kp_cmd_supervise(int argc, char **argv);
/* `kusari __prepare RUN_DIR`: a run's preparation inside its job, on the node
 * (targets with prepares_on_node; supervisor.c). */
int kp_cmd_prepare(int argc, char **argv);

/* ---- errors -------------------------------------------------------------- */
/* Prints "kusari: error: <msg>" to stderr; returns -1. */
int kp_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The message of this thread's last kp_err (for a server relaying it). */
const char *kp_err_last(void);
/* Prints "  hint: <msg>" to stderr (after kp_err). */
void kp_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints an error about a bad command line and a pointer to --help; returns 2. */
int kp_usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- workspace store ------------------------------------------------------ */
typedef struct kp_ws {
  char root[4096];   /* absolute path of the workspace directory */
  kp_store *store;   /* its store (store.h): what every module should use */
  char store_uri[1024];  /* config.json's "store" (postgresql://...), or ""
                          * for the workspace's own kusari.db (SQLite) */
  /* how kp_ws_open found it: "flag" (--workspace), "env" (KUSARI_WORKSPACE),
   * "directory" (the current directory or a parent is the workspace),
   * "pointer" (a .kusari/config.json, path in 'via'), "default", "create" */
  const char *selected_by;
  char via[4200];
  /* a tracking server (KUSARI_TRACKING_URI or 'workspace connect'): its URL,
   * "" for a local workspace; root is then "" and only the commands that
   * need no workspace files work (store.c: REMOTE_OK) */
  char remote[1024];
  char remote_token_name[256];  /* the token's name as 'workspace connect' recorded it, or "" */
} kp_ws;

/* The command being run ("run list", ...), set by kp_dispatch. */
extern char kp_command[256];
/* The user's tracking-server connection ('workspace connect'):
 * $XDG_CONFIG_HOME/kusari/tracking.json (~/.config/...), 0600. */
int kp_tracking_config_path(char *out, size_t n);

/* Global --workspace (set by main before dispatch; may be NULL). */
extern const char *kp_opt_workspace;
/* Path of the kusari executable (for supervisors and the run's PATH). */
extern char kp_self_exe[4096];

/* Finds the workspace (--workspace, KUSARI_TRACKING_URI (a tracking server:
 * ws->remote, the http store), KUSARI_WORKSPACE, the user's 'workspace
 * connect', then from the current directory up: a workspace's config.json or
 * a .kusari/config.json pointer; else the default one, created on first use)
 * and opens its store, migrating it to KP_SCHEMA_VERSION. URLs as workspace
 * directories are refused. Against a server, commands outside store.c's
 * REMOTE_OK fail here, naming the command and the server. */
int kp_ws_open(kp_ws *ws);
/* Creates (or opens, if it is one already) a workspace at 'dir': the
 * directory 0700, config.json and kusari.db 0600, whatever the umask. */
int kp_ws_create(kp_ws *ws, const char *dir, const char *name);
/* The same with its store in the PostgreSQL database 'store' (a
 * postgresql:// URI, recorded in config.json; NULL: kusari.db). An existing
 * workspace must have that store already. Blobs, run directories and
 * snapshots stay in 'dir' either way. */
int kp_ws_create_store(kp_ws *ws, const char *dir, const char *name, const char *store);
/* Writes DIR/.kusari/config.json naming workspace 'root' (see
 * docs/PLATFORM.md, "Selecting a workspace"); 'old' gets the workspace it
 * named before, or "". */
int kp_ws_select(const char *dir, const char *root, char *old, size_t oldn);
/* 1 if 's' looks like a URL (scheme://...). */
int kp_is_url(const char *s);
void kp_ws_close(kp_ws *ws);
/* Path of the default workspace (under $XDG_DATA_HOME or ~/.local/share). */
int kp_default_ws_dir(char *out, size_t n);

/* Prints the calling thread's store error (kp_store_last_error) as
 * "kusari: error: ..." and counts a backend failure in kp_store_errors;
 * returns -1. */
int kp_store_report(void);

/* Store errors seen by this process (kp_store_report); main() turns a
 * command's success into exit 1 when there were any, so output cut short by
 * a store error never looks complete. */
extern int kp_store_errors;

/* ---- blob store (sha256-named, deduplicated) ------------------------------ */
/* Stores the file 'path' (read from disk), writes its hex digest to 'hex'. */
int kp_blob_put_file(kp_ws *ws, const char *path, char hex[65], int64_t *size);
/* Same from an open file (read from its current offset; not closed); path
 * names it in messages. */
int kp_blob_put_fd(kp_ws *ws, int fd, const char *path, char hex[65], int64_t *size);
/* Stores 'len' bytes. */
int kp_blob_put_mem(kp_ws *ws, const void *data, size_t len, char hex[65]);
/* Path of blob 'hex' in the store. */
void kp_blob_path(const kp_ws *ws, const char *hex, char *out, size_t n);
/* Copies blob 'hex' to a new file 'dst' with 'mode' (refuses to write through
 * a symlink at 'dst'). */
int kp_blob_get(const kp_ws *ws, const char *hex, const char *dst, mode_t mode);
/* Reads a whole blob into a new NUL-terminated buffer (free() it). */
char *kp_blob_read(const kp_ws *ws, const char *hex, size_t *len);

/* ---- snapshots ------------------------------------------------------------- */
/* Snapshots directory 'src' into the blob store, honouring .kusariignore (or
 * .amlignore / .gitignore) and a size limit in bytes; the snapshot id is the
 * digest of its manifest blob. */
int kp_snapshot_create(kp_ws *ws, const char *src, uint64_t limit, char hex[65], uint64_t *bytes, int *nfiles);
/* The walk of kp_snapshot_create with the files' bytes handed to 'put'
 * (which stores them somewhere: a tracking server) and the manifest's text
 * in *manifest (cJSON_free it); 'skip' a directory left out, or NULL. */
typedef int (*kp_snapshot_put)(void *ctx, const char *path, char hex[65], int64_t *size);
int kp_snapshot_walk(const char *src, uint64_t limit, const char *skip, kp_snapshot_put put, void *put_ctx,
                     char **manifest, uint64_t *bytes, int *nfiles);
/* Writes snapshot 'hex' into directory 'dst' (created). */
int kp_snapshot_extract(kp_ws *ws, const char *hex, const char *dst);

/* ---- sweeps (cmd_sweep.c) ---------------------------------------------------- */
/* `sweep submit` for a tracking server (POST /sweeps): sweep file 'text'
 * whose source is snapshot 'snap' (a manifest blob already checked, 'bytes'
 * in all) recorded and its controller started on this machine, with
 * 'src_label' as its run.source. 0 (id set), 2 (the file is refused), 1 (it
 * failed); the message is kp_err_last(). */
int kp_sweep_submit_uploaded(kp_ws *ws, const char *text, const char *src_label, const char *snap, uint64_t bytes,
                             char *id, size_t idn);

/* ---- util ------------------------------------------------------------------ */
double kp_now(void);
/* mkdir -p */
int kp_mkdirs(const char *path, mode_t mode);
/* rm -rf (does not follow symlinks) */
int kp_rm_rf(const char *path);
/* cp -a of a directory tree (regular files, dirs; symlinks copied as links). */
int kp_copy_tree(const char *src, const char *dst);
int kp_copy_file(const char *src, const char *dst, mode_t mode);
/* 0 when 'rel' is a safe relative path: not absolute, no empty/"."/".." parts. */
int kp_rel_path_ok(const char *rel);
/* 0 when 'name' is a valid object name: [A-Za-z0-9][A-Za-z0-9._-]{0,127}. */
int kp_name_ok(const char *name);
/* Reads a whole file (NUL-terminated, free() it); NULL on failure (errno). */
char *kp_read_file(const char *path, size_t *len);
int kp_write_file(const char *path, const char *data, size_t len);
/* sha256 of a buffer as hex. */
void kp_sha256_hex(const void *data, size_t len, char hex[65]);
/* Models (cmd_model.c; the tracking server's POST /models/{name}/versions
 * too): the files of run 'run' under 'prefix' (a file or a folder of its
 * files) as a model version's, named without the prefix's folders
 * (outputs/model.npz -> model.npz), and for a single .npz the model.json
 * beside it (*with_desc 1). kp_stored_files_free. -1 with the thread's store
 * error: ENOTFOUND "run R has no file or folder 'P' to register", or the
 * store's. */
int kp_model_run_files(kp_store *st, const char *run, const char *prefix, kp_stored_file **out, size_t *n,
                       int *with_desc);
/* Finds program 'name' like a shell: a name with a '/' is taken as a path
 * (made absolute from the current directory), else the first executable
 * regular file 'name' in the directories of $PATH. Symbolic links are not
 * resolved (a virtual environment's python3 is one). Returns 0 or -1. */
int kp_which(const char *name, char *out, size_t n);
/* Process start time (clock ticks since boot) of 'pid', 0 if gone/zombie. */
uint64_t kp_proc_start(pid_t pid);
/* 1 when 'pid' is alive and its start time is 'start'. */
int kp_proc_alive(pid_t pid, uint64_t start);
/* Formats a unix time as ISO-8601 UTC ("" for 0). */
void kp_fmt_time(double t, char *out, size_t n);
/* A metric value as JSON: a number, or the string "NaN", "Infinity" or
 * "-Infinity" (every --json output writes non-finite values this way). */
struct cJSON *kp_json_metric(double v);
/* The same, but a finite value is written with as many digits as it needs to
 * read back exactly (cJSON's own printer stops at 15 when they are close): for
 * series that clients compare or store again (GET .../metrics/NAME). Not a
 * cJSON number item (cJSON_IsNumber is false): only for output. */
struct cJSON *kp_json_metric_exact(double v);
/* The text form of such a value (or of none: "-"): %.6g, nan, inf, -inf. */
void kp_fmt_metric(const struct cJSON *v, char *out, size_t n);
/* Formats a duration in seconds as "1h02m03s". */
void kp_fmt_dur(double s, char *out, size_t n);

/* ---- runs ------------------------------------------------------------------ */
/* Terminal status? */
int kp_status_terminal(const char *status);
/* Reconciles runs whose supervisor died: ingests their remaining metrics,
 * kills their orphaned entry and marks them Failed. */
int kp_reconcile(kp_ws *ws);
/* Moves new records from run 'id's channel into the store (exactly once). */
int kp_ingest(kp_ws *ws, const char *run_id, int final);
/* Directory of run 'id' in the workspace. */
void kp_run_dir(const kp_ws *ws, const char *id, char *out, size_t n);
/* Default snapshot size limit in bytes (Azure's is 300 MB too). */
#define KP_SNAPSHOT_LIMIT (300ull * 1000000ull)

/* What to submit. Strings are borrowed for the call. */
typedef struct kp_submit {
  const char *experiment;          /* created on first use */
  const char *source;              /* directory to snapshot (default ".") */
  const char *snapshot;            /* or: reuse this snapshot id (sweeps); source is then only recorded */
  const char *entry;               /* relative path of the program in the working tree */
  const char *compute;             /* NULL: the only target there is */
  const char *env_json;            /* canonical environment JSON (kp_env_load) or NULL */
  const char *parent_id;           /* parent run (sweeps) or NULL */
  const char *const *args;         /* arguments after "--" */
  int nargs;
  const char *const *tags;         /* "key=value" */
  int ntags;
  uint64_t snapshot_limit;         /* bytes; 0 = KP_SNAPSHOT_LIMIT */
  /* a distributed run (both 0: a plain run): nodes x processes_per_node
   * ranks under an MPI launcher ('launcher': a path or a name on the PATH;
   * NULL: $KUSARI_MPIRUN, else mpirun) */
  int nodes, processes_per_node;
  const char *launcher;
  const char *const *params;       /* "NAME=VALUE" (kp_param_ok): recorded, and KUSARI_PARAM_NAME for the entry */
  int nparams;
  /* optional limits (limits.h; local targets only): bytes, processors; 0 = none */
  int64_t memory_limit;
  double cpus;
} kp_submit;

typedef struct kp_submitted {
  char id[300];
  char compute[256];
  char snapshot[65];
  uint64_t bytes;
  int nfiles;
} kp_submitted;

/* Records a Queued run and starts its supervisor (run_submit.c). Nothing is
 * recorded when validation or the snapshot fails. Returns 0 or -1 (printed). */
int kp_run_submit(kp_ws *ws, const kp_submit *sub, kp_submitted *out);
/* 0 when 'kv' is a run param "NAME=VALUE": NAME 1-250 letters, digits and
 * '_', not starting with a digit (it names an environment variable), VALUE at
 * most 4096 bytes; -1 when not. */
int kp_param_ok(const char *kv);
/* Asks run 'id' to stop (SIGTERM, SIGKILL after 'grace' s); 'reason' (NULL =
 * "canceled by the user") becomes its error text. Does not wait. */
int kp_run_cancel(kp_ws *ws, const char *id, double grace, const char *reason);
/* Reads and validates an environment file; returns canonical JSON (free()). */
char *kp_env_load(const char *path);
/* Completes environment 'env_json' (NULL: none) at submit for 'entry': a .py
 * entry, or an environment with pip_packages, gets "interpreter" as an
 * absolute path: the environment's own (a path, or a name looked up on this
 * process's PATH), else python3 from this process's PATH, so the run uses the
 * Python its submitter had. Sets *out to the canonical JSON to record (free();
 * NULL when there is no environment). Returns 0, or -1 (printed). */
int kp_env_resolve(const char *env_json, const char *entry, char **out);

/* Migration to schema 5 (cmd_service.c; the migration hook of store 's',
 * whose ws->store is not set yet): moves the services' keys from the store
 * into services/NAME/keys (0600), leaving their sha256 in the store. */
int kp_service_keys_migrate(kp_ws *ws, kp_store *s);

/* Stores the files under dir/sub/ as run files named "sub/..." */
int kp_store_tree(kp_ws *ws, const char *run_id, const char *dir, const char *prefix);

/* ---- option parsing -------------------------------------------------------- */
/* One option: "--name VALUE" / "--name=VALUE" when 'val' is set (a repeated
 * option fills 'multi' up to KP_MULTI_MAX values), "--name" sets *flag = 1.
 * 'alias' is an optional short form ("-e"). */
#define KP_MULTI_MAX 64
typedef struct kp_opt {
  const char *name;
  const char *alias;
  const char **val;
  int *flag;
  const char **multi;
  int *nmulti;
} kp_opt;
/* Parses argv[1..]: options from 'opts' (NULL-name-terminated) and up to
 * 'maxpos' positionals into 'pos'. A "--" ends parsing; *rest gets the index
 * after it (argc when absent). Errors print and return 2. */
int kp_parse(const char *cmd, int argc, char **argv, const kp_opt *opts, const char **pos, int *npos, int maxpos,
             int *rest);
/* Parses a decimal integer; 0 on success. */
int kp_parse_int(const char *s, long long *out);

/* ---- detached daemons ------------------------------------------------------ */
/* Starts 'argv' (argv[0] is the program's path) as a detached daemon: fork,
 * setsid, fork again (so it is no child of the caller and has no terminal),
 * stdin from /dev/null, stdout and stderr appended to 'log'. The daemon gets
 * the write end of a pipe: the argument equal to KP_DAEMON_FD is replaced by
 * that descriptor's number. 'setenv_kv' (NULL, or NULL-terminated "NAME=VALUE"
 * strings) is added to the daemon's environment. Waits until the daemon writes
 * a line (or closes the pipe, or 'timeout_s' passes; <= 0: no limit) and puts
 * the line without its newline in 'reply'. Returns 0 when a line came, -1
 * otherwise (nothing printed: the caller says what did not start, and where
 * its log is). Every descriptor it opened is closed on every path. */
#define KP_DAEMON_FD "{ready-fd}"
int kp_daemon_start(char *const argv[], const char *log, const char *const *setenv_kv, double timeout_s, char *reply,
                    size_t n);

/* A remote run (created by POST /api/v1/runs, run by a client node's
 * supervisor): every report of its node sets the heartbeat tag (seconds since
 * the epoch); reconciliation ends it Failed when the node has not reported
 * for KP_REMOTE_STALE seconds (docs/SERVER.md, Remote runs). */
#define KP_TAG_REMOTE_BEAT "kusari.remote_heartbeat"
#define KP_TAG_REMOTE_NODE "kusari.remote_node"
#define KP_REMOTE_STALE 120.0
/* a workspace with this file in its root is a client node's spool: its
 * runs' metric channels stay until the forwarder removes them */
#define KP_SPOOL_MARK "spool-of-remote-runs"
int kp_cmd_forward(int argc, char **argv);
/* run submit against a tracking server: the run is created there and runs
 * here, in the spool workspace, forwarded by `kusari __forward` */
int kp_run_submit_remote(kp_ws *ws, const kp_submit *sub, kp_submitted *out);

#endif
