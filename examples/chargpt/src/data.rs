//! A text file as character ids, split into train and validation text, and cut into windows of
//! `block_size + 1` ids.
//!
//! As nanoGPT's `data/shakespeare_char/prepare.py` (Andrej Karpathy,
//! <https://github.com/karpathy/nanoGPT>, MIT licence): the vocabulary is the sorted distinct
//! characters of the text, and the last `val_fraction` of it is the validation text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};

/// The `data` section: the text file (or the directory of token files) and its validation share.
/// (`data.batch_size`, `data.shuffle`, `data.workers` and `data.prefetch` in the same mapping are
/// danling's own keys.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// The UTF-8 text file to model, or a directory of nanoGPT's token files as
    /// [`write_token_files`] writes them: `train.bin` and `val.bin` (u16 ids) and `vocab.txt` (the
    /// characters, in id order). Token files are read window by window, never whole (required).
    pub path: Option<PathBuf>,
    /// The share of the text, at its end, held out for validation.
    pub val_fraction: f64,
}

impl Default for DataConfig {
    /// `{path: null, val_fraction: 0.1}`, nanoGPT's split.
    fn default() -> Self {
        Self {
            path: None,
            val_fraction: 0.1,
        }
    }
}

/// The characters of a text, sorted; a character's id is its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// The characters of `text`, in order: a vocabulary as `vocab.txt` holds it.
    pub fn from_chars(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
        }
    }

    /// The distinct characters of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }

    /// The characters, by id.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// How many characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether there is no character.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The ids of `text`, or the first character that is not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, char> {
        text.chars()
            .map(|c| self.chars.binary_search(&c).map(|id| id as u32).map_err(|_| c))
            .collect()
    }

    /// The text of `ids`; an id out of range becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&id| self.chars.get(id as usize).copied().unwrap_or('\u{fffd}'))
            .collect()
    }
}

/// A text as ids: its vocabulary and its train and validation parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Where the text came from, for messages.
    pub source: PathBuf,
    /// Every character of the text.
    pub vocab: Vocab,
    /// The ids of the first part of the text.
    pub train: Vec<u32>,
    /// The ids of the last `val_fraction` of the text.
    pub val: Vec<u32>,
}

impl Corpus {
    /// Reads the UTF-8 text file `path` and splits it: the last `round(chars · val_fraction)`
    /// characters are the validation text.
    pub fn read(path: &Path, val_fraction: f64) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            DataError::new(
                path,
                format!(
                    "not UTF-8 text (byte {} is invalid)",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Self::from_text(path, &text, val_fraction)
    }

    /// Splits `text` (read from `source`), as [`read`](Self::read) does.
    pub fn from_text(source: &Path, text: &str, val_fraction: f64) -> Result<Self, DataError> {
        let vocab = Vocab::from_text(text);
        let ids = vocab
            .encode(text)
            .map_err(|c| DataError::new(source, format!("character {c:?} is not in its vocabulary")))?;
        let n_val = (ids.len() as f64 * val_fraction).round() as usize;
        if !(val_fraction > 0.0 && val_fraction < 1.0) || n_val == 0 || n_val >= ids.len() {
            return Err(DataError::new(
                source,
                format!(
                    "cannot hold out val_fraction {val_fraction} of its {} characters and keep text \
                     on both sides",
                    ids.len()
                ),
            ));
        }
        let split = ids.len() - n_val;
        Ok(Self {
            source: source.to_owned(),
            vocab,
            train: ids[..split].to_vec(),
            val: ids[split..].to_vec(),
        })
    }

    /// The train windows (one at every position) and the validation windows (side by side, not
    /// overlapping) of `block_size` inputs each; an error if a part is too short for one window.
    pub fn windows(&self, block_size: usize) -> Result<(Windows, Windows), DataError> {
        for (name, ids) in [("train", &self.train), ("validation", &self.val)] {
            if ids.len() <= block_size {
                return Err(DataError::new(
                    &self.source,
                    format!(
                        "the {name} text has {} characters, too few for one window of block_size + 1 = {}",
                        ids.len(),
                        block_size + 1
                    ),
                ));
            }
        }
        Ok((
            Windows::new(self.train.clone(), block_size, 1),
            Windows::new(self.val.clone(), block_size, block_size),
        ))
    }
}

/// `block_size + 1` consecutive ids: the inputs are the first `block_size`, the targets the last
/// `block_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The ids.
    pub ids: Vec<u32>,
}

/// The windows of `block_size + 1` ids that start every `stride` ids of a text.
#[derive(Debug, Clone)]
pub struct Windows {
    ids: Arc<[u32]>,
    block_size: usize,
    stride: usize,
}

impl Windows {
    /// The windows of `ids` (`stride` is at least 1).
    pub fn new(ids: Vec<u32>, block_size: usize, stride: usize) -> Self {
        Self {
            ids: ids.into(),
            block_size,
            stride: stride.max(1),
        }
    }
}

impl Dataset<Window> for Windows {
    fn get(&self, index: usize) -> Result<Window, DatasetError> {
        let start = index * self.stride;
        match self.ids.get(start..start + self.block_size + 1) {
            Some(ids) if index < self.len() => Ok(Window { ids: ids.to_vec() }),
            _ => Err(DatasetError::new(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("index {index} is out of range for {} windows", self.len()),
            ))),
        }
    }

    fn len(&self) -> usize {
        match self.ids.len().checked_sub(self.block_size + 1) {
            Some(room) => room / self.stride + 1,
            None => 0,
        }
    }
}

/// Writes `dir/train.bin` and `dir/val.bin` (the corpus's ids as little-endian u16, nanoGPT's
/// format) and `dir/vocab.txt` (its characters in id order), as nanoGPT's `prepare.py` does.
pub fn write_token_files(corpus: &Corpus, dir: &Path) -> Result<(), DataError> {
    if corpus.vocab.len() > usize::from(u16::MAX) + 1 {
        return Err(DataError::new(
            &corpus.source,
            "more than 65,536 characters do not fit u16 ids",
        ));
    }
    let failed = |path: &Path, e: std::io::Error| DataError::new(path, format!("cannot write it: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    for (name, ids) in [("train.bin", &corpus.train), ("val.bin", &corpus.val)] {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| (id as u16).to_le_bytes()).collect();
        let path = dir.join(name);
        danling::fs::write_atomic(&path, &bytes).map_err(|e| DataError::new(&path, e.to_string()))?;
    }
    let text: String = corpus.vocab.chars().iter().collect();
    let path = dir.join(VOCAB_FILE);
    danling::fs::write_atomic(&path, text.as_bytes()).map_err(|e| DataError::new(&path, e.to_string()))
}

/// The vocabulary file beside the token files.
pub const VOCAB_FILE: &str = "vocab.txt";

/// The train windows (one at every position) and validation windows (side by side) of the token
/// files in `dir`, read from disk window by window, and their vocabulary. A token file that is
/// truncated, too short, or holds an id past the vocabulary is an error that names it.
pub fn token_files(
    dir: &Path,
    block_size: usize,
) -> Result<(Vocab, TokenWindows, TokenWindows), Box<dyn std::error::Error + Send + Sync>> {
    let path = dir.join(VOCAB_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DataError::new(&path, format!("cannot read the vocabulary: {e}")))?;
    let vocab = Vocab::from_chars(&text);
    if vocab.is_empty() {
        return Err(DataError::new(&path, "the vocabulary is empty").into());
    }
    let open = |name: &str, stride: usize| {
        danling::data::TokenFile::open(dir.join(name), danling::data::TokenWidth::U16, block_size)
            .map(|file| TokenWindows(file.stride(stride).vocab(vocab.len() as u32)))
    };
    let train = open("train.bin", 1)?;
    let val = open("val.bin", block_size)?;
    Ok((vocab, train, val))
}

/// A token file's windows as [`Window`]s.
#[derive(Debug)]
pub struct TokenWindows(pub danling::data::TokenFile);

impl Dataset<Window> for TokenWindows {
    fn get(&self, index: usize) -> Result<Window, DatasetError> {
        self.0.get(index).map(|ids| Window { ids })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Why a text file could not be used: one line naming the file and what is wrong.
#[derive(Debug)]
pub struct DataError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl DataError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "text file {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DataError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_vocabulary_is_the_sorted_characters_and_round_trips() {
        let vocab = Vocab::from_text("hello, wörld");
        assert_eq!(vocab.chars(), [' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w', 'ö']);
        let ids = vocab.encode("world").unwrap();
        assert_eq!(ids, [8, 6, 7, 5, 2]);
        assert_eq!(vocab.decode(&ids), "world");
        assert_eq!(vocab.encode("hex"), Err('x'));
    }

    #[test]
    fn the_last_part_is_validation_cut_into_side_by_side_windows() {
        let corpus = Corpus::from_text("t".as_ref(), "abcdefghij", 0.3).unwrap();
        assert_eq!(corpus.train, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(corpus.val, [7, 8, 9]);
        let (train, val) = corpus.windows(2).unwrap();
        // Every position of the train text: 7 ids, windows of 3.
        assert_eq!(train.len(), 5);
        assert_eq!(train.get(4).unwrap().ids, [4, 5, 6]);
        assert!(train.get(5).is_err());
        assert_eq!(val.len(), 1);
        assert_eq!(val.get(0).unwrap().ids, [7, 8, 9]);
        assert_eq!(Windows::new((0..10).collect(), 3, 3).len(), 3);
        assert_eq!(Windows::new((0..3).collect(), 3, 1).len(), 0);

        let short = corpus.windows(3).unwrap_err().to_string();
        assert_eq!(
            short,
            "text file t: the validation text has 3 characters, too few for one window of \
             block_size + 1 = 4"
        );
        let all = Corpus::from_text("t".as_ref(), "abc", 0.9)
            .unwrap_err()
            .to_string();
        assert!(
            all.contains("cannot hold out val_fraction 0.9 of its 3 characters"),
            "{all}"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.txt");
        std::fs::write(&path, b"caf\xe9 au lait").unwrap();
        let error = Corpus::read(&path, 0.1).unwrap_err().to_string();
        assert_eq!(
            error,
            format!("text file {}: not UTF-8 text (byte 3 is invalid)", path.display())
        );
        let missing = Corpus::read(&dir.path().join("none.txt"), 0.1)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("none.txt: cannot read it"), "{missing}");
    }
}
