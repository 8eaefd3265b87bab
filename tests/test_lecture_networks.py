"""The lecture notes' three Keras networks (conf/model/lecture_*.yaml, src/ablate/models/layers.py):
the Keras summaries layer by layer, the per-layer L2 penalty in the training loss, and the token
checks; then one real run of the entry point."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import REAL_CACHE, SHARED_DATA, assert_ok, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from pydantic import TypeAdapter, ValidationError
from torch import nn

from ablate.config import CONF_DIR
from ablate.models.layers import Layers, Tokens, parse
from ablate.module import Classifier
from ablate.preflight import check_command_line
from ablate.techniques.norm import AsVectors, batch, instance, layer, none
from ablate.techniques.reg import Reg

KERAS_BN = OmegaConf.load(CONF_DIR / "norm" / "batch_keras.yaml")
# The Keras summaries: lecture-notes 000_*.txt In [12] (printed up to the third Conv2D, the rest
# computed the same way: BatchNormalization counts gamma, beta, moving mean and variance), 001_*.txt
# In [13] as printed, and 001_*.txt's BN MLP as Keras would print it.
KERAS = {
    "lecture_cnn": ((1, 28, 28), [
        ("BatchNormalization", 4), ("Conv2D", 640), ("MaxPooling2D", 0),
        ("BatchNormalization", 256), ("Conv2D", 73_856), ("MaxPooling2D", 0),
        ("Conv2D", 36_896), ("MaxPooling2D", 0), ("BatchNormalization", 128), ("Flatten", 0),
        ("Dense", 147_968), ("BatchNormalization", 2_048), ("Dense", 5_130),
    ]),
    "lecture_mlp_bn": ((1, 1, 32), [
        ("Dense", 2_112), ("BatchNormalization", 256), ("Activation", 0),
        ("Dense", 4_160), ("BatchNormalization", 256), ("Activation", 0), ("Dense", 650),
    ]),
    "lecture_mlp_l2_dropout": ((1, 1, 100), [("Dense", 103_424), ("Dropout", 0), ("Dense", 10_250)]),
}  # fmt: skip
KERAS_TYPES = {nn.Conv2d: "Conv2D", nn.Linear: "Dense", nn.BatchNorm2d: "BatchNormalization",
               nn.MaxPool2d: "MaxPooling2D", nn.Flatten: "Flatten", nn.Dropout: "Dropout"}  # fmt: skip


@functools.cache
def tokens(model: str) -> list[str]:
    return list(OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml").layers)


def lecture_net(model: str, norm=None, shape=None) -> Layers:
    c, h, w = shape or KERAS[model][0]
    norm = batch(eps=KERAS_BN.eps, momentum=KERAS_BN.momentum) if norm is None else norm
    return Layers(c, 10, (h, w), tokens(model), norm=norm)


def keras_summary(net: Layers, folded: bool) -> list[tuple[str, int]]:
    """(Keras layer type, Keras param count) per layer, BatchNorm's running mean and variance
    counted as Keras does; folded: an activation right after a conv or dense is its `activation=`
    (the CNN's Conv2D(..., activation='relu')), else an Activation layer (the BN MLP's)."""
    rows: list[tuple[str, int]] = []
    for i, m in enumerate(net.net):
        m = m.norm if isinstance(m, AsVectors) else m
        if isinstance(m, nn.Flatten) and i == 0:
            continue  # the Keras MLPs' input is the vector itself
        if isinstance(m, nn.ReLU):
            if not (folded and rows and rows[-1][0] in ("Conv2D", "Dense")):
                rows.append(("Activation", 0))
            continue
        state = [t for k, t in m.state_dict().items() if not k.endswith("num_batches_tracked")]
        rows.append((KERAS_TYPES[type(m)], sum(t.numel() for t in state)))
    return rows


@pytest.mark.parametrize("model", sorted(KERAS))
def test_each_lecture_net_has_the_keras_layers_in_order_with_their_parameter_counts(model):
    net = lecture_net(model)
    assert keras_summary(net, folded=model == "lecture_cnn") == KERAS[model][1]
    assert net(torch.randn(2, *KERAS[model][0])).shape == (2, 10)
    assert net.stackable is False


def test_the_l2_dropout_net_has_keras_total_and_on_mnist_784_inputs():
    assert sum(p.numel() for p in lecture_net("lecture_mlp_l2_dropout").parameters()) == 113_674
    mnist = lecture_net("lecture_mlp_l2_dropout", shape=(1, 28, 28))
    assert mnist.net[1].weight.shape == (1024, 784)  # net[0]: the implicit flatten of the image
    assert sum(p.numel() for p in mnist.parameters()) == 784 * 1024 + 1024 + 10_250


def test_the_cnn_runs_on_cifar_shapes():
    assert lecture_net("lecture_cnn", shape=(3, 32, 32))(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_dense_l2_token_penalizes_that_layers_weight_only_in_the_training_loss():
    torch.manual_seed(0)
    net = lecture_net("lecture_mlp_l2_dropout")
    dense, classifier = net.net[1], net.net[-1]
    expected = 0.1 * dense.weight.pow(2).sum()
    torch.testing.assert_close(net.penalty(), expected)
    with torch.no_grad():  # neither the bias nor another layer's weight is penalized
        dense.bias.add_(5.0)
        classifier.weight.add_(5.0)
    torch.testing.assert_close(net.penalty(), expected)
    module = Classifier(net, optimizer=torch.optim.Adam, reg=Reg(l2=1e-3))
    x, y = torch.randn(4, 1, 1, 100), torch.arange(4)
    loss, data_loss, penalty, _ = module.objective(x, y)
    everywhere = 1e-3 * (dense.weight.pow(2).sum() + classifier.weight.pow(2).sum())
    torch.testing.assert_close(penalty, expected + everywhere)
    torch.testing.assert_close(loss, data_loss + penalty)
    loss.backward()  # the penalty's gradient reaches the dense weight: d/dw 0.1 w^2 = 0.2 w
    assert dense.weight.grad.abs().sum() > 0


def test_a_net_without_penalized_layers_adds_zero():
    net = lecture_net("lecture_mlp_bn")
    assert net.penalty().item() == 0.0
    module = Classifier(net, optimizer=torch.optim.Adam)
    _, data_loss, penalty, _ = module.objective(torch.randn(4, 1, 1, 32), torch.arange(4))
    assert penalty.item() == 0.0


@pytest.mark.parametrize("model", sorted(KERAS))
def test_norm_none_removes_the_batchnorm_layers(model):
    summary = keras_summary(lecture_net(model, norm=none()), folded=model == "lecture_cnn")
    assert summary == [row for row in KERAS[model][1] if row[0] != "BatchNormalization"]


def test_keras_batchnorm_defaults():
    bn = lecture_net("lecture_cnn").net[0]
    assert isinstance(bn, nn.BatchNorm2d) and (bn.eps, bn.momentum) == (1e-3, 0.01)


@pytest.mark.parametrize(
    "bad, says",
    [
        ("conv 64 rel", "'rel' is not allowed"),
        ("dense 10 softmax", "cross-entropy applies the softmax"),
        ("dense", "positive integer"),
        ("dense 64 l2=-0.1", "number >= 0"),
        ("dropout 1.5", "0 <= p < 1"),
        ("maxpool 2", "takes no arguments"),
        ("convolution 64", "unknown layer"),
    ],
)
def test_a_bad_token_is_one_line_naming_model_layers_and_the_fix(bad, says):
    with pytest.raises(ValueError, match=r"write|leave out") as e:
        Layers(1, 10, (28, 28), ["norm", bad])
    message = str(e.value)
    assert message.startswith(f"model.layers[1]={bad!r}: ") and says in message
    assert "\n" not in message
    with pytest.raises(ValidationError):  # the config check refuses the same token
        TypeAdapter(Tokens).validate_python(["norm", bad])


def test_a_map_layer_after_flattening_and_pooling_too_often_are_refused():
    with pytest.raises(ValueError, match=r"model.layers\[1\]='conv 8' needs feature maps"):
        Layers(1, 10, (28, 28), ["dense 16", "conv 8"])
    with pytest.raises(ValueError, match=r"model.layers\[2\]='maxpool': 1x1 maps"):
        Layers(1, 10, (2, 2), ["maxpool", "conv 4", "maxpool"])
    with pytest.raises(ValueError, match="norm=instance cannot normalize a feature vector"):
        lecture_net("lecture_mlp_bn", norm=instance())


def test_a_typo_in_a_token_exits_2_with_one_line_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        check_command_line(
            ["model=lecture_mlp_bn", "model.layers=[dense 64,norm,rel]", f"log_dir={tmp_path}/logs"]
        )
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.layers[2]='rel' is not allowed: ")
    assert not (tmp_path / "logs").exists()


MAP_TOKENS = (
    st.sampled_from(["norm", "relu", "tanh", "dropout 0.2", "maxpool"])
    | st.integers(1, 6).map(lambda c: f"conv {c}")
    | st.integers(1, 6).map(lambda c: f"conv {c} relu")
)
VECTOR_TOKENS = st.sampled_from(["norm", "flatten", "sigmoid", "dropout 0.5"]) | st.builds(
    lambda u, act, l2: " ".join(filter(None, [f"dense {u}", act, l2])),
    st.integers(1, 8),
    st.sampled_from(["", "relu", "elu"]),
    st.sampled_from(["", "l2=0.1", "l1=0.01 l2=0.5"]),
)


@st.composite
def layer_lists(draw) -> tuple[list[str], tuple[int, int, int]]:
    maps = draw(st.lists(MAP_TOKENS, max_size=5).filter(lambda t: t.count("maxpool") <= 2))
    vectors = draw(st.lists(VECTOR_TOKENS, max_size=4))
    side = 2 ** maps.count("maxpool")
    shape = (
        draw(st.sampled_from([1, 3])),
        draw(st.integers(side, side + 3)),
        draw(st.integers(side, side + 3)),
    )
    return maps + vectors, shape


@settings(max_examples=30, deadline=None, database=None)
@given(
    case=layer_lists(), norm=st.sampled_from([none(), batch(), layer()]), classes=st.integers(2, 5)
)
def test_any_valid_layer_list_builds_and_gives_logits(case, norm, classes):
    tokens_, (c, h, w) = case
    assert TypeAdapter(Tokens).validate_python(tokens_) == tokens_
    net = Layers(c, classes, (h, w), tokens_, norm=norm)
    for training in (True, False):
        assert net.train(training)(torch.randn(2, c, h, w)).shape == (2, classes)
    penalized = [t for t in tokens_ if "l2=" in t or "l1=" in t]
    assert len(net.penalized) == len(penalized)
    assert (net.penalty() > 0).item() == bool(penalized)


@settings(max_examples=30, deadline=None, database=None)
@given(token=st.text(st.sampled_from("adeflmnoprtuvxsc0123456789.= -"), max_size=16))
def test_the_config_check_and_the_constructor_agree_on_every_token(token):
    try:
        parse(token)
        valid = True
    except ValueError:
        valid = False
    try:
        TypeAdapter(Tokens).validate_python([token])
        checked = True
    except ValidationError:
        checked = False
    assert valid == checked


@pytest.mark.real_data
def test_the_lecture_bn_mlp_trains_on_real_mnist_from_the_entry_point(tmp_path):
    if not (SHARED_DATA / "MNIST" / "raw").exists():
        pytest.skip("real MNIST not available in ../shared/data")
    proc = run_cli(
        "model=lecture_mlp_bn", "norm=batch_keras", "optim=adam", "init=xavier_uniform",
        "scheduler=none", f"data.root={SHARED_DATA}", f"data.cache_dir={REAL_CACHE}",
        "data.download=false", "data.train_subset=512", "trainer=cpu", "trainer.max_epochs=5",
        "trainer.max_steps=20",
        "callbacks.progress_bar=null", f"log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert_ok(proc)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 20
    assert s["metrics"]["test/acc"] > 0.5  # 10 classes: chance is 0.1
