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
