"""The domain: resources, names, states, validation and replica plans.

This package imports nothing else from mlengine; every other layer depends on it.
"""
