//! The one encoding of non-finite numbers in state JSON (every checkpoint's `state` and `results`, the
//! meters and metric states inside them): numbers as numbers, the rest as the strings `"NaN"`, `"inf"`
//! and `"-inf"`, so that JSON (which has no such numbers) round-trips them exactly. `null` reads as
//! NaN, as the results of earlier checkpoints wrote it. The results files people read (`results.json`,
//! `latest.json`, `best.json`) hold numbers only, and `null` where there is none
//! ([`crate::results`]).

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A results record, `{split: {metric: value}}` (`crate::results::Record`, which depends on this).
type Record = IndexMap<String, IndexMap<String, f64>>;

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Number(f64),
    Text(String),
    Null,
}

fn to_repr(x: f64) -> Repr {
    if x.is_finite() {
        Repr::Number(x)
    } else if x.is_nan() {
        Repr::Text("NaN".into())
    } else if x > 0.0 {
        Repr::Text("inf".into())
    } else {
        Repr::Text("-inf".into())
    }
}

fn from_repr<E: serde::de::Error>(repr: Repr) -> Result<f64, E> {
    match repr {
        Repr::Number(x) => Ok(x),
        Repr::Null => Ok(f64::NAN),
        Repr::Text(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!("{other:?} is not a number"))),
        },
    }
}

/// One value.
pub(crate) fn serialize<S: Serializer>(x: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    to_repr(*x).serialize(serializer)
}

/// One value.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    from_repr(Repr::deserialize(deserializer)?)
}

/// A vector of values.
pub(crate) mod vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(xs: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(xs.iter().map(|&x| to_repr(x)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Repr>::deserialize(deserializer)?
            .into_iter()
            .map(from_repr)
            .collect()
    }
}

/// A results record, `{split: {metric: value}}`.
pub(crate) mod record {
    use super::*;

    type Encoded<'a> = IndexMap<&'a str, IndexMap<&'a str, Repr>>;

    pub(super) fn encode(record: &Record) -> Encoded<'_> {
        record
            .iter()
            .map(|(name, metrics)| {
                let metrics = metrics.iter().map(|(m, &v)| (m.as_str(), to_repr(v))).collect();
                (name.as_str(), metrics)
            })
            .collect()
    }

    pub(super) fn decode<E: serde::de::Error>(
        encoded: IndexMap<String, IndexMap<String, Repr>>,
    ) -> Result<Record, E> {
        encoded
            .into_iter()
            .map(|(split, metrics)| {
                let metrics = metrics
                    .into_iter()
                    .map(|(m, v)| Ok((m, from_repr(v)?)))
                    .collect::<Result<_, E>>()?;
                Ok((split, metrics))
            })
            .collect()
    }

    pub(crate) fn serialize<S: Serializer>(record: &Record, serializer: S) -> Result<S::Ok, S::Error> {
        encode(record).serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        decode(Deserialize::deserialize(deserializer)?)
    }
}

/// A results history, `{index: record}`.
pub(crate) mod history {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        history: &BTreeMap<u64, Record>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            history
                .iter()
                .map(|(index, record)| (index, record::encode(record))),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u64, Record>, D::Error> {
        BTreeMap::<u64, IndexMap<String, IndexMap<String, Repr>>>::deserialize(deserializer)?
            .into_iter()
            .map(|(index, encoded)| Ok((index, record::decode(encoded)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::{AverageMeter, TargetSlice, binary_metrics};

    #[test]
    fn non_finite_state_round_trips_through_json() {
        let mut meter = AverageMeter::default();
        meter.update(f64::NAN, 2.0);
        meter.update(1.0, 1.0);
        let back: AverageMeter = serde_json::from_str(&serde_json::to_string(&meter).unwrap()).unwrap();
        assert!(back.sum.is_nan() && back.val == 1.0 && back.count == 3.0);

        let mut metrics = binary_metrics();
        metrics.update(&[f64::NAN, f64::INFINITY, 0.5], TargetSlice::Labels(&[1, 0, 1]));
        let text = serde_json::to_string(&metrics).unwrap();
        let back: crate::metrics::Metrics = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
