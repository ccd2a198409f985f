"""Data augmentation: the issue's full pipeline (rotation +-15 deg, translate 0.1, scale 0.9-1.1,
horizontal flip 0.5, brightness 0.2, noise 0.05, erasing 0.25; float32, bilinear) on batches
(512, 1, 28, 28) and (256, 3, 32, 32): fusednn (Compose: one compiled call that draws each
sample's parameters on the thread that applies them; "[out=]" is ops.augment on parameters drawn
beforehand, into a preallocated out: the kernel plus ops.augment's per-call check of the 20
parameter arrays (~70-90 us in Python), hence no faster than the fused call) against
- "numpy": a NumPy + scipy.ndimage.affine_transform(order=1) loop over the images (15 timed calls
  of each);
- "torch", on rows of their own: torchvision.transforms.v2 applied image by image (what
  per-sample parameters cost a torchvision user; seconds a call, so 3 timed calls), and
  torchvision applied once to the whole batch with parameters shared by the batch (less work,
  and not the same thing).
The full cases also report the fastest of their 15 calls of fusednn against the fastest of the
scipy loop's ("[best of 15]"): on the 2-vCPU VM of 2026-12-07 the median of a 2-thread call was
at times one thread's time for seconds (so the median rows of one run could read 50x and of the
next 25x): its scheduler stacked the pool's worker on the caller's vCPU, which the workers now
avoid (csrc/cpu/thread_pool.cpp).
The full cases also time ``ops.gaussian_noise`` over the same batch ("gaussian_noise alone"): the
per-pixel normals (Philox + Box-Muller, bits fixed) that the call must draw: 30% (28x28) and 45%
(3x32x32) of its time in the quiet 2-thread run of 2026-12-07.
The photometric-only path (brightness + noise + erasing, no resampling) is measured against the
memory roof (x read, y written), a NumPy version, and its floor: ``ops.gaussian_noise`` over the
same pixels (drawing one normal per pixel from Philox by Box-Muller, which the path must do).

torchvision: the wheel installed here (0.28.0) is a CUDA build next to a CPU torch 2.13, so its
compiled ops (nms, ...) do not load; its import registers fake kernels for them and fails. The
transforms used here are pure torch, so the import is made with those registrations skipped
(``_import_torchvision``)."""

import numpy as np

from harness import Case

SHAPES = [(512, 1, 28, 28), (256, 3, 32, 32)]
SPEC = dict(degrees=15, translate=0.1, scale=(0.9, 1.1), hflip=0.5, brightness=0.2, noise=0.05, erase=0.25)


def _import_torchvision(torch):
    if torch is None:
        return None
    import torch.library
    original = torch.library.register_fake

    def skip_torchvision_ops(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::"):
            return (lambda f: f) if not args else None
        return original(op, *args, **kwargs)

    torch.library.register_fake = skip_torchvision_ops
    try:
        from torchvision.transforms import v2
        return v2
    except Exception as e:  # noqa: BLE001 (any import failure: no torchvision column)
        print(f"(torchvision unavailable: {type(e).__name__}: {e})")
        return None
    finally:
        torch.library.register_fake = original


def _scipy_loop(x, rng):
    """The pipeline image by image with scipy.ndimage and a NumPy generator."""
    from scipy import ndimage
    n, c, h, w = x.shape
    out = np.empty_like(x)
    center = np.array([(h - 1) / 2, (w - 1) / 2])
    for i in range(n):
        a = np.radians(rng.uniform(-15, 15))
        s = rng.uniform(0.9, 1.1)
        t = np.array([rng.uniform(-0.1 * h, 0.1 * h), rng.uniform(-0.1 * w, 0.1 * w)])
        inverse = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) / s  # (row, col)
        offset = center - inverse @ (center + t)
        img = x[i, :, :, ::-1] if rng.random() < 0.5 else x[i]
        for ch in range(c):
            out[i, ch] = ndimage.affine_transform(img[ch], inverse, offset=offset, order=1, mode="constant")
        out[i] *= rng.uniform(0.8, 1.2)
        out[i] += rng.normal(0, 0.05, size=(c, h, w)).astype(np.float32)
        if rng.random() < 0.25:
            area = h * w * rng.uniform(0.02, 0.33)
            ratio = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
            eh, ew = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
            if eh < h and ew < w:
                top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
                out[i, :, top:top + eh, left:left + ew] = 0
    return out


def cases(dev):
    from fusednn import ops
    from fusednn.data import transforms as T
    xp, torch = dev.xp, dev.torch
    v2 = _import_torchvision(torch)
    pipeline = T.Compose([T.RandomHorizontalFlip(0.5),
                          T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), interpolation="bilinear"),
                          T.ColorJitter(brightness=0.2), T.GaussianNoise(sigma=0.05, clip=False),
                          T.RandomErasing(0.25)])
    out = []
    for shape in dev.sizes(SHAPES):
        rng = np.random.default_rng(0)
        x_host = rng.random(shape, dtype=np.float32)
        x = dev.array(x_host)
        y = xp.empty_like(x)
        params = pipeline.params(shape[0], seed=1, offset=0, image_shape=shape[1:])
        counter = iter(range(10**9))

        def fused(x=x):
            return pipeline(x, seed=1, offset=next(counter))

        def kernel(x=x, y=y, params=params):
            ops.augment(x, params, out=y)

        scipy_loop = None
        if not dev.cuda:
            scipy_rng = np.random.default_rng(1)
            scipy_loop = lambda x=x_host: _scipy_loop(x, scipy_rng)  # noqa: E731
        per_image = shared = None
        if v2 is not None:
            tv = v2.Compose([v2.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                             interpolation=v2.InterpolationMode.BILINEAR),
                             v2.RandomHorizontalFlip(0.5), v2.ColorJitter(brightness=0.2),
                             v2.GaussianNoise(sigma=0.05, clip=False), v2.RandomErasing(0.25)])
            xt = dev.tensor(x)
            per_image = lambda xt=xt, tv=tv: torch.stack([tv(img) for img in xt])  # noqa: E731
            shared = lambda xt=xt, tv=tv: tv(xt)  # noqa: E731
        def noise_floor(x=x, y=y):  # the call's per-pixel normals alone (Philox + Box-Muller)
            ops.gaussian_noise(x, 0.05, seed=1, out=y)

        name = "x".join(map(str, shape))
        # The scipy loop (~30-90 ms a call) allows 15 timed calls, the torchvision loop (seconds) 3.
        out.append(Case("augment", f"full {name}", {"fusednn": fused, "out=": kernel,
                                                   "gaussian_noise alone": noise_floor, "numpy": scipy_loop},
                        bytes=2.0 * x.nbytes, repeat=15, warmup=2, best_of=True))
        out.append(Case("augment", f"full {name} vs tv per-image", {"fusednn": fused, "torch": per_image},
                        bytes=2.0 * x.nbytes, repeat=3, warmup=1))
        out.append(Case("augment", f"full {name} vs tv batch-shared", {"fusednn": fused, "torch": shared},
                        bytes=2.0 * x.nbytes))

    # Photometric only: brightness, noise and erasing; x read once and y written once.
    shape = dev.dram_shape((512, 1, 28, 28), arrays=2)
    x = dev.array(np.random.default_rng(2).random(shape, dtype=np.float32))
    y = xp.empty_like(x)
    photometric = T.Compose([T.ColorJitter(brightness=0.2), T.GaussianNoise(sigma=0.05, clip=False),
                             T.RandomErasing(0.25)])
    params = photometric.params(shape[0], seed=3, offset=0, image_shape=shape[1:])
    gen = xp.random.default_rng(4)

    def photo(x=x):
        return photometric(x, seed=3, offset=0)

    def photo_kernel(x=x, y=y, params=params):
        ops.augment(x, params, out=y)

    def photo_numpy(x=x, gen=gen):
        b = gen.uniform(0.8, 1.2, size=(shape[0], 1, 1, 1)).astype(np.float32)
        return x * b + np.float32(0.05) * gen.standard_normal(shape, dtype=np.float32)

    def noise_floor(x=x, y=y):  # the per-pixel normals alone (Philox + Box-Muller): the path's floor
        ops.gaussian_noise(x, 0.05, seed=3, out=y)

    out.append(Case("augment", f"photometric {shape[0]}x1x28x28",
                    {"fusednn": photo, "out=": photo_kernel, "gaussian_noise alone": noise_floor,
                     "numpy": photo_numpy}, bytes=2.0 * x.nbytes))
    return out
