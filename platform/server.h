/*
 * platform/server.h — the tracking server (`kusari server`, docs/SERVER.md):
 * the workspace's store over HTTP, the /api/v1 JSON API of docs/openapi.json.
 */
#ifndef KUSARI_PLATFORM_SERVER_H
#define KUSARI_PLATFORM_SERVER_H

#include "kp.h"

#include <stddef.h>

typedef struct kp_server_opts {
  const char *host;  /* an IPv4 address */
  int port;          /* 0: a free one */
  int workers;       /* libmicrohttpd's thread pool */
  int no_auth;       /* loopback hosts only (checked by the caller) */
  size_t max_body;   /* bytes of a request body */
  int timeout;       /* seconds a connection may be idle */
} kp_server_opts;

/* Serves workspace 'ws' until SIGTERM or SIGINT; prints the URL as the first
 * line of stdout once listening. Returns the process exit status. */
int kp_server_serve(kp_ws *ws, const kp_server_opts *o);

/* Longest long-poll (wait, logs ?wait=) in seconds. */
#define KP_SERVER_MAX_WAIT 600

#endif
