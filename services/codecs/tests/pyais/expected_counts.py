"""Independent cross-check of the AIS decode counts pinned in tests/codecs/ais_files.rs.

Not run by cargo. Run once, by hand, when the sample files change:

    python3 -m venv /tmp/pyais-venv && /tmp/pyais-venv/bin/pip install pyais==3.3.1
    /tmp/pyais-venv/bin/python services/codecs/tests/pyais/expected_counts.py

For every file in tests/data/*.nmea and *.aivdm it prints one line of JSON: the number of AIS
sentences with a valid checksum (pyais NMEAMessage.is_valid), the number of assembled messages
pyais yields from valid sentences, and how many of each message type pyais decodes without error.
pyais 3.3.1 assembles multi-part messages only from contiguous fragments, keyed by
(seq id, channel, talker, type, fragment count); geostream also accepts out-of-order fragments and
keys by the source station, which does not make a difference on these files.
"""

import collections
import json
import pathlib
import sys

import pyais
from pyais.messages import NMEAMessage
from pyais.stream import IterMessages

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"


def strip_receiver_fields(line: bytes) -> bytes:
    """Drop an NMEA 4.0 tag block prefix and any fields after the `*hh` checksum (USCG station and
    time, exactEarth epoch ms): NMEAMessage.from_bytes checks the bare sentence only. The tag block
    checksums in the AMSA file are all `*00` (wrong), which geostream accepts only with
    `verify_tag_block_checksum: false`; the counts here are for that setting."""
    line = line.strip()
    if line.startswith(b"#"):
        return b""  # a comment (gpsd's sample quotes sentences inside comments)
    if line.startswith(b"\\"):
        end = line.find(b"\\", 1)
        line = line[end + 1:] if end > 0 else line
    star = line.find(b"*")
    if star >= 0:
        line = line[: star + 3]
    return line


def main() -> None:
    assert pyais.__version__ == "3.3.1", pyais.__version__
    for path in sorted(DATA.iterdir()):
        if path.suffix not in (".nmea", ".aivdm"):
            continue
        lines = path.read_bytes().splitlines()
        sentences = 0
        for raw in lines:
            line = strip_receiver_fields(raw)
            if not line:
                continue
            try:
                msg = NMEAMessage.from_bytes(line)
            except Exception:  # noqa: BLE001 - anything pyais refuses is not a valid sentence
                continue
            if msg.is_valid:
                sentences += 1
        valid_lines = []
        for raw in lines:
            line = strip_receiver_fields(raw)
            try:
                if NMEAMessage.from_bytes(line).is_valid:
                    valid_lines.append(line)
            except Exception:  # noqa: BLE001
                continue
        messages = 0
        types: collections.Counter = collections.Counter()
        errors = 0
        for msg in IterMessages(valid_lines):
            messages += 1
            try:
                decoded = msg.decode()
            except Exception:  # noqa: BLE001
                errors += 1
                continue
            types[decoded.msg_type] += 1
        out = {
            "file": path.name,
            "valid_sentences": sentences,
            "messages": messages,
            "decode_errors": errors,
            "types": dict(sorted(types.items())),
        }
        print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
