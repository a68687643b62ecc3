"""The fault suite (make test-faults) uses the main suite's fixtures."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import *  # noqa: E402,F401,F403
