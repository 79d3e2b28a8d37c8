/*
 * library-usage.c - what the original README's "Library Usage" section shows, through the public
 * C API alone (include/hermes/): make a config from a preset and inspect it. The tests build and
 * run this program, so it cannot go stale; it grows as the library does.
 */
#include <hermes/config.h>
#include <hermes/hermes.h>

#include <stdio.h>

int main(void)
{
    struct hm_model_config cfg;
    if (hm_config_preset("nano", &cfg) != HM_OK) {
        fprintf(stderr, "error: %s\n", hm_last_error());
        return 1;
    }
    printf("hermes %s: preset %s, %llu parameters, head_dim %d\n", hm_version(), cfg.name,
           (unsigned long long)hm_config_param_count(&cfg), hm_config_head_dim(&cfg));
    return 0;
}
