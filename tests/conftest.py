"""Settings for every test.

Hypothesis gives each example a deadline (200 ms) by default; on a busy
2-core CI machine a slow example then fails a test whose behaviour is right
(``test_cobham_conserves_the_mg1_mean`` did, at 292 ms). Tests here check
behaviour, never speed (speed is what ``benchmarks/`` measures), so no
example has a deadline.
"""

from hypothesis import settings

settings.register_profile("simxen", deadline=None)
settings.load_profile("simxen")
