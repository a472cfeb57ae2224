//! DNS on the wire: reading messages ([`wire`]), reading a query once ([`query`]), deciding what
//! to do with it ([`decide`]), and writing replies ([`reply`]); [`outcome`] is what every path
//! counts. [`answer`] keeps the paths of before the split for tests, benches and the fuzzer.

pub mod answer;
pub mod decide;
pub mod outcome;
pub mod query;
pub mod reply;
#[cfg(test)]
pub(crate) mod test_query;
pub mod wire;
