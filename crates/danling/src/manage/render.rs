//! Writing a listing: a table cut to the terminal's width, JSON, CSV or markdown.

use std::fmt::Write as _;

use console::{measure_text_width, truncate_str};

use super::runs::{Format, Listing};

impl Listing {
    /// Renders the listing in `format`; a table fits in `width` columns when given.
    pub fn render(&self, format: Format, width: Option<usize>) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(&self.objects).unwrap_or_default() + "\n",
            Format::Csv => {
                let mut out = String::new();
                for line in std::iter::once(&self.headers).chain(&self.rows) {
                    let cells: Vec<String> = line.iter().map(|c| csv_cell(c)).collect();
                    let _ = writeln!(out, "{}", cells.join(","));
                }
                out
            }
            Format::Markdown => {
                let escape = |c: &String| c.replace('|', "\\|").replace('\n', " ");
                let mut out = format!(
                    "| {} |\n|{}\n",
                    self.headers.iter().map(escape).collect::<Vec<_>>().join(" | "),
                    "---|".repeat(self.headers.len())
                );
                for row in &self.rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        row.iter().map(escape).collect::<Vec<_>>().join(" | ")
                    );
                }
                out
            }
            Format::Table => self.table(width),
        }
    }

    fn table(&self, width: Option<usize>) -> String {
        let columns = self.headers.len();
        let clean = |c: &str| c.replace(['\n', '\r', '\t'], " ");
        let mut widths: Vec<usize> = (0..columns)
            .map(|i| {
                std::iter::once(&self.headers[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| measure_text_width(&clean(c)))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        // Empty columns go; then the widest shrink until the row fits.
        let mut shown: Vec<usize> = (0..columns)
            .filter(|&i| self.rows.iter().any(|r| !r[i].is_empty()) || self.rows.is_empty())
            .collect();
        if let Some(width) = width {
            let total = |w: &[usize], shown: &[usize]| {
                shown.iter().map(|&i| w[i]).sum::<usize>() + 2 * shown.len().saturating_sub(1)
            };
            // The widest columns shrink (to 8 characters at most), the run's name last; then the
            // last columns go.
            let name = self.headers.iter().position(|h| h == "name");
            while total(&widths, &shown) > width {
                let others = shown.iter().filter(|&&i| Some(i) != name && widths[i] > 8);
                let Some(&widest) = others
                    .max_by_key(|&&i| widths[i])
                    .or_else(|| shown.iter().max_by_key(|&&i| widths[i]))
                else {
                    break;
                };
                if widths[widest] > 8 {
                    widths[widest] -= 1;
                } else if shown.len() > 1 {
                    shown.pop();
                } else {
                    widths[widest] = width.max(1);
                    break;
                }
            }
        }
        let fit = |text: &str, width: usize| {
            // Display columns, not chars: a wide character (CJK, most emoji) takes two.
            let text = clean(text);
            let cut = truncate_str(&text, width, "…");
            format!(
                "{cut}{}",
                " ".repeat(width.saturating_sub(measure_text_width(&cut)))
            )
        };
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = shown.iter().map(|&i| fit(&line[i], widths[i])).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(rows: &[[&str; 2]]) -> Listing {
        Listing {
            headers: vec!["name".into(), "status".into()],
            rows: rows.iter().map(|r| r.map(str::to_owned).to_vec()).collect(),
            objects: Vec::new(),
        }
    }

    #[test]
    fn wide_characters_take_two_columns_and_the_table_stays_aligned() {
        let table = listing(&[["实验-一", "finished"], ["run-a", "failed"]]).render(Format::Table, None);
        let columns: Vec<usize> = table
            .lines()
            .map(|line| {
                let at = line.find(['s', 'f']).unwrap_or(0);
                measure_text_width(&line[..at])
            })
            .collect();
        assert_eq!(columns, [9, 9, 9], "{table}");
        // Cut to a width, a wide name is cut on a character and never overflows.
        let table = listing(&[["实验实验实验实验实验", "finished"]]).render(Format::Table, Some(20));
        for line in table.lines() {
            assert!(measure_text_width(line) <= 20, "{line:?}");
        }
    }
}
