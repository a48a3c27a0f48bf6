//! The `repo` test binary: checks on the repository as a whole: the locked dependency tree,
//! the fuzz targets over their committed corpus, the generated man pages and completions, the
//! Markdown links, and the test crate's own layout. One module per former test binary, under its old name:
//! `cargo test -p felhom-tests --test repo supply_chain::` runs one.

mod fuzz_corpus;
mod layout;
mod man_pages;
mod repo_links;
mod supply_chain;
