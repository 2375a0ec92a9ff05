fn main() {
    // C programs link against the stable SONAME, not the unversioned dev link.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libaether.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
