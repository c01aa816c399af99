/*
 * platform/server_api.h — internal to the tracking server: what server.c
 * (HTTP, auth, long polls) and server_api.c (the /api/v1 routes) share.
 */
#ifndef KUSARI_PLATFORM_SERVER_API_H
#define KUSARI_PLATFORM_SERVER_API_H

#include "kp.h"

#include <microhttpd.h>

struct cJSON;

/* One request (libmicrohttpd's connection context). */
typedef struct srv_req {
  char *body;           /* NUL-terminated; NULL when none */
  size_t n, cap;
  int too_big;
  unsigned refuse;      /* 431, 414, 417, 413: answered at the request's end */
  size_t head_n, head_lines;
  size_t expect;        /* Content-Length */
  double t0;
  int authorized;       /* the token was checked */
  /* long polls */
  double wait_until;    /* monotonic time; 0 until the route sets it */
  struct MHD_Connection *conn;
  struct srv_req *next;
} srv_req;

#define SRV_MAX_SEGS 64

/* A matched route: its handler, its path's segments after /api/v1/. */
typedef struct srv_route {
  int index;            /* in the route table */
  int write;            /* needs a read-write token */
  char allow[64];       /* the methods the path takes (405) */
  char buf[4200];
  char *seg[SRV_MAX_SEGS];
  int nseg;
  const char *rest;     /* what a trailing ** matched ("a/b/c"), else NULL */
} srv_route;

/* Matches url + method against the API's routes: 0 (rt filled), 404 (no
 * such path) or 405 (rt->allow set). */
unsigned srv_match(const char *url, const char *method, srv_route *rt);
enum MHD_Result srv_dispatch(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st);

/* server.c */
double srv_mono(void);
void srv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const kp_ws *srv_ws(void);
kp_store *srv_store(void);
int srv_stopping(void);
/* Suspends the connection until the next tick (its handler runs again);
 * -1 when the server is stopping (answer now). */
int srv_suspend(struct MHD_Connection *c, srv_req *r);
/* A stream (server-sent events) is exempt from the whole-request deadline
 * (its connection's idle timeout still applies). */
void srv_stream(struct MHD_Connection *c);
/* Takes ownership of body (malloc'ed). */
enum MHD_Result srv_send(struct MHD_Connection *c, unsigned code, char *body, size_t len, const char *ctype);
/* Sends and deletes o. */
enum MHD_Result srv_json(struct MHD_Connection *c, unsigned code, struct cJSON *o);
enum MHD_Result srv_error(struct MHD_Connection *c, unsigned code, const char *ecode, const char *fmt, ...)
  __attribute__((format(printf, 4, 5)));
/* The thread's store error with its status (404, 409, 400, 503). */
enum MHD_Result srv_store_error(struct MHD_Connection *c);

#endif
