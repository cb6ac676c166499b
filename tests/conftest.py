"""Settings for the whole suite.

Property tests (hypothesis) draw their examples from a fixed seed by default, so a run's
verdict depends on the code alone: a CI run cannot fail on examples another run of the same
commit did not draw. ``HYPOTHESIS_PROFILE=explore`` draws new examples on every run, which
is how the property tests keep finding new cases (run it when changing code they cover).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
