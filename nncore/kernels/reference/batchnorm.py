"""Batch normalisation, training mode."""


def batchnorm_forward(x3, gamma, beta, eps):
    """Training-mode batch normalisation over axes 0 and 2 of a 3-D view.

    Inputs: x3 (N, C, P) (P = H*W for images, 1 for dense features); gamma, beta (C,); eps.
    Returns (out, xhat, mean, var, inv_std): out and xhat (N, C, P), the rest (C,),
    with mean and var taken over the M = N*P values of each channel (var biased).
    Written with array methods only, so the GPU module reuses it on CuPy arrays.
    """
    mean = x3.mean(axis=(0, 2))
    xc = x3 - mean[None, :, None]
    var = (xc * xc).mean(axis=(0, 2))
    inv_std = (1 / (var + x3.dtype.type(eps)) ** 0.5).astype(x3.dtype)
    xhat = xc * inv_std[None, :, None]
    return gamma[None, :, None] * xhat + beta[None, :, None], xhat, mean, var, inv_std


def batchnorm_backward(dout3, xhat, gamma, inv_std, need_dx=True):
    """Adjoint of :func:`batchnorm_forward`. Returns (dx or None, dgamma, dbeta).

    dbeta = sum dout, dgamma = sum dout*xhat (over N and P), and
    dx = gamma*inv_std * (dout - dbeta/M - xhat*dgamma/M). Array methods only (CuPy reuses it).
    """
    # exercise: batchnorm
    m = dout3.dtype.type(dout3.shape[0] * dout3.shape[2])
    dbeta = dout3.sum(axis=(0, 2))
    dgamma = (dout3 * xhat).sum(axis=(0, 2))
    if not need_dx:
        return None, dgamma, dbeta
    k = (gamma * inv_std)[None, :, None]
    return k * (dout3 - (dbeta / m)[None, :, None] - xhat * (dgamma / m)[None, :, None]), dgamma, dbeta
    # end exercise
