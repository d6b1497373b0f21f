import pytest

pytestmark = pytest.mark.tf


def test_parameter_count_is_the_designs():
    from edge_pcam.model import PARAMETER_COUNT, build_model
    model = build_model()
    assert model.count_params() == PARAMETER_COUNT == 494_337


def test_stable_layer_names_and_shapes():
    from edge_pcam.model import build_model, is_edge_pcam_model
    model = build_model()
    names = [layer.name for layer in model.layers]
    for name in ("conv1", "conv2", "conv3", "pool3", "q", "k", "v", "o", "fc", "logit", "prob"):
        assert name in names
    assert tuple(model.get_layer("pool3").output_shape[1:]) == (12, 12, 256)
    assert tuple(model.get_layer("o").output_shape[1:]) == (144, 128)
    assert model.get_layer("o").count_params() == 128 * 128 + 128
    assert is_edge_pcam_model(model)


def test_l2_on_every_kernel():
    from edge_pcam.model import build_model
    model = build_model(l2=1e-4)
    kernels = [l for l in model.layers if hasattr(l, "kernel")]
    assert len(kernels) == 9
    assert all(l.kernel_regularizer is not None for l in kernels)
    assert len(model.losses) == 9
