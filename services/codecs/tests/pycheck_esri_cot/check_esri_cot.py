"""Independent decodes of the Esri JSON and Cursor on Target test data (tests/codecs/esri_files.rs and
tests/codecs/cot_files.rs pin what this prints).

Python 3 standard library only (json, xml.etree.ElementTree, math, datetime); cargo does not run it.
From the repository root:

    python3 services/codecs/tests/pycheck_esri_cot/check_esri_cot.py

Written from the rules in the codecs' module documentation, not from the Rust code:
- Esri JSON: a feature without geometry (or with an empty one) is rejected `schema`; with a time
  path, a feature without that value is rejected `schema`. Polygon rings: clockwise (negative
  shoelace area, y up) rings are outer rings, counter-clockwise ones holes that belong to the
  smallest outer ring containing their first vertex (even-odd test); holes inside no outer ring
  become outer rings; outputs are rewound so outer rings are counter-clockwise. The Michigan state
  plane coordinates (Lambert conformal conic, two standard parallels, GRS80, international feet) are
  inverted with Snyder's formulas (USGS Professional Paper 1395, eqs. 15-9 to 15-11, 7-9).
- CoT: the stream is split at each "<?xml" declaration (every event of this capture has one) and
  each event parsed with ElementTree; `t-` types are skipped; no point, or lat/lon not numbers ->
  `schema`; out of range -> `invalid_coordinates`; exactly (0, 0) -> `null_island`; a time that is
  not RFC 3339 -> `invalid_time`; hae/ce/le of 9999999 are unknown.
"""

import json
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def load(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------ Esri JSON


def area2(ring):
    return sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1))


def inside(ring, x, y):
    c = False
    for i in range(len(ring) - 1):
        (x1, y1), (x2, y2) = ring[i][:2], ring[i + 1][:2]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            c = not c
    return c


def esri_polygons(rings):
    """Esri rings -> list of GeoJSON polygons (lists of rings), rewound."""
    outers = [r for r in rings if area2(r) <= 0]
    holes = [r for r in rings if area2(r) > 0]
    polys = [[list(reversed(r))] for r in outers]
    for h in holes:
        owners = [i for i, o in enumerate(outers) if inside(o, h[0][0], h[0][1])]
        if owners:
            i = min(owners, key=lambda i: abs(area2(outers[i])))
            polys[i].append(list(reversed(h)))
        else:
            polys.append([h])
    return polys


def facilities():
    doc = load("esri/pyesridump_esri_test_facilities_2015.json")
    feats = doc["features"]
    with_geom = [f for f in feats if f.get("geometry")]
    print(f"facilities: features={len(feats)} with_geometry={len(with_geom)} without={len(feats) - len(with_geom)}")
    print(f"  catalog mapping (no time, skip_null_geometry): accepted={len(with_geom)} skipped={len(feats) - len(with_geom)} "
          f"tracks={len({f['attributes']['objectid'] for f in with_geom})}")
    timed = [f for f in with_geom if f["attributes"].get("observed") is not None]
    print(f"  time = attributes.observed: accepted={len(timed)} rejected_schema={len(feats) - len(timed)} "
          f"(no geometry {len(feats) - len(with_geom)}, no time {len(with_geom) - len(timed)})")
    first = timed[0]
    print("  first timed:", first["attributes"]["objectid"], first["attributes"]["observed"],
          datetime.utcfromtimestamp(first["attributes"]["observed"] / 1000).isoformat(), first["geometry"])
    print("  first overall:", feats[0]["attributes"]["objectid"], "geometry" in feats[0])
    idx = next(i for i, f in enumerate(feats) if f.get("geometry"))
    print("  first with geometry: index", idx, feats[idx]["attributes"]["objectid"], feats[idx]["geometry"])
    print("  observed range:", min(f["attributes"]["observed"] for f in timed), max(f["attributes"]["observed"] for f in timed))
    print("  observed == 0:", sum(1 for f in timed if f["attributes"]["observed"] == 0))


def columbia():
    doc = load("esri/pyesridump_us_mo_columbia_address_points.json")
    feats = doc["features"]
    print(f"columbia: features={len(feats)} tracks={len({f['attributes']['OBJECTID'] for f in feats})}")
    f = feats[0]
    print("  first:", f["attributes"]["OBJECTID"], f["attributes"]["HOUSENO"], f["attributes"]["STREET"], f["geometry"])
    f = feats[-1]
    print("  last:", f["attributes"]["OBJECTID"], f["geometry"])


def lcc_inverse(x_ft, y_ft):
    """Michigan South (FIPS 2113, international feet) to NAD83 lon/lat in degrees."""
    a, f = 6378137.0, 1 / 298.257222101
    e = math.sqrt(2 * f - f * f)
    phi1, phi2, phi0 = map(math.radians, (42.1, 43.66666666666666, 41.5))
    lam0 = math.radians(-84.36666666666666)
    fe, fn = 4000000.0, 0.0

    def m(p):
        return math.cos(p) / math.sqrt(1 - (e * math.sin(p)) ** 2)

    def t(p):
        return math.tan(math.pi / 4 - p / 2) / ((1 - e * math.sin(p)) / (1 + e * math.sin(p))) ** (e / 2)

    n = (math.log(m(phi1)) - math.log(m(phi2))) / (math.log(t(phi1)) - math.log(t(phi2)))
    big_f = m(phi1) / (n * t(phi1) ** n)
    rho0 = a * big_f * t(phi0) ** n
    x, y = x_ft * 0.3048 - fe, y_ft * 0.3048 - fn
    rho = math.copysign(math.hypot(x, rho0 - y), n)
    theta = math.atan2(x, rho0 - y)
    tt = (rho / (a * big_f)) ** (1 / n)
    lam = theta / n + lam0
    phi = math.pi / 2 - 2 * math.atan(tt)
    for _ in range(20):
        phi = math.pi / 2 - 2 * math.atan(tt * ((1 - e * math.sin(phi)) / (1 + e * math.sin(phi))) ** (e / 2))
    return math.degrees(lam), math.degrees(phi)


def kent():
    doc = load("esri/pyesridump_us_mi_kent_parcels_stateplane_wkt.json")
    feats = doc["features"]
    shapes = [esri_polygons(f["geometry"]["rings"]) for f in feats]
    print(f"kent: features={len(feats)} polygons_per_feature={[len(p) for p in shapes]} "
          f"rings={[[len(r) for r in p] for p in shapes]}")
    f = feats[0]
    ring = f["geometry"]["rings"][0]
    print("  first: OBJECTID", f["attributes"]["OBJECTID"], "vertices", len(ring),
          "area ft2 (shoelace)", abs(area2(ring)) / 2, "SHAPE.STArea()", f["attributes"]["SHAPE.STArea()"])
    x, y = ring[0]
    # The Rust side rewinds the ring: its first position is the last Esri vertex, which equals the first.
    lon, lat = lcc_inverse(x, y)
    print(f"  first vertex ({x}, {y}) ft -> lon {lon!r} lat {lat!r}")
    x, y = ring[1]
    lon, lat = lcc_inverse(x, y)
    print(f"  second Esri vertex ({x}, {y}) ft -> lon {lon!r} lat {lat!r} (second-to-last after rewinding)")


def waldo():
    geom = load("esri/terraformer_waldo_canyon_fire_2012_arcgis.json")
    ref = load("esri/terraformer_waldo_canyon_fire_2012_geojson.json")
    polys = esri_polygons(geom["rings"])
    print(f"waldo: rings={len(geom['rings'])} outer={sum(1 for r in geom['rings'] if area2(r) <= 0)} "
          f"polygons={len(polys)} rings_per_polygon={[len(p) for p in polys]}")
    print(f"  terraformer: {ref['type']} polygons={len(ref['coordinates'])} "
          f"rings_per_polygon={[len(p) for p in ref['coordinates']]}")
    print("  ring sizes:", [[len(r) for r in p] for p in polys])
    same = all(sorted(map(tuple, a)) == sorted(map(tuple, b))
               for p, q in zip(polys, ref["coordinates"]) for a, b in zip(p, q))
    print("  same vertex sets as terraformer, polygon by polygon and ring by ring:", same)
    print("  first polygon exterior first position (after rewinding):", polys[0][0][0])


def small_ones():
    gp = load("esri/gdal_esripolygon_nested_clockwise_rings.json")
    rings = gp["features"][0]["geometry"]["rings"]
    print("gdal polygon: windings", ["cw" if area2(r) < 0 else "ccw" for r in rings])
    print("  as polygons:", esri_polygons(rings))
    ls = load("esri/gdal_esrilinestring.json")
    print("gdal linestring:", ls["features"][0]["geometry"]["paths"])
    blm = load("esri/gdal_blm_plss_getlatlon_response.json")
    ring = blm["features"][0]["geometry"]["rings"][0]
    print("blm: rings", len(blm["features"][0]["geometry"]["rings"]), "vertices", len(ring),
          "clockwise", area2(ring) < 0, "attributes", blm["features"][0]["attributes"])


# ------------------------------------------------------------------ CoT

UNKNOWN = 9999999.0


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f != UNKNOWN else None


def cot_events(text):
    parts = [p for p in text.split("<?xml") if p.strip()]
    return [ET.fromstring("<?xml" + p) for p in parts]


def classify(e):
    if e.get("type", "").startswith("t-"):
        return "skipped"
    p = e.find("point")
    if p is None:
        return "schema"
    try:
        lat, lon = float(p.get("lat")), float(p.get("lon"))
    except (TypeError, ValueError):
        return "schema"
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return "invalid_coordinates"
    if lon == 0 and lat == 0:
        return "null_island"
    try:
        datetime.fromisoformat(e.get("time").replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return "invalid_time"
    return None


def describe(e):
    p = e.find("point")
    d = e.find("detail")
    contact = d.find("contact") if d is not None else None
    track = d.find("track") if d is not None else None
    return {
        "uid": e.get("uid"), "type": e.get("type"), "time": e.get("time"), "how": e.get("how"),
        "stale": e.get("stale"), "lat": p.get("lat"), "lon": p.get("lon"), "hae_m": num(p.get("hae")),
        "ce_m": num(p.get("ce")), "le_m": num(p.get("le")),
        "callsign": contact.get("callsign") if contact is not None else None,
        "course_deg": num(track.get("course")) if track is not None else None,
        "speed_mps": num(track.get("speed")) if track is not None else None,
    }


def cot():
    with open(os.path.join(DATA, "cot/freetakserver_session_2020-02-08_887_events.cot.xml"), encoding="utf-8") as f:
        events = cot_events(f.read())
    verdicts = [classify(e) for e in events]
    ok = [e for e, v in zip(events, verdicts) if v is None]
    print(f"cot stream: events={len(events)} accepted={len(ok)} "
          f"rejected={dict(Counter(v for v in verdicts if v not in (None, 'skipped')))} "
          f"skipped={verdicts.count('skipped')} tracks={len({e.get('uid') for e in ok})}")
    print("  types:", dict(sorted(Counter(e.get("type") for e in ok).items())))
    print("  with callsign:", sum(1 for e in ok if describe(e)["callsign"]),
          "with speed:", sum(1 for e in ok if describe(e)["speed_mps"] is not None),
          "with hae:", sum(1 for e in ok if describe(e)["hae_m"] is not None),
          "with ce:", sum(1 for e in ok if describe(e)["ce_m"] is not None))
    for i in (0, 1, len(ok) - 1):
        print(f"  event {i}:", describe(ok[i]))
    moving = [e for e in ok if (describe(e)["speed_mps"] or 0) > 0]
    print("  moving events:", len(moving), "first:", describe(moving[0]) if moving else None)
    for name in sorted(os.listdir(os.path.join(DATA, "cot"))):
        if name.endswith(".xml") and "session" not in name:
            with open(os.path.join(DATA, "cot", name), encoding="utf-8") as f:
                e = ET.fromstring(f.read().encode())
            print(f"  {name}: {classify(e)} {describe(e)}")


if __name__ == "__main__":
    facilities()
    columbia()
    kent()
    waldo()
    small_ones()
    cot()
