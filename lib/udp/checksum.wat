;; The ones'-complement sum of RFC 1071 over bytes of the imported memory, with SIMD.
;; Assembled by scripts/build_checksum_wasm.ts into lib/udp/checksum_wasm.ts (committed).
;;
;; sum(p, n, initial) -> the folded (not inverted) sum of the big-endian 16-bit words of
;; the n bytes at p (a trailing odd byte is the high byte of a last word), plus initial:
;; exactly what onesComplementSumJs returns. The words are summed little endian, which
;; is the byte-swapped sum (RFC 1071 §2(B)), swapped back at the end.
;;
;; 64 bytes per turn into two i32x4 accumulators: i32x4.extadd_pairwise_i16x8_u adds
;; pairs of 16-bit words into 32-bit lanes (≤ 131,070 each), so a lane takes at most
;; 2 × 256 of them (≤ 67,107,840) in a 16 KB chunk before it is added into an i64.
(module
  (import "env" "memory" (memory 1))
  (func (export "sum") (param $p i32) (param $n i32) (param $initial i32) (result i32)
    (local $last i32) (local $blocksEnd i32) (local $chunkEnd i32)
    (local $a v128) (local $b v128) (local $w v128) (local $total i64)
    (local.set $last (i32.add (local.get $p) (local.get $n)))
    (local.set $blocksEnd
      (i32.add (local.get $p) (i32.and (local.get $n) (i32.const -64))))
    (block $blocksDone
      (loop $chunks
        (br_if $blocksDone (i32.ge_u (local.get $p) (local.get $blocksEnd)))
        (local.set $chunkEnd (i32.add (local.get $p) (i32.const 16384)))
        (if (i32.gt_u (local.get $chunkEnd) (local.get $blocksEnd))
          (then (local.set $chunkEnd (local.get $blocksEnd))))
        (local.set $a (v128.const i64x2 0 0))
        (local.set $b (v128.const i64x2 0 0))
        (loop $blocks
          (local.set $a
            (i32x4.add
              (i32x4.add (local.get $a)
                (i32x4.extadd_pairwise_i16x8_u (v128.load offset=0 align=1 (local.get $p))))
              (i32x4.extadd_pairwise_i16x8_u (v128.load offset=16 align=1 (local.get $p)))))
          (local.set $b
            (i32x4.add
              (i32x4.add (local.get $b)
                (i32x4.extadd_pairwise_i16x8_u (v128.load offset=32 align=1 (local.get $p))))
              (i32x4.extadd_pairwise_i16x8_u (v128.load offset=48 align=1 (local.get $p)))))
          (local.set $p (i32.add (local.get $p) (i32.const 64)))
          (br_if $blocks (i32.lt_u (local.get $p) (local.get $chunkEnd))))
        (local.set $a (i32x4.add (local.get $a) (local.get $b)))
        (local.set $w
          (i64x2.add
            (i64x2.extend_low_i32x4_u (local.get $a))
            (i64x2.extend_high_i32x4_u (local.get $a))))
        (local.set $total
          (i64.add (local.get $total)
            (i64.add (i64x2.extract_lane 0 (local.get $w)) (i64x2.extract_lane 1 (local.get $w)))))
        (br $chunks)))
    ;; Fewer than 64 bytes left: 16-byte blocks, then words, then an odd byte.
    (block $sixteensDone
      (loop $sixteens
        (br_if $sixteensDone (i32.gt_u (i32.add (local.get $p) (i32.const 16)) (local.get $last)))
        (local.set $a
          (i32x4.extadd_pairwise_i16x8_u (v128.load align=1 (local.get $p))))
        (local.set $w
          (i64x2.add
            (i64x2.extend_low_i32x4_u (local.get $a))
            (i64x2.extend_high_i32x4_u (local.get $a))))
        (local.set $total
          (i64.add (local.get $total)
            (i64.add (i64x2.extract_lane 0 (local.get $w)) (i64x2.extract_lane 1 (local.get $w)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $sixteens)))
    (block $wordsDone
      (loop $words
        (br_if $wordsDone (i32.gt_u (i32.add (local.get $p) (i32.const 2)) (local.get $last)))
        (local.set $total
          (i64.add (local.get $total) (i64.extend_i32_u (i32.load16_u align=1 (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 2)))
        (br $words)))
    (if (i32.lt_u (local.get $p) (local.get $last))
      (then
        (local.set $total
          (i64.add (local.get $total) (i64.extend_i32_u (i32.load8_u (local.get $p)))))))
    ;; Fold to 16 bits, swap back to big endian, add the initial value, fold again.
    (block $folded
      (loop $fold
        (br_if $folded (i64.le_u (local.get $total) (i64.const 0xffff)))
        (local.set $total
          (i64.add (i64.and (local.get $total) (i64.const 0xffff))
            (i64.shr_u (local.get $total) (i64.const 16))))
        (br $fold)))
    (local.set $total
      (i64.add
        (i64.or
          (i64.shl (i64.and (local.get $total) (i64.const 0xff)) (i64.const 8))
          (i64.shr_u (local.get $total) (i64.const 8)))
        (i64.extend_i32_u (local.get $initial))))
    (block $folded2
      (loop $fold2
        (br_if $folded2 (i64.le_u (local.get $total) (i64.const 0xffff)))
        (local.set $total
          (i64.add (i64.and (local.get $total) (i64.const 0xffff))
            (i64.shr_u (local.get $total) (i64.const 16))))
        (br $fold2)))
    (i32.wrap_i64 (local.get $total))))
