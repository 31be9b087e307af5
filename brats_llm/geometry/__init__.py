"""Geometry: bounding box, centre point and polygon of the tumour on a 2D slice."""
