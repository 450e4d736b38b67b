//! `chargpt-tokens TEXT DIR [VAL_FRACTION]`: writes a text file as nanoGPT's token files
//! (`DIR/train.bin`, `DIR/val.bin`, u16 ids, and `DIR/vocab.txt`), as nanoGPT's
//! `data/shakespeare_char/prepare.py` does; `chargpt train --data.path DIR` then reads them window
//! by window from disk.

use std::path::PathBuf;
use std::process::ExitCode;

use danling_example_chargpt::data::{Corpus, write_token_files};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(text), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: chargpt-tokens TEXT DIR [VAL_FRACTION]");
        return ExitCode::from(2);
    };
    let fraction = match args.get(2).map(|f| f.parse::<f64>()) {
        None => 0.1,
        Some(Ok(f)) => f,
        Some(Err(_)) => {
            eprintln!(
                "chargpt-tokens: error: VAL_FRACTION {:?} is not a number",
                args[2]
            );
            return ExitCode::from(2);
        }
    };
    let written = Corpus::read(&PathBuf::from(text), fraction)
        .and_then(|corpus| write_token_files(&corpus, &PathBuf::from(dir)).map(|()| corpus));
    match written {
        Ok(corpus) => {
            println!(
                "{dir}: {} train and {} val tokens, {} characters",
                corpus.train.len(),
                corpus.val.len(),
                corpus.vocab.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chargpt-tokens: error: {error}");
            ExitCode::from(2)
        }
    }
}
