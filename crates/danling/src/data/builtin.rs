//! The vendored data sets (see `data/README.md` for their provenance), decompressed at load time.

use std::io::Read;

use flate2::read::GzDecoder;

use super::csv::parse_rows;
use super::{DataError, Tabular, Targets};

const DIGITS: &[u8] = include_bytes!("../../data/digits.csv.gz");
const BREAST_CANCER: &[u8] = include_bytes!("../../data/breast_cancer.csv.gz");
const DIABETES_DATA: &[u8] = include_bytes!("../../data/diabetes_data_raw.csv.gz");
const DIABETES_TARGET: &[u8] = include_bytes!("../../data/diabetes_target.csv.gz");

fn gunzip(name: &str, bytes: &[u8]) -> Result<String, DataError> {
    let mut text = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| DataError::format(name, e.to_string()))?;
    Ok(text)
}

/// Splits rows whose last column is a class label into features and labels.
fn classes(name: &str, rows: Vec<Vec<f64>>, num_classes: usize) -> Result<Tabular, DataError> {
    let d = rows.first().map_or(0, |r| r.len().saturating_sub(1));
    let mut features = Vec::with_capacity(rows.len() * d);
    let mut labels = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let label = row[d];
        if label.fract() != 0.0 || label < 0.0 || label >= num_classes as f64 {
            return Err(DataError::format(
                name,
                format!("row {}: label {label} is not a class", i + 1),
            ));
        }
        features.extend(row[..d].iter().map(|&x| x as f32));
        labels.push(label as i64);
    }
    Ok(Tabular {
        n: labels.len(),
        d,
        features,
        targets: Targets::Classes { labels, num_classes },
    })
}

/// UCI handwritten digits: 1797 rows of 8×8 pixels (0..16), 10 classes.
pub fn digits() -> Result<Tabular, DataError> {
    let text = gunzip("digits", DIGITS)?;
    classes("digits", parse_rows(&text, "digits".as_ref(), b',', false)?, 10)
}

/// UCI breast cancer Wisconsin (diagnostic): 569 rows of 30 features; 0 malignant, 1 benign.
pub fn breast_cancer() -> Result<Tabular, DataError> {
    let text = gunzip("breast_cancer", BREAST_CANCER)?;
    classes(
        "breast_cancer",
        parse_rows(&text, "breast_cancer".as_ref(), b',', true)?,
        2,
    )
}

/// Efron et al.'s diabetes data: 442 rows of 10 features, one regression target.
pub fn diabetes() -> Result<Tabular, DataError> {
    let rows = parse_rows(
        &gunzip("diabetes", DIABETES_DATA)?,
        "diabetes".as_ref(),
        b' ',
        false,
    )?;
    let targets = parse_rows(
        &gunzip("diabetes", DIABETES_TARGET)?,
        "diabetes target".as_ref(),
        b' ',
        false,
    )?;
    if rows.len() != targets.len() {
        return Err(DataError::format(
            "diabetes",
            format!("{} rows but {} targets", rows.len(), targets.len()),
        ));
    }
    let d = rows.first().map_or(0, Vec::len);
    Ok(Tabular {
        n: rows.len(),
        d,
        features: rows.iter().flatten().map(|&x| x as f32).collect(),
        targets: Targets::Values {
            values: targets.iter().map(|t| t[0] as f32).collect(),
            outputs: 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_has_1797_rows_of_64_pixels_in_10_classes() {
        let data = digits().unwrap();
        assert_eq!((data.n, data.d), (1797, 64));
        let Targets::Classes {
            labels,
            num_classes: 10,
        } = &data.targets
        else {
            panic!()
        };
        let mut counts = [0; 10];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert_eq!(&data.row(0)[..8], [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]);
        assert!(data.features.iter().all(|&x| (0.0..=16.0).contains(&x)));
    }

    #[test]
    fn breast_cancer_has_569_rows_of_30_features_and_2_classes() {
        let data = breast_cancer().unwrap();
        assert_eq!((data.n, data.d), (569, 30));
        let Targets::Classes {
            labels,
            num_classes: 2,
        } = &data.targets
        else {
            panic!()
        };
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 357, "benign");
        assert_eq!(data.row(0)[0], 17.99);
    }

    #[test]
    fn diabetes_has_442_rows_of_10_features_and_a_value() {
        let data = diabetes().unwrap();
        assert_eq!((data.n, data.d), (442, 10));
        let Targets::Values { values, outputs: 1 } = &data.targets else {
            panic!()
        };
        assert_eq!(values[..2], [151.0, 75.0]);
        assert_eq!(data.row(0)[..3], [59.0, 2.0, 32.1]);
    }
}
