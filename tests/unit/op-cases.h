/*
 * op-cases.h - the one table of op cases that both op tests run: test-ops.c checks every case on
 * the CPU against its reference loop and by finite differences, test-cuda-ops.c compares the
 * CUDA backend with the CPU on the same cases (and on the `gpu` ones, whose shapes exercise the
 * GPU's tiling and chunking), and runs the `flash` ones (also `gpu`) on the tensor-core attention
 * against the scalar attention kernels. A new op of ops.def needs a row here: test-ops' coverage test fails
 * for any op with a kernel that no CPU case's graph runs.
 *
 * Each case builds out = build(inputs) on a backend, then z = out * r with a random cotangent r
 * and (unless fwd_only) the backward of z; op_setup does all of it from a seed.
 */
#ifndef HERMES_OP_CASES_H
#define HERMES_OP_CASES_H

#include "testutil.h"

#include "hermes/backend.h"
#include "hermes/ops.h"
#include "util/util.h"

struct op_case;
typedef struct hm_tensor *(*op_build_fn)(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                         struct hm_tensor **ids);
/* The exact result in double: x, ids the host inputs, xt, it their tensors, out the output. */
typedef void (*op_ref_fn)(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                          struct hm_tensor **it, const struct hm_tensor *out, double *y);

struct op_case {
    const char *name;
    int n_f;            /* differentiable f32 inputs (parameters of a block) */
    int nd[4];
    int64_t sh[4][4];
    float amp[4];       /* inputs uniform in [-amp, amp] (default 1) */
    int n_i;            /* i32 inputs */
    int ind[2];
    int64_t ish[2][4];
    int32_t ihi[2];     /* ids uniform in [0, ihi) */
    bool ignore;        /* entries 1 and n-1 of each id input set to HM_IGNORE_INDEX */
    int32_t (*id_at)(int64_t b, int64_t t); /* ids[0] (B, T) given, not random: document starts */
    float fp[2];        /* op parameters */
    int ip[2];
    int pos;            /* runtime position */
    bool eval;          /* rt.training = false */
    bool fwd_only;      /* no backward (an inference-only op) */
    bool gpu;           /* CUDA parity only: no reference loop */
    bool flash;         /* CUDA only: bf16 tensor-core attention against the GPU's scalar kernels */
    int ninf_from;      /* > 0: input 0's last-dim entries from this column on are -inf (masked logits) */
    op_build_fn build;
    op_ref_fn ref;
    double fd_eps;      /* CPU finite-difference step; 0: 1e-2 */
    double tol, tol16;  /* CUDA vs CPU relative tolerance, f32 / bf16; 0: 1e-4 / 1.6e-2 */
};

/* The dropout seed and step the CPU test runs with (its reference loop recomputes the mask). */
#define OP_DROP_SEED 1234
#define OP_DROP_STEP 7

extern const struct op_case hm_op_cases[];
extern const int hm_n_op_cases;

/* One case built, planned and given its inputs on a backend. */
struct op_run {
    struct hm_block *blk, *copies; /* f32 inputs; their bf16 copies when dt is bf16 */
    struct hm_ctx *ctx;
    struct hm_graph *g;
    struct hm_tensor *x[4], *ids[2], *out, *r, *z;
    float *hx[4];      /* host copies of the f32 inputs */
    int32_t *hids[2];
    float *hr;         /* the cotangent */
};
/* Inputs from hm_rng seeded with `seed` (f32 inputs, then ids, then r), graph read through bf16
 * copies of the inputs when dt is bf16, planned on be; rt.pos, seed, step, training set. Fails
 * the cmocka test if the graph cannot be planned. */
void op_setup(const struct op_case *c, struct hm_backend *be, enum hm_dtype dt, uint64_t seed,
              uint64_t drop_seed, uint64_t drop_step, struct op_run *R);
void op_run_free(struct op_run *R);
/* One cmocka test per case (the flash ones aside) whose name contains $HM_TEST_OP when it is set,
 * running fn with the case as its state, written to tests (room for hm_n_op_cases); the count. */
int op_case_tests(struct CMUnitTest *tests, CMUnitTestFunction fn);
/* Whether the case's graph, in dtype dt, runs a matmul: the profile of one forward and backward. */
bool op_case_runs_matmul(const struct op_case *c, struct hm_backend *be, enum hm_dtype dt);

/* A case's output and the gradient of each f32 input, on the host. */
struct op_result {
    float *out;
    int64_t n_out;
    float *grad[4];
    int64_t n[4];
};
/* Case c on be from a fixed seed: forward + backward `runs` times (grads zeroed each time), the
 * last kept. In bf16 the graph reads bf16 copies of the f32 inputs, as the model reads its
 * weights. */
void op_run_case(const struct op_case *c, struct hm_backend *be, enum hm_dtype dt, int runs,
                 struct op_result *res);
void op_result_free(struct op_result *r);
/* max |a - ref| / max(max |ref|, 1e-3) over n values (NaN in a: infinite); *worst its index. */
double op_rel_err(const float *a, const float *ref, int64_t n, int64_t *worst);

#endif
