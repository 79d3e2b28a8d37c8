/* interrupt.c - SIGINT/SIGTERM: first one requests a stop, second one exits at once (interrupt.h). */
#include "hermes/interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    if (got_signal) {
        static const char msg[] = "\nhermes-llm: second signal, exiting now\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    got_signal = sig;
}

void hm_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool hm_interrupt_requested(void)
{
    return got_signal != 0;
}

void hm_interrupt_reset(void)
{
    got_signal = 0;
}
