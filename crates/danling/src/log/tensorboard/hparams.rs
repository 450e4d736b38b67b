//! TensorBoard's HParams dashboard: the session summaries of its plugin
//! (`tensorboard/plugins/hparams/plugin_data.proto` and `api.proto`), hand-encoded like the rest of
//! this module. A run's event file gets a `session_start_info` (its hyperparameters: the config's
//! values) when it starts and a `session_end_info` (its status) when it ends; TensorBoard takes the
//! metrics from the run's scalars. The tests compare the bytes with TensorBoard's own writer's.

use std::collections::BTreeMap;

use super::{WIRE_FIXED64, WIRE_VARINT, encode_bytes, encode_key, encode_varint};

/// The plugin's name in a summary's metadata.
const PLUGIN: &str = "hparams";
/// The tags TensorBoard reads the summaries under.
const SESSION_START: &str = "_hparams_/session_start_info";
const SESSION_END: &str = "_hparams_/session_end_info";

/// TensorBoard's `NULL_TENSOR`: an empty `DT_FLOAT` tensor that every plugin summary carries.
const NULL_TENSOR: [u8; 6] = [0x08, 0x01, 0x12, 0x02, 0x12, 0x00];

/// One hyperparameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum HParam {
    /// A number.
    Number(f64),
    /// Text (lists and the like as their JSON).
    Text(String),
    /// A flag.
    Bool(bool),
}

/// How a session ended (`api.proto`'s `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Neither success nor failure (a stop signal).
    Unknown = 0,
    /// It finished.
    Success = 1,
    /// An error ended it.
    Failure = 2,
}

fn fixed64(buf: &mut Vec<u8>, field: u64, value: f64) {
    encode_key(buf, field, WIRE_FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// A `Summary` with one value of the plugin under `tag`, holding `HParamsPluginData` bytes.
fn summary(tag: &str, plugin_data: &[u8]) -> Vec<u8> {
    let mut plugin = Vec::new();
    encode_bytes(&mut plugin, 1, PLUGIN.as_bytes());
    encode_bytes(&mut plugin, 2, plugin_data);
    let mut metadata = Vec::new();
    encode_bytes(&mut metadata, 1, &plugin);
    let mut value = Vec::new();
    encode_bytes(&mut value, 1, tag.as_bytes());
    encode_bytes(&mut value, 8, &NULL_TENSOR);
    encode_bytes(&mut value, 9, &metadata);
    let mut summary = Vec::new();
    encode_bytes(&mut summary, 1, &value);
    summary
}

/// The `session_start_info` summary: the hyperparameters (in key order), the group and the start.
pub fn session_start(hparams: &BTreeMap<String, HParam>, group: &str, start_secs: f64) -> Vec<u8> {
    let mut info = Vec::new();
    for (key, value) in hparams {
        let mut proto_value = Vec::new();
        match value {
            HParam::Number(x) => fixed64(&mut proto_value, 2, *x),
            HParam::Text(text) => encode_bytes(&mut proto_value, 3, text.as_bytes()),
            HParam::Bool(flag) => {
                encode_key(&mut proto_value, 4, WIRE_VARINT);
                encode_varint(&mut proto_value, u64::from(*flag));
            }
        }
        let mut entry = Vec::new();
        encode_bytes(&mut entry, 1, key.as_bytes());
        encode_bytes(&mut entry, 2, &proto_value);
        encode_bytes(&mut info, 1, &entry);
    }
    if !group.is_empty() {
        encode_bytes(&mut info, 4, group.as_bytes());
    }
    fixed64(&mut info, 5, start_secs);
    let mut data = Vec::new();
    encode_bytes(&mut data, 3, &info);
    summary(SESSION_START, &data)
}

/// The `session_end_info` summary: the status and the end.
pub fn session_end(status: SessionStatus, end_secs: f64) -> Vec<u8> {
    let mut info = Vec::new();
    if status != SessionStatus::Unknown {
        encode_key(&mut info, 1, WIRE_VARINT);
        encode_varint(&mut info, status as u64);
    }
    fixed64(&mut info, 2, end_secs);
    let mut data = Vec::new();
    encode_bytes(&mut data, 4, &info);
    summary(SESSION_END, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bytes of `tensorboard.plugins.hparams.summary_v2` (TensorBoard 2.21) for the same
    /// values: `Summary.SerializeToString(deterministic=True)`.
    #[test]
    fn the_summaries_are_byte_for_byte_tensorboards() {
        let hparams = BTreeMap::from([
            ("optim.lr".to_owned(), HParam::Number(0.01)),
            ("model.hidden".to_owned(), HParam::Text("[64]".into())),
            ("tensorboard".to_owned(), HParam::Bool(true)),
        ]);
        assert_eq!(
            hex(&session_start(&hparams, "g", 1.5)),
            "0a85010a1c5f68706172616d735f2f73657373696f6e5f73746172745f696e666f42060801120212004a5d0a5b0a07\
             68706172616d7312501a4e0a160a0c6d6f64656c2e68696464656e12061a045b36345d0a150a086f7074696d2e6c7212\
             09117b14ae47e17a843f0a110a0b74656e736f72626f6172641202200122016729000000000000f83f"
        );
        assert_eq!(
            hex(&session_end(SessionStatus::Success, 2.5)),
            "0a400a1a5f68706172616d735f2f73657373696f6e5f656e645f696e666f42060801120212004a1a0a180a076870\
             6172616d73120d220b0801110000000000000440"
        );
    }
}
