/*
 * platform/server_web.h — the web UI's static files served by `kusari
 * server` (server_web.c, docs/UI.md).
 */
#ifndef KUSARI_PLATFORM_SERVER_WEB_H
#define KUSARI_PLATFORM_SERVER_WEB_H

#include <microhttpd.h>

/* Finds the web root (web_root, else share/kusari/web next to the program,
 * else the source tree's web/) and Chart.js (chart, else Debian's path).
 * -1 (message printed) when a given one is not usable; a missing default is
 * not an error (its paths answer 404 with a hint). */
int srv_web_setup(const char *web_root, const char *chart);
const char *srv_web_root(void);     /* "" when none */
const char *srv_web_chartjs(void);  /* "" when none */
/* 1 when the URL is the UI's (everything but /api/...) */
int srv_web_wants(const char *url);
enum MHD_Result srv_web(struct MHD_Connection *c, const char *url, const char *method);

#endif
