/*
 * platform/server_web.c — the web UI's static files (docs/UI.md), served by
 * `kusari server` at every path outside /api/: `/` is index.html, other
 * paths are files of the web root (--web-root, else the installed
 * share/kusari/web next to the program, else the source tree's web/), and
 * `/vendor/chart.js` is Chart.js (--chartjs, else Debian's libjs-chart.js).
 *
 * The files hold no data (the pages read everything through /api/v1 with
 * the user's token), so they need no token. A path with an empty, `.` or
 * `..` part (also %2e%2e, decoded before this sees it) or a backslash is
 * refused with 400 before anything is opened, and the file found must lie
 * under the web root once its links are resolved.
 */
#include "server_web.h"
#include "server_api.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KUSARI_WEB_SOURCE_DIR
#define KUSARI_WEB_SOURCE_DIR ""
#endif
#define DEBIAN_CHARTJS "/usr/share/javascript/chart.js/chart.min.js"

static char web_root[PATH_MAX];    /* resolved; "" when none was found */
static char chartjs[PATH_MAX];     /* resolved; "" when none was found */

static int has_index(const char *dir, char *out) {
  char p[PATH_MAX * 2];
  snprintf(p, sizeof p, "%s/index.html", dir);
  if (access(p, R_OK) != 0) return 0;
  return realpath(dir, out) != NULL;
}

int srv_web_setup(const char *root, const char *chart) {
  web_root[0] = chartjs[0] = '\0';
  if (root) {
    if (!has_index(root, web_root)) {
      kp_err("--web-root '%s' has no index.html", root);
      kp_hint("give the folder of kusari's web UI (share/kusari/web of the installation, or web/ of the sources)");
      return -1;
    }
  } else {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = '\0';
      char *sl = strrchr(exe, '/');
      if (sl) {
        *sl = '\0';
        char cand[PATH_MAX + 32];
        snprintf(cand, sizeof cand, "%s/../share/kusari/web", exe);
        has_index(cand, web_root);
      }
    }
    if (!web_root[0] && KUSARI_WEB_SOURCE_DIR[0]) has_index(KUSARI_WEB_SOURCE_DIR, web_root);
  }
  const char *cj = chart ? chart : DEBIAN_CHARTJS;
  if (!realpath(cj, chartjs) || access(chartjs, R_OK) != 0) {
    chartjs[0] = '\0';
    if (chart) {
      kp_err("--chartjs '%s' is not a readable file", chart);
      kp_hint("give Chart.js's UMD build (Debian: apt-get install libjs-chart.js, " DEBIAN_CHARTJS ")");
      return -1;
    }
  }
  return 0;
}

const char *srv_web_root(void) { return web_root; }
const char *srv_web_chartjs(void) { return chartjs; }

int srv_web_wants(const char *url) { return strncmp(url, "/api/", 5) != 0 && strcmp(url, "/api") != 0; }

static const char *content_type(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot) return "application/octet-stream";
  if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
  if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
  if (!strcmp(dot, ".svg")) return "image/svg+xml";
  if (!strcmp(dot, ".png")) return "image/png";
  if (!strcmp(dot, ".ico")) return "image/x-icon";
  if (!strcmp(dot, ".json")) return "application/json";
  return "application/octet-stream";
}

/* 1 when every part of 'rel' (after the leading '/') names something plain */
static int clean_path(const char *rel) {
  if (!*rel) return 0;
  for (const char *p = rel;;) {
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.')) return 0;
    for (size_t i = 0; i < l; i++)
      if (p[i] == '\\' || (unsigned char)p[i] < 0x20 || p[i] == 0x7f) return 0;
    if (!e) return 1;
    p = e + 1;
  }
}

static enum MHD_Result send_fd(struct MHD_Connection *c, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    if (fd >= 0) close(fd);
    return srv_error(c, 404, "not_found", "no such file of the web UI");
  }
  struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
  if (!resp) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(path));
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  /* no inline script and nothing from elsewhere: a name holding markup cannot run */
  MHD_add_response_header(resp, "Content-Security-Policy",
                          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                          "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
  enum MHD_Result rc = MHD_queue_response(c, 200, resp);
  MHD_destroy_response(resp);
  return rc;
}

enum MHD_Result srv_web(struct MHD_Connection *c, const char *url, const char *method) {
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return srv_error(c, 405, "method_not_allowed", "the web UI's files take GET only");
  const char *rel = url[0] == '/' ? url + 1 : url;
  if (!*rel) rel = "index.html";
  if (!clean_path(rel))
    return srv_error(c, 400, "invalid", "path '%.300s' has an empty, '.' or '..' part; it names no file of the web UI", url);
  if (!strcmp(rel, "vendor/chart.js")) {
    if (!chartjs[0])
      return srv_error(c, 404, "not_found",
                       "Chart.js was not found (apt-get install libjs-chart.js, or start the server with --chartjs FILE)");
    return send_fd(c, chartjs);
  }
  if (!web_root[0])
    return srv_error(c, 404, "not_found",
                     "the web UI's files were not found next to the program nor in the sources; start the server with --web-root DIR");
  char p[PATH_MAX * 2], real[PATH_MAX];
  snprintf(p, sizeof p, "%s/%s", web_root, rel);
  size_t rl = strlen(web_root);
  if (!realpath(p, real)) return srv_error(c, 404, "not_found", "no such file of the web UI: '%.300s'", url);
  if (strncmp(real, web_root, rl) != 0 || real[rl] != '/')
    return srv_error(c, 400, "invalid", "path '%.300s' leads out of the web UI's folder", url);
  return send_fd(c, real);
}
