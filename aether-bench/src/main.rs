fn main() {
    let exe = std::env::current_exe().expect("own executable path");
    std::process::exit(aether_bench::main(
        std::env::args_os().skip(1),
        vec![exe.into_os_string()],
    ));
}
