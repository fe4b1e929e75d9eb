"""Offline code: data sets, embedding caches, metrics, calibration fitting and evaluation support.

Used by ``avid calibrate`` and the tools; the door (``avid run``) never imports this package
(tests/test_imports.py checks it).
"""
