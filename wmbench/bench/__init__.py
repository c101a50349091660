"""``wmbench bench``: measuring (measure.py), its result files (results.py) and suite files (suite.py)."""
