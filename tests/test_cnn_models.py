"""The paper's CNN architectures: layer plan, shapes from the data, gradients."""

import pytest
import torch

from brats_llm.train.cnn.models import GradeClassifier3D, Segmenter3D, build_model, soft_dice_loss


def test_classifier_matches_the_paper_at_full_size():
    model = GradeClassifier3D((4, 95, 128, 128))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (4, 8, (3, 3, 3), (1, 1, 1)), (8, 16, (3, 3, 3), (1, 1, 1))]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(16 * 23 * 32 * 32, 128), (128, 1)]
    assert sum(p.numel() for p in model.parameters()) == 48_239_097  # the FC layer dominates


@pytest.mark.parametrize("shape", [(4, 23, 32, 32), (4, 95, 16, 16), (2, 9, 13, 11)])
def test_shapes_follow_the_input(shape):
    x = torch.rand(2, *shape)
    assert GradeClassifier3D(shape)(x).shape == (2,)
    out = Segmenter3D(shape)(x)
    assert out.shape == (2, *shape[1:])  # odd sizes restored by the transposed convs


def test_segmenter_layer_plan_and_dice_loss_gradient():
    model = build_model("seg", (4, 16, 16, 16))
    channels = [(m.in_channels, m.out_channels) for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    assert channels == [(4, 16), (16, 32), (32, 64), (64, 32), (32, 16), (16, 1)]
    x, target = torch.rand(1, 4, 16, 16, 16), (torch.rand(1, 16, 16, 16) > 0.7)
    loss = soft_dice_loss(model(x), target)
    loss.backward()
    assert 0 < loss.item() < 1 and model.enc1.weight.grad.abs().sum() > 0
    perfect = torch.where(target, 20.0, -20.0)
    assert soft_dice_loss(perfect, target).item() < 1e-3
    with pytest.raises(ValueError, match="task"):
        build_model("det", (4, 8, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        GradeClassifier3D((4, 3, 3, 3))


@pytest.mark.parametrize("architecture", ["paper", "segresnet", "unet"])
@pytest.mark.parametrize("out_channels", [1, 3])
def test_segmenters_keep_odd_shapes_and_give_one_output_per_region(architecture, out_channels):
    shape = (4, 9, 13, 11)  # odd sizes: MONAI nets are padded to a multiple of 2**(levels-1) and cropped back
    model = build_model("seg", shape, architecture=architecture, out_channels=out_channels, width=4, levels=3)
    x = torch.rand(2, *shape)
    out = model(x)
    assert out.shape == ((2, *shape[1:]) if out_channels == 1 else (2, out_channels, *shape[1:]))
    target = torch.rand(out.shape) > 0.7
    loss = soft_dice_loss(out, target)
    loss.backward()
    assert 0 < loss.item() < 1
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_regions_dice_loss_is_the_mean_over_regions():
    target = torch.zeros(1, 3, 4, 4, 4, dtype=torch.bool)
    target[0, 0, :2] = True  # WT predicted perfectly, TC and ET empty and predicted empty: all near 0
    logits = torch.where(target, 30.0, -30.0)
    assert soft_dice_loss(logits, target).item() < 1e-3
    logits[0, 2] = 30.0  # ET predicted everywhere against an empty ET: that region's loss ~ 1 - 1/65
    assert soft_dice_loss(logits, target).item() == pytest.approx((1 - 1 / 65) / 3, abs=1e-4)
    from monai.networks.nets import SegResNet

    assert any(isinstance(m, SegResNet) for m in build_model("seg", (4, 8, 8, 8), architecture="segresnet").modules())
    with pytest.raises(ValueError, match="architecture"):
        build_model("seg", (4, 8, 8, 8), architecture="vnet")
