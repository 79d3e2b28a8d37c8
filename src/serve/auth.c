/*
 * auth.c - the bearer key (serve.h). The comparison runs over the whole expected key whatever the
 * header holds, so its time says nothing about how many leading bytes a guess got right.
 */
#include "serve.h"

#include <string.h>
#include <strings.h>

bool hm_serve_auth_ok(const char *key, const char *header)
{
    static const char scheme[] = "Bearer ";
    if (!header || strncasecmp(header, scheme, sizeof scheme - 1) != 0)
        return false;
    const volatile unsigned char *given = (const unsigned char *)header + sizeof scheme - 1;
    size_t n_key = strlen(key), n_given = strlen((const char *)given);
    unsigned diff = n_key != n_given;
    for (size_t i = 0; i < n_key; i++)
        diff |= (unsigned)(key[i] ^ (i < n_given ? given[i] : 0));
    return diff == 0;
}
