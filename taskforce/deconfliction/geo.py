"""Where operations meet: great-circle distance and the H3 cells a disc touches.

Two operations conflict in place when the distance between their centres is less
than the sum of their radii, i.e. when their discs share a point. The index never
compares an operation with every other: each operation is stored under the H3
cells (resolution ``RESOLUTION``) that its disc touches, and a new operation looks
up only the cells its own disc touches.

Why one fixed resolution, not one chosen per radius: the cells of one resolution
partition the earth, so when two discs share a point x, the one cell holding x
touches both discs and is in both covers. The lookup is then exact (no missed
conflict), which mixing resolutions is not (H3 children do not tile their parent
exactly). Resolution 7 (hexagons of about 5 km², edge about 1.2 km) keeps a
small operation (a motel, a block) in one to three cells and the largest allowed
disc (``RADIUS_MAX_M``, 25 km) in a few hundred; candidates found in the shared
cells are then checked exactly with the haversine distance.

Time is bucketed the same way: an operation's cells are stored once per UTC day
its window touches (days_touched), and a lookup asks for the new window's days,
so the seek is (cell, day), and only operations of the same days are read.

A cover is computed without trusting a nominal cell size: the centre cell's own
circumradius (its farthest vertex), widened by ``SIZE_SLACK`` for the neighbours'
slightly different sizes, bounds how far a touching cell's centre can be; the
grid disk is taken wide enough to reach that far and then trimmed to the cells
whose centre is within ``radius + circumradius``. tests/unit test it on random
discs at every latitude band against points sampled on and in the disc.
"""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

# h3 is imported where it is used (once a call, never in a loop): the web
# process starts without it.

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius
RESOLUTION = 7
RADIUS_MIN_M = 10
RADIUS_MAX_M = 25_000
SIZE_SLACK = 1.15  # neighbouring cells differ in size by a few per cent; stay generous
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def discs_meet(lat1: float, lon1: float, r1: float, lat2: float, lon2: float,
               r2: float) -> bool:
    """The place test of a conflict: closer than the sum of the radii."""
    return distance_m(lat1, lon1, lat2, lon2) < r1 + r2


def _circumradius_m(cell: int) -> float:
    import h3.api.basic_int as h3

    lat, lon = h3.cell_to_latlng(cell)
    return max(distance_m(lat, lon, vlat, vlon) for vlat, vlon in h3.cell_to_boundary(cell))


def disc_cells(lat: float, lon: float, radius_m: float, res: int = RESOLUTION) -> list[int]:
    """Every cell of resolution `res` that the disc (centre, radius) touches (a
    superset by at most one ring: never one too few)."""
    import h3.api.basic_int as h3

    centre = h3.latlng_to_cell(lat, lon, res)
    circ = _circumradius_m(centre)
    reach = radius_m + circ * SIZE_SLACK
    # Centres k rings out are at least 1.5 * k * circumradius away, and at most
    # sqrt(3) * k * circumradius (hexagon geometry): rings up to `inner` are wholly
    # within reach, rings up to `k` may be, beyond none is.
    k = max(1, math.ceil(reach / (1.5 * circ / SIZE_SLACK)))
    inner = math.floor(reach / (math.sqrt(3) * circ * SIZE_SLACK))
    out = set(h3.grid_disk(centre, inner)) if inner >= 0 else set()
    # the rest by a flat-earth distance, generous by 1 % (it only has to keep every
    # cell within reach, never to be exact: the exact test is on operations)
    kx = math.cos(math.radians(lat)) * math.radians(1) * EARTH_RADIUS_M
    ky = math.radians(1) * EARTH_RADIUS_M
    limit = (reach * 1.01) ** 2
    for cell in h3.grid_disk(centre, k):
        if cell in out:
            continue
        clat, clon = h3.cell_to_latlng(cell)
        dlon = (clon - lon + 540) % 360 - 180
        if (dlon * kx) ** 2 + ((clat - lat) * ky) ** 2 <= limit:
            out.add(cell)
    return sorted(out)


def days_touched(start: datetime, end: datetime) -> list[int]:
    """The UTC days (since 1970-01-01) that the window [start, end) touches: two
    windows that overlap share at least one (the day of any shared instant)."""
    first = (start - EPOCH) // DAY
    last = (end - EPOCH - timedelta(microseconds=1)) // DAY
    return list(range(first, max(first, last) + 1))


def cell_of(lat: float, lon: float, res: int = RESOLUTION) -> int:
    import h3.api.basic_int as h3

    return h3.latlng_to_cell(lat, lon, res)
