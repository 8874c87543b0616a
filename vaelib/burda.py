"""Numbers published by Burda, Grosse and Salakhutdinov (2016), which the shipped ``burda-*`` models
and the benchmarks are compared with.

Reference data, not part of the weight loader.  (The recipe of the shipped
models, ``burda_config`` and ``BURDA_N_TRAIN``, is in :mod:`vaelib.pretrained`
beside the weights it made.)
"""

__all__ = ["BURDA_PUBLISHED_NLL"]

# Burda, Grosse and Salakhutdinov (2016), Table 1, one stochastic layer: test NLL (nats) by training k.
BURDA_PUBLISHED_NLL = {1: 86.76, 5: 85.54, 50: 84.78}
