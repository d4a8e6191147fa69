"""The exercises: their names, in teaching order, and the one-line task each stub states."""

#: exercise name -> the task its stubs state (``NotImplementedError("exercise <name>: <task>")``)
EXERCISES = {
    "im2col": "unfold the padded image patches into columns, cols[(c*KH + i)*KW + j, (n*OH + oh)*OW + ow]",
    "col2im": "fold columns back into an image, adding where patches overlap (the adjoint of im2col)",
    "conv": "the convolution as im2col and one matrix product, and its gradients dx, dw, db",
    "maxpool": "the max of each k x k window with its arg-max offset i*k + j, and dout routed to that one input",
    "relu": "out = max(x, 0); dx = dout where out > 0, as a new array",
    "dense": "out = x @ W + b; dx = dout @ W.T, dW = x.T @ dout, db = dout summed over the batch",
    "softmax": "a stable log-softmax (subtract each row's maximum) and dlogits = (softmax - onehot) / N",
    "batchnorm": "dx, dgamma, dbeta of training-mode batch normalisation over the M = N*P values of a channel",
    "dropout": "draw the inverted-dropout mask (keep with probability 1 - p, scaled by 1/(1 - p)); backward applies it",
    "sgd": "one SGD step with momentum: v = mu*v + g (v = g at the first step); p -= lr*v (Nesterov: lr*(g + mu*v))",
}


def parse_only(text):
    """The exercises named in ``--only`` (comma-separated), in teaching order; all of them for None."""
    from ..errors import UsageError

    if text is None:
        return list(EXERCISES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXERCISES]
    if unknown or not names:
        raise UsageError(f"unknown exercise {', '.join(unknown) or repr(text)}; choose from {', '.join(EXERCISES)}")
    return [n for n in EXERCISES if n in names]
