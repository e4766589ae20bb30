//! A plugin built against a changed SDK: its root module has the name and
//! symbol of cep's, but `call` takes a `u64` index where cep-sdk's takes a
//! `u32`, and the table has no host API. abi_stable's layout check at load
//! must refuse it before any of its code runs.

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RString;
use abi_stable::{declare_root_module_statics, export_root_module, StableAbi};

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    pub descriptor: extern "C" fn() -> RString,
    #[sabi(last_prefix_field)]
    pub call: extern "C" fn(u64) -> u8,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "cep_plugin";
    const NAME: &'static str = "cep_plugin";
    // The same version as cep-sdk's, so only the layout differs.
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}

extern "C" fn descriptor() -> RString {
    RString::from("{}")
}

extern "C" fn call(_index: u64) -> u8 {
    0
}

#[export_root_module]
pub fn root() -> PluginModRef {
    PluginMod { descriptor, call }.leak_into_prefix()
}
