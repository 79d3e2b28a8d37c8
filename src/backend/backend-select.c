/*
 * backend-select.c - turn a --device string into a backend: "cpu", "cuda" or "cuda:N". Parsing is
 * strict (no atoi, no silent clamping); creating a CUDA backend in a CPU-only build or on a machine
 * without a GPU fails with HM_ERR_UNSUPPORTED and a message saying why (hm_backend_cuda_new).
 */
#include "hermes/backend.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static enum hm_status bad_spec(const char *spec)
{
    return hm_fail(HM_ERR_USAGE, "device '%s': expected cpu, cuda or cuda:N (N a GPU index)",
                   spec ? spec : "(null)");
}

enum hm_status hm_device_parse(const char *spec, struct hm_device_spec *out)
{
    if (!spec)
        return bad_spec(spec);
    if (strcmp(spec, "cpu") == 0) {
        *out = (struct hm_device_spec){HM_DEVICE_CPU, 0};
        return HM_OK;
    }
    if (strncmp(spec, "cuda", 4) != 0)
        return bad_spec(spec);
    const char *p = spec + 4;
    if (*p == '\0') {
        *out = (struct hm_device_spec){HM_DEVICE_CUDA, 0};
        return HM_OK;
    }
    if (*p != ':' || p[1] < '0' || p[1] > '9') /* no sign, no space, no empty index */
        return bad_spec(spec);
    char *end = NULL;
    errno = 0;
    long v = strtol(p + 1, &end, 10);
    if (errno || *end != '\0' || v > INT_MAX)
        return bad_spec(spec);
    *out = (struct hm_device_spec){HM_DEVICE_CUDA, (int)v};
    return HM_OK;
}

enum hm_status hm_backend_new_from_string(const char *spec, struct hm_backend **out)
{
    struct hm_device_spec d;
    enum hm_status st = hm_device_parse(spec, &d);
    if (st != HM_OK)
        return st;
    if (d.kind == HM_DEVICE_CPU)
        return hm_backend_cpu_new(out);
    return hm_backend_cuda_new(d.index, out);
}
