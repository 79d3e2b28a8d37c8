/* float-text.c - floats written for people: the shortest decimal that reads back exactly. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

double hm_float_shortest(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) { /* 9 significant digits always round-trip a float */
        snprintf(buf, sizeof buf, "%.*g", prec, f);
        if ((float)strtod(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}
