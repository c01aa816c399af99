/*
 * platform/env_file.c — the run environment file (run submit --env, a sweep
 * file's run.environment): read, checked field by field, and turned into
 * the canonical JSON that the run records. On its own (it needs only cJSON
 * and util.c) so that fuzz/fuzz_env.c runs this very parser.
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    } else if (!strcmp(k, "interpreter")) {
      ok = cJSON_IsString(it) && *it->valuestring && !strpbrk(it->valuestring, "\n\r");
    } else if (!strcmp(k, "system_site_packages")) {
      ok = cJSON_IsBool(it);
    } else if (!strcmp(k, "pip_packages") || !strcmp(k, "pip_options")) {
      ok = cJSON_IsArray(it);
      const cJSON *p;
      int is_pkg = !strcmp(k, "pip_packages");
      cJSON_ArrayForEach(p, it) {
        const char *n = cJSON_GetStringValue(p);
        int bad = !n || !*n || strpbrk(n, "\n\r") != NULL || (is_pkg && n[0] == '-');
        if (bad) {
          if (is_pkg)
            kp_err("environment file '%s': pip_packages: '%s' is not a package (a requirement such as \"numpy\" or "
                   "\"numpy>=1.24\", or a path to a wheel)", path, n ? n : "(not a string)");
          else
            kp_err("environment file '%s': pip_options: '%s' is not an option (strings such as \"--no-index\")", path,
                   n ? n : "(not a string)");
          kp_hint("options for pip (--no-index, --find-links DIR, --index-url URL) go in pip_options");
          cJSON_Delete(j);
          return NULL;
        }
      }
    } else if (!strcmp(k, "variables")) {
      ok = cJSON_IsObject(it);
      const cJSON *v;
      /* (an array's items have no names: only an object's are looked at) */
      if (ok) cJSON_ArrayForEach(v, it) if (!cJSON_IsString(v) || !*v->string || strchr(v->string, '=')) ok = 0;
    } else {
      kp_err("environment file '%s': unknown field '%s'", path, k);
      kp_hint("the fields are name, debian_packages, build, variables, interpreter, pip_packages, pip_options, "
              "system_site_packages");
      cJSON_Delete(j);
      return NULL;
    }
    if (!ok) {
      kp_err("environment file '%s': field '%s' has the wrong type", path, k);
      kp_hint("name, build and interpreter are strings, debian_packages, pip_packages and pip_options arrays of "
              "strings, variables an object of strings, system_site_packages true or false");
      cJSON_Delete(j);
      return NULL;
    }
  }
  char *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return out;
}
