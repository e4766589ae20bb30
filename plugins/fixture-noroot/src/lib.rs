//! A shared library with an exported function and no cep root module: the
//! host must refuse it as "not a cep plugin".

/// Some unrelated export.
#[no_mangle]
pub extern "C" fn not_a_cep_plugin() -> i32 {
    42
}
