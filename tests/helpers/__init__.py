"""Helpers shared by the tests: files, trees and runs they build; imported as ``tests.helpers.<module>``.

Fixtures live in ``tests/conftest.py``; test files import nothing from one another, only from here.
``toy_adapter`` is also the README's "Adding a dataset" example, which the tiny workflow config
(``tests/data/tiny.yaml``) names as ``tests.helpers.toy_adapter``.
"""
