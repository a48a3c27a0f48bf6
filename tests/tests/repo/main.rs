//! The `repo` test binary: checks on the repository as a whole: the locked dependency tree,
//! the fuzz targets over their committed corpus, and the generated man pages and completions.
//! One module per former test binary; run one with `cargo test -p felhom-tests --test repo
//! MODULE::`.

mod fuzz_corpus;
mod man_pages;
mod supply_chain;
