/*
 * data-parallel.c - data-parallel training through the public C API alone (session.h). The same
 * program runs as one process, or as every rank of `mpirun -np N example-data-parallel DIR`: rank
 * 0 trains the tokenizer and tokenizes the corpus for everyone, each rank trains on its share of
 * every global batch, and gradients are averaged over the ranks. The tests run it both ways.
 * Usage: example-data-parallel [WORK_DIR] (default: a fresh folder under /tmp, one process only).
 */
#include <hermes/hermes.h>
#include <hermes/session.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every rank writes the same corpus; a rename makes each write all-or-nothing. */
static int write_corpus(const char *path)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    const char *words[] = {"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"};
    unsigned s = 7;
    for (int i = 0; i < 6000; i++) {
        s = s * 1103515245u + 12345u;
        fprintf(f, "%s%s", words[(s >> 16) % 9], i % 13 == 12 ? "\n" : " ");
    }
    return fclose(f) == 0 && rename(tmp, path) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    char dir[256] = "/tmp/hermes-dp-example-XXXXXX", corpus[300], tok[300], out[300];
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (!mkdtemp(dir))
        return 1;
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    char mk[400];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", dir);
    if (system(mk) != 0 || write_corpus(corpus) != 0) {
        fprintf(stderr, "error: cannot write %s\n", corpus);
        return 1;
    }

    /* One call on every rank; the role (MPI rank or the only process) is found, not configured. */
    const char *data[] = {corpus};
    struct hm_session_opts o = hm_session_opts_default();
    o.tokenizer = tok; /* missing: rank 0 trains it from the data and sends it to the others */
    o.tokenizer_train.vocab_size = 300;
    o.model = "nano";
    o.data = data, o.n_data = 1;
    o.train.output_dir = out;
    o.train.batch_size = 2, o.train.seq_len = 32, o.train.max_steps = 6;
    o.train.log_every = 1, o.train.eval_every = 0, o.train.save_every = 0;
    o.overwrite = true; /* a demo starts over each time: an earlier run in WORK_DIR is replaced */
    struct hm_session_result r;
    enum hm_status st = hm_session_run(&o, &r);
    if (st != HM_OK) {
        fprintf(stderr, "error: rank %d: %s\n", r.rank, hm_last_error());
        return 1;
    }
    if (r.rank == 0)
        printf("trained %ld steps on %d process%s (%s): loss %.3f\n", r.summary.steps, r.world,
               r.world > 1 ? "es" : "", r.comm_name, r.summary.final_loss);
    if (argc < 2) { /* our own temporary folder: leave nothing behind */
        snprintf(mk, sizeof mk, "rm -rf '%s'", dir);
        return system(mk) == 0 ? 0 : 1;
    }
    return 0;
}
