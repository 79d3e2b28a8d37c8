/*
 * interrupt.h - graceful stop on SIGINT/SIGTERM for long work. The first signal sets a flag that
 * the trainer polls between steps (it finishes the step, saves, and returns HM_ERR_INTERRUPTED);
 * a second signal exits at once with status 130.
 */
#ifndef HERMES_INTERRUPT_H
#define HERMES_INTERRUPT_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

HM_API void hm_interrupt_install(void);
HM_API bool hm_interrupt_requested(void);
HM_API void hm_interrupt_reset(void);

#ifdef __cplusplus
}
#endif
#endif
