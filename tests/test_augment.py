"""Per-video augmentation: real frames (a scene encoded here with PyAV, decoded through
statechange.data.decode) augmented through statechange.data.augment, checked against independent
references (torch.flip, numpy padding, torchvision's Gaussian blur, colorsys) where one exists."""

from __future__ import annotations

import colorsys
import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from statechange.config import AugmentConfig
from statechange.data.augment import (
    PAD_MODES,
    VALUE_PAD_MODES,
    Affine,
    BoxBlur,
    Brightness,
    CropAndPad,
    GaussianBlur,
    HorizontalFlip,
    HueSaturation,
    MedianBlur,
    Sharpen,
    VerticalFlip,
    VideoAugmentation,
    augment_frames,
    sample_augmentation,
    training_view,
)
from statechange.data.crop import center_crop, crop_frames
from statechange.data.decode import decode_video

WIDTH, HEIGHT, CROP = 398, 224, 224
MAX_OFFSET = WIDTH - CROP - 1  # 173: the last first-column of a random crop (METHOD.md)
N_SECONDS = 4
NOTHING = AugmentConfig(enabled=True, horizontal_flip_p=0.0, vertical_flip_p=0.0, crop_pad_p=0.0, affine_p=0.0,
                        max_photometric=0)  # fmt: skip
EVERYTHING = dataclasses.replace(NOTHING, horizontal_flip_p=1.0, vertical_flip_p=1.0, crop_pad_p=1.0, affine_p=1.0,
                                 max_photometric=4)  # fmt: skip
ROUNDING = 1  # grey levels: float arithmetic in a different order may round the other way


def scene(second: int) -> np.ndarray:
    """uint8 [224, 398, 3]: a colour gradient, a fine chequerboard and an orange disc that moves."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    image = np.stack([40 + 150 * x / WIDTH, 60 + 100 * y / HEIGHT, 170 - 120 * x / WIDTH], axis=-1)
    image[((x // 6 + y // 6) % 2 == 0) & (x > 250) & (x < 370) & (y > 30) & (y < 110)] = (235, 235, 235)
    image[(x - 90 - 40 * second) ** 2 + (y - 140) ** 2 < 45**2] = (220, 60 + 30 * second, 30)
    return image.round().astype(np.uint8)


def write_scene_video(path: Path, rate: int = 2) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(N_SECONDS * rate):
            frame = av.VideoFrame.from_ndarray(scene(i // rate), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory, test_device: torch.device) -> torch.Tensor:
    """uint8 [4, 3, 224, 398] decoded frames of the scene video, on the test device."""
    path = write_scene_video(tmp_path_factory.mktemp("augment") / "scene.mp4")
    decoded = torch.from_numpy(decode_video(path))  # [T, H, W, 3]
    assert decoded.shape == (N_SECONDS, HEIGHT, WIDTH, 3)
    return decoded.permute(0, 3, 1, 2).contiguous().to(test_device)


def only(geometric=(), photometric=(), offset: int = 87) -> VideoAugmentation:
    return VideoAugmentation((WIDTH, HEIGHT), CROP, offset, tuple(geometric), tuple(photometric))


def draw(config: AugmentConfig, seed: int) -> VideoAugmentation:
    return sample_augmentation(config, torch.Generator().manual_seed(seed), (WIDTH, HEIGHT), CROP)


def crop_of(full: torch.Tensor, offset: int) -> torch.Tensor:
    """Reference result: a full-frame float [N, 3, H, W] result, cropped and rounded like the module."""
    return full[..., offset : offset + CROP].round().clamp(0, 255).to(torch.uint8)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


# ----------------------------------------------------------------------------------------------
# one transform per video


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These frames are few: on a shared 2-core machine OpenMP's barriers would cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", range(4))
def test_a_frame_gets_the_same_pixels_alone_in_a_chunk_or_with_the_whole_video(frames, seed):
    augmentation = draw(EVERYTHING, seed)
    video = torch.cat([frames, frames, frames])  # 12 frames: more than one CPU pass, repeats inside
    whole = augment_frames(video, augmentation)
    assert torch.equal(whole[:4], whole[4:8]) and torch.equal(whole[:4], whole[8:])
    assert torch.equal(augment_frames(frames[2:3], augmentation)[0], whole[2])
    chunks = torch.cat([augment_frames(frames[:3], augmentation), augment_frames(frames[3:], augmentation)])
    assert torch.equal(chunks, whole[:4])
    # the trainer passes [T, H, W, 3] frames permuted to [T, 3, H, W] without a copy
    channels_last = frames.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert torch.equal(augment_frames(channels_last, augmentation), whole[:4])


def test_a_seed_reproduces_its_transform_and_other_seeds_give_other_frames(frames):
    first, again = draw(AugmentConfig(), 11), draw(AugmentConfig(), 11)
    assert first == again
    assert torch.equal(augment_frames(frames, first), augment_frames(frames, again))
    outputs = [augment_frames(frames[:1], draw(AugmentConfig(), seed)) for seed in range(12)]
    distinct = {tuple(out.flatten()[::97].tolist()) for out in outputs}
    assert len(distinct) >= 11


@pytest.mark.parametrize("seed", range(3))
def test_output_is_a_uint8_square_crop_on_the_input_device(frames, seed):
    augmented = augment_frames(frames, draw(EVERYTHING, seed))
    assert augmented.dtype == torch.uint8
    assert augmented.shape == (N_SECONDS, 3, HEIGHT, CROP)
    assert augmented.device == frames.device


def test_random_crop_offsets_cover_0_to_173():
    offsets = [draw(NOTHING, seed).crop_offset for seed in range(3000)]
    assert min(offsets) == 0 and max(offsets) == MAX_OFFSET
    assert len(set(offsets)) > 0.95 * (MAX_OFFSET + 1)


def test_random_crop_takes_the_columns_of_its_offset(frames):
    for offset in (0, 37, MAX_OFFSET):
        assert torch.equal(augment_frames(frames, only(offset=offset)), frames[..., offset : offset + CROP])


def test_centre_crop_is_columns_87_to_310_and_the_view_without_augmentation(frames):
    expected = frames[..., 87:311]
    assert torch.equal(center_crop(frames), expected)
    assert torch.equal(training_view(frames, None), expected)
    assert torch.equal(crop_frames(frames, 87, CROP), expected)
    with pytest.raises(ValueError, match="outside"):
        crop_frames(frames, MAX_OFFSET + 2, CROP)


def test_training_view_applies_the_augmentation(frames):
    augmentation = draw(EVERYTHING, 3)
    assert torch.equal(training_view(frames, augmentation), augment_frames(frames, augmentation))
    with pytest.raises(ValueError, match="crop"):
        training_view(frames, augmentation, crop=200)
    with pytest.raises(ValueError, match="398x224"):
        augment_frames(frames[..., :300], augmentation)


# ----------------------------------------------------------------------------------------------
# geometric steps


def test_horizontal_flip_alone_is_a_mirror_image(frames):
    augmentation = draw(dataclasses.replace(NOTHING, horizontal_flip_p=1.0), 5)
    assert augmentation.geometric == (HorizontalFlip(),) and augmentation.photometric == ()
    offset = augmentation.crop_offset
    assert torch.equal(augment_frames(frames, augmentation), torch.flip(frames, [-1])[..., offset : offset + CROP])


def test_vertical_flip_alone_is_upside_down(frames):
    augmentation = draw(dataclasses.replace(NOTHING, vertical_flip_p=1.0), 5)
    assert augmentation.geometric == (VerticalFlip(),)
    offset = augmentation.crop_offset
    assert torch.equal(augment_frames(frames, augmentation), torch.flip(frames, [-2])[..., offset : offset + CROP])


def test_flips_through_the_sampling_grid_equal_the_exact_flips(frames):
    identity = Affine((1.0, 1.0), (0.0, 0.0), 0.0, 0.0, "nearest", "edge", (0, 0, 0))
    flips = (HorizontalFlip(), VerticalFlip())
    assert torch.equal(augment_frames(frames, only((*flips, identity), offset=20)),
                       augment_frames(frames, only(flips, offset=20)))  # fmt: skip


def test_a_half_turn_is_both_flips(frames):
    half_turn = Affine((1.0, 1.0), (0.0, 0.0), 180.0, 0.0, "nearest", "constant", (0, 0, 0))
    expected = torch.flip(frames, [-2, -1])[..., 87 : 87 + CROP]
    assert torch.equal(augment_frames(frames, only([half_turn])), expected)


@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_affine_translation_shifts_the_frame_and_fills_what_it_uncovers(frames, mode):
    shift = Affine((1.0, 1.0), (40 / WIDTH, 20 / HEIGHT), 0.0, 0.0, "nearest", mode, (10, 20, 30))
    augmented = augment_frames(frames, only([shift], offset=0)).int()
    assert torch.equal(augmented[..., 20:, 40:], frames[..., : HEIGHT - 20, : CROP - 40].int())
    if mode == "constant":
        colour = torch.tensor([10, 20, 30], device=frames.device).view(1, 3, 1)
        assert (augmented[..., :20, :] == colour.unsqueeze(-1)).all()
        assert (augmented[..., :, :40] == colour.unsqueeze(-1)).all()
    else:
        assert torch.equal(augmented[..., 20:, :40], frames[..., : HEIGHT - 20, :1].expand(-1, -1, -1, 40).int())


def test_sampled_affine_stays_in_its_ranges_and_moves_the_picture(frames):
    config = dataclasses.replace(NOTHING, affine_p=1.0)
    for seed in range(3):
        augmentation = draw(config, seed)
        (affine,) = augmentation.geometric
        assert isinstance(affine, Affine)
        assert all(0.8 <= s <= 1.2 for s in affine.scale) and all(abs(t) <= 0.2 for t in affine.translate)
        assert abs(affine.rotate) <= 15 and abs(affine.shear) <= 16
        unchanged = frames[..., augmentation.crop_offset : augmentation.crop_offset + CROP]
        assert max_difference(augment_frames(frames, augmentation), unchanged) > 50


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric", "wrap"])
def test_crop_and_pad_matches_padding_then_resizing(frames, mode):
    # pad 5% at the top and left, crop 10% at the bottom and right, fill mode `mode`, resize back
    step = CropAndPad(top=-0.05, right=0.10, bottom=0.10, left=-0.05, mode=mode, fill=(200, 200, 200))
    top, left, bottom, right = round(0.05 * HEIGHT), round(0.05 * WIDTH), round(0.1 * HEIGHT), round(0.1 * WIDTH)
    cropped = frames[..., : HEIGHT - bottom, : WIDTH - right].permute(0, 2, 3, 1).cpu().numpy()
    numpy_mode = {"edge": "edge", "reflect": "reflect", "symmetric": "symmetric", "wrap": "wrap"}.get(mode)
    padding = ((0, 0), (top, 0), (left, 0), (0, 0))
    if mode == "constant":
        padded = np.pad(cropped, padding, mode="constant", constant_values=200)
    else:
        padded = np.pad(cropped, padding, mode=numpy_mode)
    padded_frames = torch.from_numpy(padded).permute(0, 3, 1, 2).float().to(frames.device)
    reference = F.interpolate(padded_frames, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    augmented = augment_frames(frames, only([step], offset=0))
    expected = crop_of(reference, 0)
    # away from the seam between padding and picture (wrap joins its two ends there differently)
    seam_rows, seam_columns = slice(top - 3, top + 2), slice(left - 3, left + 2)
    difference = (augmented.int() - expected.int()).abs()
    difference[..., seam_rows, :] = 0
    difference[..., :, seam_columns] = 0
    assert int(difference.max()) <= ROUNDING
    if mode == "constant":
        assert (augmented[..., top + 2 :, : left - 3] == 200).all()


@pytest.mark.parametrize("mode", VALUE_PAD_MODES)
def test_crop_and_pad_value_modes_match_numpy_padding_then_resizing(frames, mode):
    # pad 5% at the top and left, crop 10% at the bottom and right, numpy's value-filling pad modes
    step = CropAndPad(top=-0.05, right=0.10, bottom=0.10, left=-0.05, mode=mode, fill=(200, 200, 200))
    top, left, bottom, right = round(0.05 * HEIGHT), round(0.05 * WIDTH), round(0.1 * HEIGHT), round(0.1 * WIDTH)
    cropped = frames[..., : HEIGHT - bottom, : WIDTH - right].permute(0, 2, 3, 1).cpu().numpy()  # uint8
    options = {"end_values": 200} if mode == "linear_ramp" else {}
    padded = np.pad(cropped, ((0, 0), (top, 0), (left, 0), (0, 0)), mode=mode, **options)
    padded_frames = torch.from_numpy(padded).permute(0, 3, 1, 2).float().to(frames.device)
    reference = F.interpolate(padded_frames, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)

    augmented = augment_frames(frames, only([step], offset=0))

    assert max_difference(augmented, crop_of(reference, 0)) <= ROUNDING


def test_sampled_crop_and_pad_draws_every_pad_mode_of_imgaug():
    config = dataclasses.replace(NOTHING, crop_pad_p=1.0)
    modes = [draw(config, seed).geometric[0].mode for seed in range(300)]
    assert set(modes) == set(PAD_MODES) and len(PAD_MODES) == 10
    assert max(modes.count(mode) for mode in PAD_MODES) < 3 * min(modes.count(mode) for mode in PAD_MODES)


def test_the_photometric_group_is_shuffled_with_the_four_geometric_groups():
    always = dataclasses.replace(EVERYTHING, max_photometric=4)
    draws = [draw(always, seed) for seed in range(500)]
    with_photometric = [d for d in draws if d.photometric]
    positions = [d.n_geometric_before_photometric for d in with_photometric]
    assert all(len(d.geometric) == 4 for d in draws)
    counts = [positions.count(k) for k in range(5)]  # each of the 5 places, p = 1/5
    assert min(counts) >= 0.6 * len(positions) / 5, counts
    for d in with_photometric[:20]:  # the steps in the order they are applied
        split = d.n_geometric_before_photometric
        assert d.steps() == (*d.geometric[:split], *d.photometric, *d.geometric[split:])


@pytest.mark.parametrize("fill_mode", ["constant", "mean"])
def test_photometric_steps_before_a_geometric_one_act_on_the_picture_before_it(frames, fill_mode):
    brighter = Brightness((30, 30, 30))
    shift = Affine((1.0, 1.0), (40 / WIDTH, 20 / HEIGHT), 0.0, 0.0, "nearest", "constant", (10, 20, 30))
    pad = CropAndPad(top=-0.05, right=0.0, bottom=0.0, left=-0.05, mode=fill_mode, fill=(0, 0, 0))
    brightened = (frames.int() + 30).clamp(0, 255).to(torch.uint8)
    first = VideoAugmentation((WIDTH, HEIGHT), CROP, 0, (shift, pad), (brighter,), photometric_position=0)
    between = VideoAugmentation((WIDTH, HEIGHT), CROP, 0, (shift, pad), (brighter,), photometric_position=1)
    last = VideoAugmentation((WIDTH, HEIGHT), CROP, 0, (shift, pad), (brighter,))

    # brightening first leaves the affine's fill colour (10, 20, 30) as it is, brightening later shifts it
    assert torch.equal(augment_frames(frames, first), augment_frames(brightened, only([shift, pad], offset=0)))
    corner = augment_frames(frames, between)[..., 12:18, 24:30].float().mean((0, 2, 3))  # inside the fill
    assert torch.allclose(corner, torch.tensor([40.0, 50.0, 60.0], device=frames.device), atol=1)
    expected_last = (augment_frames(frames, only([shift, pad], offset=0)).int() + 30).clamp(0, 255)
    assert torch.equal(augment_frames(frames, last).int(), expected_last)


def test_sampled_crop_and_pad_draws_each_side_within_its_range(frames):
    augmentation = draw(dataclasses.replace(NOTHING, crop_pad_p=1.0), 2)
    (step,) = augmentation.geometric
    assert isinstance(step, CropAndPad)
    assert all(-0.05 <= side <= 0.10 for side in (step.top, step.right, step.bottom, step.left))
    unchanged = frames[..., augmentation.crop_offset : augmentation.crop_offset + CROP]
    assert not torch.equal(augment_frames(frames, augmentation), unchanged)


# ----------------------------------------------------------------------------------------------
# photometric steps (compared with full-frame references, at both ends of the crop range)


@pytest.mark.parametrize("offset", [0, MAX_OFFSET])
def test_brightness_shift_moves_each_channel_by_its_amount(frames, offset):
    shift = (7, -5, 3)
    augmented = augment_frames(frames, only(photometric=[Brightness(shift)], offset=offset))
    expected = frames[..., offset : offset + CROP].int() + torch.tensor(shift, device=frames.device).view(1, 3, 1, 1)
    assert torch.equal(augmented.int(), expected.clamp(0, 255))


def test_sampled_brightness_moves_the_mean_by_the_sampled_amount(frames):
    config = dataclasses.replace(NOTHING, max_photometric=4)
    seed = next(s for s in range(500) if [type(p) for p in draw(config, s).photometric] == [Brightness])
    augmentation = draw(config, seed)
    (brightness,) = augmentation.photometric
    before = frames[..., augmentation.crop_offset : augmentation.crop_offset + CROP].float()
    unclamped = ((before > 10) & (before < 245)).all(dim=1, keepdim=True).expand_as(before)
    after = augment_frames(frames, augmentation).float()
    for channel in range(3):
        moved = (after - before)[:, channel][unclamped[:, channel]].mean()
        assert float(moved) == pytest.approx(brightness.shift[channel], abs=1e-4)


@pytest.mark.parametrize(("sigma", "offset"), [(0.8, 0), (2.6, MAX_OFFSET)])
def test_gaussian_blur_matches_torchvision(frames, sigma, offset):
    step = GaussianBlur(sigma)
    size = 2 * step.radius + 1
    reference = TF.gaussian_blur(frames.float(), kernel_size=[size, size], sigma=[sigma, sigma])
    augmented = augment_frames(frames, only(photometric=[step], offset=offset))
    assert max_difference(augmented, crop_of(reference, offset)) <= ROUNDING
    assert max_difference(augmented, frames[..., offset : offset + CROP]) > 20  # the chequerboard blurs


@pytest.mark.parametrize("size", [2, 3])
def test_box_blur_averages_the_window_ending_at_or_centred_on_each_pixel(frames, size):
    padded = F.pad(frames.float(), (size // 2, (size - 1) // 2, size // 2, (size - 1) // 2), mode="reflect")
    reference = F.avg_pool2d(padded, size, stride=1)
    augmented = augment_frames(frames, only(photometric=[BoxBlur(size)], offset=MAX_OFFSET))
    assert max_difference(augmented, crop_of(reference, MAX_OFFSET)) <= ROUNDING


def test_median_3x3_is_the_exact_median(frames):
    padded = F.pad(frames.float(), (1, 1, 1, 1), mode="replicate")
    reference = padded.unfold(2, 3, 1).unfold(3, 3, 1).flatten(-2).median(dim=-1).values  # [N, 3, H, W]
    augmented = augment_frames(frames, only(photometric=[MedianBlur(3)], offset=0))
    assert torch.equal(augmented, crop_of(reference, 0))


@pytest.mark.parametrize("size", [3, 5])
def test_median_removes_speckles_and_keeps_edges(frames, size):
    clean = torch.zeros_like(frames)
    clean[:, 0, :, 155:] = 180  # a vertical edge in red
    clean[:, 1, 105:, :] = 40  # a horizontal edge in green
    speckled = clean.clone()
    speckled[..., 10::9, 5::11] = 255  # isolated single-pixel speckles, at least 4 pixels from the edges
    step = MedianBlur(size)
    assert torch.equal(augment_frames(speckled, only(photometric=[step], offset=40)), clean[..., 40 : 40 + CROP])


def test_sharpen_is_imgaugs_kernel(frames):
    alpha, lightness = 0.7, 1.2
    effect = -torch.ones(3, 3, dtype=torch.float64)
    effect[1, 1] = 8 + lightness
    identity = torch.zeros(3, 3, dtype=torch.float64)
    identity[1, 1] = 1
    kernel = ((1 - alpha) * identity + alpha * effect).float().to(frames.device)
    padded = F.pad(frames.float(), (1, 1, 1, 1), mode="reflect").flatten(0, 1).unsqueeze(1)
    reference = F.conv2d(padded, kernel.view(1, 1, 3, 3)).view(frames.shape).clamp(0, 255)
    augmented = augment_frames(frames, only(photometric=[Sharpen(alpha, lightness)], offset=0))
    assert max_difference(augmented, crop_of(reference, 0)) <= ROUNDING
    assert max_difference(augmented, frames[..., :CROP]) > 20  # edges overshoot


@pytest.mark.parametrize("shift", [20, -13])
def test_hue_and_saturation_shift_matches_colorsys(frames, shift):
    step = HueSaturation(shift)
    augmented = augment_frames(frames, only(photometric=[step], offset=0)).cpu()
    pixels = frames[..., :CROP].cpu().permute(0, 2, 3, 1).reshape(-1, 3)
    picked = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))[:400]
    expected = []
    for red, green, blue in pixels[picked].tolist():
        hue, saturation, value = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
        hue = (hue + step.hue_degrees / 360) % 1.0
        saturation = min(max(saturation + shift / 255, 0.0), 1.0)
        expected.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    got = augmented.permute(0, 2, 3, 1).reshape(-1, 3)[picked]
    assert max_difference(got, torch.tensor(expected)) <= ROUNDING
    assert step.hue_degrees == {20: 28.0, -13: -18.0}[shift]  # 2 * int(v * 180 / 255), OpenCV half-degrees


# ----------------------------------------------------------------------------------------------
# the sampled policy


def test_sampled_policy_draws_every_family_within_the_papers_ranges():
    draws = [draw(AugmentConfig(), seed) for seed in range(400)]
    n_photometric = [len(d.photometric) for d in draws]
    assert set(n_photometric) == {0, 1, 2, 3, 4}
    steps = [step for d in draws for step in (*d.geometric, *d.photometric)]
    kinds = {type(step) for step in steps}
    assert kinds == {HorizontalFlip, VerticalFlip, CropAndPad, Affine, GaussianBlur, BoxBlur, MedianBlur, Sharpen,
                     Brightness, HueSaturation}  # fmt: skip
    for d in draws:  # each family at most once per video
        families = [type(s) for s in d.geometric] + [_family(s) for s in d.photometric]
        assert len(families) == len(set(families))
    assert {s.size for s in steps if isinstance(s, MedianBlur)} == {3, 5}
    assert {s.size for s in steps if isinstance(s, BoxBlur)} == {2, 3}
    assert all(0 <= s.sigma <= 3 for s in steps if isinstance(s, GaussianBlur))
    assert all(-20 <= s.shift <= 20 for s in steps if isinstance(s, HueSaturation))
    assert all(-10 <= v <= 10 for s in steps if isinstance(s, Brightness) for v in s.shift)
    assert {s.mode for s in steps if isinstance(s, (CropAndPad, Affine))} >= {"constant", "edge", "reflect"}
    flipped = sum(any(isinstance(s, HorizontalFlip) for s in d.geometric) for d in draws)
    assert 160 <= flipped <= 240  # p = 0.5 of 400
    orders = {tuple(type(s) for s in d.geometric if isinstance(s, (CropAndPad, Affine))) for d in draws}
    assert {(CropAndPad, Affine), (Affine, CropAndPad)} <= orders  # the geometric order is random


def _family(step) -> type:
    return BoxBlur if isinstance(step, (GaussianBlur, BoxBlur, MedianBlur)) else type(step)


def test_the_same_pixels_on_the_test_device_as_on_the_cpu(frames):
    if frames.device.type == "cpu":
        pytest.skip("set STATECHANGE_TEST_DEVICE=cuda to compare a GPU with the CPU")
    for seed in range(3):
        augmentation = draw(EVERYTHING, seed)
        on_device = augment_frames(frames, augmentation).cpu()
        on_cpu = augment_frames(frames.cpu(), augmentation)
        assert (on_device.int() - on_cpu.int()).abs().float().mean() < 0.05
        assert max_difference(on_device, on_cpu) <= 2
