/*
 * launch.c - the `--num-gpus N` launcher (launch.h): fork/exec N workers, pipe each one the
 * secret, relay their stderr with a "[rank r] " prefix, reap them, and on the first failure stop
 * the rest (SIGTERM, SIGKILL after the grace period) so the command never hangs on a peer stuck
 * in a collective. Everything a child does between fork and exec is async-signal-safe: argv,
 * environments and messages are built before fork (the parent may have NCCL or OpenMP threads).
 * Workers die with the launcher (PR_SET_PDEATHSIG), so killing it cannot leave orphans.
 */
#include "hermes/launch.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LINE_MAX_BYTES 4096
#define ERROR_PREFIX "hermes-llm: error: "

struct worker {
    pid_t pid;
    int err_fd;         /* read end of its stderr pipe; -1 at EOF */
    int secret_fd;      /* read end of its secret pipe (the child's HM_LAUNCH_FD); -1 if none */
    bool running;
    int status;         /* exit code, or 128 + signal */
    char **envp;
    char line[LINE_MAX_BYTES];
    size_t line_len;
    char last_error[512];
};

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
    got_term = sig;
}

/* Our environment without the variables we set, plus `extra` (NULL-terminated). */
static char **make_env(char **extra, bool drop_cuda)
{
    static const char *const ours[] = {"HM_RANK=", "HM_WORLD_SIZE=", "HM_LOCAL_RANK=", "HM_LAUNCH_FD="};
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    while (extra[k])
        k++;
    char **env = hm_calloc(n + k + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        bool drop = drop_cuda && strncmp(environ[i], "CUDA_VISIBLE_DEVICES=", 21) == 0;
        for (size_t o = 0; o < HM_ARRAY_LEN(ours); o++)
            drop = drop || strncmp(environ[i], ours[o], strlen(ours[o])) == 0;
        if (!drop)
            env[j++] = environ[i];
    }
    for (size_t i = 0; i < k; i++)
        env[j++] = extra[i];
    return env;
}

/* Entry r of a comma-separated CUDA_VISIBLE_DEVICES, or r itself when it is unset. */
static void cuda_device_for(int r, char *out, size_t cap)
{
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (!v || !*v) {
        snprintf(out, cap, "%d", r);
        return;
    }
    for (int i = 0; i < r && v; i++) {
        v = strchr(v, ',');
        if (v)
            v++;
    }
    if (!v) { /* fewer entries than workers: the CUDA device check reports it in the worker */
        snprintf(out, cap, "%d", r);
        return;
    }
    size_t len = strcspn(v, ",");
    snprintf(out, cap, "%.*s", (int)len, v);
}

/* Print one relayed line and remember it when it is an error line. */
static void emit_line(struct worker *w, int rank, const char *s, size_t len)
{
    fprintf(stderr, "[rank %d] %.*s\n", rank, (int)len, s);
    size_t pl = strlen(ERROR_PREFIX);
    if (len >= pl && memcmp(s, ERROR_PREFIX, pl) == 0)
        snprintf(w->last_error, sizeof w->last_error, "%.*s", (int)(len - pl), s + pl);
}

/* Read what is available on a worker's stderr; false at EOF. */
static bool relay(struct worker *w, int rank)
{
    char buf[4096];
    ssize_t n = read(w->err_fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) {
        if (w->line_len)
            emit_line(w, rank, w->line, w->line_len);
        w->line_len = 0;
        return false;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n' || c == '\r' || w->line_len == sizeof w->line) {
            if (w->line_len || c == '\n')
                emit_line(w, rank, w->line, w->line_len);
            w->line_len = 0;
            if (c == '\n' || c == '\r')
                continue;
        }
        w->line[w->line_len++] = c;
    }
    fflush(stderr);
    return true;
}

static void signal_all(struct worker *w, int n, int sig)
{
    for (int r = 0; r < n; r++)
        if (w[r].running)
            kill(w[r].pid, sig);
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0)
            close(p[i]);
}

/* Start worker r: pipes, its environment (which names the secret pipe's fd), fork, exec. Only
 * async-signal-safe calls between fork and exec. */
static enum hm_status spawn(const struct hm_launch_opts *o, struct worker *w, int r, int null_fd,
                            char vars[5][64])
{
    int errp[2] = {-1, -1}, secp[2] = {-1, -1};
    if (pipe2(errp, O_CLOEXEC) != 0 || (o->secret && pipe2(secp, O_CLOEXEC) != 0)) {
        int e = errno;
        close_pair(errp);
        return hm_fail(HM_ERR_IO, "launcher: pipe: %s", strerror(e));
    }
    char *extra[6] = {0};
    int k = 0;
    snprintf(vars[0], 64, "HM_RANK=%d", r);
    snprintf(vars[1], 64, "HM_WORLD_SIZE=%d", o->n_workers);
    snprintf(vars[2], 64, "HM_LOCAL_RANK=%d", r);
    extra[k++] = vars[0];
    extra[k++] = vars[1];
    extra[k++] = vars[2];
    if (o->set_cuda_devices) {
        char dev[32];
        cuda_device_for(r, dev, sizeof dev);
        snprintf(vars[3], 64, "CUDA_VISIBLE_DEVICES=%s", dev);
        extra[k++] = vars[3];
    }
    if (o->secret) {
        snprintf(vars[4], 64, "HM_LAUNCH_FD=%d", secp[0]);
        extra[k++] = vars[4];
    }
    if (!(w->envp = make_env(extra, o->set_cuda_devices))) {
        close_pair(errp);
        close_pair(secp);
        return hm_fail(HM_ERR_NOMEM, "launcher: out of memory");
    }
    static const char exec_failed[] = ERROR_PREFIX "launcher: cannot execute the worker program\n";
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close_pair(errp);
        close_pair(secp);
        return hm_fail(HM_ERR_IO, "launcher: fork: %s", strerror(e));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(errp[1], 2) < 0)
            _exit(127);
        if (r != 0 && dup2(null_fd, 0) < 0)
            _exit(127);
        if (secp[0] >= 0 && fcntl(secp[0], F_SETFD, 0) != 0) /* the one fd the worker inherits */
            _exit(127);
        execve(o->exe, o->argv, w->envp);
        ssize_t wr = write(2, exec_failed, sizeof exec_failed - 1);
        (void)wr;
        _exit(127);
    }
    close(errp[1]);
    w->pid = pid;
    w->running = true;
    w->err_fd = errp[0];
    if (o->secret) {
        close(secp[0]);
        /* A pipe holds 64 KiB, so this never blocks; a worker that died first gives EPIPE and
         * is reported when it is reaped. */
        ssize_t wr = write(secp[1], o->secret, o->secret_bytes);
        (void)wr;
        close(secp[1]);
    }
    return HM_OK;
}

struct hm_launch_opts hm_launch_opts_default(void)
{
    return (struct hm_launch_opts){.n_workers = 1, .exe = "/proc/self/exe", .grace_s = 5.0};
}

enum hm_status hm_launch(const struct hm_launch_opts *o, struct hm_launch_result *res)
{
    if (o->n_workers < 1 || !o->exe || !o->argv || o->secret_bytes > 4096)
        return hm_fail(HM_ERR_USAGE, "launch: need a worker, an executable, its argv and a secret "
                       "of at most 4096 bytes");
    int n = o->n_workers;
    double grace = o->grace_s > 0 ? o->grace_s : 5.0;
    memset(res, 0, sizeof *res);
    res->failed_rank = -1;
    struct worker *w = hm_calloc((size_t)n, sizeof *w);
    char(*vars)[5][64] = hm_calloc((size_t)n, sizeof *vars);
    struct pollfd *pfd = hm_calloc((size_t)n, sizeof *pfd);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!w || !vars || !pfd || null_fd < 0) {
        hm_free(w);
        hm_free(vars);
        hm_free(pfd);
        if (null_fd >= 0)
            close(null_fd);
        return hm_fail(HM_ERR_NOMEM, "launcher: out of memory");
    }
    struct sigaction sa, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    got_term = 0;
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);

    enum hm_status st = HM_OK;
    int started = 0;
    for (int r = 0; r < n; r++)
        w[r].err_fd = -1;
    for (int r = 0; r < n; r++) {
        if ((st = spawn(o, &w[r], r, null_fd, vars[r])) != HM_OK)
            break;
        started++;
    }
    if (st != HM_OK) {
        signal_all(w, started, SIGKILL);
        for (int r = 0; r < started; r++)
            waitpid(w[r].pid, NULL, 0);
        goto out;
    }

    int running = n;
    double kill_at = 0;
    bool killed = false;
    for (;;) {
        int np = 0;
        for (int r = 0; r < n; r++)
            if (w[r].err_fd >= 0) {
                pfd[np].fd = w[r].err_fd;
                pfd[np].events = POLLIN;
                pfd[np].revents = 0;
                np++;
            }
        if (running == 0 && np == 0)
            break;
        int pr = poll(pfd, (nfds_t)np, 100);
        if (pr > 0) {
            for (int i = 0; i < np; i++) {
                if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                for (int r = 0; r < n; r++)
                    if (w[r].err_fd == pfd[i].fd && !relay(&w[r], r)) {
                        close(w[r].err_fd);
                        w[r].err_fd = -1;
                    }
            }
        }
        for (int r = 0; r < n; r++) {
            if (!w[r].running)
                continue;
            int ws;
            pid_t p = waitpid(w[r].pid, &ws, WNOHANG);
            if (p != w[r].pid)
                continue;
            w[r].running = false;
            running--;
            w[r].status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            if (w[r].status != 0 && res->failed_rank < 0 && !got_term) {
                res->failed_rank = r;
                kill_at = hm_time_s() + grace;
                signal_all(w, n, SIGTERM);
            }
        }
        if (got_term && kill_at == 0) { /* forward a SIGTERM sent to us, once */
            signal_all(w, n, SIGTERM);
            kill_at = hm_time_s() + grace;
        }
        if (kill_at > 0 && !killed && running > 0 && hm_time_s() >= kill_at) {
            signal_all(w, n, SIGKILL);
            killed = true;
        }
        /* A worker's own children could keep its stderr open: stop reading once all are reaped
         * and the pipes have been quiet for a poll period. */
        if (running == 0 && pr == 0)
            for (int r = 0; r < n; r++)
                if (w[r].err_fd >= 0) {
                    close(w[r].err_fd);
                    w[r].err_fd = -1;
                }
    }
    if (res->failed_rank >= 0) {
        struct worker *f = &w[res->failed_rank];
        res->exit_code = f->status;
        snprintf(res->error, sizeof res->error, "%s", f->last_error);
        char how[64];
        if (f->status > 128)
            snprintf(how, sizeof how, "was killed by signal %d", f->status - 128);
        else
            snprintf(how, sizeof how, "exited with status %d", f->status);
        st = hm_fail(f->status == 130 ? HM_ERR_INTERRUPTED : HM_ERR_DEVICE, "rank %d %s: %s",
                     res->failed_rank, how, f->last_error[0] ? f->last_error : "(no error message)");
    } else if (got_term) {
        st = hm_fail(HM_ERR_INTERRUPTED, "launcher: stopped by SIGTERM");
    }
out:
    for (int r = 0; r < n; r++) {
        if (w[r].err_fd >= 0)
            close(w[r].err_fd);
        hm_free(w[r].envp);
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    close(null_fd);
    hm_free(w);
    hm_free(vars);
    hm_free(pfd);
    return st;
}

bool hm_launch_is_worker(int *rank, int *world)
{
    const char *r = getenv("HM_RANK"), *n = getenv("HM_WORLD_SIZE");
    if (!r || !n)
        return false;
    char *e1, *e2;
    long rv = strtol(r, &e1, 10), nv = strtol(n, &e2, 10);
    if (*e1 || *e2 || nv < 1 || rv < 0 || rv >= nv)
        return false;
    *rank = (int)rv;
    *world = (int)nv;
    return true;
}

enum hm_status hm_launch_read_secret(void *buf, size_t bytes)
{
    const char *v = getenv("HM_LAUNCH_FD");
    char *end;
    long fd = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || fd < 0)
        return hm_fail(HM_ERR_IO, "worker: HM_LAUNCH_FD is not set; start workers with --num-gpus");
    size_t got = 0;
    while (got < bytes) {
        ssize_t k = read((int)fd, (char *)buf + got, bytes - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close((int)fd);
    if (got != bytes)
        return hm_fail(HM_ERR_IO, "worker: read %zu of the launcher's %zu id bytes from fd %ld", got,
                       bytes, fd);
    return HM_OK;
}
