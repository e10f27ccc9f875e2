"""Codecs: a device's raw payload bytes as measures (CayenneLPP, UltraLight 2.0, JSON, binary layouts)."""
