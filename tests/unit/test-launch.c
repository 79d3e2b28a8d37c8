/*
 * test-launch.c - the --num-gpus launcher (launch.h) without GPUs: /bin/sh workers stand in for
 * hermes-llm. Checks the worker environment and the secret pipe, CUDA_VISIBLE_DEVICES mapping,
 * stderr relay of the error line, and that one failing worker stops the others within the grace
 * period (SIGTERM, then SIGKILL for a worker that ignores it) instead of hanging.
 */
#include "testutil.h"

#include "hermes/launch.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum hm_status run_sh(const char *script, int n, const char *secret, double grace,
                             struct hm_launch_result *res)
{
    char *argv[] = {"sh", "-c", (char *)script, NULL};
    struct hm_launch_opts o = {.n_workers = n, .exe = "/bin/sh", .argv = argv, .secret = secret,
                               .secret_bytes = secret ? strlen(secret) : 0, .set_cuda_devices = true,
                               .grace_s = grace};
    return hm_launch(&o, res);
}

static void test_all_succeed(void **state)
{
    struct hm_launch_result r;
    assert_int_equal(run_sh("exit 0", 3, NULL, 1, &r), HM_OK);
    assert_int_equal(r.failed_rank, -1);
}

static void test_env_and_secret(void **state)
{
    /* Each worker checks its rank variables and reads the secret from its inherited fd. */
    const char *script =
        "[ \"$HM_WORLD_SIZE\" = 2 ] && [ \"$HM_LOCAL_RANK\" = \"$HM_RANK\" ] || exit 10;"
        "[ \"$(head -c 6 /proc/self/fd/$HM_LAUNCH_FD)\" = s3cr3t ] || exit 11;"
        "[ $HM_RANK = 0 ] && [ \"$CUDA_VISIBLE_DEVICES\" = 5 ] && exit 0;"
        "[ $HM_RANK = 1 ] && [ \"$CUDA_VISIBLE_DEVICES\" = 7 ] && exit 0; exit 12";
    setenv("CUDA_VISIBLE_DEVICES", "5,7", 1);
    struct hm_launch_result r;
    enum hm_status st = run_sh(script, 2, "s3cr3t", 1, &r);
    unsetenv("CUDA_VISIBLE_DEVICES");
    if (st != HM_OK)
        fail_msg("launch failed: %s", hm_last_error());
    int rank, world;
    assert_false(hm_launch_is_worker(&rank, &world)); /* the launcher itself is no worker */
}

static void test_failure_stops_the_others(void **state)
{
    const char *script = "if [ $HM_RANK = 1 ]; then echo 'progress line' >&2;"
                         " echo 'hermes-llm: error: boom on rank 1' >&2; exit 3; fi; exec sleep 30";
    struct hm_launch_result r;
    double t0 = hm_time_s();
    enum hm_status st = run_sh(script, 3, NULL, 2, &r);
    double dt = hm_time_s() - t0;
    assert_int_equal(st, HM_ERR_DEVICE);
    assert_int_equal(r.failed_rank, 1);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(r.error, "boom on rank 1");
    assert_non_null(strstr(hm_last_error(), "rank 1 exited with status 3: boom on rank 1"));
    assert_true(dt < 5); /* SIGTERM ends `sleep` at once */
}

static void test_sigterm_ignored_then_sigkill(void **state)
{
    /* Rank 0 fails only once rank 1 ignores SIGTERM: otherwise, on a loaded machine, the
     * SIGTERM can land before the trap is set and end rank 1 at once. */
    char dir[] = "/tmp/hm-launch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char script[512];
    snprintf(script, sizeof script,
             "if [ $HM_RANK = 0 ]; then while [ ! -e %s/ready ]; do sleep 0.01; done; exit 4; fi;"
             " trap '' TERM; : > %s/ready; exec sleep 30",
             dir, dir);
    struct hm_launch_result r;
    double t0 = hm_time_s();
    enum hm_status st = run_sh(script, 2, NULL, 1, &r);
    double dt = hm_time_s() - t0;
    char ready[600];
    snprintf(ready, sizeof ready, "%s/ready", dir);
    unlink(ready);
    rmdir(dir);
    assert_int_equal(st, HM_ERR_DEVICE);
    assert_int_equal(r.failed_rank, 0);
    assert_int_equal(r.exit_code, 4);
    assert_true(dt >= 0.9 && dt < 5);
}

static void test_signal_death_and_exec_failure(void **state)
{
    struct hm_launch_result r;
    assert_int_equal(run_sh("kill -9 $$", 1, NULL, 1, &r), HM_ERR_DEVICE);
    assert_int_equal(r.exit_code, 128 + 9);
    assert_non_null(strstr(hm_last_error(), "killed by signal 9"));

    char *argv[] = {"nope", NULL};
    struct hm_launch_opts o = {.n_workers = 2, .exe = "/nonexistent/hermes-llm", .argv = argv};
    assert_int_equal(hm_launch(&o, &r), HM_ERR_DEVICE);
    assert_int_equal(r.exit_code, 127);
    assert_non_null(strstr(r.error, "cannot execute"));
}

static void test_worker_env_parsing(void **state)
{
    int rank = -1, world = -1;
    setenv("HM_RANK", "1", 1);
    setenv("HM_WORLD_SIZE", "2", 1);
    assert_true(hm_launch_is_worker(&rank, &world));
    assert_int_equal(rank, 1);
    assert_int_equal(world, 2);
    setenv("HM_RANK", "2", 1); /* out of range */
    assert_false(hm_launch_is_worker(&rank, &world));
    unsetenv("HM_RANK");
    unsetenv("HM_WORLD_SIZE");
    unsetenv("HM_LAUNCH_FD");
    char buf[4];
    assert_int_equal(hm_launch_read_secret(buf, sizeof buf), HM_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_succeed),
        cmocka_unit_test(test_env_and_secret),
        cmocka_unit_test(test_failure_stops_the_others),
        cmocka_unit_test(test_sigterm_ignored_then_sigkill),
        cmocka_unit_test(test_signal_death_and_exec_failure),
        cmocka_unit_test(test_worker_env_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
