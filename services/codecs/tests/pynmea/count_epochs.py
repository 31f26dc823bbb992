"""Independent cross-check of the NMEA codec's pinned counts, using pynmea2 (not run by cargo).

Counts, per file, the distinct UTC times (fix epochs) that have at least one valid-fix position
sentence (GGA quality > 0, RMC/GLL status A, GNS mode not all 'N') with a position, i.e. what
NmeaCodec emits as observations. Lines pynmea2 cannot parse or whose checksum fails are counted as
errors; '#' lines as comments.

Run:  python3 -m venv /tmp/venv && /tmp/venv/bin/pip install pynmea2
      /tmp/venv/bin/python services/codecs/tests/pynmea/count_epochs.py services/codecs/tests/data
"""

import sys
from pathlib import Path

import pynmea2

FILES = [
    "aerorust_nmea1_moving_track_2017-03-31.nmea",
    "aerorust_nmea2_gnss_mixed.nmea",
    "gpsd_telit-he910.log",
    "gpsd_skytraq-dgps.log",
    "gpsd_hemi.log",
    "gpsd_ublox-8.log",
    "pyais_mixed_gatehouse_pghp.nmea",
]


def valid_fix(msg):
    t = msg.sentence_type
    if t == "GGA":
        return bool(msg.gps_qual) and int(msg.gps_qual) > 0 and bool(msg.lat)
    if t in ("RMC", "GLL"):
        return msg.status == "A" and bool(msg.lat)
    if t == "GNS":
        return any(c != "N" for c in (msg.mode_indicator or "N")) and bool(msg.lat)
    return False


def count(path):
    epochs, errors, comments = [], 0, 0
    for raw in path.read_bytes().split(b"\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(b"#"):
            comments += 1
            continue
        try:
            msg = pynmea2.parse(line.decode("ascii"), check=True)
        except (pynmea2.ParseError, UnicodeDecodeError, ValueError):
            errors += 1
            continue
        if isinstance(msg, pynmea2.TalkerSentence) and valid_fix(msg):
            key = msg.timestamp
            if not epochs or epochs[-1] != key:
                epochs.append(key)
    return len(epochs), comments, errors


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "services/codecs/tests/data")
    for name in FILES:
        n, comments, errors = count(root / name)
        print(f"{name}: epochs={n} comments={comments} unparsable={errors}")


if __name__ == "__main__":
    main()
