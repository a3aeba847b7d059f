"""AdamW's implementations (``finetune.adamw``, ``distill.adamw``): the same update, and clipping under mixed
precision with a fused step."""
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from transformers import BertConfig, BertForSequenceClassification

from dkd.cache import TeacherOutputs
from dkd.module import DistillSystem
from dkd.strategies.adoption import SingleTeacher
from dkd.strategies.objectives import LogitAndHiddenKD, LogitKD
from dkd.strategies.samplers import AllInstances
from dkd.strategies.weighting import StaticWeights
from tests.test_cache import batch, tiny_teacher


@pytest.mark.parametrize("adamw", ["foreach", "fused"])
def test_adamw_kernels_make_the_same_update(adamw):
    """distill.adamw/finetune.adamw choose kernels, not arithmetic: five steps of the student and its projection with
    each implementation land where torch's default (a per-parameter loop on a CPU) does, to float rounding."""
    trained = {}
    for impl in ("auto", adamw):
        objective = LogitAndHiddenKD()  # with a projection between hidden sizes 8 and 12: a third kind of parameter
        objective.plan(1, {"base": 1}, {"base": True})
        torch.manual_seed(0)
        teacher = BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=12, num_hidden_layers=1,
                                                           num_attention_heads=2, intermediate_size=16,
                                                           max_position_embeddings=16)).eval()
        objective.setup(tiny_teacher(1).config, {"base": teacher.config})
        system = DistillSystem(tiny_teacher(1), {"base": teacher}, AllInstances(), SingleTeacher(), objective,
                               StaticWeights(), metrics=["acc"], dev_splits=["dev"], num_labels=2, lr=1e-2,
                               teacher_outputs={"base": TeacherOutputs(teacher, "base",
                                                                       hidden=objective.teacher_request("base"))},
                               adamw=impl)
        system._trainer = SimpleNamespace(estimated_stepping_batches=5, world_size=1)
        system.log = system.log_dict = lambda *args, **kwargs: None  # no Trainer to log to
        optimizer = system.configure_optimizers()["optimizer"]
        assert optimizer.defaults["fused"] is (True if impl == "fused" else None)
        assert optimizer.defaults["foreach"] is (True if impl == "foreach" else None)
        start = weights(system)
        for step in range(5):
            optimizer.zero_grad()
            rows = batch(list(range(8 * step, 8 * step + 8)))
            rows["inputs"]["student"] = rows["inputs"]["base"]  # one tokenizer
            system.training_step(rows, step).backward()
            optimizer.step()
        trained[impl] = weights(system)
        assert (trained[impl] - start).abs().max() > 1e-3  # the steps moved the weights
    torch.testing.assert_close(trained[adamw], trained["auto"], rtol=1e-5, atol=1e-6)


def weights(system) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in system.parameters() if p.requires_grad])


def test_a_fused_step_under_fp16_clips_the_true_gradients():
    """Under fp16 the loss is scaled; Lightning does not unscale for an optimizer that unscales itself (a fused
    AdamW), so DKD's clipping hook unscales first: the clipped gradients and the step equal those of torch's loop
    AdamW on the unscaled loss, clipped to norm 0.1."""
    rows = batch(list(range(8)))
    rows["inputs"]["student"] = rows["inputs"]["base"]
    trained = {}
    for impl, scale in (("auto", None), ("fused", 1024.0)):
        system = DistillSystem(tiny_teacher(1), {"base": tiny_teacher(2)}, AllInstances(), SingleTeacher(), LogitKD(),
                               StaticWeights(), metrics=["acc"], dev_splits=["dev"], num_labels=2, lr=1e-2, adamw=impl)
        scaler = torch.amp.GradScaler("cpu", init_scale=scale) if scale else None
        plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler) if scaler else None
        system._trainer = SimpleNamespace(estimated_stepping_batches=5, world_size=1, precision_plugin=plugin)
        system.log = system.log_dict = lambda *args, **kwargs: None
        optimizer = system.configure_optimizers()["optimizer"]
        loss = system.training_step(rows, 0)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            system.configure_gradient_clipping(optimizer, 0.1, "norm")
            scaler.step(optimizer)
        else:
            torch.nn.utils.clip_grad_norm_([p for p in system.parameters() if p.requires_grad], 0.1)
            optimizer.step()
        trained[impl] = weights(system)
    torch.testing.assert_close(trained["fused"], trained["auto"], rtol=1e-5, atol=1e-6)
