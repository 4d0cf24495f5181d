"""Helpers for tests of anyware and of code built on it: tolerances, comparisons, markers."""
