/*
 * platform/cmd_server.c — `kusari server`: the tracking server in the
 * foreground (server.c), and `kusari server token create|list|revoke`, its
 * API tokens (docs/SERVER.md).
 */
#include "server.h"
#include "views.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int kp_cmd_server(int argc, char **argv);

#define DEFAULT_PORT 8470
#define DEFAULT_WORKERS 4
#define DEFAULT_MAX_BODY (16ll * 1024 * 1024)
#define DEFAULT_TIMEOUT 60

static const char server_help[] =
  "usage: kusari server [--host H] [--port P] [--workers N] [--no-auth]\n"
  "                     [--max-body BYTES] [--timeout S]\n"
  "       kusari server token create NAME [--read-only]\n"
  "       kusari server token list [--json]\n"
  "       kusari server token revoke NAME\n"
  "\n"
  "Serves the workspace over HTTP: the JSON API under /api/v1 (experiments,\n"
  "runs, metrics, logs, files, tags, models, compute targets), described in\n"
  "docs/openapi.json and docs/SERVER.md. Runs in the foreground until SIGTERM\n"
  "or SIGINT (Ctrl-C). The first line it prints is its URL.\n"
  "\n"
  "Every request needs 'Authorization: Bearer TOKEN' with a token made by\n"
  "'kusari server token create' (read-only tokens may only read), unless\n"
  "--no-auth is given, which is allowed on a loopback host only.\n"
  "\n"
  "options:\n"
  "  --host H          IPv4 address to listen on (default 127.0.0.1; 0.0.0.0: all)\n"
  "  --port P          port (default 8470; 0: a free one, printed)\n"
  "  --workers N       worker threads, each with its own store connection (default 4)\n"
  "  --no-auth         no tokens needed (loopback hosts only)\n"
  "  --max-body BYTES  largest request body (default 16777216); larger: 413\n"
  "  --timeout S       seconds a connection may stay idle (default 60)\n"
  "\n"
  "Example:\n"
  "  kusari server token create ci            # prints the secret once\n"
  "  kusari server --port 8470 &\n"
  "  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8470/api/v1/runs\n";

static const char token_help[] =
  "usage: kusari server token create NAME [--read-only]\n"
  "       kusari server token list [--json]\n"
  "       kusari server token revoke NAME\n"
  "\n"
  "API tokens of the tracking server. The store keeps only each secret's\n"
  "sha256: the secret is printed once, by create.\n";

static int token_create(int argc, char **argv) {
  const char *cmd = "server token create", *pos[1];
  int np = 0, ro = 0;
  kp_opt opts[] = {{.name = "read-only", .flag = &ro}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the token's NAME");
  if (kp_name_ok(pos[0]) != 0)
    return kp_usage_err(cmd, "'%s' is not a valid token name: letters, digits, '.', '_', '-' (up to 128, starting "
                        "with a letter or digit)", pos[0]);
  unsigned char raw[32];
  size_t got = 0;
  while (got < sizeof raw) {
    ssize_t k = getrandom(raw + got, sizeof raw - got, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return kp_err("cannot read random bytes for the token: %s", strerror(errno)), 1;
    got += (size_t)k;
  }
  char secret[4 + 2 * sizeof raw + 1];
  memcpy(secret, "kst_", 4);
  for (size_t i = 0; i < sizeof raw; i++) snprintf(secret + 4 + 2 * i, 3, "%02x", raw[i]);
  char hex[65];
  kp_sha256_hex(secret, strlen(secret), hex);
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = kp_store_token_create(ws.store, pos[0], hex, ro);
  if (rc != 0) {
    if (kp_store_last_error()->code == KP_STORE_EEXISTS) {
      kp_err("a token named '%s' exists already", pos[0]);
      kp_hint("choose another name, or revoke it first: kusari server token revoke %s", pos[0]);
    } else {
      kp_store_report();
    }
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  fprintf(stderr, "token '%s' (%s) created; its secret is shown only now:\n", pos[0], ro ? "read-only" : "read-write");
  printf("%s\n", secret);
  return 0;
}

static int token_list(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("server token list", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_token *v;
  size_t n;
  if (kp_store_token_list(ws.store, &v, &n) != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, kp_view_token(&v[i]));
  kp_tokens_free(v, n);
  if (json) {
    char *t = cJSON_Print(arr);
    puts(t);
    cJSON_free(t);
  } else {
    printf("%-28s %-10s %-24s %s\n", "NAME", "SCOPE", "CREATED", "LAST USED");
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
      const char *lu = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "last_used"));
      printf("%-28s %-10s %-24s %s\n", cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring,
             cJSON_GetObjectItemCaseSensitive(o, "scope")->valuestring,
             cJSON_GetObjectItemCaseSensitive(o, "created")->valuestring, lu ? lu : "never");
    }
  }
  cJSON_Delete(arr);
  return 0;
}

static int token_revoke(int argc, char **argv) {
  const char *cmd = "server token revoke", *pos[1];
  int np = 0;
  if (kp_parse(cmd, argc, argv, NULL, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the token's NAME");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (kp_store_token_revoke(ws.store, pos[0]) != 0) {
    if (kp_store_last_error()->code == KP_STORE_ENOTFOUND) {
      kp_err("no token named '%s'", pos[0]);
      kp_hint("see the tokens with 'kusari server token list'");
    } else {
      kp_store_report();
    }
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  printf("token '%s' revoked\n", pos[0]);
  return 0;
}

static const kp_cmd token_cmds[] = {
  {"create", token_create, "create a token (prints its secret once)",
   "usage: kusari server token create NAME [--read-only]\n\n"
   "Creates an API token and prints its secret (once: the store keeps only its\n"
   "sha256). --read-only: the token may only read (GET); writes answer 403.\n"},
  {"list", token_list, "list the tokens (never their secrets)",
   "usage: kusari server token list [--json]\n\nLists the tokens: name, scope, created, last used.\n"},
  {"revoke", token_revoke, "revoke a token (requests with it answer 401)",
   "usage: kusari server token revoke NAME\n\nRevokes the token: requests with it answer 401 from now on.\n"},
  {NULL, NULL, NULL, NULL},
};

/* 1 for an IPv4 loopback address (127.0.0.0/8) */
static int loopback(const char *host) {
  struct in_addr a;
  if (inet_pton(AF_INET, host, &a) != 1) return 0;
  return (ntohl(a.s_addr) >> 24) == 127;
}

static int serve(int argc, char **argv) {
  const char *cmd = "server";
  const char *host = "127.0.0.1", *port = NULL, *workers = NULL, *max_body = NULL, *timeout = NULL;
  int no_auth = 0;
  kp_opt opts[] = {{.name = "host", .val = &host},         {.name = "port", .val = &port},
                   {.name = "workers", .val = &workers},   {.name = "no-auth", .flag = &no_auth},
                   {.name = "max-body", .val = &max_body}, {.name = "timeout", .val = &timeout},
                   {0}};
  const char *pos[1];
  int np = 0;
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np) return kp_usage_err(cmd, "unexpected argument '%s' (the subcommand is 'token')", pos[0]);
  kp_server_opts o = {.host = host, .port = DEFAULT_PORT, .workers = DEFAULT_WORKERS, .no_auth = no_auth,
                      .max_body = (size_t)DEFAULT_MAX_BODY, .timeout = DEFAULT_TIMEOUT};
  long long v;
  if (port) {
    if (kp_parse_int(port, &v) != 0 || v < 0 || v > 65535) return kp_usage_err(cmd, "--port must be 0 to 65535");
    o.port = (int)v;
  }
  if (workers) {
    if (kp_parse_int(workers, &v) != 0 || v < 1 || v > 256) return kp_usage_err(cmd, "--workers must be 1 to 256");
    o.workers = (int)v;
  }
  if (max_body) {
    if (kp_parse_int(max_body, &v) != 0 || v < 1024 || v > (1ll << 32))
      return kp_usage_err(cmd, "--max-body must be 1024 to 4294967296 bytes");
    o.max_body = (size_t)v;
  }
  if (timeout) {
    if (kp_parse_int(timeout, &v) != 0 || v < 1 || v > 3600) return kp_usage_err(cmd, "--timeout must be 1 to 3600 seconds");
    o.timeout = (int)v;
  }
  struct in_addr a;
  if (inet_pton(AF_INET, host, &a) != 1) {
    kp_err("--host '%s' is not an IPv4 address", host);
    kp_hint("use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)");
    return 2;
  }
  if (no_auth && !loopback(host)) {
    kp_err("--no-auth is refused on %s: anyone who reaches it could read and change the workspace", host);
    kp_hint("use --no-auth only with a loopback --host (127.0.0.1), or create a token: kusari server token create NAME");
    return 2;
  }
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (!no_auth) {
    kp_token *t;
    size_t n;
    if (kp_store_token_list(ws.store, &t, &n) == 0) {
      if (n == 0)
        fprintf(stderr, "kusari: warning: the workspace has no tokens: every request will answer 401\n"
                        "  hint: create one with 'kusari server token create NAME'\n");
      kp_tokens_free(t, n);
    }
  }
  int rc = kp_server_serve(&ws, &o);
  kp_ws_close(&ws);
  return rc;
}

int kp_cmd_server(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "token")) return kp_dispatch("server token", token_help, token_cmds, argc - 1, argv + 1);
  if (kp_wants_help(argc, argv)) {
    fputs(server_help, stdout);
    return 0;
  }
  return serve(argc, argv);
}
