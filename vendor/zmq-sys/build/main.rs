use std::{env, path::PathBuf};

// lhcluster: the one change to the published zmq-sys 0.12.0 (see README.md).
// The published script calls `with_libsodium(None)`, which builds libzmq
// without CURVE. Here libzmq gets the libsodium that the `libsodium-sys-stable`
// dependency builds from the source tarball it bundles (no system package, no
// download): that crate declares `links = "sodium"`, so its `include` and
// `lib` metadata reach this script as `DEP_SODIUM_INCLUDE` / `DEP_SODIUM_LIB`.
fn sodium_dir(var: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed={var}");
    match env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "{} is not set: libsodium-sys-stable did not report where it built \
             libsodium (it reports nothing when SODIUM_LIB_DIR is set; unset it, or \
             use SODIUM_USE_PKG_CONFIG with a libsodium that has a .pc file)",
            var
        ),
    }
}

pub fn configure() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");

    let include_dir = sodium_dir("DEP_SODIUM_INCLUDE");
    let lib_dir = sodium_dir("DEP_SODIUM_LIB");
    // zeromq-src prints this search path in Debug form (quoted), which the
    // linker does not read as a directory: say it again, plainly.
    println!("cargo:rustc-link-search=native={}", lib_dir.display());

    // libzmq's sources draw a dozen gcc warnings (unused parameters, a
    // fall-through), which `cc` hands to cargo as build-script warnings;
    // cargo repeats those of a path dependency like this one on every
    // build of the workspace. They are upstream's to fix: `-w` silences
    // them (appended, so flags a user sets still apply).
    println!("cargo:rerun-if-env-changed=CXXFLAGS");
    let cxxflags = env::var("CXXFLAGS").unwrap_or_default();
    env::set_var("CXXFLAGS", format!("{cxxflags} -w {}", linux_features()));

    // Note that by default `libzmq` builds without `libsodium` by instead
    // relying on `tweetnacl`. However since this `tweetnacl` [has never been
    // audited nor is ready for production](https://github.com/zeromq/libzmq/issues/3006),
    // we link against `libsodium` to enable `ZMQ_CURVE`.
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib_dir, include_dir)))
        .build();
}

// lhcluster: zeromq-src leaves libzmq's `platform.hpp` empty and defines only
// a few of the features libzmq's own CMake build finds on Linux. Without
// these, libzmq falls back to what works everywhere: every mailbox signal (a
// socket waking its I/O thread, or the other way round) is a write to a Unix
// socket pair instead of an eventfd, and its timers (heartbeats, reconnect
// intervals) read the wall clock instead of the monotonic one. These are the
// settings a distribution's libzmq has (docs/benchmarks.md, "libzmq built as
// CMake builds it").
fn linux_features() -> &'static str {
    println!("cargo:rerun-if-env-changed=CARGO_CFG_TARGET_OS");
    match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("linux") | Ok("android") => {
            "-DZMQ_HAVE_EVENTFD -DZMQ_HAVE_EVENTFD_CLOEXEC -DHAVE_CLOCK_GETTIME \
             -DZMQ_HAVE_PTHREAD_SETNAME_2"
        }
        _ => "",
    }
}

fn main() {
    configure()
}
