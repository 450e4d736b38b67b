//! The event writer and reader, and what TensorBoard would read.
#![allow(clippy::unwrap_used)]

use super::read::decode_event;
use super::*;

/// Writes a header plus three scalar events into a fresh temporary directory.
fn sample_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(&dir.path().join("nested/run")).unwrap();
    writer.add_scalars(1, [("loss", 0.5), ("lr", 1e-3)]).unwrap();
    writer.add_scalar("loss", 0.25, 2).unwrap();
    writer
        .add_scalars(3, [("loss", f64::NAN), ("acc", f64::INFINITY)])
        .unwrap();
    writer.sync().unwrap();
    let path = writer.path().to_path_buf();
    (dir, path)
}

fn corrupt_reason(path: &Path, bytes: &[u8]) -> String {
    fs::write(path, bytes).unwrap();
    match read_events(path) {
        Err(TensorBoardError::Corrupt { reason, .. }) => reason,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn masked_crc_matches_tensorflow_known_value() {
    // Expected values cross-checked with a pure-Python CRC32C:
    //   def crc32c(data):
    //       crc = 0xFFFFFFFF
    //       for b in data:
    //           crc ^= b
    //           for _ in range(8):
    //               crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    //       return crc ^ 0xFFFFFFFF
    //   masked = lambda c: ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    assert_eq!(crc32c::crc32c(&[0; 32]), 0x8A91_36AA);
    assert_eq!(masked_crc(&[0; 32]), 0x0FD7_FFFA);
}

#[test]
fn written_scalars_round_trip_with_valid_crcs() {
    let (_dir, path) = sample_file();
    let events = read_events(&path).unwrap();
    let steps: Vec<i64> = events.iter().map(|e| e.step).collect();
    assert_eq!(steps, [0, 1, 2, 3]);
    assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
    assert!(events[0].scalars.is_empty());
    assert!(events[1..].iter().all(|e| e.file_version.is_none()));
    assert!(events.iter().all(|e| e.wall_time > 1.6e9));
    let tagged = |tag: &str, value: f32| (tag.to_owned(), value);
    assert_eq!(
        events[1].scalars,
        [tagged("loss", 0.5), tagged("lr", 1e-3_f64 as f32)]
    );
    assert_eq!(events[2].scalars, [tagged("loss", 0.25)]);
    assert_eq!(events[3].scalars[0].0, "loss");
    assert!(events[3].scalars[0].1.is_nan());
    assert_eq!(events[3].scalars[1], tagged("acc", f32::INFINITY));
}

#[test]
fn decoder_skips_unknown_fields_of_every_wire_type() {
    let mut data = Vec::new();
    encode_key(&mut data, 9, WIRE_VARINT);
    encode_varint(&mut data, 300);
    encode_key(&mut data, 10, WIRE_FIXED64);
    data.extend([0; 8]);
    encode_bytes(&mut data, 11, b"unknown");
    encode_key(&mut data, 12, WIRE_START_GROUP);
    encode_key(&mut data, 1, WIRE_FIXED32);
    data.extend([0; 4]);
    encode_key(&mut data, 12, WIRE_END_GROUP);
    encode_key(&mut data, 13, WIRE_FIXED32);
    data.extend([0; 4]);
    assert_eq!(
        decode_event(&data),
        Ok(Event::default()),
        "absent fields are defaults"
    );
    data.extend(encode_event(1.5, -7, Some("v"), &[("a", 2.0)]));
    let expected = Event {
        wall_time: 1.5,
        step: -7,
        file_version: Some("v".to_owned()),
        scalars: vec![("a".to_owned(), 2.0)],
    };
    assert_eq!(decode_event(&data), Ok(expected));
}

#[test]
fn flipped_byte_is_reported_as_corrupt() {
    let (_dir, path) = sample_file();
    let bytes = fs::read(&path).unwrap();
    // First length header, first data byte, last record's data CRC.
    for index in [0, 12, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[index] ^= 0x01;
        let reason = corrupt_reason(&path, &damaged);
        assert!(reason.contains("CRC mismatch"), "byte {index}: {reason}");
    }
}

#[test]
fn truncated_file_is_reported_as_corrupt() {
    let (_dir, path) = sample_file();
    let bytes = fs::read(&path).unwrap();
    let first_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Inside the second record's header, inside the last data, inside the last CRC.
    for cut in [first_len + 16 + 3, bytes.len() - 5, bytes.len() - 1] {
        let reason = corrupt_reason(&path, &bytes[..cut]);
        assert!(reason.contains("truncated"), "cut at {cut}: {reason}");
    }
}

#[test]
fn two_writers_in_one_process_get_distinct_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = EventWriter::create(dir.path()).unwrap();
    let second = EventWriter::create(dir.path()).unwrap();
    assert_ne!(first.path(), second.path());
    for writer in [&first, &second] {
        let name = writer.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(name.contains(&format!(".{}.", std::process::id())), "{name}");
        assert_eq!(read_events(writer.path()).unwrap().len(), 1);
    }
}
