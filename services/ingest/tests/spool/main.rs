//! Tests of the ingest disk spool: round trips, crash recovery, corruption, capacity, acks, and a
//! model-based property test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use geostream_ingest::spool::{FRAME_HEADER, Record, Spool, SpoolConfig, SpoolError};
use geostream_model::{Classify, ErrorClass};
use proptest::prelude::*;

const CFG: SpoolConfig = SpoolConfig { max_bytes: 1 << 20, segment_bytes: 64 };

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}").into_bytes()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn append_range(spool: &mut Spool, range: std::ops::Range<u64>) {
    let owned: Vec<Vec<u8>> = range.clone().map(payload).collect();
    let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    assert_eq!(spool.append(&refs).unwrap(), range);
}

fn all(spool: &Spool) -> Vec<Record> {
    spool.peek(usize::MAX).unwrap()
}

fn expect(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(|seq| Record { seq, payload: payload(seq) }).collect()
}

#[test]
fn round_trip_across_segments_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, report) = Spool::open(tmp.path(), CFG).unwrap();
    assert_eq!(report.records, 0);
    assert!(spool.is_empty());
    assert_eq!(spool.append(&[]).unwrap(), 0..0);
    append_range(&mut spool, 0..10);
    append_range(&mut spool, 10..13);
    assert!(segments(tmp.path()).len() > 2, "small segment_bytes must roll segments");
    assert_eq!(all(&spool), expect(0..13));
    assert_eq!(spool.read_from(5, 3).unwrap(), expect(5..8));
    assert_eq!(spool.len(), 13);
    let bytes: u64 = (0..13).map(|i| FRAME_HEADER + payload(i).len() as u64).sum();
    assert_eq!(spool.bytes(), bytes);
    drop(spool);

    let (mut spool, report) = Spool::open(tmp.path(), CFG).unwrap();
    assert_eq!(report.records, 13);
    assert_eq!(report.torn_records, 0);
    assert_eq!(all(&spool), expect(0..13));
    append_range(&mut spool, 13..20);
    spool.ack(4).unwrap();
    assert_eq!(spool.peek(2).unwrap(), expect(5..7));
    assert_eq!(spool.read_from(0, 1).unwrap(), expect(5..6), "acked records are not returned");
    drop(spool);

    let (spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    assert_eq!(all(&spool), expect(5..20));
    assert_eq!(spool.next_seq(), 20);
}

#[test]
fn torn_tail_at_every_offset_and_flipped_bytes() {
    const N: u64 = 7;
    // Build once to learn where the last record sits.
    let probe = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(probe.path(), CFG).unwrap();
    append_range(&mut spool, 0..N - 1);
    append_range(&mut spool, N - 1..N);
    drop(spool);
    let last_seg = segments(probe.path()).pop().unwrap();
    let seg_len = fs::metadata(&last_seg).unwrap().len();
    let rec_start = seg_len - (FRAME_HEADER + payload(N - 1).len() as u64);

    let check = |damage: &dyn Fn(&Path), what: String| {
        let tmp = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
        append_range(&mut spool, 0..N - 1);
        append_range(&mut spool, N - 1..N);
        drop(spool);
        damage(&segments(tmp.path()).pop().unwrap());
        let (mut spool, report) = Spool::open(tmp.path(), CFG).unwrap();
        assert_eq!(report.torn_records, 1, "{what}");
        assert_eq!(report.torn_bytes, seg_len - rec_start, "{what}: {report:?}");
        assert_eq!(report.records, N - 1, "{what}");
        assert_eq!(all(&spool), expect(0..N - 1), "{what}");
        append_range(&mut spool, N - 1..N + 2);
        drop(spool);
        let (spool, report) = Spool::open(tmp.path(), CFG).unwrap();
        assert_eq!(report.torn_records, 0, "{what}");
        assert_eq!(all(&spool), expect(0..N + 2), "{what}");
    };

    for cut in rec_start + 1..seg_len {
        // Cut leaves `cut - rec_start` bytes of the record; all of them are dropped.
        let tmp = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
        append_range(&mut spool, 0..N - 1);
        append_range(&mut spool, N - 1..N);
        drop(spool);
        let seg = segments(tmp.path()).pop().unwrap();
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
        let (mut spool, report) = Spool::open(tmp.path(), CFG).unwrap();
        assert_eq!(report.torn_records, 1, "cut at {cut}");
        assert_eq!(report.torn_bytes, cut - rec_start, "cut at {cut}");
        assert_eq!(report.torn_segment.as_deref(), Some(seg.as_path()));
        assert_eq!(all(&spool), expect(0..N - 1), "cut at {cut}");
        append_range(&mut spool, N - 1..N + 2);
        drop(spool);
        let (spool, _) = Spool::open(tmp.path(), CFG).unwrap();
        assert_eq!(all(&spool), expect(0..N + 2), "cut at {cut}");
    }
    for byte in rec_start..seg_len {
        check(
            &|seg: &Path| {
                let mut data = fs::read(seg).unwrap();
                data[byte as usize] ^= 0x5a;
                fs::write(seg, data).unwrap();
            },
            format!("flip at {byte}"),
        );
    }
    // A cut exactly at the record boundary is a clean segment holding N-1 records.
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    append_range(&mut spool, 0..N);
    drop(spool);
    let seg = segments(tmp.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - (FRAME_HEADER + payload(N - 1).len() as u64))
        .unwrap();
    let (spool, report) = Spool::open(tmp.path(), CFG).unwrap();
    assert_eq!(report.torn_records, 0);
    assert_eq!(all(&spool), expect(0..N - 1));
}

#[test]
fn corruption_in_a_middle_segment_fails_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    append_range(&mut spool, 0..20);
    drop(spool);
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3);
    let middle = &segs[1];
    let mut data = fs::read(middle).unwrap();
    data[10] ^= 1;
    fs::write(middle, data).unwrap();
    let err = Spool::open(tmp.path(), CFG).unwrap_err();
    let name = middle.file_name().unwrap().to_str().unwrap();
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(name), "{err}");
    assert_eq!(err.class(), ErrorClass::Internal);
    assert!(!err.retryable());

    // A missing middle segment is reported too.
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    append_range(&mut spool, 0..20);
    drop(spool);
    fs::remove_file(&segments(tmp.path())[1]).unwrap();
    let err = Spool::open(tmp.path(), CFG).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn full_spool_writes_nothing_until_acked() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = FRAME_HEADER + payload(0).len() as u64;
    let cfg = SpoolConfig { max_bytes: rec * 5, segment_bytes: 64 };
    let (mut spool, _) = Spool::open(tmp.path(), cfg).unwrap();
    append_range(&mut spool, 0..4);
    let before: Vec<_> = segments(tmp.path()).iter().map(|p| fs::read(p).unwrap()).collect();
    let (a, b) = (payload(4), payload(5));
    let err = spool.append(&[&a, &b]).unwrap_err();
    assert!(matches!(err, SpoolError::Full { needed, available } if needed == 2 * rec && available == rec), "{err}");
    assert_eq!(err.class(), ErrorClass::External);
    assert!(err.retryable());
    let after: Vec<_> = segments(tmp.path()).iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "a Full append must not write");
    assert_eq!(spool.len(), 4);
    let huge = vec![0u8; (rec * 6) as usize];
    assert!(matches!(spool.append(&[&huge]).unwrap_err(), SpoolError::TooLarge { .. }));
    spool.ack(0).unwrap();
    assert_eq!(spool.append(&[&a, &b]).unwrap(), 4..6);
    assert_eq!(spool.bytes(), rec * 5);
    assert_eq!(all(&spool), expect(1..6));
}

#[test]
fn ack_persists_and_deletes_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    append_range(&mut spool, 0..20);
    let n = segments(tmp.path()).len();
    assert!(n >= 4);
    assert!(matches!(spool.ack(20).unwrap_err(), SpoolError::AckBeyondEnd { through: 20, last: Some(19) }));
    spool.ack(9).unwrap();
    let m = segments(tmp.path()).len();
    assert!(m < n, "{m} < {n}");
    spool.ack(3).unwrap(); // backwards: no-op
    assert_eq!(spool.ack_position(), 10);
    drop(spool);
    let (mut spool, report) = Spool::open(tmp.path(), CFG).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(all(&spool), expect(10..20));
    spool.ack(19).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert!(segments(tmp.path()).is_empty());
    drop(spool);
    let (mut spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    assert!(spool.is_empty());
    append_range(&mut spool, 20..22);
    drop(spool);
    let (spool, _) = Spool::open(tmp.path(), CFG).unwrap();
    assert_eq!(all(&spool), expect(20..22));
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Ack(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..5).prop_map(Op::Append),
        2 => (0u64..8).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn matches_in_memory_model(ops in prop::collection::vec(op(), 1..40)) {
        let cfg = SpoolConfig { max_bytes: 300, segment_bytes: 100 };
        let tmp = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(tmp.path(), cfg).unwrap();
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut next = 0u64;
        let size = |m: &VecDeque<(u64, Vec<u8>)>| m.iter().map(|(_, p)| FRAME_HEADER + p.len() as u64).sum::<u64>();
        for op in ops {
            match op {
                Op::Append(batch) => {
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let needed: u64 = batch.iter().map(|p| FRAME_HEADER + p.len() as u64).sum();
                    match spool.append(&refs) {
                        Ok(r) => {
                            prop_assert!(size(&model) + needed <= cfg.max_bytes);
                            prop_assert_eq!(r.clone(), next..next + batch.len() as u64);
                            for p in batch {
                                model.push_back((next, p));
                                next += 1;
                            }
                        }
                        Err(SpoolError::Full { needed: n, available }) => {
                            prop_assert_eq!(n, needed);
                            prop_assert_eq!(available, cfg.max_bytes - size(&model));
                            prop_assert!(needed > available);
                        }
                        Err(SpoolError::TooLarge { .. }) => prop_assert!(needed > cfg.max_bytes),
                        Err(e) => prop_assert!(false, "unexpected {}", e),
                    }
                }
                Op::Ack(k) => {
                    let through = model.front().map_or(next, |(s, _)| s + k);
                    let r = spool.ack(through);
                    if through >= next {
                        prop_assert!(r.is_err());
                    } else {
                        r.unwrap();
                        while model.front().is_some_and(|(s, _)| *s <= through) {
                            model.pop_front();
                        }
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    let (s, report) = Spool::open(tmp.path(), cfg).unwrap();
                    prop_assert_eq!(report.torn_records, 0);
                    spool = s;
                }
            }
            prop_assert_eq!(spool.len(), model.len() as u64);
            prop_assert_eq!(spool.bytes(), size(&model));
            prop_assert_eq!(spool.next_seq(), next);
            let got: Vec<(u64, Vec<u8>)> = all(&spool).into_iter().map(|r| (r.seq, r.payload)).collect();
            prop_assert_eq!(got, model.iter().cloned().collect::<Vec<_>>());
        }
    }
}

#[test]
fn a_second_writer_is_refused_until_the_first_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _) = Spool::open(tmp.path(), CFG).unwrap();
    let err = Spool::open(tmp.path(), CFG).unwrap_err();
    assert!(matches!(err, SpoolError::Locked(_)), "{err}");
    assert!(err.to_string().contains("only one writer"), "{err}");
    drop(first);
    Spool::open(tmp.path(), CFG).unwrap();
}
