"""Test fixtures shipped with hsr but never imported by its runtime modules: tiny offline models of every
supported architecture (:mod:`hsr.testing.tiny`), for the test suite, the benchmarks and users' own tests."""
