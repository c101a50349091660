"""``wmbench bench``: measuring (measure.py) and its result files (results.py); a suite is a throughput benchmark
file (:mod:`wmbench.benchmark`)."""
