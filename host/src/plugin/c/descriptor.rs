//! Reading a C plugin's descriptor: every header checked, every text
//! and array copied out of the library's memory before anything else runs.

use super::*;

/// The size of each struct in ABI 1.0: a plugin's `struct_size` may be
/// larger (a newer minor), never smaller.
pub(super) fn min_size<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// Checks the header of a struct named `what` and returns its size.
pub(super) fn check_header<T>(header: &cep_header, what: &str) -> Result<usize, LoadError> {
    if header.abi_major != CEP_ABI_MAJOR {
        return Err(LoadError::Invalid(DescriptorError::Abi {
            found: abi(header),
            host: AbiVersion::CURRENT,
            reason: "the major versions differ",
        }));
    }
    if header.struct_size < min_size::<T>() {
        return Err(LoadError::Layout(format!(
            "{what}.struct_size is {} bytes, but ABI {}.0 needs at least {} (was it built against a different cep.h?)",
            header.struct_size,
            CEP_ABI_MAJOR,
            min_size::<T>()
        )));
    }
    Ok(header.struct_size as usize)
}

pub(super) fn abi(header: &cep_header) -> AbiVersion {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    AbiVersion {
        major: clamp(header.abi_major),
        minor: clamp(header.abi_minor),
    }
}

/// Reads `count` structs of type `T` at `base`, each starting with a
/// header; the stride is the first header's `struct_size`.
///
/// # Safety
/// `base` points to `count` such structs (or `count` is 0).
pub(super) unsafe fn read_array<T: Copy>(
    base: *const T,
    count: usize,
    what: &str,
    header_of: impl Fn(&T) -> cep_header,
) -> Result<Vec<T>, LoadError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if base.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{what} is NULL but its count is {count}"
        )));
    }
    // SAFETY: the header is the first member of every element.
    let first = unsafe { *(base as *const cep_header) };
    let stride = check_header::<T>(&first, &format!("{what}[0]"))?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: element i starts `i * stride` bytes in and has at least
        // `size_of::<T>()` bytes (checked above).
        let item =
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            unsafe { std::ptr::read_unaligned((base as *const u8).add(i * stride) as *const T) };
        let header = header_of(&item);
        if header.struct_size as usize != stride || header.abi_major != first.abi_major {
            return Err(LoadError::Layout(format!(
                "{what}[{i}] has header {}.{} size {}, unlike {what}[0] ({}.{} size {})",
                header.abi_major,
                header.abi_minor,
                header.struct_size,
                first.abi_major,
                first.abi_minor,
                first.struct_size
            )));
        }
        out.push(item);
    }
    Ok(out)
}

/// Copies a descriptor text: UTF-8 without NUL bytes.
///
/// # Safety
/// `s` points to `s.len` readable bytes (or is `{NULL, 0}`).
pub(super) unsafe fn text(s: cep_str, what: &str) -> Result<String, LoadError> {
    if s.len == 0 {
        return Ok(String::new());
    }
    if s.ptr.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{what}: NULL text with length {}",
            s.len
        )));
    }
    // SAFETY: as the caller promises.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr as *const u8, s.len) };
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(LoadError::Descriptor(format!(
            "{what}: contains a NUL byte at offset {at} (texts are pointer + length, without NUL)"
        )));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|e| LoadError::Descriptor(format!("{what}: not UTF-8 ({e})")))
}

/// Copies an array of texts.
///
/// # Safety
/// `base` points to `count` `cep_str`s, each valid for [`text`].
pub(super) unsafe fn texts(
    base: *const cep_str,
    count: usize,
    what: &str,
) -> Result<Vec<String>, LoadError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if base.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{what} is NULL but its count is {count}"
        )));
    }
    (0..count)
        // SAFETY: as the caller promises.
        .map(|i| unsafe { text(*base.add(i), &format!("{what}[{i}]")) })
        .collect()
}

pub(super) fn required<F>(f: Option<F>, what: &str) -> Result<F, LoadError> {
    f.ok_or_else(|| LoadError::Descriptor(format!("{what} is NULL")))
}

/// # Safety
/// `desc` is the non-null result of a plugin's entry point.
pub(super) unsafe fn read_plugin(
    desc: *const cep_plugin_desc,
) -> Result<(Arc<CModule>, PluginDescriptor), LoadError> {
    // SAFETY: the header comes first; the rest is read once its size is
    // known to cover ABI 1.0's fields.
    let header = unsafe { *(desc as *const cep_header) };
    check_header::<cep_plugin_desc>(&header, "cep_plugin_desc")?;
    // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
    let d = unsafe { std::ptr::read_unaligned(desc) };
    let mut out = PluginDescriptor::new(
        // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
        &unsafe { text(d.name, "cep_plugin_desc.name") }?,
        // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
        &unsafe { text(d.version, "cep_plugin_desc.version") }?,
        PluginKind::C,
    );
    out.abi = abi(&header);
    // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
    out.capabilities = unsafe {
        texts(
            d.capabilities,
            d.capability_count,
            "cep_plugin_desc.capabilities",
        )
    }?;
    let mut module = CModule {
        enzymes: Vec::new(),
        adapters: Vec::new(),
    };
    // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
    let enzymes = unsafe { read_array(d.enzymes, d.enzyme_count, "enzymes", |e| e.header) }?;
    for (i, e) in enzymes.iter().enumerate() {
        let at = |field: &str| format!("enzymes[{i}].{field}");
        let flag = |bit: u32| e.flags & bit != 0;
        out.enzymes.push(EnzymeDescriptor {
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            name: unsafe { text(e.name, &at("name")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            label: unsafe { text(e.label, &at("label")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            signal: unsafe { text(e.signal, &at("signal")) }?,
            match_kind: if flag(CEP_ENZYME_PREFIX) {
                MatchKind::Prefix
            } else {
                MatchKind::Exact
            },
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            before: unsafe { texts(e.before, e.before_count, &at("before")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            after: unsafe { texts(e.after, e.after_count, &at("after")) }?,
            flags: EnzymeFlags {
                idempotent: flag(CEP_ENZYME_IDEMPOTENT),
                stateful: flag(CEP_ENZYME_STATEFUL),
                emits: flag(CEP_ENZYME_EMITS),
            },
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            reads: unsafe { texts(e.reads, e.reads_count, &at("reads")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            writes: unsafe { texts(e.writes, e.writes_count, &at("writes")) }?,
        });
        module
            .enzymes
            .push((required(e.call, &at("call"))?, UserPtr(e.user)));
    }
    // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
    let organs = unsafe { read_array(d.organs, d.organ_count, "organs", |o| o.header) }?;
    for (i, o) in organs.iter().enumerate() {
        let at = |field: &str| format!("organs[{i}].{field}");
        let optional = |s: cep_str, field: &str| -> Result<Option<String>, LoadError> {
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            let t = unsafe { text(s, &at(field)) }?;
            Ok((!t.is_empty()).then_some(t))
        };
        out.organs.push(OrganDescriptor {
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            kind: unsafe { text(o.kind, &at("kind")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            label: unsafe { text(o.label, &at("label")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            root: unsafe { text(o.root, &at("root")) }?,
            validator: optional(o.validator, "validator")?,
            constructor: optional(o.constructor, "constructor")?,
            destructor: optional(o.destructor, "destructor")?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            depends_on: unsafe { texts(o.depends_on, o.depends_on_count, &at("depends_on")) }?,
        });
    }
    let transports =
        // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
        unsafe { read_array(d.transports, d.transport_count, "transports", |t| t.header) }?;
    for (i, t) in transports.iter().enumerate() {
        let at = |field: &str| format!("transports[{i}].{field}");
        out.transports.push(TransportDescriptor {
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            name: unsafe { text(t.name, &at("name")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            scheme: unsafe { text(t.scheme, &at("scheme")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            label: unsafe { text(t.label, &at("label")) }?,
        });
    }
    // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
    let adapters = unsafe { read_array(d.adapters, d.adapter_count, "adapters", |a| a.header) }?;
    for (i, a) in adapters.iter().enumerate() {
        let at = |field: &str| format!("adapters[{i}].{field}");
        out.adapters.push(AdapterDescriptor {
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            name: unsafe { text(a.name, &at("name")) }?,
            // SAFETY: a pointer of the plugin's descriptor, valid with the length it states for as long as the library is loaded, which is for good (cep.h).
            label: unsafe { text(a.label, &at("label")) }?,
        });
        module.adapters.push(CAdapterFns {
            start: required(a.start, &at("start"))?,
            commit: a.commit,
            stop: required(a.stop, &at("stop"))?,
            user: UserPtr(a.user),
        });
    }
    Ok((Arc::new(module), out))
}
