"""green_callbacks: joules next to accuracy, from inside the frameworks you already use.

The core imports no deep-learning framework; adapters import theirs on use.
"""

from green_callbacks.core import EnergyTracker, WindowResult
from green_callbacks.errors import EnergySourceWarning, GreenCallbacksError
from green_callbacks.meters import Domain, Meter, Reading, open_meters

__version__ = "0.1.0"

__all__ = [
    "Domain",
    "EnergySourceWarning",
    "EnergyTracker",
    "GreenCallbacksError",
    "Meter",
    "Reading",
    "WindowResult",
    "__version__",
    "open_meters",
]
