/*
 * convert.c - element formats of the exporters: checkpoint tensors (F32, BF16, F16) widened to
 * f32, and f32 narrowed to f16, bf16 or ggml's q8_0 blocks. Widening is exact, so a tensor read
 * and written back in its own dtype keeps every bit.
 */
#include "export-impl.h"

#include "hermes/tensor.h"

#include <math.h>
#include <string.h>

uint16_t hm_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) /* Inf, or NaN made quiet (as F16C does) */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* a half subnormal, or zero below 2^-25 */
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* Round to nearest even; a carry out of the mantissa bumps the exponent (to Inf at the top). */
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

void hm_quantize_q8_0(const float *x, size_t n, uint8_t *out)
{
    for (size_t b = 0; b < n / HM_Q8_0_BLOCK; b++, x += HM_Q8_0_BLOCK, out += HM_Q8_0_BYTES) {
        float amax = 0.0f;
        for (int j = 0; j < HM_Q8_0_BLOCK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f; /* ggml: amax / ((1 << 7) - 1), inverse in f32 */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = hm_f32_to_f16(d);
        out[0] = (uint8_t)dh;
        out[1] = (uint8_t)(dh >> 8);
        for (int j = 0; j < HM_Q8_0_BLOCK; j++)
            out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

void hm_dequantize_q8_0(const uint8_t *q, size_t n, float *out)
{
    for (size_t b = 0; b < n / HM_Q8_0_BLOCK; b++, q += HM_Q8_0_BYTES, out += HM_Q8_0_BLOCK) {
        const float d = hm_f32_from_f16((uint16_t)(q[0] | q[1] << 8));
        for (int j = 0; j < HM_Q8_0_BLOCK; j++)
            out[j] = (float)(int8_t)q[2 + j] * d;
    }
}

void hm_export_read_f32(const struct hm_st_tensor *t, size_t first, size_t n, float *dst)
{
    const uint8_t *src = (const uint8_t *)t->data + first * hm_st_dtype_size(t->dtype);
    HM_ASSERT(first + n <= t->numel);
    if (t->dtype == HM_ST_F32) {
        memcpy(dst, src, n * 4); /* possibly unaligned in the mapping */
        return;
    }
    HM_ASSERT(t->dtype == HM_ST_BF16 || t->dtype == HM_ST_F16);
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = t->dtype == HM_ST_BF16 ? hm_bf16_to_f32(h) : hm_f32_from_f16(h);
    }
}

size_t hm_export_row_bytes(enum hm_export_dtype dt, size_t n)
{
    switch (dt) {
    case HM_EXPORT_F32:
        return 4 * n;
    case HM_EXPORT_F16:
    case HM_EXPORT_BF16:
        return 2 * n;
    case HM_EXPORT_Q8_0:
        return n / HM_Q8_0_BLOCK * HM_Q8_0_BYTES;
    }
    return 0;
}

void hm_export_encode(enum hm_export_dtype dt, const float *x, size_t n, void *out)
{
    uint8_t *o = out;
    switch (dt) {
    case HM_EXPORT_F32:
        memcpy(o, x, 4 * n);
        break;
    case HM_EXPORT_F16:
    case HM_EXPORT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dt == HM_EXPORT_F16 ? hm_f32_to_f16(x[i]) : hm_f32_to_bf16(x[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    case HM_EXPORT_Q8_0:
        hm_quantize_q8_0(x, n, o);
        break;
    }
}

static const char *const dtype_names[] = {"f32", "f16", "bf16", "q8_0"};

const char *hm_export_dtype_name(enum hm_export_dtype dt)
{
    return (unsigned)dt < HM_ARRAY_LEN(dtype_names) ? dtype_names[dt] : "?";
}

enum hm_status hm_export_dtype_parse(const char *name, enum hm_export_dtype *out)
{
    for (size_t i = 0; i < HM_ARRAY_LEN(dtype_names); i++)
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (enum hm_export_dtype)i;
            return HM_OK;
        }
    return hm_fail(HM_ERR_USAGE, "unsupported dtype '%s' (f32, f16, bf16 or q8_0)", name);
}
