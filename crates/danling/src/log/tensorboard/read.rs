//! Reading event files back, as TensorBoard does: TFRecord framing with both CRCs checked, and the
//! protobuf subset of scalar events.

use std::fs;
use std::path::Path;

use super::{
    Event, TensorBoardError, WIRE_END_GROUP, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_START_GROUP,
    WIRE_VARINT, masked_crc,
};
use crate::fs::IoError;

/// Reads every event of a file, checking both CRCs of every record.
///
/// A truncated final record, any CRC mismatch or an undecodable event is
/// [`TensorBoardError::Corrupt`], so tests can assert a file is exactly what TensorBoard loads.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TensorBoardError> {
    let bytes = fs::read(path).map_err(IoError::at("read tensorboard file", path))?;
    let mut cursor = Cursor { buf: &bytes };
    let mut events = Vec::new();
    while !cursor.buf.is_empty() {
        let offset = bytes.len() - cursor.buf.len();
        let event = read_record(&mut cursor)
            .and_then(decode_event)
            .map_err(|reason| TensorBoardError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("record at byte {offset}: {reason}"),
            })?;
        events.push(event);
    }
    Ok(events)
}

/// Splits one TFRecord off the front of `cursor`, verifying the length and data CRCs.
fn read_record<'a>(cursor: &mut Cursor<'a>) -> Result<&'a [u8], String> {
    let len: [u8; 8] = cursor.array()?;
    if masked_crc(&len) != u32::from_le_bytes(cursor.array()?) {
        return Err("length CRC mismatch".to_owned());
    }
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| e.to_string())?;
    let data = cursor.take(len)?;
    if masked_crc(data) != u32::from_le_bytes(cursor.array()?) {
        return Err("data CRC mismatch".to_owned());
    }
    Ok(data)
}

/// Decodes an `Event`. As in protobuf's own parsers, unknown fields and known fields with an
/// unexpected wire type are skipped; absent fields keep their proto3 defaults.
pub(super) fn decode_event(data: &[u8]) -> Result<Event, String> {
    let mut event = Event::default();
    let mut cursor = Cursor { buf: data };
    while !cursor.buf.is_empty() {
        match cursor.field()? {
            (1, Field::Fixed64(bytes)) => event.wall_time = f64::from_le_bytes(bytes),
            (2, Field::Varint(step)) => event.step = step as i64,
            (3, Field::Bytes(bytes)) => event.file_version = Some(utf8(bytes)?),
            (5, Field::Bytes(summary)) => decode_summary(summary, &mut event.scalars)?,
            _ => {}
        }
    }
    Ok(event)
}

/// Appends the scalar values of a `Summary`; values without `simple_value` are skipped.
fn decode_summary(data: &[u8], scalars: &mut Vec<(String, f32)>) -> Result<(), String> {
    let mut summary = Cursor { buf: data };
    while !summary.buf.is_empty() {
        if let (1, Field::Bytes(value)) = summary.field()? {
            let (mut tag, mut simple_value) = (String::new(), None);
            let mut value = Cursor { buf: value };
            while !value.buf.is_empty() {
                match value.field()? {
                    (1, Field::Bytes(bytes)) => tag = utf8(bytes)?,
                    (2, Field::Fixed32(bytes)) => simple_value = Some(f32::from_le_bytes(bytes)),
                    _ => {}
                }
            }
            scalars.extend(simple_value.map(|v| (tag, v)));
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

/// A decoded protobuf field value; groups are skipped and carry no payload.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
    Group,
}

/// A bounds-checked read position in a byte slice, for both TFRecord framing and protobuf.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("truncated: need {n} bytes, {} left", self.buf.len()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|e| e.to_string())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    /// Reads one `(field number, value)`; unknown fields of every wire type can be skipped.
    fn field(&mut self) -> Result<(u64, Field<'a>), String> {
        let key = self.varint()?;
        Ok((key >> 3, self.value(key & 7)?))
    }

    fn value(&mut self, wire: u64) -> Result<Field<'a>, String> {
        Ok(match wire {
            WIRE_VARINT => Field::Varint(self.varint()?),
            WIRE_FIXED64 => Field::Fixed64(self.array()?),
            WIRE_LEN => {
                let len = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                Field::Bytes(self.take(len)?)
            }
            WIRE_START_GROUP => {
                // Skipped whole, iteratively, so hostile nesting cannot overflow the stack.
                let mut depth = 1usize;
                while depth > 0 {
                    match self.varint()? & 7 {
                        WIRE_START_GROUP => depth += 1,
                        WIRE_END_GROUP => depth -= 1,
                        wire => _ = self.value(wire)?,
                    }
                }
                Field::Group
            }
            WIRE_FIXED32 => Field::Fixed32(self.array()?),
            other => return Err(format!("unexpected wire type {other}")),
        })
    }
}
