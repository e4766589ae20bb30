//! The `cep` command; see `cep --help`.

fn main() {
    std::process::exit(cep_host::cli::main());
}
