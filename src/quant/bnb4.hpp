#pragma once
// Lossless conversion of bitsandbytes 4-bit layers (transformers'
// BitsAndBytesConfig load_in_4bit, saved with their QuantState) at load time:
// NF4 layers into kq's NF4 format (formats/nf4.hpp), FP4 layers into kq's
// FP4_BNB format (formats/fp4_bnb.hpp: bitsandbytes' own FP4 code values, which
// are not OCP E2M1, kq's FP4); packed4.hpp planes, F32 block scales.
//
// bitsandbytes stores a weight W [N, K] flattened row-major (element i = n·K + k):
//   <w>                        U8 [ceil(N·K/2), 1]  two codes per byte, element 2j in the HIGH nibble, 2j + 1 in
//                                                   the low one (the opposite of kq's packed4 order)
//   <w>.absmax                 F32 [nb]             one scale per block of `blocksize` consecutive elements
//                                                   (nb = ceil(N·K / blocksize)); w = quant_map[code] · absmax
//                              U8 [nb] when nested (double quantization): absmax[j] =
//                                                   nested_quant_map[code_j] · nested_absmax[j / nested_blocksize]
//                                                   + nested_offset, in F32 as bitsandbytes' dequantize_blockwise
//   <w>.quant_map              F32 [16]             the code values: NF4's (must equal kq's kNF4) or FP4's
//                                                   (must equal kq's kFP4Bnb by value; code 8 is saved as +0)
//   <w>.nested_absmax          F32 [ceil(nb / nested_blocksize)], <w>.nested_quant_map F32 [256]  (nested only)
//   <w>.quant_state.bitsandbytes__nf4  U8 [bytes]   JSON of the other fields (read by the caller, Bnb4State);
//                                                   "...bitsandbytes__fp4" for an FP4 layer
// where <w> is "<prefix>.weight". kq's block B is the largest power of two in
// [32, 256] dividing both blocksize and K (so no block crosses a row), each
// given its bitsandbytes block's absmax; kq computes code value · absmax in F32
// where bitsandbytes rounds it to the compute dtype (bf16 / fp16).
#include <cstdint>
#include <string>

#include "quant/packed_weight.hpp"

namespace kq {

/// The non-tensor fields of a bitsandbytes QuantState (its packed JSON).
struct Bnb4State {
  bool fp4 = false;  ///< quant_type "fp4" (bitsandbytes' FP4), else "nf4"
  int64_t blocksize = 64;
  int64_t rows = 0, cols = 0;  ///< "shape": the weight's [N, K]
  bool nested = false;         ///< double quantization ("nested_blocksize" / "nested_offset" present)
  int64_t nested_blocksize = 256;
  float nested_offset = 0.0f;
};

/// "fp4" or "nf4": the bitsandbytes quant_type of a 4-bit layer (`fp4` as Bnb4State::fp4).
inline const char* bnb4_type_name(bool fp4) { return fp4 ? "fp4" : "nf4"; }

/// Converts the 4-bit layer W [N, K] whose tensors are named from `weight`
/// ("<prefix>.weight", see the top of this file), NF4 or (state.fp4) FP4, into
/// a kq PackedWeight of format NF4 or FP4_BNB (no double quantization: the
/// scales are bitsandbytes' absmax values, nested ones decoded) with the same
/// dequantized values. Throws FormatError naming the tensor (and index) for a
/// missing tensor, a wrong dtype or shape for [N, K] and the state's block
/// sizes, a state shape other than [N, K], a quant_map that is not the values
/// of the layer's quant type, a negative or non-finite absmax, an odd K, or a
/// blocksize whose blocks no kq block size (a power of two in [32, 256]
/// dividing K) fits.
PackedWeight import_bnb_4bit(const TensorGetter& get, const std::string& weight, const Bnb4State& state, int64_t N,
                             int64_t K);

}  // namespace kq
