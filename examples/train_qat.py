"""Train a small MLP with BitNet b1.58 quantization-aware training, then deploy it with packed ternary weights.

    python examples/train_qat.py [--steps 400]

`bitnet_ext.nn.quantize(model, qat=True)` swaps Linear layers for `BitLinearQAT`: latent float weights that
the forward sees ternary (absmean) with int8 per-token activations, with straight-through gradients, so any
`mlx.optimizers` optimizer trains them. `bitnet_ext.nn.to_inference(model)` then packs the weights: the
inference model's outputs equal the QAT model's bit for bit.
"""

import argparse

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from bitnet_ext.nn import quantize, to_inference


def teacher_data(n_train=4096, n_test=2048, dims=32, classes=4):
    """4 classes given by a random 2-layer ReLU teacher on Gaussian inputs."""
    k1, k2, k3, k4 = mx.random.split(mx.random.key(0), 4)
    a, b = mx.random.normal((dims, 64), key=k1), mx.random.normal((64, classes), key=k2)

    def make(n, key):
        x = mx.random.normal((n, dims), key=key)
        return x, mx.argmax(mx.maximum(x @ a, 0) @ b, axis=1)

    return make(n_train, k3), make(n_test, k4)


class MLP(nn.Module):
    def __init__(self, dims=32, hidden=64, classes=4):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(dims, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, classes)

    def __call__(self, x):
        return self.l3(nn.relu(self.l2(nn.relu(self.l1(x)))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=5e-3)
    args = p.parse_args(argv)

    (xtr, ytr), (xte, yte) = teacher_data()
    mx.random.seed(1)
    model = quantize(MLP(), qat=True)

    def loss_fn(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    def accuracy(m):
        return (mx.argmax(m(xte), axis=1) == yte).mean().item()

    opt = optim.Adam(learning_rate=optim.cosine_decay(args.lr, args.steps))
    step = nn.value_and_grad(model, loss_fn)
    for i in range(args.steps):
        idx = mx.random.randint(0, xtr.shape[0], (256,), key=mx.random.key(100 + i))
        loss, grads = step(model, xtr[idx], ytr[idx])
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        if i % 100 == 0 or i == args.steps - 1:
            print(f"step {i:4d}  batch loss {loss.item():.4f}")

    qat_loss, qat_acc, qat_logits = loss_fn(model, xtr, ytr).item(), accuracy(model), model(xte)
    print(f"QAT model:       train loss {qat_loss:.4f}, test accuracy {qat_acc:.4f}")
    to_inference(model)
    print(model)
    inf_acc = accuracy(model)
    print(f"inference model: train loss {loss_fn(model, xtr, ytr).item():.4f}, test accuracy {inf_acc:.4f}")
    print("logits identical after to_inference:", mx.array_equal(model(xte), qat_logits).item())


if __name__ == "__main__":
    main()
