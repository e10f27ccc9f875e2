"""City data hub: an NGSI-LD context broker with the device layer built in."""

__version__ = "0.1.0"
