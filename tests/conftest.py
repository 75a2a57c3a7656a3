"""Shared fixtures. Each group lives in its own module, imported here."""

from tests.fixtures_data import *  # noqa: F401,F403
from tests.fixtures_docker import *  # noqa: F401,F403
from tests.fixtures_gcs import *  # noqa: F401,F403
from tests.fixtures_s3 import *  # noqa: F401,F403
from tests.fixtures_train import *  # noqa: F401,F403
