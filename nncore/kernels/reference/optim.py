"""The Adam update of one parameter array (the optimizer's arithmetic; :class:`nncore.optim.Adam` keeps
the state and the step count)."""

from ... import backend


def adam_update(p, g, m, v, lr, b1, b2, eps, t, decay):
    """One Adam step on parameter p from gradient g, with bias correction and decoupled weight decay.

    p, g, m, v: arrays of one shape and dtype; p, m and v are updated in place. lr, b1, b2, eps,
    decay (lr times the weight decay, 0 for none): floats; t: the step number, from 1::

        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        p = p - decay * p - lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)

    Works on NumPy and CuPy arrays alike; one scratch array, no other temporaries.
    """
    xp = backend.get_array_module(p)
    dt = p.dtype.type
    tmp = xp.multiply(g, dt(1 - b1))
    m *= dt(b1)
    m += tmp
    xp.multiply(g, g, out=tmp)
    tmp *= dt(1 - b2)
    v *= dt(b2)
    v += tmp
    xp.divide(v, dt(1 - b2 ** t), out=tmp)
    xp.sqrt(tmp, out=tmp)
    tmp += dt(eps)                              # tmp = sqrt(v / (1 - b2**t)) + eps
    xp.divide(m, tmp, out=tmp)
    tmp *= dt(lr / (1 - b1 ** t))
    if decay:
        p -= dt(decay) * p
    p -= tmp
