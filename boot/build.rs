//! Links the null guest (`src/bin/null_guest.rs`) with its own linker
//! script, only when building for the bare-metal target; the library and
//! host builds are untouched.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("null-guest.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=null_guest=-T{}", script.display());
    }
}
