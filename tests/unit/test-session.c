/*
 * test-session.c - the library's training session (session.h) in one process: it trains a missing
 * tokenizer from the data, refuses one it cannot train, clamps or refuses a sequence length the
 * model cannot take, removes an output folder it created when the run fails before training (the
 * fail_rank test seam), and reports what it trained. The data-parallel paths run under mpirun in
 * tests/cli/mpi.sh and example-data-parallel-mpi.
 */
#include "testutil.h"

#include "hermes/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char *dir, *corpus, *tok, *out;
    const char *data[1];
    struct hm_session_opts o;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    f->corpus = tu_path(f->dir, "c.txt");
    f->tok = tu_path(f->dir, "tok.json");
    f->out = tu_path(f->dir, "run");
    char text[8192] = "";
    const char *w[] = {"red ", "green ", "blue ", "fox ", "and ", "the "};
    for (int i = 0; i < 1000; i++)
        strcat(text, w[(i * 7 + i / 5) % 6]);
    tu_write(f->corpus, text, strlen(text));
    f->data[0] = f->corpus;
    f->o = hm_session_opts_default();
    f->o.tokenizer = f->tok, f->o.tokenizer_train.vocab_size = 280, f->o.model = "nano";
    f->o.data = f->data, f->o.n_data = 1, f->o.handle_signals = false;
    f->o.train.output_dir = f->out, f->o.train.batch_size = 2, f->o.train.seq_len = 16;
    f->o.train.max_steps = 2, f->o.train.eval_every = 0, f->o.train.save_every = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tu_rmdir(f->dir);
    free(f->dir), free(f->corpus), free(f->tok), free(f->out), free(f);
    return 0;
}

static void test_trains_tokenizer_then_model(void **state)
{
    struct fixture *f = *state;
    struct hm_session_result r;
    assert_int_equal(hm_session_run(&f->o, &r), HM_OK);
    assert_int_equal(r.role, HM_SESSION_SINGLE);
    assert_true(r.rank == 0 && r.world == 1 && !r.aborted && r.trained);
    assert_int_equal(r.summary.steps, 2);
    assert_int_equal(access(f->tok, F_OK), 0); /* trained from the data and saved */
    char *cfg = tu_path(f->out, "config.json");
    assert_int_equal(access(cfg, F_OK), 0);
    free(cfg);
}

/* The session fails with `want` and a message containing `msg`, trains nothing and leaves no
 * output folder behind. */
static struct hm_session_result expect_refused(struct fixture *f, enum hm_status want,
                                               const char *msg)
{
    struct hm_session_result r;
    assert_int_equal(hm_session_run(&f->o, &r), want);
    assert_non_null(strstr(hm_last_error(), msg));
    assert_false(r.trained);
    assert_int_not_equal(access(f->out, F_OK), 0);
    return r;
}

static void test_no_tokenizer_from_stdin(void **state)
{
    struct fixture *f = *state;
    f->o.n_data = 0;
    expect_refused(f, HM_ERR_USAGE, "not standard input"); /* the folder it made is gone again */
}

static void test_seq_len_clamped_or_refused(void **state)
{
    struct fixture *f = *state;
    f->o.train.seq_len = 129; /* nano: max_seq_len 128 */
    f->o.clamp_seq_len = false;
    expect_refused(f, HM_ERR_USAGE, "--seq-len 129 exceeds the model's max_seq_len 128");
    f->o.clamp_seq_len = true;
    struct hm_session_result r;
    f->o.train.max_steps = 1;
    assert_int_equal(hm_session_run(&f->o, &r), HM_OK);
    assert_int_equal(r.summary.steps, 1);
    assert_int_equal(r.summary.tokens_seen, 2 * 128);
}

static void test_failing_rank_cleans_up(void **state)
{
    struct fixture *f = *state;
    f->o.fail_rank = 0;
    struct hm_session_result r = expect_refused(f, HM_ERR_IO, "failing on purpose");
    assert_false(r.aborted); /* one process: nobody to abort */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trains_tokenizer_then_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_tokenizer_from_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_len_clamped_or_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_rank_cleans_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
