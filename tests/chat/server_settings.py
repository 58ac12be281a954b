"""Settings for an app server started by a test in its own process (daphne)."""

from anycompany.env import env_float
from tests.settings import *  # noqa: F403

# The demo model's pause between streamed chunks: a slow model without a network.
CHAT_DEMO_DELAY_SECONDS = env_float("CHAT_DEMO_DELAY_SECONDS", 0.0, minimum=0.0)
