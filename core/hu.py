"""Hounsfield-unit landmarks every part of the product agrees on (air, the 12-bit top, padding, skin)."""

from __future__ import annotations

__all__ = ["AIR", "LOW_ATTENUATION", "PADDING_BELOW", "PADDING_STORED", "SKIN", "TOP"]

AIR = -1024
"""The lowest value of a 12-bit CT: air, and what padding outside the scan circle becomes on loading."""

TOP = 3071
"""The highest value of a 12-bit CT (4095 stored values above AIR)."""

PADDING_BELOW = -1500
"""No tissue or air reads below this: values at or under it mark outside the scan circle (-2000, -3024)."""

PADDING_STORED = -2000
"""What scanners store outside the reconstruction circle, and what the writers store there
with (0028,0120) Pixel Padding Value."""

SKIN = -300.0
"""The skin surface threshold for renderings and the head check: above air and lung, below fat."""

LOW_ATTENUATION = -950.0
"""Air ends and lung begins here; lung voxels below it count as emphysema (LAA-950)."""
