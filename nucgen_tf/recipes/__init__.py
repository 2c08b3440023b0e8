"""Dataset recipes: fetch public data sets and convert them to ``<split>/{images,masks}/*.tif``.

Recipes define absl flags at import time, so import one only to run it (``nucgen fetch``).
"""
