//! Links the test kernels with `link.ld` (bare-metal target only).

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    // The kernels run where they are linked: no dynamic relocations for a loader to apply.
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
