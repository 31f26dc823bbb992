"""Independent counts for the JSON, GeoJSON and CSV codec golden tests (tests/codecs/mapping_files.rs).

Run from the repository root (Python 3 standard library only; cargo does not run it):

    python3 services/codecs/tests/pycheck/mapping_counts.py

It reads the same files in services/codecs/tests/data/ with the json and csv modules and applies the
rules the Rust normaliser documents, written again here from the rules rather than the Rust code:
a record is rejected `schema` when the track, time, lon or lat is missing (or null / empty cell),
`invalid_coordinates` when lon/lat is not finite or out of range, `null_island` at exactly (0, 0),
`future_time` more than 24 h after the received time given to the codec. It prints accepted,
rejected-by-reason and distinct track counts, plus the field values the Rust tests pin, so the
numbers in the Rust tests can be compared line by line.
"""

import csv
import json
import math
import os
from collections import Counter

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
KNOT = 1852.0 / 3600.0
FT = 0.3048
FPM = 0.3048 / 60.0


def classify(track, t_ms, lon, lat, received_ms):
    """The reason a record is rejected, or None when it is accepted."""
    if track is None or track == "":
        return "schema"
    if t_ms is None:
        return "schema"
    if lon is None or lat is None:
        return "schema"
    lon, lat = float(lon), float(lat)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return "invalid_coordinates"
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return "invalid_coordinates"
    if lon == 0 and lat == 0:
        return "null_island"
    if float(t_ms) > received_ms + 24 * 3600 * 1000:
        return "future_time"
    return None


def report(name, items, received_ms):
    reasons = Counter()
    tracks = set()
    accepted = 0
    for track, t_ms, lon, lat in items:
        r = classify(track, t_ms, lon, lat, received_ms)
        if r is None:
            accepted += 1
            tracks.add(str(track))
        else:
            reasons[r] += 1
    print(f"{name}: records={len(items)} accepted={accepted} rejected={dict(sorted(reasons.items()))} tracks={len(tracks)}")


def usgs():
    with open(os.path.join(DATA, "usgs_all_week_2018-02-07.geojson"), encoding="utf-8") as f:
        doc = json.load(f)
    received = doc["metadata"]["generated"]
    items = []
    for feat in doc["features"]:
        g = feat.get("geometry")
        lon, lat = (g["coordinates"][0], g["coordinates"][1]) if g else (None, None)
        items.append((feat.get("id"), feat["properties"].get("time"), lon, lat))
    report("usgs", items, received)
    # The same feed handed to the codec as if received at 2018-02-03T00:00:00Z: later quakes are
    # more than 24 h in the future.
    report("usgs_received_2018-02-03", items, 1517616000000)
    first = doc["features"][0]
    print("  first:", first["id"], first["properties"]["time"], first["geometry"]["coordinates"], first["properties"]["mag"])
    last = doc["features"][-1]
    print("  last:", last["id"], last["properties"]["time"], last["geometry"]["coordinates"])
    print("  types:", dict(sorted(Counter(f["properties"]["type"] for f in doc["features"]).items())))


def opensky_csv():
    received = 1633612501000  # 2021-10-07T13:15:01Z
    items = []
    rows = []
    with open(os.path.join(DATA, "opensky_traffic_quickstart_15min.csv"), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rows.append(row)
            blank = lambda k: row[k] if row[k].strip() != "" else None  # noqa: E731
            items.append((blank("icao24"), blank("timestamp"), blank("longitude"), blank("latitude")))
    report("opensky_csv", items, received)
    # Tracked by callsign instead of icao24: rows with an empty callsign have no track.
    by_callsign = [(r["callsign"].strip() or None, r["timestamp"], r["longitude"], r["latitude"]) for r in rows]
    report("opensky_csv_by_callsign", by_callsign, received)
    r = rows[0]
    print("  row1:", r["icao24"], r["timestamp"], r["longitude"], r["latitude"],
          "speed_mps=%.12f" % (float(r["groundspeed"]) * KNOT), "altitude_m=%.12f" % (float(r["altitude"]) * FT),
          "vrate_mps=%.12f" % (float(r["vertical_rate"]) * FPM), "squawk=" + r["squawk"])
    print("  rows without groundspeed:", sum(1 for r in rows if r["groundspeed"] == ""))


def calfire():
    received = 1600128000000  # 2020-09-15T00:00:00Z
    with open(os.path.join(DATA, "traffic_opensky_calfire_2020-09.json"), encoding="utf-8") as f:
        recs = json.load(f)
    items = [(r.get("icao24"), r.get("timestamp"), r.get("longitude"), r.get("latitude")) for r in recs]
    report("calfire", items, received)
    r = recs[0]
    print("  first:", r["icao24"], r["timestamp"], r["longitude"], r["latitude"],
          "speed_mps=%.12f" % (r["groundspeed"] * KNOT), "geoaltitude_m=%.12f" % (r["geoaltitude"] * FT))
    print("  flights:", len({r.get("flight_id") for r in recs}))


if __name__ == "__main__":
    usgs()
    opensky_csv()
    calfire()
