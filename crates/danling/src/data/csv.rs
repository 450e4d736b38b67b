//! Numeric CSV files: every column a number, the last one the target.

use std::path::Path;

use super::{DataError, Tabular, Targets};

/// What the last column of a CSV file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvTask {
    /// Class indices: non-negative integers (`3` or `3.0`).
    Classification,
    /// Regression values.
    Regression,
}

/// Reads a numeric CSV file whose last column is the target. `header: None` detects a header: a
/// first line with a field that is not a number.
pub fn read_csv(path: &Path, header: Option<bool>, task: CsvTask) -> Result<Tabular, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.to_owned(),
        source,
    })?;
    let header = header.unwrap_or_else(|| {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let first = reader.records().flatten().find(|record| !is_blank(record));
        first.is_some_and(|record| record.iter().any(|field| field.trim().parse::<f64>().is_err()))
    });
    let rows = parse_rows(&text, path, b',', header)?;
    if rows.is_empty() {
        return Err(DataError::format(path, "no data rows"));
    }
    let d = rows[0].len() - 1;
    if d == 0 {
        return Err(DataError::format(
            path,
            "a row needs at least one feature column and the target column",
        ));
    }
    let features = rows
        .iter()
        .flat_map(|r| r[..d].iter().map(|&x| x as f32))
        .collect();
    let targets = match task {
        CsvTask::Regression => Targets::Values {
            values: rows.iter().map(|r| r[d] as f32).collect(),
            outputs: 1,
        },
        CsvTask::Classification => {
            let mut labels = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                let y = row[d];
                if y.fract() != 0.0 || y < 0.0 || y > i32::MAX as f64 {
                    return Err(DataError::format(
                        path,
                        format!(
                            "data row {}, column {}: target {y} is not a class index (a non-negative integer)",
                            i + 1,
                            d + 1
                        ),
                    ));
                }
                labels.push(y as i64);
            }
            let num_classes = labels.iter().max().map_or(2, |&m| (m as usize + 1).max(2));
            Targets::Classes { labels, num_classes }
        }
    };
    Ok(Tabular {
        n: rows.len(),
        d,
        features,
        targets,
    })
}

/// Parses numeric rows separated by `delimiter` (`b' '` means any whitespace), skipping blank lines and,
/// when `header` is set, the first line. Every row must have the same number of columns. Fields may
/// be quoted as RFC 4180 has it (`"1.5"`, `"a, b"` in a header).
pub(crate) fn parse_rows(
    text: &str,
    path: &Path,
    delimiter: u8,
    header: bool,
) -> Result<Vec<Vec<f64>>, DataError> {
    let records: Vec<(u64, Vec<String>)> = if delimiter == b' ' {
        text.lines()
            .enumerate()
            .map(|(i, line)| (i as u64 + 1, line.split_whitespace().map(str::to_owned).collect()))
            .collect()
    } else {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| DataError::format(path, format!("not CSV: {e}")))?;
            let line = record.position().map_or(0, ::csv::Position::line);
            records.push((line, record.iter().map(str::to_owned).collect()));
        }
        records
    };
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let data = records
        .into_iter()
        .filter(|(_, fields)| fields.iter().any(|f| !f.trim().is_empty()))
        .skip(usize::from(header));
    for (line, fields) in data {
        let mut row = Vec::with_capacity(fields.len());
        for (column, field) in fields.iter().enumerate() {
            let value = field
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    DataError::format(
                        path,
                        format!(
                            "line {line}, column {}: {:?} is not a number",
                            column + 1,
                            field.trim()
                        ),
                    )
                })?;
            row.push(value);
        }
        if let Some(first) = rows.first()
            && first.len() != row.len()
        {
            return Err(DataError::format(
                path,
                format!(
                    "line {line}: {} columns, but the first row has {}",
                    row.len(),
                    first.len()
                ),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Whether every field of `record` is empty or spaces.
fn is_blank(record: &::csv::StringRecord) -> bool {
    record.iter().all(|field| field.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_features_and_class_targets_with_a_detected_header() {
        let (_dir, path) = write("a,b,label\n1,2,0\n3.5,4,2\n\n5,6,1.0\n");
        let data = read_csv(&path, None, CsvTask::Classification).unwrap();
        assert_eq!((data.n, data.d), (3, 2));
        assert_eq!(data.features, [1.0, 2.0, 3.5, 4.0, 5.0, 6.0]);
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![0, 2, 1],
                num_classes: 3
            }
        );
        let data = read_csv(&path, Some(true), CsvTask::Regression).unwrap();
        assert_eq!(
            data.targets,
            Targets::Values {
                values: vec![0.0, 2.0, 1.0],
                outputs: 1
            }
        );
    }

    #[test]
    fn quoted_fields_are_read_as_csv_has_them() {
        let (_dir, path) = write("\"width, cm\",\"height\",label\n\"1.5\",2,0\n3,\"4\",1\n");
        let data = read_csv(&path, None, CsvTask::Classification).unwrap();
        assert_eq!((data.n, data.d), (2, 2));
        assert_eq!(data.features, [1.5, 2.0, 3.0, 4.0]);
        let (_dir, path) = write("1,2,0\n\"3,5\",4,1\n");
        let err = read_csv(&path, Some(false), CsvTask::Classification)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, column 1: \"3,5\" is not a number"), "{err}");
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let (_dir, path) = write("1,2,0\n3,x,1\n");
        let err = read_csv(&path, Some(false), CsvTask::Classification)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d.csv") && err.contains("line 2, column 2") && err.contains("\"x\""),
            "{err}"
        );
        let (_dir, path) = write("1,2,0\n3,1\n");
        let err = read_csv(&path, None, CsvTask::Classification)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2: 2 columns, but the first row has 3"),
            "{err}"
        );
        let (_dir, path) = write("1,2,0.5\n");
        let err = read_csv(&path, None, CsvTask::Classification)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a class index"), "{err}");
        let (_dir, path) = write("a,b\n");
        assert!(
            read_csv(&path, None, CsvTask::Regression)
                .unwrap_err()
                .to_string()
                .contains("no data rows")
        );
        let err = read_csv(Path::new("/no/such.csv"), None, CsvTask::Regression)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such.csv"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[0-9a-z,.\\- \\n]{0,200}", header in proptest::option::of(any::<bool>())) {
            let (_dir, path) = write(&text);
            let _ = read_csv(&path, header, CsvTask::Classification);
            let _ = read_csv(&path, header, CsvTask::Regression);
        }
    }
}
