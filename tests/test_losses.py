import torch

from ssl_ctx.pretext.losses import masked_l2


def test_masked_l2_ignores_pixels_outside_the_hole():
    target = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:4, 2:4] = True
    prediction = torch.randn(2, 3, 8, 8) * 100
    prediction = torch.where(mask, torch.full_like(prediction, 0.5), prediction).requires_grad_()
    loss = masked_l2(prediction, target, mask)
    assert torch.isclose(loss, torch.tensor(0.25))  # normalised over dropped pixels: (0.5)^2
    loss.backward()
    assert (prediction.grad[~mask.expand_as(prediction)] == 0).all()
    assert (prediction.grad[mask.expand_as(prediction)] != 0).all()


def test_masked_l2_matches_the_paper_definition():
    torch.manual_seed(0)
    x, out = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    mask = torch.rand(4, 1, 16, 16) < 0.25
    m = mask.float().expand_as(x)
    reference = ((m * (x - out)) ** 2).sum() / m.sum()
    assert torch.isclose(masked_l2(out, x, mask), reference)


def test_reconstruction_loss_options_reproduce_paper_and_released_code():
    from ssl_ctx.pretext.losses import reconstruction_loss

    torch.manual_seed(1)
    x, out = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = torch.rand(2, 1, 8, 8) < 0.3
    # Paper (Eq. 1): the masked L2 itself.
    assert torch.equal(reconstruction_loss(out, x, mask), masked_l2(out, x, mask))
    # train_random.lua as its README runs it: nn.MSECriterion over every value.
    assert torch.isclose(reconstruction_loss(out, x, mask, 1.0, "image"), ((out - x) ** 2).mean())
    # useOverlapPred=1: context pixels weigh 10, the hole 1.
    weight = torch.where(mask, 1.0, 10.0).expand_as(x)
    assert torch.isclose(reconstruction_loss(out, x, mask, 10.0, "image"), (weight * (out - x) ** 2).mean())
