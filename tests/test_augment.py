import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from streamssl.augment import (
    CropDraws,
    CropParams,
    PILMultiCrop,
    apply_crops,
    eval_transform,
    multicrop,
    sample_crop_boxes,
    sample_crops,
    to_model_input,
)
from streamssl.errors import ConfigError, DataError

EMP = CropParams(crops=4, size=32)
TWO_VIEW = CropParams.two_view(32)


pytestmark = pytest.mark.single_thread


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(b=3, size=32, seed=0):
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=_gen(seed))


def _ks(a, b):
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = torch.cat([a, b]).unique()
    cdf = lambda x: torch.searchsorted(x.sort().values, grid, right=True) / len(x)  # noqa: E731
    return (cdf(a) - cdf(b)).abs().max().item()


# --- to_model_input / eval_transform ---------------------------------------------------------------

def test_grayscale_28_is_padded_centrally_to_32_with_3_channels():
    imgs = np.random.default_rng(0).integers(1, 256, (2, 28, 28, 1), dtype=np.uint8)
    out = to_model_input(imgs, 32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    assert torch.equal(out[:, 0, 2:30, 2:30], torch.from_numpy(imgs[..., 0]))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert out[:, :, :2].sum() == 0 and out[:, :, :, 30:].sum() == 0


def test_larger_images_are_resized():
    imgs = torch.full((2, 64, 48, 3), 7, dtype=torch.uint8)
    out = to_model_input(imgs, 32)
    assert out.shape == (2, 3, 32, 32) and (out == 7).all()


def test_to_model_input_rejects_bad_images():
    with pytest.raises(DataError, match="uint8"):
        to_model_input(np.zeros((1, 8, 8, 3), dtype=np.float32), 32)
    with pytest.raises(DataError, match="C in 1 or 3"):
        to_model_input(np.zeros((1, 8, 8, 4), dtype=np.uint8), 32)


def test_eval_transform_normalizes():
    out = eval_transform(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2),
                         (0.5, 0.5, 0.5), (0.25, 0.5, 0.5))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([-2.0, -1.0, -1.0]))
    assert torch.allclose(out[0, :, 0, 1], torch.tensor([2.0, 1.0, 1.0]))


# --- multicrop: shape, range, determinism -----------------------------------------------------------

def test_output_shape_dtype_and_range():
    out = multicrop(_images(3), EMP, _gen())
    assert out.shape == (4, 3, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6


def test_other_output_size():
    assert multicrop(_images(2, 16), CropParams(crops=3, size=24), _gen()).shape == (3, 2, 3, 24, 24)


def test_same_generator_seed_same_crops_and_different_seed_differs():
    imgs = _images()
    assert torch.equal(multicrop(imgs, EMP, _gen(1)), multicrop(imgs, EMP, _gen(1)))
    assert not torch.equal(multicrop(imgs, EMP, _gen(1)), multicrop(imgs, EMP, _gen(2)))


def test_global_rng_is_untouched():
    state = torch.get_rng_state()
    multicrop(_images(), EMP, _gen())
    assert torch.equal(state, torch.get_rng_state())


def test_chunking_does_not_change_the_result():
    imgs, params = _images(4), CropParams(crops=5, size=32, p_blur=0.5)
    draws = sample_crops(4, 32, 32, params, _gen())
    small, whole = apply_crops(imgs, draws, params, chunk=3), apply_crops(imgs, draws, params, chunk=20)
    assert torch.allclose(small, whole)


def test_rejects_non_uint8_or_wrong_channels():
    with pytest.raises(DataError, match="uint8"):
        multicrop(torch.zeros(1, 3, 8, 8), EMP, _gen())
    with pytest.raises(ConfigError, match="scale"):
        CropParams(crops=2, size=32, scale=(0.5, 0.2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_for_the_same_seed():
    imgs = _images(8)
    cpu = multicrop(imgs, EMP, _gen(3))
    gpu = multicrop(imgs.cuda(), EMP, _gen(3))
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


# --- each op equals torchvision's, given the same draws ---------------------------------------------

def _draws(n, **overrides):
    off = torch.zeros(n, dtype=torch.bool)
    base = dict(boxes=torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(n, 1), flip=off, jitter=off,
                factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(n, 1), order=torch.arange(4).repeat(n, 1),
                gray=off, blur=off, sigma=torch.ones(n), solarize=off)
    return CropDraws(**{**base, **overrides})


def _unnormalize(out):
    return out * 0.5 + 0.5


def test_crop_resize_flip_equal_torchvision_resized_crop():
    imgs = _images(2)
    boxes = sample_crop_boxes(6, 32, 32, (0.2, 1.0), (0.75, 4 / 3), _gen())
    flip = torch.tensor([False, True, True, False, True, False])
    out = _unnormalize(apply_crops(imgs, _draws(6, boxes=boxes, flip=flip), CropParams(crops=3, size=32)))
    for n in range(6):
        top, left, h, w = boxes[n].int().tolist()
        ref = TF.resized_crop(imgs[n % 2].float() / 255, top, left, h, w, [32, 32], antialias=False)
        assert torch.allclose(out[n // 2, n % 2], ref.flip(-1) if flip[n] else ref, atol=1e-5)


def test_colour_jitter_follows_each_crops_order_like_torchvision():
    imgs = _images(4)
    factors = torch.tensor([[1.3, 0.7, 1.4, 0.15], [0.6, 1.2, 0.8, -0.2], [1.0, 1.0, 0.0, 0.3],
                            [0.9, 1.3, 1.1, 0.05]])
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
    draws = _draws(4, jitter=torch.tensor([True, True, True, False]), factors=factors, order=order)
    out = _unnormalize(apply_crops(imgs, draws, CropParams(crops=1, size=32)))[0]
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for j in range(3):
        ref = imgs[j].float() / 255
        for op in order[j].tolist():
            ref = ops[op](ref, factors[j, op].item())
        assert torch.allclose(out[j], ref, atol=1e-4)
    assert torch.allclose(out[3], imgs[3].float() / 255, atol=1e-6)


def test_gray_blur_solarize_equal_torchvision():
    imgs = _images(3)
    draws = _draws(3, gray=torch.tensor([True, False, False]), blur=torch.tensor([False, True, False]),
                   sigma=torch.tensor([1.0, 1.7, 1.0]), solarize=torch.tensor([False, False, True]))
    params = CropParams(crops=1, size=32)
    out = _unnormalize(apply_crops(imgs, draws, params))[0]
    x = imgs.float() / 255
    # PIL's luma weights (0.299, 0.587, 0.114); torchvision's tensor op uses 0.2989
    assert torch.allclose(out[0], TF.rgb_to_grayscale(x[0], 3), atol=2e-4)
    k = params.blur_kernel
    assert torch.allclose(out[1], TF.gaussian_blur(x[1], [k, k], [1.7, 1.7]), atol=1e-5)
    assert torch.allclose(out[2], torch.where(x[2] >= 128 / 255, 1 - x[2], x[2]), atol=1e-6)


# --- the sampled distribution matches the torchvision reference ------------------------------------

def test_emp_crops_are_fixed_quarter_area_squares():
    boxes = sample_crop_boxes(500, 32, 32, EMP.scale, EMP.ratio, _gen())
    assert (boxes[:, 2] == 16).all() and (boxes[:, 3] == 16).all()
    assert boxes[:, :2].min() == 0 and boxes[:, :2].max() == 16  # every offset 0..16 is reachable


def test_crop_scale_and_ratio_match_random_resized_crop():
    n = 3000
    boxes = sample_crop_boxes(n, 32, 48, TWO_VIEW.scale, TWO_VIEW.ratio, _gen())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        img = torch.zeros(3, 32, 48)
        ref = torch.tensor([T.RandomResizedCrop.get_params(img, list(TWO_VIEW.scale), list(TWO_VIEW.ratio))
                            for _ in range(n)], dtype=torch.float32)
    for stat in (lambda b: b[:, 2] * b[:, 3] / (32 * 48), lambda b: b[:, 3] / b[:, 2],
                 lambda b: b[:, 0] + b[:, 2] / 2, lambda b: b[:, 1] + b[:, 3] / 2):
        assert _ks(stat(boxes), stat(ref)) < 0.05  # about the 0.1% critical value at n = 3000


def test_op_rates_and_ranges():
    n, params = 4000, CropParams(crops=1, size=32)
    draws = sample_crops(n, 32, 32, params, _gen())
    for flag, p in [(draws.flip, 0.5), (draws.jitter, 0.8), (draws.gray, 0.2), (draws.blur, 0.1),
                    (draws.solarize, 0.1)]:
        assert abs(flag.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    lo = torch.tensor([0.6, 0.6, 0.6, -0.2])
    assert (draws.factors >= lo).all() and (draws.factors <= torch.tensor([1.4, 1.4, 1.4, 0.2])).all()
    assert (draws.factors.mean(0) - torch.tensor([1.0, 1.0, 1.0, 0.0])).abs().max() < 0.03
    assert torch.equal(draws.order.sort(1).values, torch.arange(4).expand(n, 4))
    assert (draws.order[:, 0].bincount(minlength=4) > n / 4 - 150).all()  # random order, not fixed
    assert draws.sigma.min() >= 0.1 and draws.sigma.max() <= 2.0


def test_end_to_end_statistics_match_the_pil_pipeline():
    rng = np.random.default_rng(0)
    pixels = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 4, 0), 4, 1)
    params = CropParams(crops=800, size=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = PILMultiCrop(params)(Image.fromarray(pixels))  # (N, 3, S, S)
    ours = multicrop(to_model_input(pixels[None], 32), params, _gen())[:, 0]
    assert ref.shape == ours.shape
    for stat in (lambda x: x.mean((1, 2, 3)), lambda x: x.std((1, 2, 3)), lambda x: x[:, 0].mean((1, 2))):
        assert _ks(stat(ours), stat(ref)) < 0.1  # about the 0.1% critical value at n = 800
    gray_rate = [((x[:, 0] - x[:, 1]).abs().amax((1, 2)) < 0.02).float().mean().item() for x in (ours, ref)]
    assert abs(gray_rate[0] - gray_rate[1]) < 0.06 and abs(gray_rate[0] - 0.2) < 0.05


def test_gray_input_shortcut_matches_the_full_colour_path(monkeypatch):
    from streamssl import augment

    g = torch.Generator().manual_seed(3)
    gray = torch.randint(0, 256, (8, 1, 20, 20), generator=g, dtype=torch.uint8).expand(-1, 3, -1, -1)
    params = augment.CropParams(crops=6, size=16, p_jitter=1.0, p_gray=0.5)
    draws = augment.sample_crops(8, 20, 20, params, g)
    fast = augment.apply_crops(gray.contiguous(), draws, params)
    colour_ops = augment._colour_ops
    monkeypatch.setattr(augment, "_colour_ops", lambda *a: colour_ops(*a[:4], True))
    full = augment.apply_crops(gray.contiguous(), draws, params)
    assert torch.allclose(fast, full, atol=1e-5)
    assert not torch.equal(fast[0], fast[1])  # crops really were jittered differently


def test_crops_under_bf16_autocast_equal_float32_crops():
    """Methods crop inside the learner's autocast: the crops must not depend on it (the blur's
    conv once ran in bf16 there and its index-put failed on the dtype)."""
    imgs = _images(8)
    plain = multicrop(imgs, EMP, _gen(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = multicrop(imgs, EMP, _gen(5))
    assert autocast.dtype == torch.float32 and torch.equal(autocast, plain)
