/*
 * model-fixture.h - the PyTorch parity check (tests/fixtures/model/NAME.safetensors) for any
 * backend: logits, loss, every gradient, and 3 AdamW steps with clipping and the LR schedule,
 * each within the fixture's own tolerances (tests/reference/README.md).
 */
#ifndef HERMES_MODEL_FIXTURE_H
#define HERMES_MODEL_FIXTURE_H

#include "testutil.h"

#include "hermes/model.h"

/* Fails the current cmocka test on any mismatch. `be` is borrowed; `label` names it in messages. */
void check_model_fixture(const char *name, struct hm_backend *be, const char *label);

#endif
