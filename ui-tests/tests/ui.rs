//! Compile-fail cases for the macros: each `cases/*.rs` must fail with exactly its `.stderr`;
//! each `pass/*.rs` must compile and run.
//! The messages depend on the compiler (rustc 1.95 here): regenerate with
//! `TRYBUILD=overwrite cargo test -p ui-tests` only when a message really changed.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("cases/*.rs");
    // programs that must compile and run
    t.pass("pass/*.rs");
}
