/*
 * rng.c - xoshiro256** seeded through splitmix64. Chosen because its state is four words that a
 * checkpoint can save and restore exactly, and it is identical on every platform.
 */
#include "util.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void hm_rng_seed(struct hm_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t hm_rng_u64(struct hm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double hm_rng_uniform(struct hm_rng *r)
{
    return (double)(hm_rng_u64(r) >> 11) * 0x1.0p-53;
}

float hm_rng_normal(struct hm_rng *r)
{
    double u1 = hm_rng_uniform(r), u2 = hm_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t hm_rng_below(struct hm_rng *r, uint64_t n)
{
    /* Lemire-free simple rejection: exact and deterministic. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = hm_rng_u64(r);
    while (x >= lim);
    return x % n;
}
