"""Issue 25, second probe (by someone who did not write the first fixes): what a careless user still broke.

Each test fails on the code before its fix; the commands run in this process (the ``cli`` fixture of
test_careless_user.py) where they can."""

from __future__ import annotations

import pytest

from gmdrit_cli.config import ConfigError, load_config
from test_careless_user import cli  # noqa: F401  (a fixture)


# -- every size-like config key has a bound with its reason -------------------------------------------

@pytest.mark.parametrize("preset, override, reason", [
    ("quickstart", "model.width=100000", "parameters grow with its square"),
    ("quickstart", "data.resize=100000", "memory grows with its square"),
    ("quickstart", "model.nz=1000000000", "attribute layers grow"),
    ("quickstart", "train.batch_size=1000000000", "memory grows with it"),
    ("demo_gmdrit", "mixture.components_per_domain=1000000000", "each component"),
    ("demo_gmdrit", "mixture.thumbnail=100000", "thumbnail"),
    ("vae_quickstart", "vae.layers=40", "channels double"),
    ("quickstart", "speed.prefetch=1000000000", "holds its batches in memory"),
    ("quickstart", "speed.loader_threads=100000", "threads beyond the CPU cores"),
    ("quickstart", "train.grid_random=100000", "column of every sample grid"),
    ("quickstart", "train.dist_timeout=1e300", "a stalled process"),
])
def test_size_like_config_keys_are_bounded_with_a_reason(preset, override, reason):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: .* must be <= .*\(.*{reason}"):
        load_config(preset, [override])


def test_a_refused_value_is_not_checked_again_with_the_default_in_its_place():
    with pytest.raises(ConfigError) as refused:
        load_config("quickstart", ["data.crop=4", "data.resize=4"])
    assert str(refused.value) == "data.crop: 4 must be >= 8"  # not also "data.crop: 216 must be <= ..."
