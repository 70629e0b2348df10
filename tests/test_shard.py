"""A global batch split across processes: which rows a process holds, its random draws and batch sums."""

import pytest
import torch

from gmdrit_cli.data.unpaired import UnpairedImageFolders
from gmdrit_cli.families import drit_losses as losses
from gmdrit_cli.families.gmdrit import losses as losses_mixture
from gmdrit_cli.training import shard


def test_rows_of_each_process_by_hand():
    # batch 8 over 2 processes: halves A = rows 0-3, B = rows 4-7; process 1 holds A[2:4] and B[2:4]
    assert shard.split_batch(8, 0, 2).rows(8) == [0, 1, 4, 5]
    assert shard.split_batch(8, 1, 2).rows(8) == [2, 3, 6, 7]
    # a tensor of 3 blocks (e.g. the generator's 6h rows of a batch of 4 over 2 processes): one row of each
    assert shard.split_batch(4, 1, 2).rows(6) == [1, 3, 5]
    with pytest.raises(ValueError):
        shard.split_batch(6, 0, 2)  # halves of 3 rows cannot be split in two


def test_sharded_draws_are_the_rows_of_one_global_draw():
    """Each process draws the global tensor and keeps its rows: process r's draw equals rows r of a plain
    draw of the whole batch from the same seed."""
    torch.manual_seed(5)
    whole = torch.randn(8, 3)  # a full batch of 8 rows (two halves of 4)
    half = torch.randn(4, 3)  # then one half-sized draw
    unit = torch.rand(8, 5)
    ints = torch.randint(3, (8,))
    for rank in (0, 1):
        torch.manual_seed(5)
        with shard.batch_shard(shard.split_batch(8, rank, 2)):
            mine = shard.randn((4, 3))
            mine_half = shard.randn((2, 3))
            mine_unit = shard.rand((4, 5))
            mine_ints = shard.randint(3, (4,))
        rows = [0, 1, 4, 5] if rank == 0 else [2, 3, 6, 7]
        assert torch.equal(mine, whole[rows])
        assert torch.equal(mine_half, half[[0, 1]] if rank == 0 else half[[2, 3]])
        assert torch.equal(mine_unit, unit[rows])
        assert torch.equal(mine_ints, ints[rows])


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_sharded_randn_like_keeps_layout_and_matches_the_global_draw(layout):
    x = torch.zeros(4, 3, 5, 5).contiguous(memory_format=layout)
    torch.manual_seed(1)
    whole = torch.randn_like(x)
    torch.manual_seed(1)
    with shard.batch_shard(shard.split_batch(4, 1, 2)):
        mine = shard.randn_like(x[:2])
    assert mine.is_contiguous(memory_format=layout)
    assert torch.equal(mine, whole[[1, 3]])


def test_outside_a_step_draws_are_plain_and_sums_unscaled():
    torch.manual_seed(2)
    expected = torch.randn(4, 3)
    torch.manual_seed(2)
    assert torch.equal(shard.randn((4, 3)), expected)
    with shard.batch_shard(shard.split_batch(4, 0, 1)):  # one process: nothing changes
        assert shard.batch_sum_scale() == 1
    assert shard.batch_sum_scale() == 1


def test_batch_sums_of_the_parts_average_to_the_whole():
    """The adversarial loss and the two KLs sum over the batch: the mean over processes of their scaled
    partial sums is the sum over the whole batch (a hand-split batch of 4 over 2 processes)."""
    torch.manual_seed(0)
    logits, mean, logvar = torch.randn(4, 1, 3, 3), torch.randn(4, 8), torch.randn(4, 8)
    var_p = torch.rand(4, 8) + 0.5
    whole = [
        losses.adversarial(logits, True),
        losses.kl_standard_normal(mean, logvar),
        losses_mixture.kl_gaussians(mean, logvar.exp(), mean.flip(0), var_p),
    ]
    parts = []
    for rank, rows in ((0, [0, 2]), (1, [1, 3])):
        with shard.batch_shard(shard.split_batch(4, rank, 2)):
            parts.append(
                [
                    losses.adversarial(logits[rows], True),
                    losses.kl_standard_normal(mean[rows], logvar[rows]),
                    losses_mixture.kl_gaussians(mean[rows], logvar[rows].exp(), mean.flip(0)[rows], var_p[rows]),
                ]
            )
    for i, total in enumerate(whole):
        assert torch.allclose((parts[0][i] + parts[1][i]) / 2, total, rtol=1e-6)


def test_each_process_gets_its_rows_of_the_same_planned_batch(tiny_data):
    def folders():
        return UnpairedImageFolders(tiny_data, ["A", "B"], "train", resize=36, crop=32, flip=True, seed=7)

    one = folders()
    whole = [one.sample(4) for _ in range(3)]
    two = [folders(), folders()]
    for batch in whole:
        parts = [two[rank].sample(4, rank, 2) for rank in (0, 1)]
        for rank, rows in ((0, [0, 2]), (1, [1, 3])):
            assert torch.equal(parts[rank].images, batch.images[rows])
            assert torch.equal(parts[rank].domains, batch.domains[rows])
    # the sampler state does not depend on the number of processes
    assert two[0].state_dict() == two[1].state_dict() == one.state_dict()
