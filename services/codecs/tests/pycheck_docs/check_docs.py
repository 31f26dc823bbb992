"""Independent decodes of the GTFS-rt, GPX and CAP test data, to cross-check the Rust codecs.

Not run by cargo. Run by hand after `pip install gtfs-realtime-bindings==3.0.0 protobuf gpxpy==1.6.2`:

    python3 services/codecs/tests/pycheck_docs/check_docs.py

It prints the counts and field values that `tests/codecs/docs_*.rs` pin (vehicles with a position,
first vehicle's trip id / track / coordinates, GPX points per kind and with time, CAP polygon vertex
counts and first vertex). GTFS-rt is decoded with Google's bindings, GPX with gpxpy, CAP with
xml.etree.ElementTree, none of which shares code with the Rust side.
"""

import os
import xml.etree.ElementTree as ET

import gpxpy
from google.transit import gtfs_realtime_pb2

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def gtfs():
    path = os.path.join(DATA, "gtfs_rt", "kcm_king_county_metro_vehicle_positions_1.pb")
    msg = gtfs_realtime_pb2.FeedMessage()
    msg.ParseFromString(open(path, "rb").read())
    ents = list(msg.entity)
    with_pos = [e for e in ents if e.HasField("vehicle") and e.vehicle.HasField("position")]
    first = with_pos[0].vehicle
    track = first.vehicle.id or first.vehicle.label or with_pos[0].id
    tracks = {(e.vehicle.vehicle.id or e.vehicle.vehicle.label or e.id) for e in with_pos}
    print("gtfs entities", len(ents), "vehicles_with_position", len(with_pos), "distinct tracks", len(tracks))
    print("gtfs header ts", msg.header.timestamp)
    print("gtfs first trip", first.trip.trip_id, "route", first.trip.route_id, "track", track,
          "ts", first.timestamp, "lon", first.position.longitude, "lat", first.position.latitude,
          "bearing", first.position.bearing if first.position.HasField("bearing") else None,
          "status", gtfs_realtime_pb2.VehiclePosition.VehicleStopStatus.Name(first.current_status)
          if first.HasField("current_status") else None, "stop", first.stop_id)
    print("gtfs with timestamp", sum(1 for e in with_pos if e.vehicle.HasField("timestamp")))


def gpx(name):
    g = gpxpy.parse(open(os.path.join(DATA, "gpx", name), encoding="utf-8"))
    trk = [p for t in g.tracks for s in t.segments for p in s.points]
    rte = [p for r in g.routes for p in r.points]
    wpt = list(g.waypoints)
    allp = trk + rte + wpt
    timed = sum(1 for p in allp if p.time is not None)
    print(f"gpx {name}: tracks {len(g.tracks)} trkpt {len(trk)} routes {len(g.routes)} rtept {len(rte)} "
          f"wpt {len(wpt)} timed {timed} untimed {len(allp) - timed}")
    if trk:
        p = trk[0]
        print(f"  first trkpt lon {p.longitude!r} lat {p.latitude!r} ele {p.elevation!r} time {p.time}")
        print(f"  track names {[t.name for t in g.tracks]} file name {g.name!r}")


def cap(name):
    root = ET.parse(os.path.join(DATA, "alerts", name)).getroot()
    ns = root.tag.split("}")[0] + "}"
    for info in root.findall(ns + "info"):
        for area in info.findall(ns + "area"):
            polys = [p.text.split() for p in area.findall(ns + "polygon") if p.text and p.text.strip()]
            circles = [c.text for c in area.findall(ns + "circle") if c.text and c.text.strip()]
            codes = [(g.find(ns + "valueName").text, g.find(ns + "value").text) for g in area.findall(ns + "geocode")]
            print(f"cap {name}: id {root.find(ns + 'identifier').text} sent {root.find(ns + 'sent').text} "
                  f"polygons {[len(p) for p in polys]} circles {len(circles)} geocodes {codes}")
            for p in polys:
                lat, lon = p[0].split(",")
                print(f"  first vertex lon {lon} lat {lat}; closed {p[0] == p[-1]}")


if __name__ == "__main__":
    gtfs()
    for f in ["gpxpy_korita-zbevnica.gpx", "georust_garmin-activity.gpx", "georust_strava_route_example.gpx"]:
        gpx(f)
    for f in sorted(os.listdir(os.path.join(DATA, "alerts"))):
        cap(f)
