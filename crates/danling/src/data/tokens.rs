//! nanoGPT's token files (`train.bin`, `val.bin`): flat arrays of token ids, read window by window.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};

use super::DataError;
use super::disk::{open, read_at};

/// The width of a token id on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWidth {
    /// `uint16`, nanoGPT's `train.bin` (vocabularies up to 65,536).
    U16,
    /// `uint32`, for larger vocabularies.
    U32,
}

impl TokenWidth {
    fn bytes(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }
}

/// A flat file of little-endian token ids (nanoGPT's `train.bin` and `val.bin`), read as windows of
/// `block_size + 1` tokens: a window's first `block_size` tokens are the input and its last
/// `block_size` the next-token targets. Windows start every `stride` tokens (`block_size` by
/// default: each token is a target once an epoch).
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    file: File,
    width: TokenWidth,
    tokens: u64,
    block_size: usize,
    stride: usize,
    vocab: Option<u32>,
}

impl TokenFile {
    /// Opens `path`. A file whose length is not a whole number of tokens (a truncated write), or
    /// that holds fewer than `block_size + 1` tokens, is an error that names it.
    pub fn open(path: impl AsRef<Path>, width: TokenWidth, block_size: usize) -> Result<Self, DataError> {
        let path = path.as_ref();
        let (file, len) = open(path)?;
        let bytes = width.bytes() as u64;
        if len % bytes != 0 {
            return Err(DataError::format(
                path,
                format!(
                    "{len} bytes is not a whole number of {}-byte token ids: the file is truncated or \
                     holds another type",
                    bytes
                ),
            ));
        }
        let tokens = len / bytes;
        if block_size == 0 || tokens < block_size as u64 + 1 {
            return Err(DataError::format(
                path,
                format!(
                    "{tokens} tokens cannot make one window of block_size + 1 = {} tokens",
                    block_size + 1
                ),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            width,
            tokens,
            block_size,
            stride: block_size,
            vocab: None,
        })
    }

    /// Windows start every `stride` tokens (at least 1).
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride.max(1);
        self
    }

    /// Token ids must be below `vocab`: a window holding another is an error naming the file and
    /// the token's position, where the model's embedding would otherwise fail.
    pub fn vocab(mut self, vocab: u32) -> Self {
        self.vocab = Some(vocab);
        self
    }

    /// The tokens in the file.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The window at `index`, `block_size + 1` token ids.
    pub fn window(&self, index: usize) -> Result<Vec<u32>, DataError> {
        let (width, n) = (self.width.bytes(), self.block_size + 1);
        let start = index as u64 * self.stride as u64;
        if index >= self.len() {
            return Err(DataError::format(
                &self.path,
                format!("window {index} is past the last of {}", self.len()),
            ));
        }
        let mut bytes = vec![0u8; n * width];
        read_at(&self.file, &mut bytes, start * width as u64).map_err(|source| DataError::Read {
            path: self.path.clone(),
            source,
        })?;
        let ids: Vec<u32> = match self.width {
            TokenWidth::U16 => bytes
                .chunks_exact(2)
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            TokenWidth::U32 => bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        };
        if let Some(vocab) = self.vocab
            && let Some(at) = ids.iter().position(|&id| id >= vocab)
        {
            return Err(DataError::format(
                &self.path,
                format!(
                    "token {} at position {} is not below the vocabulary size {vocab}",
                    ids[at],
                    start + at as u64
                ),
            ));
        }
        Ok(ids)
    }
}

impl Dataset<Vec<u32>> for TokenFile {
    fn get(&self, index: usize) -> Result<Vec<u32>, DatasetError> {
        self.window(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        let windows = (self.tokens - self.block_size as u64 - 1) / self.stride as u64 + 1;
        usize::try_from(windows).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_windows_are_read_in_place_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.bin");
        let ids: Vec<u16> = (0..100).collect();
        std::fs::write(
            &path,
            ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        let file = TokenFile::open(&path, TokenWidth::U16, 8).unwrap();
        assert_eq!(file.len(), (100 - 9) / 8 + 1);
        assert_eq!(file.get(2).unwrap(), (16..25).collect::<Vec<u32>>());
        let file = file.stride(1);
        assert_eq!(file.len(), 92);
        assert_eq!(file.get(91).unwrap(), (91..100).collect::<Vec<u32>>());
        assert!(file.get(92).is_err());
        let file = TokenFile::open(&path, TokenWidth::U16, 8).unwrap().vocab(50);
        assert!(file.get(0).is_ok());
        let error = file.get(6).unwrap_err().to_string();
        assert!(
            error.contains("train.bin") && error.contains("token 50 at position 50"),
            "{error}"
        );

        // A write cut off in the middle of a token, and a file too short for a window.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        let error = TokenFile::open(&path, TokenWidth::U16, 8)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("train.bin") && error.contains("truncated"),
            "{error}"
        );
        bytes.truncate(196);
        std::fs::write(&path, &bytes).unwrap();
        let error = TokenFile::open(&path, TokenWidth::U32, 1000)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("49 tokens cannot make one window of block_size + 1 = 1001"),
            "{error}"
        );
        let missing = TokenFile::open(dir.path().join("nope.bin"), TokenWidth::U16, 8).unwrap_err();
        assert!(missing.to_string().contains("nope.bin"));
    }
}
