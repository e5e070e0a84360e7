//! Compile-fail tests of `#[derive(Request)]` and `#[derive(Notification)]`:
//! each `tests/ui/*.rs` must fail to compile with exactly the errors in its
//! `.stderr` (regenerate with `TRYBUILD=overwrite cargo test -p lhcluster
//! --test derive_ui`, then review the diff: every message should point at
//! the offending tokens and say what to do).

#[test]
fn derive_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
