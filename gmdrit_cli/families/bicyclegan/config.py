"""BicycleGAN's config section `bicyclegan`, and its shape rules."""

from __future__ import annotations

from dataclasses import dataclass

from ...config.fields import option as _opt

SECTION = "bicyclegan"


@dataclass
class Section:
    """BicycleGAN's options (docs/bicyclegan.md); widths come from model.width (ngf =
    nef = ndf) and the latent size from model.nz."""

    generator: str = _opt(
        "unet",
        "G: unet = U-Net down to 1x1 at the training crop (unet_128 at 128 px, unet_256 "
        "at 256 px; those names check the crop); resnet_6blocks / resnet_9blocks = the "
        "report's ResNet generator with z at the input",
        choices=("unet", "unet_128", "unet_256", "resnet_6blocks", "resnet_9blocks"),
    )
    where_add: str = _opt(
        "all",
        "U-Net: z concatenated to the input of every down block (all) or to the image only (input)",
        choices=("all", "input"),
    )
    upsample: str = _opt(
        "basic",
        "U-Net up path: basic = ConvTranspose 4x4 s2; bilinear = x2 bilinear, reflection pad, 3x3 conv",
        choices=("basic", "bilinear"),
    )
    use_dropout: bool = _opt(
        True,
        "dropout 0.5 on the up path of the 512-channel blocks next to the innermost "
        "one (training only; every official script passes --use_dropout)",
    )
    encoder: str = _opt(
        "resnet",
        "E: residual encoder whose last map is 8x8 at the training crop (resnet_128 "
        "at 128 px, resnet_256 at 256 px; those names check the crop)",
        choices=("resnet", "resnet_128", "resnet_256"),
    )
    d_layers: int = _opt(
        3, "strided layers per PatchGAN scale: 3 = basic_256_multi (70x70 patches), 2 = basic_128_multi", min=1, max=5
    )
    num_ds: int = _opt(2, "PatchGAN scales per discriminator (each one an average-pooled copy of the input)", min=1)
    use_same_d: bool = _opt(False, "one discriminator for both halves (official use_same_D)")
    conditional_d: bool = _opt(False, "discriminators see cat(A, B) instead of B (official conditional_D)")
    lambda_l1: float = _opt(10.0, "weight of the image L1 |G(A1, z_enc) - B1|", min=0)
    lambda_gan: float = _opt(1.0, "weight of the cVAE-GAN adversarial term (D on G(A1, z_enc))", min=0)
    lambda_gan2: float = _opt(1.0, "weight of the cLR-GAN adversarial term (D2 on G(A1, z_rand))", min=0)
    lambda_z: float = _opt(0.5, "weight of the latent L1 |mu(E(G(A1, z_rand))) - z_rand| (updates G only)", min=0)
    lambda_kl: float = _opt(0.01, "weight of KL(q(z|B1) || N(0, I))", min=0)
    kl_reduction: str = _opt(
        "sum",
        "KL over the encoded half-batch: sum (official: its strength grows with the batch) or batch_mean",
        choices=("sum", "batch_mean"),
    )


def _patch_map_size(size: int, layers: int, scale: int) -> int:
    """Side of PatchGAN scale ``scale``'s map on a ``size`` input: ``scale`` AvgPool(3, s2, p1), ``layers`` convs
    k4 s2 p1, two convs k4 s1 p1 (official basic_256_multi: 30 and 14 at 256 px, 14 and 6 at 128 px)."""
    for _ in range(scale):
        size = (size - 1) // 2 + 1
    return (size >> layers) - 2


def validate(cfg) -> list[str]:
    """BicycleGAN's shape rules (the official networks'): the U-Net reaches 1 x 1 and E's last map is 8 x 8 at the
    crop."""
    b, crop = cfg.bicyclegan, cfg.data.crop
    errors = []
    power = crop >= 16 and crop & (crop - 1) == 0
    named = {"unet_128": 128, "unet_256": 256, "resnet_128": 128, "resnet_256": 256}
    for key, value in (("generator", b.generator), ("encoder", b.encoder)):
        if value in named and crop != named[value]:
            errors.append(
                f"bicyclegan.{key}: {value} needs data.crop={named[value]}, got {crop} (or use "
                f"{value.split('_')[0]}, sized by the crop)"
            )
    if (b.generator.startswith("unet") or b.encoder.startswith("resnet")) and not power:
        errors.append(f"data.crop: {crop} must be a power of two >= 16 for BicycleGAN's U-Net and encoder")
    smallest = _patch_map_size(crop, b.d_layers, b.num_ds - 1)
    if smallest < 1:
        errors.append(
            f"bicyclegan.d_layers: the discriminator's scale {b.num_ds - 1} has no patch left at "
            f"{crop} px ({b.d_layers} layers); use fewer layers or scales (bicyclegan.d_layers, num_ds)"
        )
    return errors
