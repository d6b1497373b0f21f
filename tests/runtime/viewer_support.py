"""Checks of the viewer files against their formats, and the contract's Region, shared by the exporter's tests
and the scan's."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Region:
    """The contract's Region (runtime/regions.py), by hand."""

    outline: list[tuple[float, float]]
    holes: list[list[tuple[float, float]]]
    centroid: tuple[float, float]
    diameter_mm: float
    area_mm2: float
    mean_probability: float
    max_probability: float
    tiles: int


def shoelace(ring):
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]))


def check_rfc7946_polygon(geometry, width, height):
    """RFC 7946 3.1.6: a Polygon is an array of linear rings, each closed with at least four positions,
    exterior counter-clockwise and holes clockwise; positions are two finite numbers, here inside the slide."""
    assert geometry["type"] == "Polygon"
    rings = geometry["coordinates"]
    assert isinstance(rings, list) and rings
    for k, ring in enumerate(rings):
        assert len(ring) >= 4 and ring[0] == ring[-1]
        for position in ring:
            assert len(position) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in position)
            assert 0 <= position[0] <= width and 0 <= position[1] <= height, position
        assert (shoelace(ring) > 0) == (k == 0), f"ring {k} is wound the wrong way"


def check_qupath_properties(properties):
    """What QuPath's GeoJSON reader takes: objectType, classification {name, color [r, g, b]},
    measurements as a name -> number object."""
    assert properties["objectType"] in ("annotation", "tile", "detection")
    classification = properties["classification"]
    assert isinstance(classification["name"], str)
    assert len(classification["color"]) == 3 and all(isinstance(c, int) and 0 <= c <= 255
                                                      for c in classification["color"])
    assert all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in properties["measurements"].items())


def asap_polygons(path: Path) -> dict[str, list[list[list[float]]]]:
    """annotations.xml parsed as ASAP reads it: {group: [polygon as [[x, y], ...] in Order]}; checks the
    root, the groups declared and that every annotation is a polygon."""
    root = ET.parse(path).getroot()
    assert root.tag == "ASAP_Annotations"
    groups = {g.get("Name") for g in root.find("AnnotationGroups")}
    assert groups == {"Tumor", "Exclusion"}
    found = {"Tumor": [], "Exclusion": []}
    for annotation in root.find("Annotations"):
        assert annotation.get("Type") == "Polygon"
        points = sorted(annotation.find("Coordinates"), key=lambda c: int(c.get("Order")))
        found[annotation.get("PartOfGroup")].append([[float(c.get("X")), float(c.get("Y"))] for c in points])
    return found
