//! The host calls the filter makes, declared here so that every status comes
//! back as a `Result`: proxy-wasm 0.2.5's `hostcalls` panic on any status they
//! do not expect, and a panic kills the VM (every later request on the worker
//! gets `503 wasm_fail_stream`). Signatures follow the SDK's `hostcalls.rs`
//! (ABI 0.2.1).
//!
//! One call goes through the SDK: `dispatch_http_call`, because the SDK's
//! dispatcher must learn each callout token (its `register_callout` is
//! crate-private) or it panics when the answer comes; the SDK passes on
//! `BadArgument` and `InternalFailure`, the statuses Envoy's `http_call` returns.
//!
//! On native builds (unit tests) the imports are stubs that answer
//! `InternalFailure`; tests use the fake host instead.

use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::ptr::{null, null_mut};

/// Declares the imports on wasm and a stub of each on native builds.
macro_rules! imports {
    ($( fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> u32; )*) => {
        #[cfg(target_arch = "wasm32")]
        #[link(wasm_import_module = "env")]
        extern "C" {
            $( fn $name($($arg: $ty),*) -> u32; )*
        }
        $(
            #[cfg(not(target_arch = "wasm32"))]
            #[allow(unused_variables, clippy::too_many_arguments)]
            unsafe fn $name($($arg: $ty),*) -> u32 {
                Status::InternalFailure as u32
            }
        )*
    };
}

imports! {
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: MapType, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(
        metric_type: MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
}

/// `StreamType::HttpRequest` of the ABI (`proxy_continue_stream`).
const STREAM_HTTP_REQUEST: u32 = 0;

/// A raw status as a `Result`; an unknown code reads as `InternalFailure`.
fn check(code: u32) -> Result<(), Status> {
    match code {
        0 => Ok(()),
        1 => Err(Status::NotFound),
        2 => Err(Status::BadArgument),
        3 => Err(Status::SerializationFailure),
        4 => Err(Status::ParseFailure),
        7 => Err(Status::Empty),
        8 => Err(Status::CasMismatch),
        _ => Err(Status::InternalFailure),
    }
}

/// Takes ownership of bytes the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a `Vec` allocation of exactly `size`).
///
/// # Safety
/// `data` must come from the host's answer to a call that returned `Ok`.
unsafe fn host_bytes(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: the SDK's allocator made this buffer with this capacity.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

/// `NotFound` as "no value"; every other failure stays an error.
fn found<T>(r: Result<T, Status>) -> Result<Option<T>, Status> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Status::NotFound) => Ok(None),
        Err(s) => Err(s),
    }
}

/// Header map pairs in the ABI's serialization (count, sizes, NUL-terminated strings).
fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let size = map.iter().fold(4, |n, (k, v)| n + k.len() + v.len() + 10);
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Header names and values as the host gave them (bytes, in its order).
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The ABI's serialized header map back into pairs; `None` when the bytes are
/// not a well-formed map (never a panic). An empty buffer is an empty map.
fn deserialize_map(bytes: &[u8]) -> Option<Pairs> {
    fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    }
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32_at(bytes, 0)?;
    let mut strings = count.checked_mul(8)?.checked_add(4)?;
    // Each pair takes at least its 8 size bytes: a count past that is malformed.
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    for n in 0..count {
        let sizes = n.checked_mul(8)?.checked_add(4)?;
        let mut take = |size: usize| -> Option<Vec<u8>> {
            let end = strings.checked_add(size)?;
            let s = bytes.get(strings..end)?.to_vec();
            strings = end.checked_add(1)?;
            Some(s)
        };
        let key = take(u32_at(bytes, sizes)?)?;
        let value = take(u32_at(bytes, sizes.checked_add(4)?)?)?;
        pairs.push((key, value));
    }
    Some(pairs)
}

fn serialize_path(path: &[&str]) -> Vec<u8> {
    fusion_core::text::join(path, "\0").into_bytes()
}

pub fn current_time_ns() -> Result<u64, Status> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 through the pointer.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    // SAFETY: plain value argument.
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub fn get_buffer(kind: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer it allocated and its size.
    let r = check(unsafe { proxy_get_buffer_bytes(kind, start, max, &mut data, &mut size) });
    // SAFETY: the call returned Ok, so `data`/`size` are the host's allocation.
    Ok(found(r)?.and_then(|()| unsafe { host_bytes(data, size) }))
}

pub fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host reads `value` within its length.
    check(unsafe { proxy_set_buffer_bytes(kind, start, size, value.as_ptr(), value.len()) })
}

pub fn get_map_value(map: MapType, key: &str) -> Result<Option<String>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host reads the key within its length and writes its own allocation.
    let r = check(unsafe {
        proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut data, &mut size)
    });
    let Some(()) = found(r)? else {
        return Ok(None);
    };
    // SAFETY: the call returned Ok.
    let bytes = unsafe { host_bytes(data, size) }.unwrap_or_default();
    // A value that is not UTF-8 is not a value this filter can use.
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Status::ParseFailure)
}

/// Every pair of a header map, in the host's order, in one call.
pub fn get_map_pairs(map: MapType) -> Result<Pairs, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes its own allocation and its size.
    check(unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) })?;
    // SAFETY: the call returned Ok.
    let bytes = unsafe { host_bytes(data, size) }.unwrap_or_default();
    deserialize_map(&bytes).ok_or(Status::ParseFailure)
}

/// Sets a header (`Some`) or removes it (`None`).
pub fn set_map_value(map: MapType, key: &str, value: Option<&str>) -> Result<(), Status> {
    // SAFETY: the host reads key and value within their lengths.
    check(unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map, key.as_ptr(), key.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map, key.as_ptr(), key.len()),
        }
    })
}

pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let path = serialize_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as get_buffer.
    let r = check(unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) });
    // SAFETY: the call returned Ok.
    Ok(found(r)?.and_then(|()| unsafe { host_bytes(data, size) }))
}

/// Envoy keeps the value as filter state `wasm.<path>` (readable in access
/// logs with `%FILTER_STATE(wasm.<path>:PLAIN)%`).
pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), Status> {
    let path = serialize_path(path);
    // SAFETY: both pointers are valid for their lengths during the call.
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

pub fn resume_http_request() -> Result<(), Status> {
    // SAFETY: plain value argument.
    check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

pub fn send_http_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = serialize_map(headers);
    // SAFETY: the host reads each buffer within its length.
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: plain value argument.
    check(unsafe { proxy_set_effective_context(context_id) })
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: the host reads the name within its length and writes the id.
    check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: plain value arguments.
    check(unsafe { proxy_increment_metric(id, offset) })
}

/// A reserved queue id: the root's `on_queue_ready` ignores it.
#[cfg(target_arch = "wasm32")]
const ROOT_ENTRY_QUEUE: u32 = u32::MAX;

#[cfg(target_arch = "wasm32")]
extern "C" {
    /// The SDK's own entry point for the root's queue callback (proxy-wasm
    /// 0.2.5 defines it `#[no_mangle]` in this module; linked, not imported).
    fn proxy_on_queue_ready(context_id: u32, queue_id: u32);
}

/// Makes the root the SDK's active context until the current callback returns.
///
/// Envoy makes every callout on the root's context (proxy-wasm-cpp-host's
/// `http_call` uses `contextOrEffectiveContext()->root_context()`): a stream's
/// end never cancels one, and Envoy always delivers its end (answer, failure,
/// timeout) as `proxy_on_http_call_response` to the root. The SDK then routes
/// that answer by the context that was active when it registered the token
/// and drops it silently when that stream is gone. Entering the root's
/// dispatcher entry point sets the SDK's active context to the root, so the
/// tokens dispatched next in this callback are registered to the root, which
/// sees every callout's end. Must not be called from a root callback (the SDK
/// holds the root mutably there; the root is active then anyway).
pub fn enter_root_dispatcher(root_context_id: u32) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: an SDK function of this module, called with plain values outside
    // any root callback (the caller's contract).
    unsafe {
        proxy_on_queue_ready(root_context_id, ROOT_ENTRY_QUEUE);
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = root_context_id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_results_and_unknown_codes_fail() {
        assert_eq!(check(0), Ok(()));
        assert_eq!(check(2), Err(Status::BadArgument));
        assert_eq!(check(99), Err(Status::InternalFailure));
        assert_eq!(found::<u8>(Err(Status::NotFound)), Ok(None));
        assert_eq!(
            found::<u8>(Err(Status::BadArgument)),
            Err(Status::BadArgument)
        );
    }

    #[test]
    fn maps_serialize_as_the_abi_expects() {
        let b = serialize_map(&[("a", "bc")]);
        assert_eq!(
            b,
            [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]
        );
        assert_eq!(
            serialize_path(&["xds", "cluster_name"]),
            b"xds\0cluster_name"
        );
    }

    #[test]
    fn maps_deserialize_as_they_serialize_and_malformed_ones_fail() {
        let pairs = [("a", "bc"), (":path", ""), ("x-y", "z")];
        let owned: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let bytes = serialize_map(&pairs);
        assert_eq!(deserialize_map(&bytes), Some(owned));
        assert_eq!(deserialize_map(&[]), Some(Vec::new()));
        // Anything short of the last string fails (its closing NUL is not needed).
        for cut in 1..bytes.len() - 1 {
            assert_eq!(deserialize_map(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(deserialize_map(&[255, 255, 255, 255]), None);
    }

    #[test]
    fn native_stubs_answer_internal_failure() {
        assert_eq!(current_time_ns(), Err(Status::InternalFailure));
        assert_eq!(resume_http_request(), Err(Status::InternalFailure));
    }
}
