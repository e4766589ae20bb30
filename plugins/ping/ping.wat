;; ping: a cep wasm plugin written directly in WebAssembly text, to show
;; that the guest ABI (docs/wasm-abi.md) needs no SDK. The host compiles
;; `.wat` files on load; tests also compile it with the `wat` crate.
;;
;; Enzymes (numbered in descriptor order, which is what cep_call gets):
;;   0 ping.pong (ping/pong): /data/ping/count += 1; the payload, if any,
;;     is copied to /data/ping/last.
;;   1 ping.nan (ping/nan): writes the bits of 0.0 / 0.0 as an i64 to
;;     /data/ping/nan. NaN canonicalization makes them 0x7ff8000000000000
;;     on every machine.
(module
  (import "cep" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "cep" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "cep" "payload" (func $payload (param i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; Cell paths.
  (data (i32.const 256) "/data/ping/count")  ;; 16 bytes
  (data (i32.const 288) "/data/ping/last")   ;; 15 bytes
  (data (i32.const 320) "/data/ping/nan")    ;; 14 bytes
  ;; An outcome record: OUTCOME_FATAL (2), then the message (14 bytes).
  (data (i32.const 512) "\02no such enzyme")
  ;; The descriptor: 308 bytes of JSON.
  (data (i32.const 1024) "{\"name\":\"ping\",\"version\":\"0.1.0\",\"abi\":{\"major\":1,\"minor\":0},\"kind\":\"wasm\",\"capabilities\":[\"write:/data/ping\"],\"enzymes\":[{\"name\":\"ping.pong\",\"signal\":\"ping/pong\",\"label\":\"counts pings and keeps the last payload\"},{\"name\":\"ping.nan\",\"signal\":\"ping/nan\",\"label\":\"writes the bits of 0.0/0.0 (canonical NaN)\"}]}")

  ;; The ABI marker: guest ABI 1.0.
  (func (export "cep_abi_1_0"))

  ;; (pointer, length) packed as pointer | length << 32.
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.extend_i32_u (local.get $ptr))
      (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32))))

  (func (export "cep_describe") (result i64)
    (call $pack (i32.const 1024) (i32.const 308)))

  ;; Writes the i64 value `v` (tag 2, 8 bytes little-endian) to the cell
  ;; whose path is at (ptr, len).
  (func $write_i64 (param $ptr i32) (param $len i32) (param $v i64)
    (i32.store8 (i32.const 8192) (i32.const 2))
    (i64.store (i32.const 8193) (local.get $v))
    (drop (call $write (local.get $ptr) (local.get $len) (i32.const 8192) (i32.const 9))))

  (func $pong (local $n i32) (local $count i64)
    ;; The count, if the cell holds an i64 (tag 2 + 8 bytes).
    (local.set $n (call $read (i32.const 256) (i32.const 16) (i32.const 4096) (i32.const 64)))
    (if (i32.and (i32.eq (local.get $n) (i32.const 9))
                 (i32.eq (i32.load8_u (i32.const 4096)) (i32.const 2)))
      (then (local.set $count (i64.load (i32.const 4097)))))
    (call $write_i64 (i32.const 256) (i32.const 16)
      (i64.add (local.get $count) (i64.const 1)))
    ;; The payload, if there is one and it fits in 1 KiB.
    (local.set $n (call $payload (i32.const 4096) (i32.const 1024)))
    (if (i32.and (i32.ge_s (local.get $n) (i32.const 0))
                 (i32.le_s (local.get $n) (i32.const 1024)))
      (then (drop (call $write (i32.const 288) (i32.const 15) (i32.const 4096) (local.get $n))))))

  (func $nan
    ;; 0.0 / 0.0, read from (zeroed) memory so nothing folds it away.
    (call $write_i64 (i32.const 320) (i32.const 14)
      (i64.reinterpret_f64 (f64.div (f64.load (i32.const 16)) (f64.load (i32.const 24))))))

  (func (export "cep_call") (param $enzyme i32) (result i64)
    (block $unknown
      (block $nan
        (block $pong
          (br_table $pong $nan $unknown (local.get $enzyme)))
        (call $pong)
        (return (i64.const 0)))
      (call $nan)
      (return (i64.const 0)))
    (call $pack (i32.const 512) (i32.const 15)))
)
