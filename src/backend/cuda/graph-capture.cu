/*
 * graph-capture.cu - the training step's kernels as CUDA graphs (HM_CUDA_GRAPH=1). The planner
 * makes a graph's memory static and its node list fixed, so the kernels of one direction
 * (forward or backward) can be recorded once with stream capture and replayed with one launch
 * instead of hundreds. What a recording cannot see: the runtime values that kernels take as launch
 * arguments (hm_runtime: position, dropout seed/step/sample0/samples/training, loss scale). A recording is kept
 * with the values its nodes read (runtime_sig) and replayed only while they are unchanged;
 * otherwise the sequence is recorded again and the executable graph updated in place
 * (cudaGraphExecUpdate), or re-instantiated when the update is refused. With dropout the step
 * changes every micro-step, so training with dropout re-records every time: correct, no faster.
 * A small cache (least recently used out) holds the recordings of a few graphs (training,
 * evaluation); keys are never reused (hm_graph_plan numbers them), so a stale recording is never
 * replayed, only evicted.
 */
#include "graph-capture.cuh"

#define HM_CUDA_GRAPH_SLOTS 8

/* The runtime values a node sequence reads; fields no node reads stay zero. */
struct runtime_sig {
    int64_t pos;
    uint64_t seed, step, sample0, samples;
    float loss_scale;
    bool training;
};

struct graph_slot {
    uint64_t key; /* 0: empty */
    struct runtime_sig sig;
    cudaGraphExec_t exec;
    uint64_t last_use;
};

struct hm_cuda_graph_cache {
    struct graph_slot slot[HM_CUDA_GRAPH_SLOTS];
    uint64_t clock;
};

/* Every kernel that reads ex->rt must be listed here (attention.cu, rope.cu, elementwise.cu; the
 * norm kernels, ADD_RMS_NORM included, read none). A new hm_runtime field goes into runtime_sig
 * and under the ops whose kernels read it (a document start for attention: ATTENTION and
 * ATTENTION_BACK), or a replay would run with the value of the recording. */
static struct runtime_sig runtime_sig_of(struct hm_tensor *const *nodes, int n, const struct hm_runtime *rt)
{
    struct runtime_sig s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < n; i++) {
        switch (nodes[i]->op) {
        case HM_OP_ATTENTION:
        case HM_OP_ATTENTION_BACK:
        case HM_OP_ROPE:
        case HM_OP_ROPE_BACK:
        case HM_OP_KV_WRITE:
            s.pos = rt->pos;
            break;
        case HM_OP_DROPOUT:
            s.training = rt->training;
            s.seed = rt->seed;
            s.step = rt->step;
            s.sample0 = rt->sample0;
            s.samples = rt->samples;
            break;
        case HM_OP_FILL:
            if (nodes[i]->op_params[1])
                s.loss_scale = rt->loss_scale;
            break;
        default:
            break;
        }
    }
    return s;
}

static bool sig_equal(const struct runtime_sig *a, const struct runtime_sig *b)
{
    return a->pos == b->pos && a->seed == b->seed && a->step == b->step &&
           a->sample0 == b->sample0 && a->samples == b->samples && a->loss_scale == b->loss_scale &&
           a->training == b->training;
}

enum hm_status hm_cuda_graph_cache_new(struct hm_cuda_graph_cache **out)
{
    *out = (struct hm_cuda_graph_cache *)hm_calloc(1, sizeof(**out));
    return *out ? HM_OK : hm_fail(HM_ERR_NOMEM, "out of memory creating the CUDA graph cache");
}

void hm_cuda_graph_cache_free(struct hm_cuda_graph_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < HM_CUDA_GRAPH_SLOTS; i++)
        if (c->slot[i].exec)
            cudaGraphExecDestroy(c->slot[i].exec);
    hm_free(c);
}

/* The slot holding key, else the empty or least recently used one (its recording dropped). */
static struct graph_slot *slot_for(struct hm_cuda_graph_cache *c, uint64_t key)
{
    struct graph_slot *victim = &c->slot[0];
    for (int i = 0; i < HM_CUDA_GRAPH_SLOTS; i++) {
        if (c->slot[i].key == key)
            return &c->slot[i];
        if (c->slot[i].last_use < victim->last_use)
            victim = &c->slot[i];
    }
    if (victim->exec)
        cudaGraphExecDestroy(victim->exec);
    memset(victim, 0, sizeof *victim);
    return victim;
}

/* Records run(user) on the stream into a new graph; the kernels do not run. */
static enum hm_status record(struct hm_cuda_ctx *cx, enum hm_status (*run)(void *user), void *user,
                             cudaGraph_t *out)
{
    /* Relaxed: kernels set attributes (cudaFuncSetAttribute) while being recorded. */
    HM_CUDA_TRY(cudaStreamBeginCapture(cx->stream, cudaStreamCaptureModeRelaxed));
    enum hm_status st = run(user);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cx->stream, &graph);
    if (st != HM_OK) {
        if (graph)
            cudaGraphDestroy(graph);
        return st;
    }
    HM_CUDA_TRY(e);
    *out = graph;
    return HM_OK;
}

enum hm_status hm_cuda_graph_run(struct hm_cuda_ctx *cx, uint64_t key, struct hm_tensor *const *nodes, int n,
                                 const struct hm_runtime *rt, enum hm_status (*run)(void *user), void *user)
{
    struct hm_cuda_graph_cache *c = cx->graphs;
    struct runtime_sig sig = runtime_sig_of(nodes, n, rt);
    struct graph_slot *s = slot_for(c, key);
    s->last_use = ++c->clock;
    if (!s->exec || !sig_equal(&s->sig, &sig)) {
        cudaGraph_t graph;
        enum hm_status st = record(cx, run, user, &graph);
        if (st != HM_OK)
            return st;
        if (s->exec) {
            cudaGraphExecUpdateResultInfo info;
            if (cudaGraphExecUpdate(s->exec, graph, &info) != cudaSuccess) {
                (void)cudaGetLastError(); /* a refused update is not sticky: instantiate anew */
                cudaGraphExecDestroy(s->exec);
                s->exec = NULL;
            }
        }
        cudaError_t e = s->exec ? cudaSuccess : cudaGraphInstantiate(&s->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) {
            s->exec = NULL;
            s->key = 0;
            HM_CUDA_TRY(e);
        }
        s->key = key;
        s->sig = sig;
    }
    HM_CUDA_TRY(cudaGraphLaunch(s->exec, cx->stream));
    return HM_OK;
}
