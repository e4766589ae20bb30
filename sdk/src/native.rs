//! The plugin side of a native library: the root module that
//! [`crate::export_plugin!`] exports, dispatching host calls to the
//! [`Plugin`] the author built. Panics never cross the boundary: each entry
//! point catches them and reports a failure instead.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RString};

use crate::abi::{
    HostApi, HostCx, HostResult, HostSink, HostView, PluginMod, PluginModRef, ROutcome,
};
use crate::plugin::{Cx, Plugin, Sink, View};

/// The plugin this library exports, built once when the host loads it.
static PLUGIN: OnceLock<Plugin> = OnceLock::new();

/// Builds the root module around the plugin `build` returns.
#[doc(hidden)]
pub fn root_module(build: fn() -> Plugin) -> PluginModRef {
    PLUGIN.get_or_init(build);
    PluginMod {
        descriptor,
        call,
        adapter_start,
        adapter_commit,
        adapter_stop,
    }
    .leak_into_prefix()
}

fn plugin() -> &'static Plugin {
    PLUGIN
        .get()
        .expect("the root module is built before any entry point runs")
}

/// The message of a caught panic.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

extern "C" fn descriptor() -> RString {
    plugin().descriptor.to_json().into()
}

extern "C" fn call(api: &'static HostApi, cx: HostCx, index: u32) -> ROutcome {
    let Some(enzyme) = plugin().enzymes.get(index as usize) else {
        return ROutcome::Fatal(format!("the plugin has no enzyme number {index}").into());
    };
    let mut cx = Cx::from_raw(api, cx);
    match catch_unwind(AssertUnwindSafe(|| enzyme.call(&mut cx))) {
        Ok(outcome) => outcome.into(),
        Err(payload) => ROutcome::Panic(panic_message(payload).into()),
    }
}

fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> HostResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => {
            RResult::RErr(format!("{what} panicked: {}", panic_message(payload)).into())
        }
    }
}

extern "C" fn adapter_start(api: &'static HostApi, sink: HostSink, index: u32) -> HostResult<()> {
    let sink = Sink::from_raw(api, sink);
    guarded("adapter start", || {
        match plugin().adapters.get(index as usize) {
            Some(adapter) => adapter.start(sink),
            None => Err(format!("the plugin has no adapter number {index}")),
        }
    })
}

extern "C" fn adapter_commit(api: &'static HostApi, view: HostView, index: u32) {
    if let Some(adapter) = plugin().adapters.get(index as usize) {
        let view = View::from_raw(api, view);
        // A panicking observer loses this one notification, nothing else.
        let _ = catch_unwind(AssertUnwindSafe(|| adapter.on_commit(&view)));
    }
}

extern "C" fn adapter_stop(_api: &'static HostApi, index: u32) {
    if let Some(adapter) = plugin().adapters.get(index as usize) {
        let _ = catch_unwind(AssertUnwindSafe(|| adapter.stop()));
    }
}

/// Exports a [`Plugin`] as a native cep plugin library. Use it once, at the
/// root of a `cdylib` crate that depends on `cep-sdk` only:
///
/// ```ignore
/// cep_sdk::export_plugin!(build());
/// ```
///
/// The expression is evaluated once, when the host loads the library.
#[macro_export]
macro_rules! export_plugin {
    ($build:expr) => {
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __CEP_PLUGIN_ROOT: $crate::abi_stable::library::LibHeader = {
            extern "C" fn __cep_plugin_root() -> $crate::abi_stable::library::RootModuleResult {
                fn __cep_plugin_build() -> $crate::plugin::Plugin {
                    $build
                }
                $crate::abi_stable::library::__call_root_module_loader(|| {
                    $crate::native::root_module(__cep_plugin_build)
                })
            }
            // SAFETY: the constructor returns the root module type named here.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<
                    $crate::abi::PluginModRef,
                >(
                    __cep_plugin_root,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
