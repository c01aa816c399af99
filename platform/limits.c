/*
 * platform/limits.c — parsing and text of a run's resource limits (limits.h).
 */
#include "limits.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kp_limit_memory_parse(const char *s, int64_t *bytes, char *why, size_t whyn) {
  const char *must = "must be a size such as 512M or 2G (K, M, G, T: powers of 1024), from 4M to 1024T";
  *bytes = 0;
  if (!s || !*s || !(isdigit((unsigned char)s[0]) || s[0] == '.')) {
    snprintf(why, whyn, "%s", must);
    return -1;
  }
  char *end;
  double v = strtod(s, &end);
  double mul = 1;
  switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0, end++; break;
    case 'M': mul = 1048576.0, end++; break;
    case 'G': mul = 1073741824.0, end++; break;
    case 'T': mul = 1099511627776.0, end++; break;
    default: break;
  }
  if (mul > 1 && (*end == 'i' || *end == 'I') && (end[1] == 'B' || end[1] == 'b')) end += 2;
  else if (*end == 'B' || *end == 'b') end++;
  if (*end || !isfinite(v) || v < 0 || strchr(s, 'e') || strchr(s, 'E') || strchr(s, 'x') || strchr(s, 'X')) {
    snprintf(why, whyn, "%s", must);
    return -1;
  }
  double b = floor(v * mul);
  if (b < (double)KP_MEMORY_MIN || b > (double)KP_MEMORY_MAX) {
    snprintf(why, whyn, "%s", must);
    return -1;
  }
  *bytes = (int64_t)b;
  return 0;
}

int kp_limit_cpus_parse(const char *s, double *cpus, char *why, size_t whyn) {
  *cpus = 0;
  char *end = NULL;
  double v = s && *s && (isdigit((unsigned char)s[0]) || s[0] == '.') ? strtod(s, &end) : NAN;
  if (!end || *end || !isfinite(v) || v < 0.01 || v > KP_CPUS_MAX || strchr(s, 'e') || strchr(s, 'E') ||
      strchr(s, 'x') || strchr(s, 'X')) {
    snprintf(why, whyn, "must be a number of processors such as 1, 2 or 0.5, from 0.01 to %g", KP_CPUS_MAX);
    return -1;
  }
  *cpus = v;
  return 0;
}

void kp_limit_memory_text(int64_t bytes, char *out, size_t n) {
  static const char units[] = "KMGT";
  int u = -1;
  while (u < 3 && bytes > 0 && bytes % 1024 == 0) bytes /= 1024, u++;
  if (u < 0) snprintf(out, n, "%lld", (long long)bytes);
  else snprintf(out, n, "%lld%c", (long long)bytes, units[u]);
}
