"""Limify's framework-free core: plans, results, algorithms and storage adapters."""
