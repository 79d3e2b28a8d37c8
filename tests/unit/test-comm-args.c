/*
 * test-comm-args.c - the communicator and the launcher answer bad arguments with HM_ERR_USAGE and
 * a one-line message, as the rest of the library does, instead of aborting the process (comm.h,
 * launch.h). Uses the single-process communicator, which checks the same arguments as MPI and NCCL.
 */
#include "testutil.h"

#include "hermes/comm.h"
#include "hermes/launch.h"

#include <string.h>

static void test_bad_ranges_and_ranks(void **state)
{
    struct hm_backend *be;
    struct hm_buffer *buf;
    struct hm_comm *c;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_buffer_new(be, 16 * sizeof(float), &buf), HM_OK);
    assert_int_equal(hm_comm_single_new(&c), HM_OK);

    assert_int_equal(hm_comm_allreduce_sum(c, buf, 0, 16), HM_OK);
    assert_int_equal(hm_comm_allreduce_sum(c, buf, 10, 7), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "outside the buffer"));
    assert_int_equal(hm_comm_allreduce_sum(c, buf, 17, 0), HM_ERR_USAGE);
    assert_int_equal(hm_comm_allreduce_start(c, buf, 8, 9), HM_ERR_USAGE);
    assert_int_equal(hm_comm_reduce_scatter_start(c, buf, (size_t)-1, 2), HM_ERR_USAGE);
    assert_int_equal(hm_comm_allreduce_start(c, buf, 8, 8), HM_OK);
    assert_int_equal(hm_comm_wait_all(c), HM_OK);

    assert_int_equal(hm_comm_broadcast(c, buf, 1), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "root rank 1"));
    char host[8] = {0};
    assert_int_equal(hm_comm_broadcast_host(c, host, sizeof host, -1), HM_ERR_USAGE);
    assert_int_equal(hm_comm_broadcast_host(c, host, sizeof host, 0), HM_OK);

    size_t off = 99, n = 99;
    assert_int_equal(hm_comm_shard(c, 10, 1, &off, &n), HM_ERR_USAGE);
    assert_true(off == 0 && n == 0);
    assert_int_equal(hm_comm_shard(c, 10, 0, &off, &n), HM_OK);
    assert_true(off == 0 && n == 10);
    assert_int_equal(hm_comm_send_host(c, host, 1, 0), HM_ERR_USAGE);

    hm_comm_free(c);
    hm_buffer_free(buf);
    hm_backend_free(be);
}

static void test_launch_without_workers(void **state)
{
    struct hm_launch_opts o = hm_launch_opts_default();
    struct hm_launch_result r;
    assert_int_equal(hm_launch(&o, &r), HM_ERR_USAGE); /* no argv */
    char *argv[] = {"true", NULL};
    o.argv = argv;
    o.n_workers = 0;
    assert_int_equal(hm_launch(&o, &r), HM_ERR_USAGE);
    o.n_workers = 1;
    o.secret_bytes = 5000;
    assert_int_equal(hm_launch(&o, &r), HM_ERR_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_ranges_and_ranks),
        cmocka_unit_test(test_launch_without_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
