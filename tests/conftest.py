"""Make the flat top-level modules importable from tests/ and keep torch to the two cores."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
