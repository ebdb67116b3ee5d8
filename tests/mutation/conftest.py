"""Under mutmut (which sets MUTANT_UNDER_TEST), the quick in-process tests of this folder run
first: with ``-x``, a mutant they kill never waits for the slower suites."""

import os


def pytest_collection_modifyitems(items):
    if os.environ.get("MUTANT_UNDER_TEST"):
        items.sort(key=lambda item: "tests/mutation/" not in item.nodeid.replace(os.sep, "/"))
