//! Compile-fail tests of `#[derive(Request)]` and `#[derive(Notification)]`:
//! each `tests/ui/*.rs` must fail to compile with exactly the errors in its
//! `.stderr` (regenerate with `TRYBUILD=overwrite cargo test -p
//! lhcluster-derive --test derive_ui`, then review the diff: every message
//! should point at the offending tokens and say what to do).
//!
//! The cases see `lhcluster-types` under the name `lhcluster` (this crate's
//! dev-dependency), so generated code resolves `::lhcluster::__private` as
//! in a user's crate, and trybuild's own build of the dependencies (in its
//! separate target directory) needs neither ZeroMQ nor the roles.

#[test]
fn derive_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
